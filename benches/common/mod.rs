//! What the gRPC benches share: a greeter on a loopback port reached three ways.

use std::time::Duration;

use octopus::grpc::{BalancedChannel, Connector, OutlierDetection, PanicThreshold, Policy, Readiness, TcpConnector};
use octopus::{Registration, ServiceInstance};
use octopus_greeter::NamedGreeter;
use tonic::transport::{Channel, Endpoint};

/// A 2-worker runtime, as on the CI machine's two cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One greeter server and three ways to call it.
pub(crate) struct Loopback {
    /// A plain tonic channel with tonic's defaults (`Endpoint::connect`).
    pub(crate) plain: Channel,
    /// A plain tonic channel made by Octopus's `TcpConnector`.
    pub(crate) settings: Channel,
    /// Octopus's balancer over the server, registered in `mem://{registry}`.
    pub(crate) balanced: BalancedChannel,
    /// The same with every traffic option on: mass-disappearance protection, slow
    /// start, outlier detection, a zone preference, reported readiness.
    #[allow(dead_code)] // the criterion bench does not use it
    pub(crate) balanced_all: BalancedChannel,
    _registration: Registration,
}

/// Starts a greeter on a free loopback port (on the current runtime) and connects.
pub(crate) async fn loopback(registry: &str) -> Loopback {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NamedGreeter::service("bench"))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let instance = ServiceInstance::new("greeter", "g1", "127.0.0.1", addr.port())
        .unwrap()
        .with_metadata("zone", "z0");
    let settings = TcpConnector::default().connect(&instance).unwrap();
    let client = octopus::connect(&format!("mem://{registry}")).await.unwrap();
    let registration = client.register(instance).await.unwrap();
    let balanced = client.channel("mem:///greeter", Policy::RoundRobin).await.unwrap();
    assert!(balanced.ready_endpoints(1, Duration::from_secs(2)).await);
    let balanced_all = client
        .channel_to("greeter")
        .panic_threshold(PanicThreshold {
            share: 0.5,
            hold: Duration::from_secs(30),
        })
        .slow_start(Duration::from_secs(30))
        .outlier_detection(OutlierDetection::default())
        .zone("z0")
        .readiness(Readiness::Reported)
        .connect()
        .await
        .unwrap();
    assert!(balanced_all.ready_endpoints(1, Duration::from_secs(2)).await);
    Loopback {
        plain,
        settings,
        balanced,
        balanced_all,
        _registration: registration,
    }
}
