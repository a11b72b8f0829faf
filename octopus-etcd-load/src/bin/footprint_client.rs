//! The Octopus side of the etcd footprint scenario (benches/footprint.rs): one
//! process is one client, as a service would be. It registers `INSTANCES`
//! instances and watches `SERVICES` services through one `octopus::Client`,
//! prints "ready", and runs until its stdin closes.
//!
//!     footprint_client ENDPOINT CLIENT SERVICES INSTANCES

use std::io::BufRead;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, client, services, instances] = &args[..] else {
        eprintln!("usage: footprint_client ENDPOINT CLIENT SERVICES INSTANCES");
        std::process::exit(2);
    };
    let services: usize = services.parse().expect("SERVICES is a number");
    let instances: usize = instances.parse().expect("INSTANCES is a number");
    let octopus = octopus::connect(&format!("etcd://{endpoint}?namespace=/footprint&ttl=10s"))
        .await
        .unwrap_or_else(|e| {
            eprintln!("connect: {e}");
            std::process::exit(1)
        });
    let mut registrations = Vec::new();
    for i in 0..instances {
        let instance = octopus::ServiceInstance::new(
            format!("svc-{}", i % services),
            format!("{client}-{i}"),
            "127.0.0.1",
            20_000 + i as u16,
        )
        .expect("a valid instance");
        registrations.push(octopus.register(instance).await.expect("registered"));
    }
    let mut watches = Vec::new();
    for s in 0..services {
        let mut w = octopus.watch(&format!("svc-{s}")).await.expect("watching");
        w.next().await.expect("a first view");
        watches.push(w);
    }
    for r in &registrations {
        r.registered().await.expect("registered");
    }
    println!("ready");
    // Until the harness closes stdin (a blocking read, off the runtime).
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    })
    .await;
    drop(watches);
    for r in registrations {
        let _ = r.deregister().await;
    }
}
