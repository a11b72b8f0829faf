//! Scenario 1, `register`: registration throughput, Octopus beside raw
//! etcd-client doing the same writes (and beside the Go peers when Go is there).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use futures_util::StreamExt;
use octopus::core::LeaseRegistry;
use octopus::{RegisterOptions, Registry};
use octopus_testkit::etcd::EtcdServer;
use tokio::time::Instant;

use crate::helpers::{backend, instance, layout, raw};
use crate::measure::{allocations, cpu_time, live, process_cpu};

/// Registrations per second, and CPU per registration of this process and of etcd.
#[derive(Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) per_second: f64,
    pub(crate) cpu: Duration,
    pub(crate) etcd_cpu: Duration,
    /// Heap allocations in this process, per registration.
    pub(crate) allocations: f64,
    /// Heap bytes held per registration once all are registered (Octopus keeps
    /// a task per registration; the raw side keeps nothing).
    pub(crate) held: usize,
}

/// The registration scenario's TTL, both sides: long enough that no keepalive
/// falls inside a run, even under a profiler that slows it fifty times (the
/// first keepalive comes at a third of it, and with it the watch on the key).
const REGISTRATION_TTL: Duration = Duration::from_secs(600);

/// Registers `n` instances the raw way (grant, then a put or, with `guarded`, the
/// create-if-absent transaction Octopus writes with), 64 in flight, on a fresh
/// etcd.
pub(crate) async fn raw_registrations(n: usize, guarded: bool) -> Rate {
    let server = EtcdServer::start().await;
    let layout = layout();
    let client = raw(&server).await;
    let (started, cpu0, etcd0) = (Instant::now(), cpu_time(), process_cpu(server.pid()));
    let allocations0 = allocations();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let mut c = client.clone();
            let layout = layout.clone();
            async move {
                let inst = instance(&format!("svc{:03}", i % 100), i);
                let lease = c
                    .lease_grant(REGISTRATION_TTL.as_secs() as i64, None)
                    .await
                    .unwrap()
                    .id();
                let key = layout.key(&inst, octopus::LeaseId(lease));
                let value = layout.encode(&inst).unwrap();
                let options = Some(PutOptions::new().with_lease(lease));
                if guarded {
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.clone(), value, options)])
                        .or_else([TxnOp::get(key, None)]);
                    assert!(c.txn(txn).await.unwrap().succeeded());
                } else {
                    c.put(key, value, options).await.unwrap();
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    Rate {
        per_second: n as f64 / started.elapsed().as_secs_f64(),
        cpu: (cpu_time() - cpu0) / n as u32,
        etcd_cpu: (process_cpu(server.pid()) - etcd0) / n as u32,
        allocations: (allocations() - allocations0) as f64 / n as f64,
        held: 0,
    }
}

