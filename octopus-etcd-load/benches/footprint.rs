//! What a client costs etcd, read from etcd's own /metrics, Octopus beside etcd's
//! Go clientv3 in the same run.
//!
//!     cargo bench -p octopus-etcd-load --bench footprint             # 5 rounds
//!     cargo bench -p octopus-etcd-load --bench footprint -- --quick  # 1 round
//!
//! Each measurement starts a fresh etcd, reads its metrics, starts N client
//! processes (Octopus's `footprint_client`, or the Go peer `octopusfootprint`
//! built from interop/go with Debian's packaged clientv3), waits until each has
//! registered and watches, lets etcd settle, and reads its metrics again: watch
//! streams, watchers, goroutines, resident memory, live heap and goroutine stacks
//! (both reads follow forced garbage collections, etcd runs with `--enable-pprof`),
//! gRPC calls started by method, and etcd's CPU over a quiet while. The Go peer
//! writes the same keys and values as Octopus, so the two differ only in how they
//! use etcd. The sides alternate from round to round. `ROUNDS=N` changes the
//! number of rounds. Without Go the Go side is skipped with a message. Results:
//! docs/PERFORMANCE.md.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use octopus_testkit::etcd::{metric, EtcdServer};

/// One side: how to start one client process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Octopus,
    Go,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Octopus => "Octopus",
            Side::Go => "Go clientv3",
        }
    }
}

/// The Go peer; `None` (with the reason printed) when it cannot be built.
fn go_peer() -> Option<PathBuf> {
    octopus_etcd_load::go_program("octopusfootprint")
        .map_err(|why| println!("Go peer skipped: {why}"))
        .ok()
}

/// A client process, ended (stdin closed, then killed) when dropped.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &Path, endpoint: &str, id: usize, services: usize, instances: usize) -> Client {
    let args = [
        endpoint.to_owned(),
        format!("c{id}"),
        services.to_string(),
        instances.to_string(),
    ];
    Client(octopus_etcd_load::start_ready(program, &args).0)
}

/// What etcd shows.
#[derive(Clone, Debug, Default)]
struct Footprint {
    watch_streams: f64,
    watchers: f64,
    goroutines: f64,
    rss: f64,
    heap: f64,
    stacks: f64,
    cpu: f64,
    calls: BTreeMap<String, f64>,
}

async fn read(etcd: &EtcdServer) -> Footprint {
    let text = etcd.metrics().await;
    let m = |name: &str| metric(&text, name, &[]);
    let mut calls = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("grpc_server_started_total{")) {
        let method = line
            .split("grpc_method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *calls.entry(method.to_owned()).or_insert(0.0) += n;
    }
    Footprint {
        watch_streams: m("etcd_debugging_mvcc_watch_stream_total"),
        watchers: m("etcd_debugging_mvcc_watcher_total"),
        goroutines: m("go_goroutines"),
        rss: m("process_resident_memory_bytes"),
        heap: m("go_memstats_heap_alloc_bytes"),
        stacks: m("go_memstats_stack_inuse_bytes"),
        cpu: m("process_cpu_seconds_total"),
        calls,
    }
}

/// Per client (or per registration): the growth from `base` to `now`, over `n`.
#[derive(Clone, Debug, Default)]
struct Cost {
    watch_streams: f64,
    keepalive_streams: f64,
    watchers: f64,
    goroutines: f64,
    rss_kib: f64,
    heap_kib: f64,
    stacks_kib: f64,
    calls: f64,
    ranges: f64,
    idle_cpu_ms_per_s: f64,
}

