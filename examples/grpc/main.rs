//! gRPC by service name: three greeter servers register themselves; a client calls
//! `greeter` through a round-robin channel; one server shuts down and the calls
//! go on through the other two.
//!
//!     cargo run --example grpc                                     # embedded registry
//!     cargo run --example grpc --features etcd -- --etcd 127.0.0.1:2379
//!
//! Protos are compiled by the pure-Rust protox (crate `octopus-greeter`): no protoc.

use std::collections::BTreeMap;
use std::time::Duration;

use octopus::grpc::{Policy, RegisteredServer, ServeOptions};
use octopus::ServiceInstance;
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::{HelloRequest, NamedGreeter};
use tokio::sync::oneshot;
use tonic::Status;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let registry = match args.iter().position(|a| a == "--etcd").and_then(|i| args.get(i + 1)) {
        Some(etcd) => format!("etcd://{etcd}?namespace=/octopus-example&ttl=5s"),
        None => "mem://grpc-example?ttl=5s".to_owned(),
    };
    let scheme = registry.split("://").next().unwrap_or("mem").to_owned();
    let client = octopus::connect(&registry).await?;
    println!("registry: {registry}");

    // Three servers, each on a free loopback port, each registering itself.
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for name in ["greeter-1", "greeter-2", "greeter-3"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let instance = ServiceInstance::new("greeter", name, "127.0.0.1", port)?;
        let router = tonic::transport::Server::builder().add_service(NamedGreeter::service(name.to_owned()));
        let (stop, stopped) = oneshot::channel::<()>();
        let (registry, options) = (client.registry(), client.register_options());
        let drain = ServeOptions {
            drain_delay: Duration::from_millis(300),
            grace: Duration::from_secs(2),
            ..ServeOptions::default()
        };
        servers.push(tokio::spawn(async move {
            RegisteredServer::new(&*registry, instance)
                .register_options(options)
                .serve_options(drain)
                .serve(router, listener, async {
                    let _ = stopped.await;
                })
                .await
        }));
        stops.push(stop);
        println!("started {name} on 127.0.0.1:{port}");
    }

    let channel = client
        .channel("greeter", Policy::RoundRobin) // this client's scheme: same as {scheme}:///greeter
        .await?;
    channel.ready_endpoints(3, Duration::from_secs(5)).await;
    let mut greeter = GreeterClient::new(channel.clone());
    println!(
        "\n9 calls through {scheme}:///greeter (round robin): {:?}",
        tally(&mut greeter, 9).await?
    );

    println!("\nshutting down greeter-1 (it deregisters first, then drains)");
    let _ = stops.remove(0).send(());
    servers.remove(0).await??;
    while channel.endpoints().len() != 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("9 more calls: {:?}", tally(&mut greeter, 9).await?);

    for stop in stops {
        let _ = stop.send(());
    }
    for s in servers {
        s.await??;
    }
    println!(
        "\nall servers stopped and deregistered; instances left: {}",
        client.discovery().instances("greeter").await?.len()
    );
    // Before main returns: nothing of this client left in the registry, its
    // streams closed.
    client.shutdown().await?;
    Ok(())
}

async fn tally(
    greeter: &mut GreeterClient<octopus::grpc::BalancedChannel>,
    n: usize,
) -> Result<BTreeMap<String, usize>, Status> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let reply = greeter
            .say_hello(HelloRequest {
                name: format!("call {i}"),
            })
            .await?
            .into_inner();
        *seen.entry(reply.instance).or_default() += 1;
    }
    Ok(seen)
}
