//! Many registrations on one shared lease, on the in-memory store (paused time).

use std::sync::Arc;
use std::time::Duration;

use octopus_discovery_core::{
    BackoffPolicy, Discovery, JsonLayout, RegisterOptions, RegistrationStatus, Registry, ServiceInstance,
};
use octopus_mem::{MemBackend, Store};
use tokio::time::{sleep, timeout};

fn opts() -> RegisterOptions {
    RegisterOptions::default()
        .ttl(Duration::from_secs(2))
        .retry(BackoffPolicy::new(Duration::from_millis(50), Duration::from_millis(500)).unwrap())
}

fn instance(n: usize) -> ServiceInstance {
    ServiceInstance::new(
        format!("svc{}", n % 5),
        format!("i{n:03}"),
        "127.0.0.1",
        1000 + n as u16,
    )
    .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fifty_instances_one_lease_and_recovery_under_the_next() {
    let store = Store::new();
    let backend = MemBackend::new(store.clone());
    let registry = backend
        .registry_with(Arc::new(JsonLayout::default()))
        .with_shared_lease(opts());
    let mut regs = Vec::new();
    for n in 0..50 {
        regs.push(registry.register(instance(n), opts()).await.unwrap());
    }
    let leases = store.leases();
    assert_eq!(leases.len(), 1, "one lease for fifty instances");
    assert_eq!(store.time_to_live(leases[0]).unwrap().keys.len(), 50);
    let lease = regs[0].registered().await.unwrap();
    assert!(regs
        .iter()
        .all(|r| r.current() == RegistrationStatus::Registered { lease }));

    // Kept alive over many TTLs by one keepalive loop.
    sleep(Duration::from_secs(20)).await;
    assert_eq!(store.len(), 50);
    assert_eq!(store.leases(), leases);

    // A duplicate id in the same registry would share the lease: refused at once.
    let dup = registry.register(instance(7), opts()).await.unwrap_err();
    assert_eq!(dup.kind(), octopus_discovery_core::ErrorKind::Conflict, "{dup}");

    // Deregistering one deletes its key only.
    regs.pop().unwrap().deregister().await.unwrap();
    assert_eq!(store.len(), 49);
    assert_eq!(store.leases(), leases, "the shared lease stays for the others");

    // The lease is revoked under everyone: all come back under one new lease.
    store.revoke(leases[0]).unwrap();
    assert_eq!(store.len(), 0);
    for r in &regs {
        let mut rx = r.status();
        timeout(
            Duration::from_secs(5),
            rx.wait_for(|s| matches!(s, RegistrationStatus::Registered { lease: l } if *l != lease)),
        )
        .await
        .expect("re-registered")
        .unwrap();
    }
    let now = store.leases();
    assert_eq!(now.len(), 1, "one new shared lease: {now:?}");
    assert_ne!(now, leases);
    assert_eq!(store.time_to_live(now[0]).unwrap().keys.len(), 49);
    let discovery = backend.discovery();
    assert_eq!(discovery.instances("svc1").await.unwrap().len(), 10);

    // When every registration is gone the keepalives stop; the lease expires.
    drop(regs);
    sleep(Duration::from_secs(5)).await;
    assert!(
        store.leases().is_empty(),
        "no lease outlives its registrations by more than a TTL"
    );
}
