//! One registration's life: visible once registered, gone after deregister, drop
//! or an expired TTL, kept alive by keepalives, updated and drained in place.

use std::time::Duration;

use tokio::time::{sleep, timeout, Instant};

use octopus_discovery_core::{RegistrationStatus, ServiceInstance};

use super::{ids, instance, namespace, options, until, Harness};

/// A registered instance is in `instances()` and in a watch.
pub async fn register_then_visible(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("visible")).await;
    let mut w = disc.watch("svc").await.unwrap();
    let first = timeout(h.settle(), w.next()).await.expect("initial snapshot").unwrap();
    assert!(first.instances.is_empty(), "nothing registered yet: {first:?}");
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    assert!(r.current().is_registered(), "status after register: {}", r.current());
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    let now = disc.instances("svc").await.unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(*now[0], instance("svc", "a", 1001));
    r.deregister().await.unwrap();
}

/// `deregister` removes the key before it returns, and watchers see it go.
pub async fn deregister_removes(h: &impl Harness) {
    let ns = namespace("deregister");
    let (reg, disc) = h.open(&ns).await;
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let mut w = disc.watch("svc").await.unwrap();
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    let mut status = r.status();
    r.deregister().await.unwrap();
    assert_eq!(*status.borrow_and_update(), RegistrationStatus::Deregistered);
    // The registry has no key any more: a discovery without a watch cache reads it.
    let (_, uncached) = h.open(&ns).await;
    assert!(
        uncached.instances("svc").await.unwrap().is_empty(),
        "gone when deregister returns"
    );
    let gone = until(h, &mut w, Duration::ZERO, "a to go", |s| s.instances.is_empty()).await;
    assert!(gone.is_fresh(), "a real deletion is a fresh empty list: {gone:?}");
    drop(reg);
}

/// Dropping the handle deregisters in the background.
pub async fn drop_deregisters(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("drop")).await;
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let mut w = disc.watch("svc").await.unwrap();
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    let dropped = Instant::now();
    drop(r);
    until(h, &mut w, Duration::ZERO, "a to go after drop", |s| {
        s.instances.is_empty()
    })
    .await;
    assert!(
        dropped.elapsed() < h.ttl(),
        "drop must delete, not wait for the TTL ({:?})",
        dropped.elapsed()
    );
}

/// An instance whose keepalives stop (a crash) stays until its TTL, then goes.
pub async fn abandoned_expires_after_ttl(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("expire")).await;
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let mut w = disc.watch("svc").await.unwrap();
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    let stopped = Instant::now();
    r.abandon().await;
    // Time passes on purpose (paused and auto-advanced for in-process backends):
    // half a TTL, within which the instance must still be there.
    sleep(h.ttl() / 2).await;
    assert_eq!(
        disc.instances("svc").await.unwrap().len(),
        1,
        "must outlive its last keepalive until the TTL"
    );
    until(h, &mut w, h.ttl(), "a to expire", |s| s.instances.is_empty()).await;
    assert!(
        stopped.elapsed() >= h.ttl() / 2,
        "expired too early: {:?}",
        stopped.elapsed()
    );
}

/// A live registration survives many TTLs: keepalives work.
pub async fn keepalive_outlives_ttl(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("keepalive")).await;
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let lease = r.registered().await.unwrap();
    // Time passes on purpose: three TTLs, which only keepalives survive.
    sleep(h.ttl() * 3).await;
    assert_eq!(
        disc.instances("svc").await.unwrap().len(),
        1,
        "keepalive must hold the key"
    );
    assert_eq!(
        r.current(),
        RegistrationStatus::Registered { lease },
        "the same lease all along"
    );
    r.deregister().await.unwrap();
}

/// `update` changes metadata in place and watchers see the new value.
pub async fn update_reaches_watchers(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("update")).await;
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let mut w = disc.watch("svc").await.unwrap();
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    let updated = instance("svc", "a", 1001)
        .with_metadata("zone", "b")
        .with_weight(7)
        .with_version("v2");
    r.update(updated.clone()).await.unwrap();
    let s = until(h, &mut w, Duration::ZERO, "the update", |s| {
        s.get("a").is_some_and(|i| i.weight == 7)
    })
    .await;
    assert_eq!(s.get("a"), Some(&updated));
    let err = r.update(instance("svc", "b", 1001)).await.unwrap_err();
    assert!(
        err.kind() == octopus_discovery_core::ErrorKind::InvalidInstance,
        "changing the id must be refused: {err}"
    );
    r.deregister().await.unwrap();
}

/// A drained instance stays registered and listed with the mark; an update keeps
/// the mark, undrain clears it.
pub async fn drain_marks_without_deregistering(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("drain")).await;
    let r = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let mut w = disc.watch("svc").await.unwrap();
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    assert!(!*r.draining().borrow());
    r.drain().await.unwrap();
    assert!(*r.draining().borrow());
    let s = until(h, &mut w, Duration::ZERO, "the draining mark", |s| {
        s.get("a").is_some_and(ServiceInstance::is_draining)
    })
    .await;
    assert_eq!(ids(&s), ["a"], "a draining instance is still listed");
    assert!(r.current().is_registered());
    // An update keeps the mark: a process changing its weight must not undo a drain.
    r.update(instance("svc", "a", 1001).with_weight(7)).await.unwrap();
    let s = until(h, &mut w, Duration::ZERO, "the update", |s| {
        s.get("a").is_some_and(|i| i.weight == 7)
    })
    .await;
    assert!(s.get("a").unwrap().is_draining(), "the update dropped the mark");
    r.undrain().await.unwrap();
    until(h, &mut w, Duration::ZERO, "the mark cleared", |s| {
        s.get("a").is_some_and(|i| !i.is_draining() && i.weight == 7)
    })
    .await;
    assert!(!*r.draining().borrow());
    r.deregister().await.unwrap();
}
