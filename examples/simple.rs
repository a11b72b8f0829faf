//! The Go framework's two snippets, in Rust: register a service, then discover it
//! with a watch and a read of its instances. Against a real etcd:
//!
//!     cargo run --example simple --features etcd -- --etcd 127.0.0.1:2379
//!     OCTOPUS_ETCD=127.0.0.1:2379 cargo run --example simple --features etcd
//!
//! It registers `user-service/instance-001`, prints the instances as they change,
//! and deregisters on Ctrl-C (or after the first snapshot with `--once`).

use octopus::{RegisterOptions, ServiceInstance};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = args
        .iter()
        .position(|a| a == "--etcd")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let Some(etcd) = flag.or_else(|| std::env::var("OCTOPUS_ETCD").ok()) else {
        eprintln!("usage: simple --etcd HOST:PORT[,HOST:PORT…] [--once]   (or set OCTOPUS_ETCD)");
        std::process::exit(2);
    };
    let once = args.iter().any(|a| a == "--once");

    // Registration: what the Go version wrote as DefaultConfig() + NewRegistry + Register.
    let client = octopus::connect(&format!("etcd://{etcd}")).await?;
    let instance = ServiceInstance::new("user-service", "instance-001", "127.0.0.1", 50051)?.with_version("v1.0.0");
    let options = RegisterOptions::default(); // TTL 10 s, keepalive TTL/3 after each answer, retry forever
    let registration = client.registry().register(instance, options).await?;
    println!("user-service/instance-001: {}", registration.current());

    // Discovery: NewDiscovery + Watch + GetInstances.
    let discovery = client.discovery();
    let mut watch = discovery.watch("user-service").await?;
    loop {
        tokio::select! {
            snapshot = watch.next() => {
                let Some(snapshot) = snapshot else { break };
                for inst in snapshot.instances.iter() {
                    println!("  {} at {}:{} ({})", inst.id, inst.addr, inst.port, inst.version);
                }
                println!("revision {}: {} instance(s), {:?}", snapshot.revision, snapshot.instances.len(), snapshot.freshness);
                if once {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    registration.deregister().await?; // Unregister: the key is gone when this returns
    println!(
        "deregistered; {} instance(s) left",
        discovery.instances("user-service").await?.len()
    );
    // Before main returns: nothing of this client left in etcd, streams closed.
    client.shutdown().await?;
    Ok(())
}
