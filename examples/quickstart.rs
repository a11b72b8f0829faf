//! Octopus in one minute, on the embedded in-memory registry: no etcd, no protoc.
//!
//! Registers three instances of two services, watches one of them, lets one
//! instance "crash" (its keepalives stop) and expire after its TTL, then
//! deregisters the rest.
//!
//!     cargo run --example quickstart

use std::time::Duration;

use octopus::{ServiceInstance, Snapshot};
use tokio::time::Instant;

const TTL: &str = "2s";

#[tokio::main]
async fn main() -> octopus::Result<()> {
    let start = Instant::now();
    let say = move |msg: String| println!("[{:>5.2}s] {msg}", start.elapsed().as_secs_f64());

    // One URL picks the backend; swap it for etcd://127.0.0.1:2379 in production.
    let client = octopus::connect(&format!("mem://?namespace=/quickstart&ttl={TTL}")).await?;
    say(format!("connected to mem:// (lease TTL {TTL})"));

    // A watcher prints every state of user-service it sees.
    let mut watch = client.watch("user-service").await?;
    let printer = tokio::spawn(async move {
        while let Some(snapshot) = watch.next().await {
            println!("          watch: user-service = {}", describe(&snapshot));
        }
    });

    let a = client
        .register(ServiceInstance::new("user-service", "user-1", "127.0.0.1", 50051)?.with_version("v1"))
        .await?;
    say(format!(
        "registered user-service/user-1 at 127.0.0.1:50051: {}",
        a.current()
    ));
    let b = client
        .register(ServiceInstance::new("user-service", "user-2", "127.0.0.1", 50052)?.with_metadata("zone", "b"))
        .await?;
    say(format!(
        "registered user-service/user-2 at 127.0.0.1:50052: {}",
        b.current()
    ));
    let c = client
        .register(ServiceInstance::new("order-service", "order-1", "127.0.0.1", 50061)?)
        .await?;
    say(format!(
        "registered order-service/order-1 at 127.0.0.1:50061: {}",
        c.current()
    ));

    let mut seen = client.watch("user-service").await?;
    seen.wait_for(|s| s.instances.len() == 2).await?;
    let orders = client.discovery().instances("order-service").await?;
    say(format!(
        "one-shot read: order-service has {} instance(s): {}",
        orders.len(),
        orders[0].endpoint()
    ));

    // Bad input is an error that names the field and the rule; nothing is lost.
    let bad = ServiceInstance::new("user service", "x", "127.0.0.1", 1).unwrap_err();
    say(format!("rejected a bad name: {bad}"));

    // A crash: user-2 stops sending keepalives. Its key lives until the lease expires.
    let crashed = Instant::now();
    b.abandon().await;
    say(format!(
        "user-2 crashed (keepalives stopped); its lease expires within {TTL}"
    ));
    seen.wait_for(|s| s.get("user-2").is_none()).await?;
    say(format!(
        "user-2 expired after {:.2}s, as its TTL says",
        crashed.elapsed().as_secs_f64()
    ));

    // user-1 kept its lease alive all along.
    tokio::time::sleep(Duration::from_secs(3)).await;
    say(format!("3s later user-1 is still {}", a.current()));

    a.deregister().await?;
    say("deregistered user-1".into());
    c.deregister().await?;
    say("deregistered order-1".into());
    seen.wait_for(|s| s.instances.is_empty()).await?;

    tokio::time::sleep(Duration::from_millis(50)).await; // let the printer catch up
    printer.abort();
    // A clean exit: whatever the client still has registered is deregistered
    // (dropped handles included) before main returns.
    client.shutdown().await?;
    say("done".into());
    Ok(())
}

fn describe(s: &Snapshot) -> String {
    let list: Vec<String> = s
        .instances
        .iter()
        .map(|i| format!("{}@{}", i.id, i.endpoint()))
        .collect();
    let state = if s.is_fresh() { "fresh" } else { "stale" };
    format!("[{}] (revision {}, {state})", list.join(", "), s.revision)
}
