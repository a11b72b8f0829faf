//! The etcd load harness: Octopus and a raw etcd-client baseline doing the same
//! work against a real etcd started on a loopback port, side by side in one run.
//!
//!     cargo bench -p octopus-etcd-load --bench etcd_load                 # every scenario
//!     cargo bench -p octopus-etcd-load --bench etcd_load -- sync event   # some
//!     cargo bench -p octopus-etcd-load --bench etcd_load -- --quick      # a tenth of the sizes
//!     cargo bench -p octopus-etcd-load --bench etcd_load -- profile-ours # one side alone, for a profiler
//!         (profile-put, profile-txn, profile-ours: 10,000 registrations;
//!          profile-event-ours=N, profile-event-raw=N: N changes at 10,000 instances)
//!
//! Scenarios: `register` (throughput), `propagation` (put → every watcher),
//! `sync` (100,000 instances: time, heap), `keepalive` (etcd requests to keep
//! 10,000 instances alive), `storm` (1,000 registrations after an etcd restart),
//! `event` (cost per change at 10,000 instances vs re-reading everything).
//! Each scenario is a module of the same name; `measure` counts heap and CPU,
//! `helpers` holds what the scenarios share. Results go to docs/PERFORMANCE.md.

mod event;
mod helpers;
mod keepalive;
mod measure;
mod propagation;
mod register;
mod storm;
mod sync;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use event::{changes_alone, event};
use keepalive::keepalive;
use measure::live;
use propagation::propagation;
use register::{our_registrations, raw_registrations, register};
use storm::{storm, Attempts};
use sync::sync;

/// The CPU, its count, memory and kernel, as the numbers' context.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = read("/proc/sys/kernel/osrelease");
    format!("{model}, {cpus} CPUs, {memory_gib:.0} GiB, Linux {}", kernel.trim())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let quick = args.iter().any(|a| a == "--quick");
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();

    // The heap counter itself: a buffer grown by realloc must count once.
    let before = live();
    let mut probe: Vec<u8> = Vec::with_capacity(1_000);
    probe.reserve_exact(99_000 + 1);
    probe.push(1);
    assert_eq!(live() - before, probe.capacity(), "the heap counter miscounts reallocs");
    drop(probe);
    // The storm's retry counter reads each delay back from its `Debug` text.
    for delay in [
        Duration::from_nanos(12),
        Duration::from_micros(850),
        Duration::from_millis(1234),
    ] {
        let read = storm::debug_duration(&format!("{delay:?}")).unwrap_or_default();
        assert!(
            read.abs_diff(delay) < Duration::from_micros(1),
            "{delay:?} read back as {read:?}"
        );
    }

    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    use tracing_subscriber::layer::SubscriberExt;
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Attempts(attempts.clone())));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# etcd load harness ({}; etcd {})",
        if quick {
            "quick: a tenth of the sizes"
        } else {
            "full sizes"
        },
        std::process::Command::new(octopus_testkit::etcd::etcd_binary())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned())
            .unwrap_or_default()
    );
    println!("machine: {}", machine());
    let chosen: Vec<String> = chosen.iter().map(|s| s.to_string()).collect();
    let (chosen_profile, chosen): (Vec<String>, Vec<String>) =
        chosen.into_iter().partition(|c| c.starts_with("profile-"));
    let profiling = !chosen_profile.is_empty();
    let on = move |name: &str| (chosen.is_empty() && !profiling) || chosen.iter().any(|c| c == name);
    // The scenarios run in a spawned task, on the runtime's workers, as a service's
    // own code does (not on the thread that called `block_on`).
    runtime
        .block_on(runtime.spawn(async move {
            if on("register") {
                register(quick).await;
            }
            // One side of the registration scenario alone, for a profiler:
            // `profile-put`, `profile-txn` or `profile-ours` (10,000 registrations).
            for (name, side) in [("profile-put", 0), ("profile-txn", 1), ("profile-ours", 2)] {
                if chosen_profile.iter().any(|c| c == name) {
                    let rate = match side {
                        0 => raw_registrations(10_000, false).await,
                        1 => raw_registrations(10_000, true).await,
                        _ => our_registrations(10_000).await,
                    };
                    println!(
                        "{name}: {:.0}/s; per registration: client CPU {:?}, etcd CPU {:?}, {:.1} allocations, {} B held",
                        rate.per_second, rate.cpu, rate.etcd_cpu, rate.allocations, rate.held
                    );
                }
            }
            // One side of the per-change scenario alone, for a profiler:
            // `profile-event-ours=N` or `profile-event-raw=N` (N changes at 10,000
            // instances; two runs with different N give the cost of one change).
            for c in &chosen_profile {
                if let Some((side, count)) = c.strip_prefix("profile-event-").and_then(|r| r.split_once('=')) {
                    let changes = count.parse().expect("profile-event-ours=N: N changes");
                    changes_alone(side == "ours", changes).await;
                }
            }
            if on("propagation") {
                propagation(quick).await;
            }
            if on("sync") {
                sync(quick).await;
            }
            if on("keepalive") {
                keepalive(quick).await;
            }
            if on("storm") {
                storm(attempts.clone()).await;
            }
            if on("event") {
                event(quick).await;
            }
        }))
        .unwrap();
}
