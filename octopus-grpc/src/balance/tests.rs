//! The balancer's choices over preset endpoints: zones, draining, readiness.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use super::{BalancedChannel, Connector, Policy, Readiness, Settings, TcpConnector, ZonePreference};
use octopus_discovery_core::{Freshness, JitterRng, ServiceInstance, ServiceWatch, Snapshot};

type Discovery = octopus_discovery_core::latest::Publisher<Option<Snapshot>>;

fn instance(id: &str, port: u16, zone: &str) -> ServiceInstance {
    ServiceInstance::new("s", id, "127.0.0.1", port)
        .unwrap()
        .with_metadata("zone", zone)
}

fn snapshot(instances: &[ServiceInstance]) -> Option<Snapshot> {
    Some(Snapshot {
        revision: 1,
        instances: instances.iter().cloned().collect(),
        freshness: Freshness::Fresh,
        resyncs: 0,
    })
}

/// A channel over `instances` (nothing listens: nothing is called), and the
/// sender that is its discovery.
async fn over(instances: &[ServiceInstance], policy: Policy) -> (BalancedChannel, Discovery) {
    over_with(instances, policy, None).await
}

/// As [`over`], preferring `zone`.
async fn over_with(
    instances: &[ServiceInstance],
    policy: Policy,
    zone: Option<ZonePreference>,
) -> (BalancedChannel, Discovery) {
    let (tx, rx) = octopus_discovery_core::latest::channel(snapshot(instances));
    let connector: Arc<dyn Connector> = Arc::new(TcpConnector::default());
    let settings = Settings {
        policy,
        zone,
        ..Settings::default()
    };
    let channel = BalancedChannel::new(
        "s",
        ServiceWatch::new(rx, Arc::new(())),
        connector,
        JitterRng::seeded(3),
        settings,
    );
    assert!(channel.ready_endpoints(instances.len(), Duration::from_secs(1)).await);
    (channel, tx)
}

/// The ids `n` picks go to, counted.
fn picks(channel: &BalancedChannel, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen.entry(channel.pick().unwrap().id.clone()).or_insert(0) += 1;
    }
    seen
}

fn eject(channel: &BalancedChannel, id: &str) {
    let set = channel.snapshot();
    let backend = set.all.iter().find(|b| b.instance.id == id).unwrap();
    channel.eject(backend);
}

