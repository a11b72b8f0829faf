//! The console's budgets, on loopback: from a change in the registry to its
//! `update` event on the page's event stream (p50/p99), a burst of changes
//! (how many events carry it, how long until the last change arrives), and a
//! first page load (the requests a first paint needs), with 1,000 services of
//! 10 instances each.
//!
//! ```sh
//! cargo bench -p octopus-console --bench latency
//! OCTOPUS_BENCH_REGISTRY=etcd://127.0.0.1:2379 cargo bench -p octopus-console --bench latency
//! ```
//!
//! `SERVICES`, `INSTANCES` and `ROUNDS` in the environment change the sizes.

use std::net::SocketAddr;
use std::time::Duration;

use octopus::{Client, ServiceInstance};
use octopus_console::{Console, ConsoleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

/// One GET on a fresh connection (as a browser's first load has): status and body length.
async fn get(addr: SocketAddr, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    (status, body)
}

/// The event stream, read as HTTP/1.0 (no chunking: events are plain lines).
struct Stream {
    s: TcpStream,
    buf: String,
}

impl Stream {
    async fn open(addr: SocketAddr) -> Stream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET /api/events HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        Stream { s, buf: String::new() }
    }

    /// The next `update` event's data.
    async fn update(&mut self) -> serde_json::Value {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = event.split("event: update\ndata: ").nth(1) {
                    return serde_json::from_str(data.trim_end()).unwrap();
                }
                if event.contains("event: reset") || event.contains("event: status") {
                    println!("  (the stream said {:?})", event.trim_end());
                }
            }
            let mut chunk = vec![0u8; 1 << 16];
            let n = self.s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the event stream closed");
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk[..n]).replace("\r\n", "\n"));
        }
    }
}

fn has(update: &serde_json::Value, key_suffix: &str, state: &str) -> bool {
    update["instances"].as_array().is_some_and(|list| {
        list.iter()
            .any(|i| i["key"].as_str().is_some_and(|k| k.ends_with(key_suffix)) && i["row"]["state"] == state)
    })
}

async fn populate(client: &Client, services: usize, instances: usize) -> Vec<octopus::Registration> {
    let mut regs = Vec::with_capacity(services * instances);
    for s in 0..services {
        for i in 0..instances {
            let instance = ServiceInstance::new(
                format!("svc-{s:04}"),
                format!("i{i:02}"),
                "127.0.0.1",
                10_000 + i as u16,
            )
            .unwrap()
            .with_version(if i % 3 == 0 { "v2" } else { "v1" })
            .with_metadata("zone", format!("zone-{}", i % 3));
            regs.push(client.register(instance).await.unwrap());
        }
    }
    regs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = std::env::var("OCTOPUS_BENCH_REGISTRY").unwrap_or_else(|_| "mem://console-bench?ttl=600s".into());
    let (services, instances, rounds) = (env("SERVICES", 1000), env("INSTANCES", 10), env("ROUNDS", 300));
    let client = octopus::connect(&registry).await.unwrap();
    let started = Instant::now();
    let _regs = populate(&client, services, instances).await;
    println!(
        "registry {registry}: {services} services x {instances} instances registered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let console = Console::new(&client, ConsoleOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(console.serve(listener, std::future::pending()));

    // The console is ready when it lists every service.
    let ready = Instant::now();
    loop {
        let (_, len) = get(addr, "/api/services").await;
        let body_ok = len > services * 100;
        if body_ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "console ready (first full read) after {:.0} ms",
        ready.elapsed().as_secs_f64() * 1e3
    );

    // First page load: the page, its script and style, the session, the service list.
    let mut loads = Vec::new();
    let mut list_bytes = 0;
    for _ in 0..30 {
        let t = Instant::now();
        for path in [
            "/",
            "/app.js",
            "/app.css",
            "/api/session",
            "/api/services",
            "/api/services/svc-0000",
        ] {
            let (status, len) = get(addr, path).await;
            assert_eq!(status, 200, "{path}");
            if path == "/api/services" {
                list_bytes = len;
            }
        }
        loads.push(t.elapsed());
    }
    report("first page load (6 requests, fresh connections)", loads);
    println!("  /api/services body: {} KiB", list_bytes / 1024);

    // One change at a time: write, then wait for its update event.
    let mut events = Stream::open(addr).await;
    let inspector = client.inspector();
    let mut latencies = Vec::with_capacity(rounds);
    let mut writes = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let service = format!("svc-{:04}", (r * 7919) % services);
        let id = format!("i{:02}", r % instances);
        let draining = (r / services) % 2 == 0;
        let state = if draining { "draining" } else { "serving" };
        let suffix = format!("{service}/{id}");
        let t = Instant::now();
        inspector.set_draining(&service, &id, draining).await.unwrap();
        let written = Instant::now();
        writes.push(written - t);
        while !has(&events.update().await, &suffix, state) {}
        let latency = written.elapsed();
        if latency > Duration::from_secs(1) {
            println!(
                "  round {r} ({suffix}): {:.0} ms, {:.1} s into the run",
                latency.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64()
            );
        }
        latencies.push(latency);
    }
    report("the write itself (read, compare-and-put)", writes);
    report("registry change (write done) -> SSE update event", latencies);

    // A burst: 1,000 changes written as fast as they go.
    let burst = (services * instances).min(1000);
    let t = Instant::now();
    let writer = {
        let inspector = inspector.clone();
        tokio::spawn(async move {
            for n in 0..burst {
                let service = format!("svc-{:04}", n % services);
                let id = format!("i{:02}", (n / services) % instances);
                inspector.set_draining(&service, &id, true).await.unwrap();
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut updates = 0;
    while seen.len() < burst {
        let update = events.update().await;
        updates += 1;
        for i in update["instances"].as_array().into_iter().flatten() {
            if i["row"]["state"] == "draining" {
                seen.insert(i["key"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    writer.await.unwrap();
    println!(
        "burst: {burst} changes arrived in {updates} update events, the last {:.0} ms after the first write",
        t.elapsed().as_secs_f64() * 1e3
    );
    server.abort();
}
