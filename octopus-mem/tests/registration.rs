//! Registration behaviours beyond the conformance suite, on the in-memory store.

use std::time::Duration;

use octopus_discovery_core::{
    BackoffPolicy, Discovery, RegisterOptions, RegistrationStatus, Registry, ServiceInstance,
};
use octopus_mem::{KeyRange, MemBackend, Store};
use tokio::time::{sleep, timeout};

fn opts() -> RegisterOptions {
    RegisterOptions::default()
        .ttl(Duration::from_secs(3))
        .retry(BackoffPolicy::new(Duration::from_millis(50), Duration::from_millis(500)).unwrap())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_key_deleted_under_a_live_lease_is_put_back() {
    let store = Store::new();
    let backend = MemBackend::new(store.clone());
    let reg = backend
        .registry()
        .register(ServiceInstance::new("svc", "a", "127.0.0.1", 1).unwrap(), opts())
        .await
        .unwrap();
    let lease = reg.registered().await.unwrap();
    let discovery = backend.discovery();
    let mut w = discovery.watch("svc").await.unwrap();
    w.wait_for(|s| s.instances.len() == 1).await.unwrap();

    store.delete(&KeyRange::key("/octopus/services/svc/a")).unwrap();
    // The registration joins its service's watch at its first keepalive (1 s, a
    // third of the TTL, rounded up to a 500 ms tick), which replays the deletion
    // from the write's revision; later deletions are healed within a round trip.
    timeout(
        Duration::from_secs(2),
        w.wait_for(|s| s.instances.len() == 1 && s.revision > 3),
    )
    .await
    .expect("put back")
    .unwrap();
    let (_, kvs, _) = store.range(&KeyRange::key("/octopus/services/svc/a"), 0, 0).unwrap();
    assert_eq!(kvs[0].lease, lease, "under the same live lease");
    assert_eq!(reg.current(), RegistrationStatus::Registered { lease });
}

/// Another writer puts what does not decode under our own lease: the
/// registration puts its value back, as it does a deletion, rather than leave
/// watchers without the instance until its next write. (A value that decodes is
/// left to the next write: it may be one of our own earlier writes; a draining
/// mark in it is adopted, tests/drain.rs in the facade.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn junk_under_our_lease_is_put_back() {
    let store = Store::new();
    let backend = MemBackend::new(store.clone());
    let instance = ServiceInstance::new("svc", "a", "127.0.0.1", 1).unwrap();
    let reg = backend.registry().register(instance.clone(), opts()).await.unwrap();
    let lease = reg.registered().await.unwrap();
    let discovery = backend.discovery();
    let mut w = discovery.watch("svc").await.unwrap();
    w.wait_for(|s| s.instances.len() == 1).await.unwrap();
    // Past the first keepalive: the registration follows its key from here.
    sleep(Duration::from_secs(2)).await;
    let key = "/octopus/services/svc/a";
    for junk in [&b"not an instance"[..], b"{}", b""] {
        let (written, _) = store.put(key.as_bytes(), junk, lease.0).unwrap();
        timeout(
            Duration::from_secs(2),
            w.wait_for(|s| s.revision > written.revision && s.get("a") == Some(&instance)),
        )
        .await
        .unwrap_or_else(|_| panic!("{:?} under our lease is put back", String::from_utf8_lossy(junk)))
        .unwrap();
        let (_, kvs, _) = store.range(&KeyRange::key(key), 0, 0).unwrap();
        assert_eq!(kvs[0].lease, lease, "under the same live lease");
    }
    assert_eq!(reg.current(), RegistrationStatus::Registered { lease });
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retry_limit_ends_in_failed_and_otherwise_retries_never_stop() {
    let backend = MemBackend::new(Store::new());
    backend.set_reachable(false);
    let limited = opts().retry(
        BackoffPolicy::new(Duration::from_millis(50), Duration::from_millis(200))
            .unwrap()
            .with_max_retries(3),
    );
    let registry = backend.registry();
    let failing = registry
        .register(ServiceInstance::new("svc", "a", "127.0.0.1", 1).unwrap(), limited)
        .await
        .unwrap();
    let forever = registry
        .register(ServiceInstance::new("svc", "b", "127.0.0.1", 2).unwrap(), opts())
        .await
        .unwrap();
    let mut st = failing.status();
    timeout(
        Duration::from_secs(5),
        st.wait_for(|s| matches!(s, RegistrationStatus::Failed { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(failing.registered().await.is_err());

    sleep(Duration::from_secs(3600)).await; // an hour of an unreachable registry
    assert!(
        matches!(forever.current(), RegistrationStatus::Lost { .. }),
        "{}",
        forever.current()
    );
    backend.set_reachable(true);
    timeout(Duration::from_secs(1), forever.registered())
        .await
        .expect("back within the retry cap")
        .unwrap();
    assert_eq!(backend.discovery().instances("svc").await.unwrap().len(), 1);
}
