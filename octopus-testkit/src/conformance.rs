//! The conformance suite every backend runs.
//!
//! Long: one function per clause of the registry and discovery contract, and the
//! macro that makes each a test; kept together so the contract reads in one place.
//!
//! A backend provides a [`Harness`]; [`conformance_tests!`](crate::conformance_tests)
//! expands to one `#[tokio::test]` per case. Each case uses a namespace of its own,
//! so cases can share one server.
//!
//! ```text
//! fn harness() -> MyHarness { MyHarness::default() }
//! octopus_testkit::conformance_tests!(paused: harness());   // in-process backends
//! octopus_testkit::conformance_tests!(real: harness());     // backends with a real server
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{sleep, timeout, Instant};

use octopus_discovery_core::{
    BackoffPolicy, Discovery, Freshness, RegisterOptions, RegistrationStatus, Registry, ServiceInstance, ServiceWatch,
    Snapshot,
};

/// What a backend gives the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A registry and a discovery that use `namespace` (fresh for every case).
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>);

    /// The lease TTL the cases use: short, but at least the backend's minimum.
    fn ttl(&self) -> Duration;

    /// How long a change may take to reach a watcher; waits fail after it.
    fn settle(&self) -> Duration;

    /// Cuts (`true`) or restores (`false`) the connection of what `open(namespace)`
    /// returned. Returns false when the backend cannot, and the case is skipped.
    async fn cut(&self, namespace: &str, cut: bool) -> bool {
        let _ = (namespace, cut);
        false
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn namespace(case: &str) -> String {
    format!("/conformance/{case}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn instance(service: &str, id: &str, port: u16) -> ServiceInstance {
    ServiceInstance::new(service, id, "127.0.0.1", port).expect("valid test instance")
}

fn options(h: &impl Harness) -> RegisterOptions {
    let retry = BackoffPolicy::new(Duration::from_millis(50), h.ttl()).expect("valid policy");
    RegisterOptions::default().ttl(h.ttl()).retry(retry)
}

fn ids(s: &Snapshot) -> Vec<&str> {
    s.instances.iter().map(|i| i.id.as_str()).collect()
}

/// Waits (bounded by the harness's settle time, plus `extra`) for a snapshot that satisfies `pred`.
async fn until(
    h: &impl Harness,
    w: &mut ServiceWatch,
    extra: Duration,
    what: &str,
    pred: impl FnMut(&Snapshot) -> bool,
) -> Snapshot {
    match timeout(h.settle() + extra, w.wait_for(pred)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("watch ended while waiting for {what}: {e}"),
        Err(_) => panic!("timed out waiting for {what}; last snapshot: {:?}", w.latest()),
    }
}

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

/// A slow watcher gets the latest state, not a queue of old ones.
pub async fn watch_coalesces(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("coalesce")).await;
    let mut w = disc.watch("svc").await.unwrap();
    timeout(h.settle(), w.next()).await.expect("initial snapshot").unwrap();
    let mut regs = Vec::new();
    for n in 0..20u16 {
        regs.push(
            reg.register(instance("svc", &format!("i{n:02}"), 2000 + n), options(h))
                .await
                .unwrap(),
        );
    }
    // Consume only now: far fewer than 20 snapshots reach the full state.
    let mut seen = 0;
    until(h, &mut w, Duration::ZERO, "all 20", |s| {
        seen += 1;
        s.instances.len() == 20
    })
    .await;
    assert!(
        seen < 20,
        "a slow watcher must skip intermediate states, saw {seen} snapshots"
    );
    for r in regs {
        r.deregister().await.unwrap();
    }
}

/// Services do not see each other's instances, and `foo` never sees `foobar`.
pub async fn services_isolated(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("isolated")).await;
    let a = reg.register(instance("foo", "1", 1), options(h)).await.unwrap();
    let b = reg.register(instance("foobar", "1", 2), options(h)).await.unwrap();
    let c = reg.register(instance("fo", "1", 3), options(h)).await.unwrap();
    let mut w = disc.watch("foo").await.unwrap();
    let s = until(h, &mut w, Duration::ZERO, "foo's instance", |s| !s.instances.is_empty()).await;
    assert_eq!(s.instances.iter().map(|i| i.port).collect::<Vec<_>>(), [1]);
    assert_eq!(disc.instances("foobar").await.unwrap()[0].port, 2);
    assert_eq!(disc.instances("fo").await.unwrap()[0].port, 3);
    assert!(disc.instances("nothing").await.unwrap().is_empty());
    for r in [a, b, c] {
        r.deregister().await.unwrap();
    }
}