/// A few garbage collections in etcd, so that what is read next is live memory
/// (one GC halves an idle goroutine's grown stack at most once), then a read.
async fn settled(etcd: &EtcdServer) -> Footprint {
    for _ in 0..3 {
        etcd.collect_garbage().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    read(etcd).await
}

async fn measure(program: &Path, clients: usize, services: usize, instances: usize) -> Cost {
    let etcd = EtcdServer::start_with(&["--enable-pprof".to_owned()], None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = settled(&etcd).await;
    let endpoint = etcd.endpoint();
    let (program2, endpoint2) = (program.to_path_buf(), endpoint.clone());
    let running = tokio::task::spawn_blocking(move || {
        (0..clients)
            .map(|id| start(&program2, &endpoint2, id, services, instances))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // Let etcd settle: goroutines of finished calls end, and past a keepalive
    // round (TTL/3 = 3.3 s, rounded up to a 500 ms tick) every lease is kept
    // alive and every registration has joined its service's watch.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = settled(&etcd).await;
    // etcd's CPU while the clients only keep their leases alive and watch.
    let quiet = Duration::from_secs(5);
    tokio::time::sleep(quiet).await;
    let later = read(&etcd).await;
    drop(running);
    drop(etcd);
    let n = clients as f64;
    let per = match (clients, instances) {
        (1, i) if i > 1 => i as f64, // per registration
        _ => n,
    };
    let d = |f: fn(&Footprint) -> f64| (f(&now) - f(&base)) / per;
    let started = |m: &str| now.calls.get(m).copied().unwrap_or(0.0) - base.calls.get(m).copied().unwrap_or(0.0);
    let total: f64 = now.calls.values().sum::<f64>() - base.calls.values().sum::<f64>();
    Cost {
        watch_streams: d(|f| f.watch_streams),
        keepalive_streams: started("LeaseKeepAlive") / per,
        watchers: d(|f| f.watchers),
        goroutines: d(|f| f.goroutines),
        rss_kib: d(|f| f.rss) / 1024.0,
        heap_kib: d(|f| f.heap) / 1024.0,
        stacks_kib: d(|f| f.stacks) / 1024.0,
        calls: total / per,
        ranges: started("Range") / per,
        idle_cpu_ms_per_s: (later.cpu - now.cpu) * 1000.0 / quiet.as_secs_f64() / per,
    }
}

/// A table row: its name and how to read it from a cost.
type Row = (&'static str, fn(&Cost) -> f64);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.1}–{hi:.1}")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = match std::env::var("ROUNDS") {
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("ROUNDS=N (a number), not {n:?}")),
        Err(_) if quick => 1,
        Err(_) => 5,
    };
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_footprint_client"));
    let go = go_peer();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("# etcd footprint per client ({rounds} rounds, medians and ranges)");
    let mut scenarios = vec![
        (1, 20, 1, "1 client: 1 instance, 20 services watched".to_owned()),
        (
            50,
            20,
            1,
            "50 clients: each 1 instance, 20 services watched (per client)".to_owned(),
        ),
        (
            1,
            1,
            100,
            "1 client registering 100 instances (per registration)".to_owned(),
        ),
    ];
    // FOOTPRINT=CLIENTS,SERVICES,INSTANCES measures that one shape instead.
    if let Ok(shape) = std::env::var("FOOTPRINT") {
        let n: Vec<usize> = shape.split(',').filter_map(|v| v.parse().ok()).collect();
        let [c, s, i] = n[..] else {
            panic!("FOOTPRINT=CLIENTS,SERVICES,INSTANCES, not {shape:?}")
        };
        scenarios = vec![(
            c,
            s,
            i,
            format!("{c} clients, {s} services watched, {i} instances each"),
        )];
    }
    for (clients, services, instances, what) in scenarios {
        let mut results: BTreeMap<&str, Vec<Cost>> = BTreeMap::new();
        for round in 0..rounds {
            let mut sides = vec![Side::Octopus];
            if go.is_some() {
                sides.push(Side::Go);
            }
            if round % 2 == 1 {
                sides.reverse();
            }
            for side in sides {
                let program = match side {
                    Side::Octopus => &ours,
                    Side::Go => go.as_ref().unwrap(),
                };
                let cost = runtime.block_on(measure(program, clients, services, instances));
                results.entry(side.name()).or_default().push(cost);
            }
        }
        println!("\n## {what}\n");
        println!(
            "| per unit | {} |",
            results.keys().copied().collect::<Vec<_>>().join(" | ")
        );
        println!("|---|{}", "---|".repeat(results.len()));
        let rows: [Row; 10] = [
            ("watch streams", |c| c.watch_streams),
            ("LeaseKeepAlive streams started", |c| c.keepalive_streams),
            ("watchers", |c| c.watchers),
            ("etcd goroutines", |c| c.goroutines),
            ("etcd RSS (KiB)", |c| c.rss_kib),
            ("etcd live heap after GC (KiB)", |c| c.heap_kib),
            ("etcd goroutine stacks after GC (KiB)", |c| c.stacks_kib),
            ("gRPC calls started", |c| c.calls),
            ("of which Range", |c| c.ranges),
            ("idle etcd CPU (ms/s)", |c| c.idle_cpu_ms_per_s),
        ];
        for (name, f) in rows {
            let cells: Vec<String> = results
                .values()
                .map(|costs| {
                    let v: Vec<f64> = costs.iter().map(f).collect();
                    format!("{:.2} ({})", median(v.clone()), range(&v))
                })
                .collect();
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
}