#[tokio::test(flavor = "current_thread")]
async fn a_zone_preference_keeps_calls_local_and_spills_over_by_its_rule() {
    let all = [
        instance("a1", 1, "a"),
        instance("a2", 2, "a"),
        instance("b1", 3, "b"),
        instance("b2", 4, "b"),
    ];
    for policy in [Policy::RoundRobin, Policy::P2c, Policy::Weighted, Policy::PickFirst] {
        let (channel, _tx) = over(&all, policy).await;
        // Without a preference, both zones get calls.
        if policy != Policy::PickFirst {
            assert_eq!(picks(&channel, 200).len(), 4, "{policy:?}");
        }
        let (channel, _tx) = over_with(&all, policy, Some("b".into())).await;
        let seen = picks(&channel, 200);
        assert!(seen.keys().all(|id| id.starts_with('b')), "{policy:?}: {seen:?}");
        // One of two local instances ejected: half the zone is still up (the
        // default share, 0.5), so calls stay local, on the one left.
        eject(&channel, "b1");
        assert_eq!(picks(&channel, 50).keys().collect::<Vec<_>>(), ["b2"], "{policy:?}");
        // Both ejected: every zone.
        eject(&channel, "b2");
        let seen = picks(&channel, 200);
        assert!(seen.keys().all(|id| id.starts_with('a')), "{policy:?}: {seen:?}");
    }
    // A stricter rule: spill over unless every local instance is up.
    let stricter = ZonePreference {
        min_available_share: 1.0,
        ..ZonePreference::new("a")
    };
    let (channel, _tx) = over_with(&all, Policy::RoundRobin, Some(stricter)).await;
    assert!(picks(&channel, 20).keys().all(|id| id.starts_with('a')));
    eject(&channel, "a1");
    assert_eq!(picks(&channel, 30).len(), 3, "spilled over to every available instance");
    // A zone with no instance at all: every zone.
    let (channel, _tx) = over_with(&all, Policy::RoundRobin, Some("c".into())).await;
    assert_eq!(picks(&channel, 40).len(), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn draining_instances_take_no_new_calls_unless_nothing_else_can() {
    let all = [instance("a", 1, "z"), instance("b", 2, "z"), instance("c", 3, "z")];
    for policy in [
        Policy::RoundRobin,
        Policy::P2c,
        Policy::P2cEwma,
        Policy::Weighted,
        Policy::PickFirst,
    ] {
        let (channel, tx) = over(&all, policy).await;
        let marked = [all[0].clone().with_draining(true), all[1].clone(), all[2].clone()];
        tx.publish(snapshot(&marked));
        let drained = async {
            while channel.snapshot().serving.len() != 2 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(1), drained).await.unwrap();
        assert_eq!(channel.endpoints().len(), 3, "still known");
        let seen = picks(&channel, 200);
        assert!(!seen.contains_key("a"), "{policy:?}: {seen:?}");
        // Everything else ejected: the draining one rather than an outage.
        eject(&channel, "b");
        eject(&channel, "c");
        assert_eq!(picks(&channel, 20).keys().collect::<Vec<_>>(), ["a"], "{policy:?}");
        // Draining wins over the zone: a draining local instance is not local.
        let (zoned, tx) = channel_zoned(&all).await;
        tx.publish(snapshot(&marked));
        tokio::time::timeout(Duration::from_secs(1), async {
            while zoned.snapshot().local.len() != 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(!picks(&zoned, 100).contains_key("a"));
    }
}

async fn channel_zoned(all: &[ServiceInstance]) -> (BalancedChannel, Discovery) {
    over_with(all, Policy::RoundRobin, Some("z".into())).await
}

fn poll_ready(channel: &mut BalancedChannel) -> Poll<Result<(), octopus_discovery_core::BoxError>> {
    let waker = futures_util::task::noop_waker();
    channel.poll_ready(&mut Context::from_waker(&waker))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reported_readiness_waits_for_discovery_and_for_an_instance() {
    let (tx, rx) = octopus_discovery_core::latest::channel(None);
    let connector: Arc<dyn Connector> = Arc::new(TcpConnector::default());
    let reported = Settings {
        readiness: Readiness::Reported,
        ..Settings::default()
    };
    let mut channel = BalancedChannel::new(
        "s",
        ServiceWatch::new(rx, Arc::new(())),
        connector.clone(),
        JitterRng::seeded(1),
        reported,
    );
    // Pending until discovery's first answer, and woken by it.
    assert!(poll_ready(&mut channel).is_pending());
    let all = [instance("a", 1, "z"), instance("b", 2, "z")];
    tx.publish(snapshot(&all));
    let ready = std::future::poll_fn(|cx| channel.poll_ready(cx));
    tokio::time::timeout(Duration::from_secs(1), ready)
        .await
        .unwrap()
        .unwrap();
    // Every instance ejected (500 ms): pending, never an error, and ready again
    // when the first ejection ends.
    eject(&channel, "a");
    eject(&channel, "b");
    assert!(poll_ready(&mut channel).is_pending());
    let started = tokio::time::Instant::now();
    let ready = std::future::poll_fn(|cx| channel.poll_ready(cx));
    tokio::time::timeout(Duration::from_secs(5), ready)
        .await
        .unwrap()
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited <= Duration::from_millis(600),
        "{waited:?}"
    );
    // An empty view: pending until an instance is registered.
    tx.publish(snapshot(&[]));
    tokio::time::timeout(Duration::from_secs(1), async {
        while !channel.endpoints().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(poll_ready(&mut channel).is_pending());
    let mut waiting = channel.clone();
    let ready = tokio::spawn(async move { std::future::poll_fn(|cx| waiting.poll_ready(cx)).await.is_ok() });
    tokio::task::yield_now().await;
    tx.publish(snapshot(&all[..1]));
    assert!(tokio::time::timeout(Duration::from_secs(1), ready)
        .await
        .unwrap()
        .unwrap());
    // The default: ready at once, whatever the endpoints (each call reports).
    let (tx, rx) = octopus_discovery_core::latest::channel(None);
    let mut at_call = BalancedChannel::new(
        "s",
        ServiceWatch::new(rx, Arc::new(())),
        connector,
        JitterRng::seeded(1),
        Settings::default(),
    );
    assert!(matches!(poll_ready(&mut at_call), Poll::Ready(Ok(()))));
    drop(tx);
}

#[tokio::test(flavor = "current_thread")]
async fn a_clone_shares_endpoints_and_load_and_balances_by_the_settings_built_in() {
    let all = [instance("a1", 1, "a"), instance("b1", 2, "b"), instance("b2", 3, "b")];
    let (channel, tx) = over_with(&all, Policy::P2c, Some("b".into())).await;
    let clone = channel.clone();
    // One endpoint set, one load: what the clone does counts for the original.
    assert!(Arc::ptr_eq(&channel.snapshot(), &clone.snapshot()));
    clone.snapshot().all[1]
        .in_flight
        .store(7, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(channel.in_flight()["b1"], 7);
    // Both balance by the zone and policy the channel was built with: p2c in
    // zone `b`, where `b1` is busy. No method of either can change that (the
    // `compile_fail` example on `BalancedChannel`).
    for ch in [&channel, &clone] {
        assert_eq!(picks(ch, 50).keys().collect::<Vec<_>>(), ["b2"]);
    }
    // A discovery change reaches both.
    tx.publish(snapshot(&all[..2]));
    tokio::time::timeout(Duration::from_secs(1), async {
        while clone.endpoints().len() != 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(channel.endpoints().len(), 2);
    assert_eq!(picks(&channel, 20).keys().collect::<Vec<_>>(), ["b1"]);
}