/// Bad input is an error naming the field, and loses nothing already registered.
pub async fn invalid_input_rejected(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("invalid")).await;
    let good = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let bad = ServiceInstance {
        service: "svc/../other".into(),
        ..instance("svc", "b", 1)
    };
    let err = reg.register(bad, options(h)).await.unwrap_err();
    assert!(err.to_string().contains("invalid service"), "{err}");
    let bad_port = ServiceInstance {
        port: 0,
        ..instance("svc", "b", 1)
    };
    assert!(reg
        .register(bad_port, options(h))
        .await
        .unwrap_err()
        .to_string()
        .contains("invalid port"));
    // Options checked as a whole at registration: a keepalive that does not fit
    // the TTL set after it is an error naming it, and nothing is registered.
    let misfit = options(h)
        .keepalive_interval(Duration::from_secs(3))
        .ttl(Duration::from_secs(4));
    let err = reg.register(instance("svc", "c", 1003), misfit).await.unwrap_err();
    assert!(err.to_string().contains("keepalive_interval"), "{err}");
    let err = good
        .update(ServiceInstance {
            addr: "not a host".into(),
            ..instance("svc", "a", 1001)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid addr"), "{err}");
    assert!(disc.watch("bad/name").await.is_err());
    assert_eq!(*disc.instances("svc").await.unwrap()[0], instance("svc", "a", 1001));
    assert_eq!(disc.instances("svc").await.unwrap().len(), 1);
    assert!(good.current().is_registered());
    good.deregister().await.unwrap();
}

/// A second registration of the same service/id does not steal the key: it reports
/// a conflict, and takes over once the first one leaves.
pub async fn same_id_conflict(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("conflict")).await;
    let first = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let second = reg.register(instance("svc", "a", 1002), options(h)).await.unwrap();
    assert!(
        matches!(second.current(), RegistrationStatus::Conflict { .. }),
        "got {}",
        second.current()
    );
    assert_eq!(disc.instances("svc").await.unwrap()[0].port, 1001);
    first.deregister().await.unwrap();
    timeout(h.settle() + h.ttl() * 2, second.registered())
        .await
        .expect("second takes over")
        .unwrap();
    let now = disc.instances("svc").await.unwrap();
    assert_eq!(
        now.iter().map(|i| i.port).collect::<Vec<_>>(),
        [1002],
        "exactly one key per id"
    );
    second.deregister().await.unwrap();
}

/// Many concurrent registrations all become visible, and all go.
pub async fn many_concurrent(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("many")).await;
    let mut w = disc.watch("svc").await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..100u16 {
        let reg = reg.clone();
        let opts = options(h);
        tasks.push(tokio::spawn(async move {
            reg.register(instance("svc", &format!("i{n:03}"), 3000 + n), opts)
                .await
                .unwrap()
        }));
    }
    let mut regs = Vec::new();
    for t in tasks {
        regs.push(t.await.unwrap());
    }
    until(h, &mut w, Duration::ZERO, "100 instances", |s| s.instances.len() == 100).await;
    let deregs: Vec<_> = regs.into_iter().map(|r| tokio::spawn(r.deregister())).collect();
    for d in deregs {
        d.await.unwrap().unwrap();
    }
    until(h, &mut w, Duration::ZERO, "none left", |s| s.instances.is_empty()).await;
}

