//! gRPC by service name with real tonic servers on loopback ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use octopus::core::JitterRng;
use octopus::grpc::{BalancedChannel, ChannelBuilder, Connector, Policy, TcpConnector};
use octopus::{Client, Registration, ServiceInstance};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};
use tonic::Status;

use octopus_greeter as pb;
use pb::greeter_client::GreeterClient;
use pb::{HelloRequest, NamedGreeter};

/// A greeter server on a free loopback port, registered as `greeter/{id}`.
struct Server {
    task: Process,
    registration: Option<Registration>,
    addr: SocketAddr,
}

/// A server on a runtime of its own, so that killing it closes every connection at
/// once, as a crashed process would.
struct Process {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn abort(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn listen(id: &str) -> (Process, SocketAddr) {
    listen_routes(tonic::service::Routes::new(NamedGreeter::service(id.to_owned()))).await
}

/// Serves `routes` on a free loopback port, on a thread and runtime of its own
/// (a process of its own, as far as the client can tell).
async fn listen_routes(routes: tonic::service::Routes) -> (Process, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let server = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming(incoming);
            tokio::select! {
                _ = server => {}
                _ = stopped => {}
            }
        });
        rt.shutdown_background(); // drops every connection task: the peer sees a reset
    });
    (
        Process {
            stop: Some(stop),
            thread: Some(thread),
        },
        addr,
    )
}

async fn serve(client: &Client, id: &str) -> Server {
    let (task, addr) = listen(id).await;
    let instance = ServiceInstance::new("greeter", id, "127.0.0.1", addr.port()).unwrap();
    let registration = client.register(instance).await.unwrap();
    Server {
        task,
        registration: Some(registration),
        addr,
    }
}

async fn call(greeter: &mut GreeterClient<BalancedChannel>) -> Result<String, Status> {
    let reply = greeter.say_hello(HelloRequest { name: "octopus".into() }).await?;
    Ok(reply.into_inner().instance)
}

