//! A recorder installed after discovery started still gets discovery's
//! per-change series: a discovery cache keeps its series' handles, and
//! registers them again when `describe` says a recorder was installed (a test
//! binary of its own: the recorder is global to the process).

use std::time::Duration;

use octopus::mem::{MemBackend, Store};
use octopus::{Discovery, RegisterOptions, Registry, ServiceInstance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_installed_after_discovery_started_gets_its_series() {
    let backend = MemBackend::new(Store::new());
    let registry = backend.registry();
    let instance = |id: &str| ServiceInstance::new("late", id, "127.0.0.1", 1).unwrap();
    let _first = registry
        .register(instance("l1"), RegisterOptions::default())
        .await
        .unwrap();
    let discovery = backend.discovery();
    let mut watch = discovery.watch("late").await.unwrap();
    watch.wait_for(|s| s.instances.len() == 1).await.unwrap();

    // Installed now: the cache took its handles from no recorder at all.
    let handle = octopus::metrics::install().unwrap();
    let _second = registry
        .register(instance("l2"), RegisterOptions::default())
        .await
        .unwrap();
    watch.wait_for(|s| s.instances.len() == 2).await.unwrap();

    let body = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let body = handle.render();
            if body.contains(r#"octopus_instances{service="late"} 2"#) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no instances gauge for the late recorder:\n{}", handle.render()));
    assert!(
        body.contains(r#"octopus_discovery_propagation_seconds_count{service="late"} 1"#),
        "the change seen after the install is measured:\n{body}"
    );
}
