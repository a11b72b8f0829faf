//! Cold start from a discovery cache file: the last fresh view, saved by one run,
//! is served (stale) by the next when it starts with the registry unreachable;
//! the first fresh view replaces it; a bad file is an error that names it.

use std::sync::Arc;
use std::time::Duration;

use octopus::core::cache_file::ColdCache;
use octopus::core::{JitterRng, JsonLayout, WatchDiscovery};
use octopus::grpc::{ChannelBuilder, Policy, TcpConnector};
use octopus::mem::{MemBackend, Store};
use octopus::{Discovery, Registry, ServiceInstance};
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::HelloRequest;
use tokio::time::timeout;

fn discovery(backend: &MemBackend, cold: Arc<ColdCache>) -> WatchDiscovery<MemBackend> {
    let layout = Arc::new(JsonLayout::new("/cold").unwrap());
    WatchDiscovery::new(Arc::new(backend.clone()), layout).with_cold_cache(cold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_view_serves_a_start_without_registry_until_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("discovery.json");
    // A greeter that outlives both runs.
    let port = octopus_greeter::serve_on_loopback("g1").await.unwrap();

    // First run: the registry answers; the view is saved.
    {
        let backend = MemBackend::new(Store::new());
        let layout = Arc::new(JsonLayout::new("/cold").unwrap());
        let registry = octopus::core::LeaseRegistry::new(Arc::new(backend.clone()), layout);
        let reg = registry
            .register(
                ServiceInstance::new("greeter", "g1", "127.0.0.1", port).unwrap(),
                Default::default(),
            )
            .await
            .unwrap();
        let cold = ColdCache::open(&path, "test").unwrap();
        assert!(cold.services().is_empty(), "no file yet: an empty cache");
        let d = discovery(&backend, cold);
        let mut w = d.watch("greeter").await.unwrap();
        w.wait_for(|s| s.is_fresh() && s.instances.len() == 1).await.unwrap();
        timeout(Duration::from_secs(5), async {
            while ColdCache::open(&path, "test").unwrap().services().get("greeter") != Some(&1) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the view is saved within a moment");
        reg.abandon().await;
    }

    // Second run: the registry is unreachable from the start.
    let backend = MemBackend::new(Store::new());
    backend.set_reachable(false);
    let cold = ColdCache::open(&path, "test").unwrap();
    let d = discovery(&backend, cold.clone());
    let mut w = d.watch("greeter").await.unwrap();
    let s = timeout(Duration::from_secs(5), w.wait_for(|s| !s.instances.is_empty()))
        .await
        .expect("the saved view is served")
        .unwrap();
    assert!(!s.is_fresh(), "the saved view is marked stale");
    assert_eq!(s.get("g1").unwrap().port, port);
    assert_eq!(d.instances("greeter").await.unwrap().len(), 1, "one-shot reads too");
    // A balanced channel over it reaches the instance.
    let channel = ChannelBuilder::from_watch("greeter", d.watch("greeter").await.unwrap())
        .policy(Policy::RoundRobin)
        .connector(Arc::new(TcpConnector::default()))
        .rng(JitterRng::seeded(1))
        .connect()
        .await
        .unwrap();
    let reply = GreeterClient::new(channel)
        .say_hello(HelloRequest { name: "cold".into() })
        .await
        .expect("a call during a cold start without registry");
    assert_eq!(reply.into_inner().message, "hello, cold");

    // The registry comes back with another instance: the fresh view replaces the
    // saved one entirely, and is saved in its turn.
    let layout = Arc::new(JsonLayout::new("/cold").unwrap());
    let registry = octopus::core::LeaseRegistry::new(Arc::new(backend.clone()), layout);
    backend.set_reachable(true);
    let reg = registry
        .register(
            ServiceInstance::new("greeter", "g2", "127.0.0.1", 1).unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    let s = timeout(
        Duration::from_secs(10),
        w.wait_for(|s| s.is_fresh() && s.get("g2").is_some()),
    )
    .await
    .expect("fresh again")
    .unwrap();
    assert!(s.get("g1").is_none(), "the saved view never outlives a fresh one");
    timeout(Duration::from_secs(5), async {
        while ColdCache::open(&path, "test").unwrap().services().get("greeter") != Some(&1)
            || std::fs::read_to_string(&path).unwrap().contains("\"g1\"")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the fresh view is saved");
    reg.deregister().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_cache_file_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    let shown = path.display().to_string();
    for (content, why) in [
        ("{ not json", "is not a discovery cache"),
        (r#"{"something": "else"}"#, "is not a discovery cache"),
        (
            r#"{"format":"other-cache","version":1,"scope":"test","services":{}}"#,
            "not \"octopus-discovery-cache\"",
        ),
        (
            r#"{"format":"octopus-discovery-cache","version":1,"scope":"etcd://elsewhere","services":{}}"#,
            "was written for registry \"etcd://elsewhere\"",
        ),
        (
            r#"{"format":"octopus-discovery-cache","version":1,"scope":"test","services":{"s":{"revision":3,"instances":[{"service":"s","id":"a/b","addr":"127.0.0.1","port":1}]}}}"#,
            "invalid id",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let err = ColdCache::open(&path, "test").unwrap_err().to_string();
        assert!(err.contains(&shown) && err.contains(why), "{content}: {err}");
    }
    // Through a registry URL, the client refuses to start on it, naming it.
    let url = format!("mem://cold-bad?cache_file={shown}");
    let err = octopus::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains(&shown), "{err}");
    // A missing file is an empty cache, and a good URL takes it.
    std::fs::remove_file(&path).unwrap();
    octopus::connect(&url).await.unwrap();
    let err = octopus::connect("mem://cold-bad?cache_file=")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache_file"), "{err}");
}
