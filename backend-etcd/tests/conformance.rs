//! The core conformance suite against a real etcd server, one per case, each client
//! behind a fault proxy so that a case can cut its own connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use octopus_core::conformance::Harness;
use octopus_core::{Discovery, JsonLayout, Registry};
use octopus_etcd::testing::{EtcdServer, FaultProxy, ProxyMode};
use octopus_etcd::{EtcdBackend, EtcdOptions};
use tokio::sync::OnceCell;

#[derive(Default)]
struct Etcd {
    server: OnceCell<EtcdServer>,
    proxies: Mutex<BTreeMap<String, Vec<Arc<FaultProxy>>>>,
}

fn harness() -> Etcd {
    Etcd::default()
}

#[async_trait]
impl Harness for Etcd {
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>) {
        let server = self.server.get_or_init(EtcdServer::start).await;
        let proxy = Arc::new(FaultProxy::start(server.addr()).await);
        let opts = EtcdOptions::new([proxy.endpoint()])
            .unwrap()
            .request_timeout(Duration::from_secs(2))
            .http2_keepalive(Duration::from_millis(500), Duration::from_secs(1));
        self.proxies
            .lock()
            .unwrap()
            .entry(namespace.to_owned())
            .or_default()
            .push(proxy);
        let backend = EtcdBackend::connect(opts).await.unwrap();
        let layout = Arc::new(JsonLayout::new(namespace).unwrap());
        (
            Arc::new(backend.registry_with(layout.clone())),
            Arc::new(backend.discovery_with(layout)),
        )
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(2) // etcd's minimum lease TTL with default timing
    }

    fn settle(&self) -> Duration {
        Duration::from_secs(3)
    }

    async fn cut(&self, namespace: &str, cut: bool) -> bool {
        let mode = if cut { ProxyMode::Blackhole } else { ProxyMode::Pass };
        for proxy in &self.proxies.lock().unwrap()[namespace] {
            proxy.set(mode);
        }
        true
    }
}

octopus_core::conformance_tests!(real: harness());
