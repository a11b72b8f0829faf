//! The server helper: health follows the registration; SIGTERM deregisters before
//! the listener closes. (One test binary of its own: SIGTERM reaches the process.)

use std::time::Duration;

use octopus::grpc::{RegisteredServer, ServeOptions};
use octopus::mem::{MemBackend, Store};
use octopus::{BackoffPolicy, Discovery, RegisterOptions, ServiceInstance};
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::{HelloRequest, NamedGreeter};
use tokio::net::TcpListener;
use tokio::time::{sleep, timeout};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn options() -> RegisterOptions {
    RegisterOptions::default()
        .ttl(Duration::from_secs(1))
        .retry(BackoffPolicy::new(Duration::from_millis(20), Duration::from_millis(100)).unwrap())
}

async fn health(addr: std::net::SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

async fn until_health(addr: std::net::SocketAddr, want: ServingStatus) {
    timeout(Duration::from_secs(5), async {
        while health(addr).await != Some(want) {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("health did not become {want:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_registration_and_sigterm_drains_after_deregistering() {
    let backend = MemBackend::new(Store::new());
    let registry = backend.registry();
    let discovery = backend.discovery();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let instance = ServiceInstance::new("greeter", "s1", "127.0.0.1", addr.port()).unwrap();
    let router = tonic::transport::Server::builder().add_service(NamedGreeter::service("bench"));
    let drain = ServeOptions {
        drain_delay: Duration::from_millis(500),
        grace: Duration::from_secs(2),
        ..ServeOptions::default()
    };
    let server = tokio::spawn(async move {
        RegisteredServer::new(&registry, instance)
            .register_options(options())
            .serve_options(drain)
            .serve(router, listener, octopus::shutdown_signal())
            .await
    });

    until_health(addr, ServingStatus::Serving).await;
    let mut w = discovery.watch("greeter").await.unwrap();
    w.wait_for(|s| s.instances.len() == 1).await.unwrap();

    // The registry becomes unreachable: the lease is lost, health says so.
    backend.set_reachable(false);
    until_health(addr, ServingStatus::NotServing).await;
    backend.set_reachable(true);
    until_health(addr, ServingStatus::Serving).await;
    // Discovery reconnects on its own backoff: wait until it is live again.
    timeout(
        Duration::from_secs(10),
        w.wait_for(|s| s.is_fresh() && s.instances.len() == 1),
    )
    .await
    .expect("discovery live again")
    .unwrap();

    // SIGTERM: marked draining first (still listed: balancers stop sending it new
    // calls), then deregistered, still serving while clients catch up, then closed.
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    timeout(
        Duration::from_secs(2),
        w.wait_for(|s| s.instances.len() == 1 && s.instances.iter().all(|i| i.is_draining())),
    )
    .await
    .expect("marked draining before deregistering")
    .unwrap();
    assert_eq!(health(addr).await, Some(ServingStatus::NotServing));
    timeout(Duration::from_secs(2), w.wait_for(|s| s.instances.is_empty()))
        .await
        .expect("deregistered")
        .unwrap();
    let direct = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    let reply = GreeterClient::new(direct.expect("the listener is still open after deregistering"))
        .say_hello(HelloRequest { name: "late".into() })
        .await;
    assert!(reply.is_ok(), "calls still served during the drain: {reply:?}");
    timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after the drain"
    );
}
