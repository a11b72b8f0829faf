//! The channel on its own: what the P2C policies pick, and the grpc-timeout header.

use super::*;

/// A channel over instances `a` and `b` (ports 1 and 2: nothing is called),
/// and the sender that keeps its discovery open.
async fn two_instances(
    policy: Policy,
) -> (
    BalancedChannel,
    octopus_discovery_core::latest::Publisher<Option<octopus_discovery_core::Snapshot>>,
) {
    let a = octopus_discovery_core::ServiceInstance::new("s", "a", "127.0.0.1", 1).unwrap();
    let b = octopus_discovery_core::ServiceInstance::new("s", "b", "127.0.0.1", 2).unwrap();
    let snapshot = octopus_discovery_core::Snapshot {
        revision: 1,
        instances: [a, b].into_iter().collect(),
        freshness: octopus_discovery_core::Freshness::Fresh,
        resyncs: 0,
    };
    let (tx, rx) = octopus_discovery_core::latest::channel(Some(snapshot));
    let watch = ServiceWatch::new(rx, Arc::new(()));
    let connector: Arc<dyn Connector> = Arc::new(super::super::TcpConnector::default());
    let settings = Settings {
        policy,
        ..Settings::default()
    };
    let channel = BalancedChannel::new("s", watch, connector, JitterRng::seeded(7), settings);
    assert!(channel.ready_endpoints(2, Duration::from_secs(1)).await);
    (channel, tx)
}

#[tokio::test(flavor = "current_thread")]
async fn p2c_compares_two_distinct_instances() {
    let (channel, tx) = two_instances(Policy::P2c).await;
    // `a` is busy: every pick of two distinct instances prefers `b`. Drawing the
    // same instance twice would pick `a` about a quarter of the time.
    channel.snapshot().all[0].in_flight.store(10, Ordering::Relaxed);
    for _ in 0..200 {
        assert_eq!(channel.pick().unwrap().id, "b");
    }
    drop(tx);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn p2c_ewma_prefers_the_lower_latency_and_retries_a_stale_one() {
    let (channel, tx) = two_instances(Policy::P2cEwma).await;
    let epoch = channel.inner.endpoints.epoch;
    let all = channel.snapshot().all.clone();
    // `a` answers in 40 ms, `b` in 1 ms, both just measured.
    all[0].observe_latency(Duration::from_millis(40), nanos_since(epoch));
    all[1].observe_latency(Duration::from_millis(1), nanos_since(epoch));
    for _ in 0..200 {
        assert_eq!(channel.pick().unwrap().id, "b");
    }
    // With 50 calls in flight on `b`, `a` is the lighter.
    all[1].in_flight.store(50, Ordering::Relaxed);
    assert_eq!(channel.pick().unwrap().id, "a");
    all[1].in_flight.store(0, Ordering::Relaxed);
    // Over a second without a measurement of `a`: it is tried again.
    tokio::time::advance(Duration::from_millis(1100)).await;
    all[1].observe_latency(Duration::from_millis(1), nanos_since(epoch));
    assert_eq!(channel.pick().unwrap().id, "a");
    drop(tx);
}

#[test]
fn grpc_timeout_header_units_and_bad_values() {
    let mut h = http::HeaderMap::new();
    assert_eq!(grpc_timeout(&h), None);
    for (v, d) in [
        ("5S", Duration::from_secs(5)),
        ("250m", Duration::from_millis(250)),
        ("2M", Duration::from_secs(120)),
        ("1H", Duration::from_secs(3600)),
        ("7u", Duration::from_micros(7)),
        ("9n", Duration::from_nanos(9)),
    ] {
        h.insert("grpc-timeout", http::HeaderValue::from_static(v));
        assert_eq!(grpc_timeout(&h), Some(d), "{v}");
    }
    for bad in ["", "S", "5", "5x", "-5S"] {
        h.insert("grpc-timeout", http::HeaderValue::from_static(bad));
        assert_eq!(grpc_timeout(&h), None, "{bad:?}");
    }
}
