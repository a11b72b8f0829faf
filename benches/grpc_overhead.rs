//! Paired measurement of the balancer's per-call overhead: unary loopback calls
//! alternate between a plain tonic `Channel` and Octopus's `BalancedChannel` (and a
//! plain channel made by Octopus's `TcpConnector`) against the same server, so that
//! machine noise hits every variant alike. Prints medians, p99 and the ratios.
//!
//!     cargo bench --bench grpc_overhead            # 20,000 rounds
//!     cargo bench --bench grpc_overhead -- 5000     # fewer
#![allow(missing_docs)]

use std::time::Duration;

use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::HelloRequest;
use tokio::time::Instant;

mod common;
use common::{loopback, runtime};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let rt = runtime();
    rt.block_on(async move {
        let lb = loopback("bench-overhead").await;
        let mut clients = (
            GreeterClient::new(lb.plain.clone()),
            GreeterClient::new(lb.settings.clone()),
            GreeterClient::new(lb.balanced.clone()),
            GreeterClient::new(lb.balanced_all.clone()),
        );
        let names = [
            "plain tonic Channel",
            "plain Channel, TcpConnector settings",
            "octopus BalancedChannel",
            "BalancedChannel, every option on",
        ];
        let mut times: [Vec<Duration>; 4] = Default::default();
        let req = || HelloRequest { name: "x".into() };
        for round in 0..rounds + 1000 {
            // Rotate the order each round so that no variant always goes first.
            for k in 0..4 {
                let v = (round + k) % 4;
                let start = Instant::now();
                match v {
                    0 => clients.0.say_hello(req()).await.map(drop),
                    1 => clients.1.say_hello(req()).await.map(drop),
                    2 => clients.2.say_hello(req()).await.map(drop),
                    _ => clients.3.say_hello(req()).await.map(drop),
                }
                .unwrap();
                if round >= 1000 {
                    times[v].push(start.elapsed()); // the first 1,000 rounds warm up
                }
            }
        }
        let medians: Vec<Duration> = times
            .iter_mut()
            .map(|t| {
                t.sort();
                percentile(t, 0.5)
            })
            .collect();
        println!("{rounds} rounds of paired unary loopback calls (2 worker threads)");
        for (i, t) in times.iter().enumerate() {
            println!(
                "  {:<40} median {:>9.1?}  p99 {:>9.1?}  ratio to plain {:.3}",
                names[i],
                medians[i],
                percentile(t, 0.99),
                medians[i].as_secs_f64() / medians[0].as_secs_f64()
            );
        }
    });
}
