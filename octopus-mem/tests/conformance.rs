//! The core conformance suite against the in-memory backend, in paused time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use octopus_discovery_core::{Discovery, JsonLayout, Registry};
use octopus_mem::{MemBackend, Store};
use octopus_testkit::conformance::Harness;

#[derive(Default)]
struct Mem {
    /// One backend per namespace, so a cut affects one case only.
    backends: Mutex<BTreeMap<String, Vec<MemBackend>>>,
    store: Mutex<Option<Store>>,
}

fn harness() -> Mem {
    Mem::default()
}

#[async_trait]
impl Harness for Mem {
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>) {
        let store = self.store.lock().unwrap().get_or_insert_with(Store::new).clone();
        let backend = MemBackend::new(store);
        let mut backends = self.backends.lock().unwrap();
        backends.entry(namespace.to_owned()).or_default().push(backend.clone());
        drop(backends);
        let layout = Arc::new(JsonLayout::new(namespace).unwrap());
        (
            Arc::new(backend.registry_with(layout.clone())),
            Arc::new(backend.discovery_with(layout)),
        )
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn settle(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn cut(&self, namespace: &str, cut: bool) -> bool {
        for backend in &self.backends.lock().unwrap()[namespace] {
            backend.set_reachable(!cut);
        }
        true
    }
}

octopus_testkit::conformance_tests!(paused: harness());

/// Previous values come only with `watch_with_prev`, as on etcd.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn previous_values_only_when_asked() {
    let backend = MemBackend::new(Store::new());
    octopus_testkit::conformance::previous_values_only_when_asked(&backend).await;
}