/// Two watchers of one service see the same states; a watch on a service with
/// instances starts with them.
pub async fn watchers_agree(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("agree")).await;
    let r = reg.register(instance("svc", "a", 1), options(h)).await.unwrap();
    let mut w1 = disc.watch("svc").await.unwrap();
    let first = timeout(h.settle(), w1.next()).await.unwrap().unwrap();
    assert_eq!(ids(&first), ["a"], "the first snapshot is the current state");
    let mut w2 = disc.watch("svc").await.unwrap();
    let r2 = reg.register(instance("svc", "b", 2), options(h)).await.unwrap();
    let s1 = until(h, &mut w1, Duration::ZERO, "b in w1", |s| s.instances.len() == 2).await;
    let s2 = until(h, &mut w2, Duration::ZERO, "b in w2", |s| s.instances.len() == 2).await;
    assert_eq!(s1.instances, s2.instances);
    assert!(s1.revision >= first.revision);
    r.deregister().await.unwrap();
    r2.deregister().await.unwrap();
}

/// A lost connection keeps the last known instances, marked stale, never an empty
/// list; when it heals the watch is fresh again and registrations are back.
pub async fn cut_keeps_last_known(h: &impl Harness) {
    let ns = namespace("cut");
    let (reg, disc) = h.open(&ns).await;
    let r = reg.register(instance("svc", "a", 1), options(h)).await.unwrap();
    let mut w = disc.watch("svc").await.unwrap();
    until(h, &mut w, Duration::ZERO, "a to appear", |s| ids(s) == ["a"]).await;
    if !h.cut(&ns, true).await {
        return; // the backend cannot cut connections
    }
    let stale = until(h, &mut w, Duration::ZERO, "a stale snapshot", |s| !s.is_fresh()).await;
    assert_eq!(ids(&stale), ["a"], "a lost connection must not empty the list");
    assert!(matches!(stale.freshness, Freshness::Stale { .. }));
    sleep(h.ttl() * 2).await; // the lease expires behind the cut
    assert_eq!(ids(&w.latest().unwrap()), ["a"], "still the last known instances");
    // The one-shot read cannot reach the registry: it answers as the watch does.
    let known = disc
        .instances("svc")
        .await
        .expect("the last known instances while a watch holds them");
    assert_eq!(known.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a"]);
    assert!(
        !r.current().is_registered(),
        "the registration knows it lost its lease: {}",
        r.current()
    );
    h.cut(&ns, false).await;
    let back = until(h, &mut w, h.ttl() * 2, "fresh and a back", |s| {
        s.is_fresh() && ids(s) == ["a"]
    })
    .await;
    assert!(back.revision >= stale.revision, "revisions never go back");
    timeout(h.settle() + h.ttl() * 2, r.registered())
        .await
        .expect("re-registered")
        .unwrap();
    r.deregister().await.unwrap();
}

/// Expands to one `#[tokio::test]` per conformance case.
///
/// `paused:` runs each case on a current-thread runtime with paused time (for
/// in-process backends); `real:` on a multi-threaded runtime with real time.
#[macro_export]
macro_rules! conformance_tests {
    (paused: $harness:expr) => {
        $crate::conformance_tests!(@cases (flavor = "current_thread", start_paused = true) $harness);
    };
    (real: $harness:expr) => {
        $crate::conformance_tests!(@cases (flavor = "multi_thread", worker_threads = 2) $harness);
    };
    (@cases $cfg:tt $harness:expr) => {
        $crate::conformance_tests!(@each $cfg $harness;
            register_then_visible, deregister_removes, drop_deregisters, abandoned_expires_after_ttl,
            keepalive_outlives_ttl, update_reaches_watchers, drain_marks_without_deregistering, watch_coalesces, services_isolated,
            invalid_input_rejected, same_id_conflict, many_concurrent, watchers_agree, cut_keeps_last_known);
    };
    (@each $cfg:tt $harness:expr; $($case:ident),*) => {
        $(
            #[::tokio::test $cfg]
            async fn $case() {
                $crate::conformance::$case(&$harness).await
            }
        )*
    };
}