async fn tally(greeter: &mut GreeterClient<BalancedChannel>, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(call(greeter).await.unwrap()).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_and_follows_discovery() {
    let client = octopus::connect("mem://grpc-rr").await.unwrap();
    let servers = [
        serve(&client, "g1").await,
        serve(&client, "g2").await,
        serve(&client, "g3").await,
    ];
    let channel = client.channel("mem:///greeter", Policy::RoundRobin).await.unwrap();
    assert!(channel.ready_endpoints(3, Duration::from_secs(2)).await);
    let mut greeter = GreeterClient::new(channel.clone());
    let seen = tally(&mut greeter, 30).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| (9..=11).contains(n)), "even within ±1: {seen:?}");

    // A new instance gets traffic without the client doing anything.
    let g4 = serve(&client, "g4").await;
    assert!(
        channel.ready_endpoints(4, Duration::from_secs(2)).await,
        "the channel follows discovery by itself"
    );
    let seen = tally(&mut greeter, 40).await;
    assert_eq!(seen.get("g4"), Some(&10), "{seen:?}");

    // A deregistered one stops receiving new calls.
    let [mut g1, _g2, _g3] = servers; // keep g2 and g3 serving
    g1.registration.take().unwrap().deregister().await.unwrap();
    timeout(Duration::from_secs(2), async {
        while channel.endpoints().contains(&g1.addr.to_string()) {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("g1 leaves the channel");
    let seen = tally(&mut greeter, 30).await;
    assert!(!seen.contains_key("g1"), "{seen:?}");
    drop(g4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_first_sticks_and_fails_over() {
    let client = octopus::connect("mem://grpc-pf").await.unwrap();
    let a = serve(&client, "a").await;
    let _b = serve(&client, "b").await;
    let channel = client.channel("mem:///greeter", Policy::PickFirst).await.unwrap();
    assert!(channel.ready_endpoints(2, Duration::from_secs(2)).await);
    let mut greeter = GreeterClient::new(channel);
    assert_eq!(tally(&mut greeter, 10).await, BTreeMap::from([("a".to_owned(), 10)]));

    a.task.abort(); // dies without deregistering: its key stays until the TTL
    let mut failed = 0;
    let answer = loop {
        match call(&mut greeter).await {
            Ok(who) => break who,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                failed += 1;
                assert!(failed <= 2, "fails over after the first broken call: {status}");
            }
        }
    };
    assert_eq!(answer, "b");
    assert_eq!(tally(&mut greeter, 10).await, BTreeMap::from([("b".to_owned(), 10)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_down_is_unavailable_naming_the_service() {
    let client = octopus::connect("mem://grpc-down").await.unwrap();
    let channel = client.channel("mem:///greeter", Policy::RoundRobin).await.unwrap();
    let mut greeter = GreeterClient::new(channel.clone());
    let status = call(&mut greeter).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("greeter") && status.message().contains("no instance"),
        "{status}"
    );

    let s = serve(&client, "x").await;
    assert!(channel.ready_endpoints(1, Duration::from_secs(2)).await);
    assert_eq!(call(&mut greeter).await.unwrap(), "x");
    s.task.abort();
    // The first call to find the connection broken ejects the instance.
    timeout(Duration::from_secs(5), async {
        while channel.ejected().is_empty() {
            let _ = call(&mut greeter).await;
        }
    })
    .await
    .expect("a broken call ejects the instance");
    let status = call(&mut greeter).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("greeter: every instance is unreachable"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_filter_holds_weighted_follows_weights_and_p2c_reaches_every_instance() {
    let client = octopus::connect("mem://grpc-policies").await.unwrap();
    let mut keep = Vec::new();
    for (id, version, weight) in [("v1a", "v1", 300), ("v1b", "v1", 100), ("v2a", "v2", 100)] {
        let (task, addr) = listen(id).await;
        let inst = ServiceInstance::new("greeter", id, "127.0.0.1", addr.port())
            .unwrap()
            .with_version(version)
            .with_weight(weight);
        keep.push((task, client.register(inst).await.unwrap()));
    }
    let tcp = || Arc::new(TcpConnector::default()) as Arc<dyn Connector>;
    let weighted = client
        .channel_to("greeter?version=v1")
        .policy(Policy::Weighted)
        .connector(tcp())
        .rng(JitterRng::seeded(7))
        .connect()
        .await
        .unwrap();
    assert!(weighted.ready_endpoints(2, Duration::from_secs(2)).await);
    let seen = tally(&mut GreeterClient::new(weighted), 400).await;
    assert!(!seen.contains_key("v2a"), "the version filter holds: {seen:?}");
    let heavy = seen["v1a"] as f64 / 400.0;
    assert!(
        (0.65..0.85).contains(&heavy),
        "weight 300 vs 100 takes about 3/4: {seen:?}"
    );

    let p2c = client
        .channel_to(octopus::Target::for_service("greeter").unwrap())
        .policy(Policy::P2c)
        .connector(tcp())
        .rng(JitterRng::seeded(7))
        .connect()
        .await
        .unwrap();
    assert!(p2c.ready_endpoints(3, Duration::from_secs(2)).await);
    let seen = tally(&mut GreeterClient::new(p2c), 60).await;
    assert_eq!(seen.len(), 3, "p2c reaches every instance: {seen:?}");
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_registry_connection_keeps_the_last_known_endpoints() {
    use octopus::mem::{MemBackend, Store};
    use octopus::{Discovery, Registry};
    let backend = MemBackend::new(Store::new());
    let registry = backend.registry();
    let discovery = backend.discovery();
    let mut keep = Vec::new();
    for id in ["k1", "k2"] {
        let (task, addr) = listen(id).await;
        let inst = ServiceInstance::new("greeter", id, "127.0.0.1", addr.port()).unwrap();
        keep.push((task, registry.register(inst, Default::default()).await.unwrap()));
    }
    let watch = discovery.watch("greeter").await.unwrap();
    let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
    let channel = ChannelBuilder::from_watch("greeter", watch)
        .connector(tcp)
        .rng(JitterRng::seeded(1))
        .connect()
        .await
        .unwrap();
    assert!(channel.ready_endpoints(2, Duration::from_secs(2)).await);

    backend.set_reachable(false);
    // The channel has dealt with the stale answer once it says so.
    timeout(Duration::from_secs(5), async {
        while !channel.is_stale() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the channel sees discovery go stale");
    assert_eq!(
        channel.endpoints().len(),
        2,
        "stale discovery keeps the last known endpoints"
    );
    let seen = tally(&mut GreeterClient::new(channel.clone()), 10).await;
    assert_eq!(seen.len(), 2, "calls go on while the registry is unreachable: {seen:?}");
    backend.set_reachable(true);
}

/// Mass-disappearance protection: every key vanishes at once (as when etcd is
/// wiped or restored from an old backup) while the processes still serve, and
/// the registrants cannot put their keys back yet. A channel with the panic
/// threshold keeps calling them; one without it has nowhere to call; one whose
/// hold is short follows the empty view once the hold is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_disappearance_keeps_the_vanished_instances_for_a_while() {
    use octopus::grpc::PanicThreshold;
    use octopus::mem::{KeyRange, MemBackend, Store};
    use octopus::{Discovery, Registry};
    let store = Store::new();
    let registrants = MemBackend::new(store.clone());
    let watcher = MemBackend::new(store.clone());
    let mut keep = Vec::new();
    for id in ["m1", "m2", "m3", "m4"] {
        let (task, addr) = listen(id).await;
        let inst = ServiceInstance::new("greeter", id, "127.0.0.1", addr.port()).unwrap();
        keep.push((
            task,
            registrants.registry().register(inst, Default::default()).await.unwrap(),
        ));
    }
    let discovery = Arc::new(watcher.discovery());
    let channel = |threshold: PanicThreshold| {
        let discovery = discovery.clone();
        async move {
            let watch = discovery.watch("greeter").await.unwrap();
            let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
            let ch = ChannelBuilder::from_watch("greeter", watch)
                .connector(tcp)
                .rng(JitterRng::seeded(1))
                .panic_threshold(threshold)
                .connect()
                .await
                .unwrap();
            assert!(ch.ready_endpoints(4, Duration::from_secs(2)).await);
            ch
        }
    };
    let protected = channel(PanicThreshold {
        share: 0.5,
        hold: Duration::from_secs(30),
    })
    .await;
    let short = channel(PanicThreshold {
        share: 0.5,
        hold: Duration::from_millis(300),
    })
    .await;
    let plain = channel(PanicThreshold::OFF).await;

    registrants.set_reachable(false);
    store.delete(&KeyRange::prefix("/")).unwrap();
    let mut w = discovery.watch("greeter").await.unwrap();
    timeout(
        Duration::from_secs(5),
        w.wait_for(|s| s.is_fresh() && s.instances.is_empty()),
    )
    .await
    .expect("the view empties")
    .unwrap();
    // Each channel has dealt with the empty view: the protected ones started
    // their protection, the plain one emptied.
    let dealt_with = async {
        while protected.protections() == 0 || short.protections() == 0 || !plain.endpoints().is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(Duration::from_secs(5), dealt_with)
        .await
        .expect("every channel sees the empty view");
    let seen = tally(&mut GreeterClient::new(protected.clone()), 20).await;
    assert_eq!(seen.len(), 4, "every call reached a live instance: {seen:?}");
    assert_eq!(protected.protections(), 1);
    let err = call(&mut GreeterClient::new(plain.clone())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "without protection: {err}");
    let hold_over = async {
        while !short.endpoints().is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(Duration::from_secs(5), hold_over)
        .await
        .expect("the short hold ends and the channel follows the empty view");
    assert_eq!(short.protections(), 1);

    // The registrants put their keys back: the view recovers, the protection ends.
    registrants.set_reachable(true);
    assert!(
        plain.ready_endpoints(4, Duration::from_secs(10)).await,
        "registrants came back"
    );
    assert_eq!(protected.endpoints().len(), 4);
    let seen = tally(&mut GreeterClient::new(protected), 8).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
}

/// Slow start: an instance that joins a running channel takes a share of the
/// traffic that ramps up over the window; the instances of the first answer
/// start warm. (Picks only: the channels connect lazily, no server is needed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_joining_instance_up() {
    use octopus::mem::{MemBackend, Store};
    use octopus::{Discovery, Registry};
    let backend = MemBackend::new(Store::new());
    let registry = backend.registry();
    let discovery = backend.discovery();
    let inst = |id: &str, port| ServiceInstance::new("slow", id, "127.0.0.1", port).unwrap();
    let _old = registry.register(inst("old", 30001), Default::default()).await.unwrap();
    let channel = |window: Duration| {
        let discovery = &discovery;
        async move {
            let watch = discovery.watch("slow").await.unwrap();
            let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
            ChannelBuilder::from_watch("slow", watch)
                .connector(tcp)
                .rng(JitterRng::seeded(3))
                .slow_start(window)
                .connect()
                .await
                .unwrap()
        }
    };
    let slow = channel(Duration::from_secs(60)).await;
    let plain = channel(Duration::ZERO).await;
    assert!(slow.ready_endpoints(1, Duration::from_secs(2)).await);
    assert!(plain.ready_endpoints(1, Duration::from_secs(2)).await);
    let _new = registry.register(inst("new", 30002), Default::default()).await.unwrap();
    assert!(slow.ready_endpoints(2, Duration::from_secs(2)).await);
    assert!(plain.ready_endpoints(2, Duration::from_secs(2)).await);
    let share = |ch: &BalancedChannel| (0..1000).filter(|_| ch.pick().unwrap().id == "new").count();
    let (slow_new, plain_new) = (share(&slow), share(&plain));
    assert!(slow_new < 50, "a joining instance starts near zero: {slow_new} of 1000");
    assert!(
        (400..=600).contains(&plain_new),
        "without slow start, half: {plain_new} of 1000"
    );
    // A channel whose first answer holds both: both warm.
    let fresh = channel(Duration::from_secs(60)).await;
    assert!(fresh.ready_endpoints(2, Duration::from_secs(2)).await);
    let fresh_new = share(&fresh);
    assert!(
        (400..=600).contains(&fresh_new),
        "the first answer's instances start warm: {fresh_new}"
    );
}

/// Outlier detection: an instance that is up but fails every call with
/// UNAVAILABLE is ejected after a few failures in a row; when every instance
/// fails, no more than the capped share is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_responses_eject_an_instance_up_to_a_cap() {
    use octopus::grpc::OutlierDetection;
    use octopus::mem::{MemBackend, Store};
    use octopus::{Discovery, Registry};
    let failing = || {
        listen_routes(tonic::service::Routes::new(pb::FailingGreeter::service(
            tonic::Code::Unavailable,
        )))
    };
    let backend = MemBackend::new(Store::new());
    let registry = backend.registry();
    let discovery = backend.discovery();
    let mut keep = Vec::new();
    let (good, good_addr) = listen("good").await;
    let (bad, bad_addr) = failing().await;
    for (id, addr) in [("good", good_addr), ("bad", bad_addr)] {
        let inst = ServiceInstance::new("flaky", id, "127.0.0.1", addr.port()).unwrap();
        keep.push(registry.register(inst, Default::default()).await.unwrap());
    }
    let detection = OutlierDetection {
        consecutive: 3,
        ..OutlierDetection::default()
    };
    let channel = |detection: Option<OutlierDetection>| {
        let discovery = &discovery;
        async move {
            let watch = discovery.watch("flaky").await.unwrap();
            let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
            let builder = ChannelBuilder::from_watch("flaky", watch)
                .connector(tcp)
                .rng(JitterRng::seeded(5));
            let builder = match detection {
                Some(d) => builder.outlier_detection(d),
                None => builder,
            };
            let ch = builder.connect().await.unwrap();
            assert!(ch.ready_endpoints(2, Duration::from_secs(2)).await);
            ch
        }
    };
    let detecting = channel(Some(detection.clone())).await;
    let plain = channel(None).await;
    let mut greeter = GreeterClient::new(detecting.clone());
    let early = {
        let mut n = 0;
        for _ in 0..10 {
            n += usize::from(call(&mut greeter).await.is_err());
        }
        n
    };
    assert_eq!(early, 3, "three failures in a row eject the broken instance");
    assert_eq!(detecting.ejected(), ["bad"]);
    for _ in 0..10 {
        assert_eq!(
            call(&mut greeter).await.unwrap(),
            "good",
            "only the good instance is called now"
        );
    }
    let mut plain_greeter = GreeterClient::new(plain.clone());
    let mut plain_failures = 0;
    for _ in 0..10 {
        plain_failures += usize::from(call(&mut plain_greeter).await.is_err());
    }
    assert_eq!(plain_failures, 5, "without detection, every other call fails");
    assert!(plain.ejected().is_empty());

    // Every instance broken: the cap (half) keeps one in rotation.
    drop(good);
    let (_good2, bad2_addr) = failing().await;
    keep.remove(0).deregister().await.unwrap();
    let inst = ServiceInstance::new("flaky", "bad2", "127.0.0.1", bad2_addr.port()).unwrap();
    keep.push(registry.register(inst, Default::default()).await.unwrap());
    let both_bad = channel(Some(detection)).await;
    let mut greeter = GreeterClient::new(both_bad.clone());
    for _ in 0..20 {
        let _ = call(&mut greeter).await;
    }
    assert_eq!(
        both_bad.ejected().len(),
        1,
        "at most half ejected: {:?}",
        both_bad.ejected()
    );
    drop(bad);
}

/// p2c_ewma end to end (the choice itself is unit-tested in core): between a
/// fast greeter and one that takes 300 ms, most calls go to the fast one. The
/// margin is wide on purpose: a loaded machine may slow the fast one's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ewma_prefers_the_faster_instance() {
    use octopus::mem::{MemBackend, Store};
    use octopus::{Discovery, Registry};
    let (fast, fast_addr) = listen("fast").await;
    let slow_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow_listener.local_addr().unwrap();
    let slow_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::SlowGreeter::service("slow", Duration::from_millis(300)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(slow_listener)),
    );
    let backend = MemBackend::new(Store::new());
    let registry = backend.registry();
    let mut keep = Vec::new();
    for (id, addr) in [("fast", fast_addr), ("slow", slow_addr)] {
        let inst = ServiceInstance::new("timed", id, "127.0.0.1", addr.port()).unwrap();
        keep.push(registry.register(inst, Default::default()).await.unwrap());
    }
    let watch = backend.discovery().watch("timed").await.unwrap();
    let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
    let channel = ChannelBuilder::from_watch("timed", watch)
        .policy(Policy::P2cEwma)
        .connector(tcp)
        .rng(JitterRng::seeded(9))
        .connect()
        .await
        .unwrap();
    assert!(channel.ready_endpoints(2, Duration::from_secs(2)).await);
    let mut greeter = GreeterClient::new(channel);
    tally(&mut greeter, 4).await; // the first calls also open the connections
    let seen = tally(&mut greeter, 40).await;
    let slow = seen.get("slow").copied().unwrap_or(0);
    assert!(slow <= 10, "p2c_ewma sends few calls to the slow instance: {seen:?}");
    assert_eq!("p2c_ewma".parse::<Policy>().unwrap(), Policy::P2cEwma);
    slow_server.abort();
    drop(fast);
}

/// A target is a value or text, with or without the client's scheme; a scheme
/// the client does not serve, or a bad name, is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_need_not_repeat_the_clients_scheme() {
    let client = octopus::connect("mem://targets").await.unwrap();
    let _s = serve(&client, "t").await;
    for target in ["greeter", "mem:///greeter"] {
        let mut greeter = GreeterClient::new(client.channel(target, Policy::RoundRobin).await.unwrap());
        assert_eq!(call(&mut greeter).await.unwrap(), "t", "{target}");
    }
    let value = octopus::Target::for_service("greeter").unwrap();
    let mut greeter = GreeterClient::new(client.channel(&value, Policy::P2c).await.unwrap());
    assert_eq!(call(&mut greeter).await.unwrap(), "t");
    let err = client.channel("etcd:///greeter", Policy::RoundRobin).await.unwrap_err();
    assert!(err.to_string().contains("etcd"), "{err}");
    let err = client.channel("bad/name", Policy::RoundRobin).await.unwrap_err();
    assert!(err.to_string().contains("bad/name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_on_a_new_channel_waits_for_discovery() {
    let client = octopus::connect("mem://grpc-first-call").await.unwrap();
    let _s = serve(&client, "x").await;
    for policy in [Policy::RoundRobin, Policy::PickFirst, Policy::P2c, Policy::Weighted] {
        for _ in 0..10 {
            // No ready_endpoints: the call is made at once, before the channel's
            // discovery task has answered, as a new user's first call is.
            let channel = client.channel("mem:///greeter", policy).await.unwrap();
            let mut greeter = GreeterClient::new(channel);
            assert_eq!(call(&mut greeter).await.unwrap(), "x", "{policy}");
        }
    }
    // A service with no instance still fails fast once discovery has answered.
    let channel = client.channel("mem:///nobody", Policy::RoundRobin).await.unwrap();
    let mut greeter = GreeterClient::new(channel);
    let started = tokio::time::Instant::now();
    let status = call(&mut greeter).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("nobody: no instance is registered"),
        "{status}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waits_for_a_silent_discovery_no_longer_than_its_deadline() {
    // A discovery that never answers (a registry that does not respond).
    let (_tx, rx) = octopus::core::latest::channel(None);
    let silent = || octopus::ServiceWatch::new(rx.clone(), Arc::new(()));
    let connector: Arc<dyn Connector> = Arc::new(TcpConnector::default());
    let channel = ChannelBuilder::from_watch("ghost", silent())
        .connector(connector.clone())
        .rng(JitterRng::seeded(1))
        .connect()
        .await
        .unwrap();
    let mut greeter = GreeterClient::new(channel);
    let mut request = tonic::Request::new(HelloRequest { name: "octopus".into() });
    request.set_timeout(Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let status = greeter.say_hello(request).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert!(
        status
            .message()
            .contains("ghost: discovery has not answered within 300ms"),
        "{status}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // No deadline on the call: the channel's own bound.
    let channel = ChannelBuilder::from_watch("ghost", silent())
        .connector(connector)
        .rng(JitterRng::seeded(1))
        .first_answer_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let mut greeter = GreeterClient::new(channel);
    let status = call(&mut greeter).await.unwrap_err();
    assert!(status.message().contains("within 200ms"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_an_open_health_watch() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let client = octopus::connect("mem://grpc-health-watch").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let instance = ServiceInstance::new("greeter", "hw", "127.0.0.1", addr.port()).unwrap();
    let router = tonic::transport::Server::builder().add_service(NamedGreeter::service("hw".to_owned()));
    let drain = octopus::grpc::ServeOptions {
        drain_delay: Duration::from_millis(300),
        grace: Duration::from_secs(20),
        ..Default::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let registry = client.registry();
    let options = client.register_options();
    let server = tokio::spawn(async move {
        octopus::grpc::RegisteredServer::new(&*registry, instance)
            .register_options(options)
            .serve_options(drain)
            .serve(router, listener, async {
                let _ = stopped.await;
            })
            .await
    });

    // A client-side health checker (grpc-go keeps one Watch open on every server).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut statuses = HealthClient::new(channel)
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    let serving = ServingStatus::Serving as i32;
    timeout(Duration::from_secs(5), async {
        while statuses.message().await.unwrap().unwrap().status != serving {}
    })
    .await
    .expect("the watch says SERVING once registered");

    let started = tokio::time::Instant::now();
    stop.send(()).unwrap();
    let mut last = None;
    while let Some(update) = timeout(Duration::from_secs(15), statuses.message())
        .await
        .expect("the health watch ends")
        .unwrap()
    {
        last = Some(update.status);
    }
    assert_eq!(
        last,
        Some(ServingStatus::NotServing as i32),
        "NOT_SERVING before the stream ends"
    );
    timeout(Duration::from_secs(15), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    // The drain is 0.3 s and the grace 20 s: a watch that held the stop would take 20 s.
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}
