//! What watchers see: the latest state rather than a queue, one service's
//! instances only, the same states as each other, and the last known instances
//! across a lost connection.

use std::time::Duration;

use tokio::time::{sleep, timeout};

use octopus_discovery_core::Freshness;

use super::{ids, instance, namespace, options, until, Harness};

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
    // Time passes on purpose: the lease expires behind the cut.
    sleep(h.ttl() * 2).await;
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
