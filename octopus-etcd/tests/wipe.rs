//! A wiped etcd under steady calls (Envoy's panic threshold, against the real
//! thing): etcd is killed, its data deleted, and started again on the same port
//! as a new cluster, while four servers keep serving and a client calls them
//! every few milliseconds. Discovery resyncs to an empty view; the registrants
//! notice their lost leases only at their next keepalive (seconds later) and put
//! their keys back. A channel with the panic threshold fails no call (every
//! instance was alive throughout); one without it fails while the view is empty.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use octopus_discovery_core::{BackoffPolicy, Discovery, JitterRng, RegisterOptions, Registry, ServiceInstance};
use octopus_etcd::EtcdBackend;
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::HelloRequest;
use octopus_grpc::{BalancedChannel, ChannelBuilder, Connector, PanicThreshold, Policy, TcpConnector};
use octopus_testkit::etcd::EtcdServer;
use tokio::time::{sleep, timeout, Instant};

async fn backend(etcd: &EtcdServer) -> EtcdBackend {
    EtcdBackend::connect(etcd.options().request_timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

async fn greeter(id: &str) -> u16 {
    octopus_greeter::serve_on_loopback(id).await.unwrap()
}

/// Calls through `channel` every 5 ms until `stop`; (calls, failures).
async fn steady(channel: BalancedChannel, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let mut client = GreeterClient::new(channel);
    let (mut calls, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        calls += 1;
        if let Err(e) = client.say_hello(HelloRequest { name: "wipe".into() }).await {
            failures.push(e.message().to_owned());
        }
        sleep(Duration::from_millis(5)).await;
    }
    (calls, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_etcd_under_steady_calls_fails_no_call_with_the_panic_threshold() {
    let mut etcd = EtcdServer::start().await;
    let registrants = backend(&etcd).await;
    // Keepalives every 5 s: after the wipe, the registrants are back seconds after
    // discovery has resynced to an empty view.
    let options = RegisterOptions::default()
        .ttl(Duration::from_secs(15))
        .keepalive_interval(Duration::from_secs(5))
        .retry(BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap());
    let registry = registrants.registry();
    let mut registrations = Vec::new();
    for id in ["w1", "w2", "w3", "w4"] {
        let port = greeter(id).await;
        let instance = ServiceInstance::new("greeter", id, "127.0.0.1", port).unwrap();
        registrations.push(registry.register(instance, options.clone()).await.unwrap());
    }
    let discovery = backend(&etcd).await.discovery();
    let channel = |threshold: PanicThreshold| {
        let discovery = &discovery;
        async move {
            let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
            let watch = discovery.watch("greeter").await.unwrap();
            let ch = ChannelBuilder::from_watch("greeter", watch)
                .policy(Policy::RoundRobin)
                .connector(tcp)
                .rng(JitterRng::seeded(5))
                .panic_threshold(threshold)
                .connect()
                .await
                .unwrap();
            assert!(ch.ready_endpoints(4, Duration::from_secs(5)).await);
            ch
        }
    };
    let protected = channel(PanicThreshold {
        share: 0.5,
        hold: Duration::from_secs(30),
    })
    .await;
    let plain = channel(PanicThreshold::OFF).await;

    let stop = Arc::new(AtomicBool::new(false));
    let protected_calls = tokio::spawn(steady(protected.clone(), stop.clone()));
    let plain_calls = tokio::spawn(steady(plain.clone(), stop.clone()));
    // Calls flowing for a while before the wipe, so that both channels are busy when it comes.
    sleep(Duration::from_millis(300)).await;

    let wiped = Instant::now();
    etcd.restart(true).await;
    // Until every registrant is back in the new cluster's view.
    let mut w = discovery.watch("greeter").await.unwrap();
    let emptied = AtomicUsize::new(0);
    timeout(
        Duration::from_secs(30),
        w.wait_for(|s| {
            if s.is_fresh() && s.resyncs > 0 && s.instances.is_empty() {
                emptied.fetch_add(1, Ordering::Relaxed);
            }
            s.is_fresh() && s.resyncs > 0 && s.instances.len() == 4
        }),
    )
    .await
    .expect("the registrants came back")
    .unwrap();
    let back = wiped.elapsed();
    // Calls go on for a while after the recovery, so that the counts include calls
    // through the new cluster's view.
    sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (calls, failures) = protected_calls.await.unwrap();
    let (plain_n, plain_failures) = plain_calls.await.unwrap();
    println!(
        "wipe: registrants back after {back:?}; protected {calls} calls, {} failed; unprotected {plain_n} calls, {} failed",
        failures.len(),
        plain_failures.len()
    );
    assert!(
        failures.is_empty(),
        "protected calls failed: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(protected.protections() >= 1, "the protection started");
    assert!(calls > 100, "steady calls throughout: {calls}");
    // Without protection the calls in the empty window fail: proof that there was one.
    assert!(
        !plain_failures.is_empty(),
        "the unprotected channel never saw the empty view (emptied {} times)",
        emptied.load(Ordering::Relaxed)
    );
    assert!(
        plain_failures.iter().all(|f| f.contains("no instance is registered")),
        "{:?}",
        &plain_failures[..3.min(plain_failures.len())]
    );
    assert_eq!(protected.endpoints().len(), 4);
    drop(registrations);
}
