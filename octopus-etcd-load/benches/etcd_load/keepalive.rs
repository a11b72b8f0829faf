//! Scenario 4, `keepalive`: the etcd requests it takes to keep many instances
//! alive, one lease each or one shared lease.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use octopus::core::LeaseRegistry;
use octopus::{RegisterOptions, Registry};
use tokio::time::{sleep, Instant};

use crate::helpers::{backend, big_etcd, etcd_messages, instance, layout};

pub(crate) async fn keepalive(quick: bool) {
    let n = if quick { 1_000 } else { 10_000 };
    println!("\n## 4. Keepalive cost of {n} instances (TTL 10 s, the default keepalive schedule: TTL/3 after each answer, on a 500 ms tick)\n");
    println!("| leases | etcd LeaseKeepAlive messages/s (etcd's own metrics, over 10 s) |\n|---|---|");
    for shared in [false, true] {
        let server = big_etcd().await;
        let mut registry = LeaseRegistry::new(Arc::new(backend(&server).await), layout());
        let opts = RegisterOptions::default().ttl(Duration::from_secs(10));
        if shared {
            registry = registry.with_shared_lease(opts.clone());
        }
        let registry = Arc::new(registry);
        let regs: Vec<_> = futures_util::stream::iter(0..n)
            .map(|i| {
                let (registry, opts) = (registry.clone(), opts.clone());
                async move {
                    let reg = registry
                        .register(instance(&format!("ka{:03}", i % 100), i), opts)
                        .await
                        .unwrap();
                    reg.registered().await.unwrap();
                    reg
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        sleep(Duration::from_secs(4)).await; // steady state
        let a = etcd_messages(&server, "LeaseKeepAlive").await;
        let t = Instant::now();
        sleep(Duration::from_secs(10)).await;
        let b = etcd_messages(&server, "LeaseKeepAlive").await;
        let rate = (b - a) / t.elapsed().as_secs_f64();
        println!(
            "| {} | {rate:.1}/s |",
            if shared {
                "one shared lease"
            } else {
                "one lease per instance"
            }
        );
        for r in regs {
            r.abandon().await;
        }
    }
}