/// The same with Octopus (`register` until `Registered`), on a fresh etcd.
pub(crate) async fn our_registrations(n: usize) -> Rate {
    let server = EtcdServer::start().await;
    let registry = Arc::new(LeaseRegistry::new(Arc::new(backend(&server).await), layout()));
    let opts = RegisterOptions::default().ttl(REGISTRATION_TTL);
    let heap0 = live();
    let (started, cpu0, etcd0) = (Instant::now(), cpu_time(), process_cpu(server.pid()));
    let allocations0 = allocations();
    let regs: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (registry, opts) = (registry.clone(), opts.clone());
            async move {
                let inst = instance(&format!("svc{:03}", i % 100), i);
                let reg = registry.register(inst, opts).await.unwrap();
                reg.registered().await.unwrap();
                reg
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let result = Rate {
        per_second: n as f64 / started.elapsed().as_secs_f64(),
        cpu: (cpu_time() - cpu0) / n as u32,
        etcd_cpu: (process_cpu(server.pid()) - etcd0) / n as u32,
        allocations: (allocations() - allocations0) as f64 / n as f64,
        held: live().saturating_sub(heap0) / n,
    };
    for r in regs {
        r.abandon().await;
    }
    result
}

/// The Go peers' registrations (`kratos`: grant + put + KeepAlive; `manager`:
/// grant + endpoints.Manager.AddEndpoint + KeepAlive), 64 in flight on one
/// clientv3 client, in a process of their own, on a fresh etcd.
async fn go_registrations(program: &std::path::Path, mode: &str, n: usize) -> Rate {
    use std::io::BufRead;
    let server = EtcdServer::start().await;
    let etcd0 = process_cpu(server.pid());
    let mut child = std::process::Command::new(program)
        .args([
            &server.endpoint(),
            mode,
            &n.to_string(),
            "64",
            &REGISTRATION_TTL.as_secs().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || std::io::BufReader::new(stdout).lines().next())
        .await
        .unwrap();
    let etcd_cpu = process_cpu(server.pid()) - etcd0;
    drop(child.stdin.take());
    let _ = child.wait();
    let line = match line {
        Some(Ok(l)) => l,
        other => panic!("{}: {other:?}", program.display()),
    };
    let fields: Vec<f64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let [secs, cpu] = fields[..] else {
        panic!("{}: {line}", program.display())
    };
    Rate {
        per_second: n as f64 / secs,
        cpu: Duration::from_secs_f64(cpu / n as f64),
        etcd_cpu: etcd_cpu / n as u32,
        allocations: f64::NAN,
        held: 0,
    }
}

pub(crate) async fn register(quick: bool) {
    register_with_go_peers(quick).await;
    const ROUNDS: usize = 3;
    println!(
        "\n## 1. Registration throughput (100 services, 64 in flight, each side on a fresh etcd, {ROUNDS} rounds in rotating order)\n"
    );
    println!(
        "| instances | raw grant+put | raw grant + guarded txn (Octopus's write, by hand) | Octopus register | ratio to raw put / to raw txn (of medians) | client CPU per registration, put / txn / Octopus | etcd CPU per registration, put / txn / Octopus | client heap allocations per registration, put / txn / Octopus | heap Octopus holds per registration |\n|---|---|---|---|---|---|---|---|---|"
    );
    for n in if quick { vec![1_000] } else { vec![1_000, 10_000] } {
        let (mut puts, mut txns, mut ours) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Rotate which side goes first, so that none always meets a warmer machine.
            for side in 0..3 {
                match (round + side) % 3 {
                    0 => puts.push(raw_registrations(n, false).await),
                    1 => txns.push(raw_registrations(n, true).await),
                    _ => ours.push(our_registrations(n).await),
                }
            }
        }
        let median = |v: &mut Vec<Rate>| {
            v.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            v[v.len() / 2]
        };
        let (put, txn, our) = (median(&mut puts), median(&mut txns), median(&mut ours));
        let rates = |v: &[Rate]| {
            v.iter()
                .map(|r| format!("{:.0}", r.per_second))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "| {n} | {:.0}/s ({}) | {:.0}/s ({}) | {:.0}/s ({}) | {:.2} / {:.2} | {:.0} / {:.0} / {:.0} µs | {:.0} / {:.0} / {:.0} µs | {:.0} / {:.0} / {:.0} | {} B |",
            put.per_second,
            rates(&puts),
            txn.per_second,
            rates(&txns),
            our.per_second,
            rates(&ours),
            our.per_second / put.per_second,
            our.per_second / txn.per_second,
            us(put.cpu),
            us(txn.cpu),
            us(our.cpu),
            us(put.etcd_cpu),
            us(txn.etcd_cpu),
            us(our.etcd_cpu),
            put.allocations,
            txn.allocations,
            our.allocations,
            our.held,
        );
    }
}

/// Octopus beside the Go peers (go-kratos style and etcd's endpoints.Manager)
/// and raw etcd-client's grant + put: five rounds, the sides' order rotating.
async fn register_with_go_peers(quick: bool) {
    const ROUNDS: usize = 5;
    let go = match octopus_etcd_load::go_program("octopusregload") {
        Ok(p) => Some(p),
        Err(why) => {
            println!("\n(Go peers skipped: {why})");
            None
        }
    };
    let Some(go) = go else { return };
    println!(
        "\n## 1b. Registration throughput beside the Go peers (100 services, 64 in flight, each on a fresh etcd, {ROUNDS} rounds in rotating order; medians, min–max)\n"
    );
    println!(
        "| instances | raw etcd-client grant+put | Go: grant + put + KeepAlive (go-kratos) | Go: endpoints.Manager | Octopus register | Octopus / Go kratos, / Go manager (of medians) | client CPU per registration: raw / kratos / manager / Octopus | etcd CPU per registration: raw / kratos / manager / Octopus |\n|---|---|---|---|---|---|---|---|"
    );
    for n in if quick { vec![1_000] } else { vec![1_000, 10_000] } {
        let mut sides: [Vec<Rate>; 4] = Default::default();
        for round in 0..ROUNDS {
            for k in 0..4 {
                let side = (round + k) % 4;
                let rate = match side {
                    0 => raw_registrations(n, false).await,
                    1 => go_registrations(&go, "kratos", n).await,
                    2 => go_registrations(&go, "manager", n).await,
                    _ => our_registrations(n).await,
                };
                sides[side].push(rate);
            }
        }
        let median = |v: &[Rate]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            v[v.len() / 2]
        };
        let cell = |v: &[Rate]| {
            let lo = v.iter().map(|r| r.per_second).fold(f64::INFINITY, f64::min);
            let hi = v.iter().map(|r| r.per_second).fold(0.0, f64::max);
            format!("{:.0}/s ({lo:.0}–{hi:.0})", median(v).per_second)
        };
        let m: Vec<Rate> = sides.iter().map(|v| median(v)).collect();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "| {n} | {} | {} | {} | {} | {:.2} / {:.2} | {:.0} / {:.0} / {:.0} / {:.0} µs | {:.0} / {:.0} / {:.0} / {:.0} µs |",
            cell(&sides[0]),
            cell(&sides[1]),
            cell(&sides[2]),
            cell(&sides[3]),
            m[3].per_second / m[1].per_second,
            m[3].per_second / m[2].per_second,
            us(m[0].cpu),
            us(m[1].cpu),
            us(m[2].cpu),
            us(m[3].cpu),
            us(m[0].etcd_cpu),
            us(m[1].etcd_cpu),
            us(m[2].etcd_cpu),
            us(m[3].etcd_cpu),
        );
    }
}
