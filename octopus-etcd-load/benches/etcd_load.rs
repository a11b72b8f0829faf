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
//! Results go to docs/PERFORMANCE.md.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use futures_util::StreamExt;
use octopus::core::{JitterRng, JsonLayout, KeyLayout, LeaseRegistry, WatchDiscovery};
use octopus::etcd::EtcdBackend;
use octopus::{BackoffPolicy, Discovery, RegisterOptions, Registry, ServiceInstance};
use octopus_testkit::etcd::EtcdServer;
use tokio::time::{sleep, timeout, Instant};

// ---------------------------------------------------------------- heap counting

/// The system allocator, counting allocation calls and live heap bytes (the
/// `stats_alloc` crate).
#[global_allocator]
static ALLOC: stats_alloc::StatsAlloc<std::alloc::System> = stats_alloc::StatsAlloc::system();

/// Allocation calls so far (alloc, alloc_zeroed and realloc), in this process.
fn allocations() -> u64 {
    let stats = ALLOC.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// Live heap bytes. (stats_alloc already adds a realloc's growth to
/// `bytes_allocated` and its shrinking to `bytes_deallocated`; its
/// `bytes_reallocated` is the same change again, and adding it counted every
/// realloc twice: a 100,000-instance view read 1,040 B per instance, not 520.)
fn live() -> usize {
    let stats = ALLOC.stats();
    stats.bytes_allocated.saturating_sub(stats.bytes_deallocated)
}

/// Samples the live heap every 200 µs on a thread of its own until dropped, and
/// keeps the largest value seen (the allocator's own peak is the process's).
struct PeakSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl PeakSampler {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = live();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(live());
                std::thread::sleep(Duration::from_micros(200));
            }
            peak
        });
        PeakSampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

/// CPU time of this process so far (every thread), from /proc (nanoseconds).
/// CPU time (user + system) of another process so far, from `/proc/PID/stat`
/// (in clock ticks of 10 ms: good enough over a run of seconds).
fn process_cpu(pid: Option<u32>) -> Duration {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok()) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, f)| f)
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

fn cpu_time() -> Duration {
    threads_cpu("/proc/self/task")
}

/// The CPU time of process `pid`'s threads (a child's), from their schedstat.
fn child_cpu(pid: u32) -> Duration {
    threads_cpu(&format!("/proc/{pid}/task"))
}

fn threads_cpu(dir: &str) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(dir) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

// ---------------------------------------------------------------- helpers

fn layout() -> Arc<dyn KeyLayout> {
    Arc::new(JsonLayout::default())
}

fn instance(service: &str, n: usize) -> ServiceInstance {
    ServiceInstance::new(service, format!("instance-{n:06}"), "127.0.0.7", 1 + (n % 60000) as u16)
        .unwrap()
        .with_version("v1.2.3")
        .with_metadata("zone", "eu-west-1a")
}

async fn backend(server: &EtcdServer) -> EtcdBackend {
    EtcdBackend::connect(server.options().request_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
}

async fn raw(server: &EtcdServer) -> Client {
    Client::connect([server.endpoint()], None).await.unwrap()
}

async fn big_etcd() -> EtcdServer {
    EtcdServer::start_with(
        &[
            "--quota-backend-bytes=8589934592".into(),
            "--max-txn-ops=1024".into(),
            "--max-request-bytes=33554432".into(),
        ],
        None,
    )
    .await
}

/// Writes `n` instances of `service` with raw txns of 500 puts (no lease).
async fn load(client: &mut Client, service: &str, n: usize) {
    let layout = layout();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| {
                let inst = instance(service, *i);
                TxnOp::put(
                    layout.key(&inst, octopus::LeaseId(0)),
                    layout.encode(&inst).unwrap(),
                    None,
                )
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
}

/// etcd's own count of messages received per gRPC method (its /metrics).
async fn etcd_messages(server: &EtcdServer, method: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("grpc_server_msg_received_total") && l.contains(&format!("grpc_method=\"{method}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------- 1. registration throughput

/// Registrations per second, and CPU per registration of this process and of etcd.
#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    cpu: Duration,
    etcd_cpu: Duration,
    /// Heap allocations in this process, per registration.
    allocations: f64,
    /// Heap bytes held per registration once all are registered (Octopus keeps
    /// a task per registration; the raw side keeps nothing).
    held: usize,
}

/// The registration scenario's TTL, both sides: long enough that no keepalive
/// falls inside a run, even under a profiler that slows it fifty times (the
/// first keepalive comes at a third of it, and with it the watch on the key).
const REGISTRATION_TTL: Duration = Duration::from_secs(600);

/// Registers `n` instances the raw way (grant, then a put or, with `guarded`, the
/// create-if-absent transaction Octopus writes with), 64 in flight, on a fresh
/// etcd.
async fn raw_registrations(n: usize, guarded: bool) -> Rate {
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
async fn our_registrations(n: usize) -> Rate {
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

async fn register(quick: bool) {
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

// ---------------------------------------------------------------- 2. propagation

/// The wall clock in Unix nanoseconds. Every side of the propagation scenario
/// is timed with it, the Go peer in a process of its own included (same machine).
#[allow(clippy::disallowed_methods)] // across processes only the wall clock is shared
fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One side of the propagation table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Watchers {
    /// Raw etcd-client watches on one client.
    RawShared,
    /// Raw etcd-client watches, a client each.
    RawEach,
    /// Octopus watches on one client.
    Shared,
    /// Octopus watches, a client each.
    Each,
    /// The Go peer: clientv3 watchers on one client.
    Go,
}

/// A watcher saw instance `.0` this long after its put was sent.
type Sighting = (String, Duration);

impl Watchers {
    /// The service this side watches (each side its own).
    fn service(self) -> &'static str {
        match self {
            Watchers::RawShared => "raw-shared",
            Watchers::RawEach => "raw-each",
            Watchers::Shared => "octopus",
            Watchers::Each => "octopus-each",
            Watchers::Go => "go",
        }
    }
}

/// When each put was sent (by side and instance id, Unix ns), and each side's delays.
#[derive(Clone, Default)]
struct Sightings {
    /// When each side's put of each instance was sent.
    sent: Arc<Mutex<BTreeMap<(Watchers, String), u128>>>,
    /// Per side, every sighting.
    seen: Arc<Mutex<BTreeMap<Watchers, Vec<Sighting>>>>,
}

impl Sightings {
    /// `side` saw instance `id` at `at` (Unix ns, read when the response came).
    fn saw(&self, side: Watchers, id: &str, at: u128) {
        let Some(t0) = self.sent.lock().unwrap().get(&(side, id.to_owned())).copied() else {
            return;
        };
        let delay = Duration::from_nanos(at.saturating_sub(t0) as u64);
        self.seen
            .lock()
            .unwrap()
            .entry(side)
            .or_default()
            .push((id.to_owned(), delay));
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// A watcher process (the Go peer `octopuswatch`, or Octopus's `watch_client`)
/// and its output, by line.
struct Peer {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

fn peer_watchers(program: &std::path::Path, args: &[String]) -> Peer {
    let (child, lines) = tokio::task::block_in_place(|| octopus_etcd_load::start_ready(program, args));
    Peer { child, lines }
}

/// Puts `puts` instances of each side's service, one put every 5 ms, the sides
/// taking turns (the order rotating from one put to the next), each put timed
/// from its send; then waits 100 ms for the last to be seen.
async fn put(writer: &mut Client, sides: &[Watchers], puts: usize, s: &Sightings) {
    let layout = layout();
    sleep(Duration::from_millis(300)).await;
    for i in 0..puts {
        for k in 0..sides.len() {
            let side = sides[(i + k) % sides.len()];
            let inst = instance(side.service(), i);
            s.sent.lock().unwrap().insert((side, inst.id.clone()), unix_nanos());
            writer
                .put(
                    layout.key(&inst, octopus::LeaseId(0)),
                    layout.encode(&inst).unwrap(),
                    None,
                )
                .await
                .unwrap();
            sleep(Duration::from_millis(5)).await;
        }
    }
    sleep(Duration::from_millis(100)).await;
}

/// Collects the peers' sightings ("seen ID NANOS" lines, asked for once the
/// puts are done, so that reporting costs the watchers no I/O while they run)
/// until `expected` are in, or 10 s.
async fn collect(peers: &mut [(Watchers, Peer)], s: &Sightings, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.count() < expected && Instant::now() < deadline {
        for (side, peer) in peers.iter_mut() {
            let lines = tokio::task::block_in_place(|| octopus_etcd_load::report(&mut peer.child, &mut peer.lines));
            for (id, at) in lines.iter().filter_map(|l| octopus_etcd_load::sighting(l)) {
                s.saw(*side, id, at);
            }
        }
        if s.count() < expected {
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Ends a watcher process.
fn stop(mut peer: Peer) {
    drop(peer.child.stdin.take());
    let _ = peer.child.wait();
}

/// One round on a fresh etcd. Every side's watcher process runs for the whole
/// round, each watching a service of its own, and the puts take turns between
/// the services: each put reaches one side only, so the sides neither compete
/// for the machine's cores nor wait on each other in etcd's fan-out (which
/// sends a put's responses in random order, one per watcher: a side with `W`
/// streams would hold `W` tickets to the first one), while a slow fsync or a
/// busy host lasting longer than a few puts meets every side.
async fn propagation_round(
    ours: &std::path::Path,
    go: Option<&std::path::Path>,
    puts: usize,
    w: usize,
) -> BTreeMap<Watchers, Round> {
    let server = EtcdServer::start().await;
    let mut writer = raw(&server).await;
    let s = Sightings::default();
    let mut peers: Vec<(Watchers, Peer)> = [
        (Watchers::RawShared, "raw-shared"),
        (Watchers::Shared, "shared"),
        (Watchers::RawEach, "raw-each"),
        (Watchers::Each, "each"),
    ]
    .into_iter()
    .map(|(side, mode)| {
        let args = [
            server.endpoint(),
            side.service().to_owned(),
            w.to_string(),
            mode.to_owned(),
        ];
        (side, peer_watchers(ours, &args))
    })
    .collect();
    if let Some(go) = go {
        let args = [
            server.endpoint(),
            layout().prefix(Watchers::Go.service()),
            w.to_string(),
        ];
        peers.push((Watchers::Go, peer_watchers(go, &args)));
    }
    let sides: Vec<Watchers> = peers.iter().map(|(side, _)| *side).collect();
    let expected = puts * w * peers.len();
    let cpu = measure_cpu(&peers, put(&mut writer, &sides, puts, &s)).await;
    collect(&mut peers, &s, expected).await;
    peers.into_iter().for_each(|(_, peer)| stop(peer));
    let seen = s.seen.lock().unwrap().clone();
    if let Ok(path) = std::env::var("PROPAGATION_DUMP") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for (side, sightings) in &seen {
            for (id, d) in sightings {
                let _ = writeln!(f, "{w} {side:?} {id} {}", d.as_nanos());
            }
        }
    }
    seen.into_iter()
        .map(|(side, sightings)| {
            // Per put, the median of the side's watchers' delays.
            let mut by_put: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
            for (id, delay) in &sightings {
                by_put.entry(id.clone()).or_default().push(*delay);
            }
            let per_put = by_put
                .into_iter()
                .map(|(id, mut d)| {
                    d.sort();
                    (id, d[d.len() / 2])
                })
                .collect();
            let mut delays: Vec<Duration> = sightings.into_iter().map(|(_, d)| d).collect();
            delays.sort();
            (
                side,
                Round {
                    delays,
                    per_put,
                    cpu: cpu.get(&side).copied(),
                },
            )
        })
        .collect()
}

/// One side's sightings in one round.
struct Round {
    /// Every sighting's delay, sorted.
    delays: Vec<Duration>,
    /// Per put, the median delay of the side's watchers.
    per_put: BTreeMap<String, Duration>,
    /// The watcher process's CPU time over the round.
    cpu: Option<Duration>,
}

/// Per put seen by both, `a`'s delay minus `b`'s, in µs.
fn paired(a: &Round, b: &Round) -> Vec<f64> {
    a.per_put
        .iter()
        .filter_map(|(id, da)| {
            let db = b.per_put.get(id)?;
            Some((da.as_secs_f64() - db.as_secs_f64()) * 1e6)
        })
        .collect()
}

/// The CPU time each watcher process spent while `work` ran.
async fn measure_cpu(
    peers: &[(Watchers, Peer)],
    work: impl std::future::Future<Output = ()>,
) -> BTreeMap<Watchers, Duration> {
    let before: Vec<Duration> = peers.iter().map(|(_, p)| child_cpu(p.child.id())).collect();
    work.await;
    peers
        .iter()
        .zip(before)
        .map(|((side, p), before)| (*side, child_cpu(p.child.id()).saturating_sub(before)))
        .collect()
}

/// One side's propagation over the rounds.
#[derive(Default)]
struct SideStats {
    /// Every delay.
    pooled: Vec<Duration>,
    /// Each round's p99.
    p99s: Vec<Duration>,
    /// The watcher process's CPU per sighting (µs), each round.
    cpus: Vec<f64>,
}

async fn propagation(quick: bool) {
    let go = octopus_etcd_load::go_program("octopuswatch")
        .map_err(|why| println!("\n(Go peer skipped: {why})"))
        .ok();
    let ours = std::path::PathBuf::from(env!("CARGO_BIN_EXE_watch_client"));
    let (puts, rounds) = if quick { (50, 1) } else { (200, 5) };
    // PROPAGATION_ROUNDS=N and PROPAGATION_PUTS=N change the sizes.
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (puts, rounds) = (env("PROPAGATION_PUTS", puts), env("PROPAGATION_ROUNDS", rounds));
    println!(
        "\n## 2. Propagation: put sent → change seen by each watcher ({puts} puts per side and round, \
         {rounds} rounds on fresh etcds; every side a process of its own watching a service of its own for \
         the whole round, the puts taking turns between the sides' services, one every 5 ms; p50 / p99 / \
         max over every sighting, then the rounds' p99s min–max and the process's CPU per sighting)\n"
    );
    println!(
        "| watchers per side | raw etcd-client, one client | Go clientv3, one client | Octopus, one client | raw etcd-client, a client each | Octopus, a client each |\n|---|---|---|---|---|---|"
    );
    // PROPAGATION_WATCHERS=1,20 measures those counts only.
    let counts: Vec<usize> = match std::env::var("PROPAGATION_WATCHERS") {
        Ok(list) => list.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => vec![1, 20, 100],
    };
    let pairs = [
        ("Octopus − Go", Watchers::Shared, Watchers::Go),
        ("Octopus − raw", Watchers::Shared, Watchers::RawShared),
        ("Go − raw", Watchers::Go, Watchers::RawShared),
        ("Octopus − raw, a client each", Watchers::Each, Watchers::RawEach),
    ];
    let mut differences = Vec::new();
    for w in counts {
        // Per side: every delay, each round's p99, and the process's CPU per sighting.
        let mut all: BTreeMap<Watchers, SideStats> = BTreeMap::new();
        let mut diffs: Vec<PairStats> = (0..pairs.len()).map(|_| PairStats::default()).collect();
        for _ in 0..rounds {
            let round = propagation_round(&ours, go.as_deref(), puts, w).await;
            for ((_, a, b), stats) in pairs.iter().zip(&mut diffs) {
                if let (Some(a), Some(b)) = (round.get(a), round.get(b)) {
                    let mut d = paired(a, b);
                    d.sort_by(f64::total_cmp);
                    if !d.is_empty() {
                        stats.medians.push(d[d.len() / 2]);
                    }
                    stats.pooled.extend(d);
                    let p99 = |r: &Round| percentile(&r.delays, 0.99).as_secs_f64() * 1e6;
                    stats.p99s.push(p99(a) - p99(b));
                }
            }
            for (side, Round { delays, cpu, .. }) in round {
                let SideStats { pooled, p99s, cpus } = all.entry(side).or_default();
                p99s.push(percentile(&delays, 0.99));
                if let (Some(cpu), false) = (cpu, delays.is_empty()) {
                    cpus.push(cpu.as_secs_f64() * 1e6 / delays.len() as f64);
                }
                pooled.extend(delays);
            }
        }
        for SideStats { pooled, p99s, cpus } in all.values_mut() {
            pooled.sort();
            p99s.sort();
            cpus.sort_by(f64::total_cmp);
        }
        let cell = |side: Watchers| {
            let Some(SideStats { pooled, p99s, cpus }) = all.get(&side) else {
                return "skipped".to_owned();
            };
            let cpu = match cpus.len() {
                0 => String::new(),
                n => format!("; process CPU {:.0} µs per sighting", cpus[n / 2]),
            };
            format!(
                "{} / {} / {} ({} seen; p99 {}–{}{cpu})",
                ms(percentile(pooled, 0.5)),
                ms(percentile(pooled, 0.99)),
                ms(pooled.last().copied().unwrap_or_default()),
                pooled.len(),
                ms(p99s[0]),
                ms(p99s[p99s.len() - 1]),
            )
        };
        println!(
            "| {w} | {} | {} | {} | {} | {} |",
            cell(Watchers::RawShared),
            cell(Watchers::Go),
            cell(Watchers::Shared),
            cell(Watchers::RawEach),
            cell(Watchers::Each)
        );
        differences.push((w, diffs));
    }
    println!(
        "\nPaired (µs): put by put (each side's median over its watchers, one side's minus the other's), \
         the median difference over every put, its p10 and p90, and the rounds' medians min–max; then round \
         by round, one side's p99 minus the other's: the median over the rounds, min–max, and in how many \
         rounds the first side's p99 was the lower\n"
    );
    let header: Vec<&str> = pairs.iter().map(|(name, _, _)| *name).collect();
    println!(
        "| watchers per side | {} |\n|---|{}",
        header.join(" | "),
        "---|".repeat(pairs.len())
    );
    for (w, diffs) in differences {
        let cells: Vec<String> = diffs.into_iter().map(PairStats::cell).collect();
        println!("| {w} | {} |", cells.join(" | "));
    }
}

/// One pair of sides' differences over the rounds.
#[derive(Default)]
struct PairStats {
    /// Every put's difference.
    pooled: Vec<f64>,
    /// Each round's median put-by-put difference.
    medians: Vec<f64>,
    /// Each round's difference of p99s.
    p99s: Vec<f64>,
}

impl PairStats {
    /// The table cell: put by put, then round by round.
    fn cell(mut self) -> String {
        if self.pooled.is_empty() {
            return "skipped".to_owned();
        }
        for v in [&mut self.pooled, &mut self.medians, &mut self.p99s] {
            v.sort_by(f64::total_cmp);
        }
        let (pooled, medians, p99s) = (&self.pooled, &self.medians, &self.p99s);
        let at = |p: f64| pooled[((pooled.len() - 1) as f64 * p) as usize];
        format!(
            "{:+.0} ({:+.0} … {:+.0}; rounds {:+.0} … {:+.0}); p99 {:+.0} ({:+.0} … {:+.0}; lower in {} of {})",
            at(0.5),
            at(0.1),
            at(0.9),
            medians[0],
            medians[medians.len() - 1],
            p99s[p99s.len() / 2],
            p99s[0],
            p99s[p99s.len() - 1],
            p99s.iter().filter(|d| **d < 0.0).count(),
            p99s.len(),
        )
    }
}

// ---------------------------------------------------------------- 3. initial sync

async fn sync(quick: bool) {
    let n = if quick { 10_000 } else { 100_000 };
    println!("\n## 3. Initial sync of one service with {n} instances (pages of 1,000)\n");
    let server = big_etcd().await;
    let mut client = raw(&server).await;
    load(&mut client, "big", n).await;
    let layout = layout();
    let prefix = layout.prefix("big");

    // Raw: the same paginated read, values left undecoded.
    let started = Instant::now();
    let mut count = 0;
    let mut bytes = 0;
    let mut start = prefix.clone().into_bytes();
    let end = octopus::core::prefix_end(prefix.as_bytes());
    let mut rev = 0;
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(1000);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let resp = client.get(start.clone(), Some(opts)).await.unwrap();
        rev = resp.header().unwrap().revision();
        count += resp.kvs().len();
        bytes += resp
            .kvs()
            .iter()
            .map(|kv| kv.key().len() + kv.value().len())
            .sum::<usize>();
        if !resp.more() {
            break;
        }
        start = resp.kvs().last().unwrap().key().to_vec();
        start.push(0);
    }
    let raw_time = started.elapsed();
    assert_eq!(count, n);

    // Octopus: a cold watch's first snapshot, decoded and cached.
    let backend = Arc::new(backend(&server).await);
    let discovery = WatchDiscovery::new(backend.clone() as Arc<EtcdBackend>, layout.clone());
    let before = live();
    let sampler = PeakSampler::start();
    let started = Instant::now();
    let mut watch = discovery.watch("big").await.unwrap();
    let snapshot = watch.next().await.unwrap();
    let ours_time = started.elapsed();
    assert_eq!(snapshot.instances.len(), n);
    sleep(Duration::from_millis(200)).await; // let the read buffers go
    let held = live().saturating_sub(before);
    let peak = sampler.finish().saturating_sub(before);
    let strings: usize = snapshot
        .instances
        .iter()
        .map(|i| {
            i.service.len()
                + i.id.len()
                + i.addr.len()
                + i.version.len()
                + i.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        })
        .sum();
    println!("| | raw range | Octopus watch (decoded, cached) |\n|---|---|---|");
    println!("| time | {} | {} |", ms(raw_time), ms(ours_time));
    println!("| bytes read (keys + values) | {:.1} MB | same |", bytes as f64 / 1e6);
    println!(
        "| heap held for the view | — | {:.1} MB = {:.0} B per instance, of which strings {:.0} B, overhead {:.0} B |",
        held as f64 / 1e6,
        held as f64 / n as f64,
        strings as f64 / n as f64,
        (held.saturating_sub(strings)) as f64 / n as f64
    );
    println!(
        "| peak heap during the sync (sampled every 200 µs) | — | {:.1} MB |",
        peak as f64 / 1e6
    );
    drop(watch);
}

// ---------------------------------------------------------------- 4. keepalive cost

async fn keepalive(quick: bool) {
    let n = if quick { 1_000 } else { 10_000 };
    println!("\n## 4. Keepalive cost of {n} instances (TTL 10 s, keepalive every TTL/3)\n");
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

// ---------------------------------------------------------------- 5. recovery storm

/// Records when each "retrying registration" attempt is due (event time + delay).
struct Attempts(Arc<Mutex<Vec<Instant>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Attempts {
    /// Only the registration's retry event: every other callsite (h2's and tonic's
    /// trace events among them) stays disabled, so that neither side of a scenario
    /// pays for events nobody reads.
    fn register_callsite(&self, m: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if m.is_event() && m.target().starts_with("octopus_discovery_core") && m.fields().field("delay_us").is_some() {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Delay(Option<u64>, bool);
        impl tracing::field::Visit for Delay {
            fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
                if f.name() == "delay_us" {
                    self.0 = Some(v);
                }
            }
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" && format!("{v:?}") == "retrying registration" {
                    self.1 = true;
                }
            }
        }
        let mut d = Delay(None, false);
        event.record(&mut d);
        if let (Some(us), true) = (d.0, d.1) {
            self.0.lock().unwrap().push(Instant::now() + Duration::from_micros(us));
        }
    }
}

async fn storm(attempts: Arc<Mutex<Vec<Instant>>>) {
    const N: usize = 1000;
    let ttl = Duration::from_secs(2);
    let (base, cap) = (Duration::from_millis(200), Duration::from_secs(5));
    println!("\n## 5. Recovery storm: {N} registrations, etcd killed for 2 TTLs then restarted\n");
    let mut server = EtcdServer::start().await;
    let registry = Arc::new(LeaseRegistry::new(Arc::new(backend(&server).await), layout()));
    let opts = RegisterOptions::default()
        .ttl(ttl)
        .retry(BackoffPolicy::new(base, cap).unwrap());
    let mut regs = Vec::with_capacity(N);
    for n in 0..N {
        let reg = registry
            .register(
                instance(&format!("storm{:03}", n % 100), n),
                opts.clone().jitter_rng(JitterRng::seeded(n as u64)),
            )
            .await
            .unwrap();
        regs.push(reg);
    }
    for r in &regs {
        r.registered().await.unwrap();
    }
    server.kill();
    sleep(ttl * 2).await;
    let restart = Instant::now();
    server.restart(false).await;
    let up = restart.elapsed();
    let mut back = Vec::with_capacity(N);
    for r in &regs {
        let mut rx = r.status();
        let _ = timeout(Duration::from_secs(30), rx.wait_for(|s| s.is_registered())).await;
        back.push(restart.elapsed());
    }
    let all_back = back.iter().max().copied().unwrap_or_default();
    // The attempts that reached etcd: those due once it was serving again.
    let ready = restart + up;
    let mut due: Vec<Duration> = attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= ready)
        .map(|t| *t - ready)
        .collect();
    due.sort();
    let mut busiest = 0;
    let mut lo = 0;
    for hi in 0..due.len() {
        while due[hi] - due[lo] >= Duration::from_millis(10) {
            lo += 1;
        }
        busiest = busiest.max(hi - lo + 1);
    }
    println!("| | measured | bound |\n|---|---|---|");
    println!("| etcd serving again after the restart began | {} | — |", ms(up));
    println!(
        "| all {N} registered again, after etcd serves | {} | TTL + max backoff = {} |",
        ms(all_back.saturating_sub(up)),
        ms(ttl + cap)
    );
    println!(
        "| retry attempts after etcd serves | {} | — |\n| busiest 10 ms window | {busiest} = {:.1}% | ≤ 10% |",
        due.len(),
        busiest as f64 * 100.0 / due.len().max(1) as f64
    );
    for r in regs {
        r.abandon().await;
    }
}

// ---------------------------------------------------------------- 6. per-event cost

async fn event(quick: bool) {
    const ROUNDS: usize = 5;
    let n = if quick { 1_000 } else { 10_000 };
    let m = if quick { 50 } else { 500 };
    let per_round = m / ROUNDS;
    println!(
        "\n## 6. Cost per change at {n} instances ({m} changes each, one at a time, in {ROUNDS} interleaved rounds)\n"
    );
    let server = big_etcd().await;
    let mut writer = raw(&server).await;
    load(&mut writer, "ev", n).await;
    let layout = layout();
    let mut changes = 0usize;
    let mut change = || {
        changes += 1;
        ev_change(&layout, n, changes)
    };
    let mut event_bytes = 0usize;
    let (mut writer_cpu, mut ours_cpu, mut floor_cpu, mut reread_cpu) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut reread_bytes = 0usize;
    let prefix = layout.prefix("ev");
    let mut reader = raw(&server).await;
    // Each round measures the four one after the other, so that whatever else the
    // machine does falls on all of them alike; only the measured side's watch is
    // open while it is measured.
    for _ in 0..ROUNDS {
        // The writer alone: subtracted from the others.
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            writer.put(k, v, None).await.unwrap();
        }
        writer_cpu += cpu_time() - cpu0;

        // Octopus: one watch applies each event to its cache and publishes a snapshot.
        let discovery = WatchDiscovery::new(Arc::new(backend(&server).await), layout.clone());
        let mut watch = discovery.watch("ev").await.unwrap();
        let rev0 = watch.next().await.unwrap().revision;
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            event_bytes += 2 * (k.len() + v.len());
            let rev = writer.put(k, v, None).await.unwrap().header().unwrap().revision();
            watch.wait_for(|s| s.revision >= rev).await.unwrap();
        }
        ours_cpu += cpu_time() - cpu0;
        assert!(watch.latest().unwrap().revision >= rev0 + per_round as i64);
        drop(watch);
        drop(discovery);

        // The floor: a raw watch that receives each event and does nothing with it.
        let mut stream = reader
            .watch(prefix.clone(), Some(WatchOptions::new().with_prefix().with_prev_key()))
            .await
            .unwrap();
        let _created = stream.message().await.unwrap();
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            writer.put(k, v, None).await.unwrap();
            let _ = stream.message().await.unwrap();
        }
        floor_cpu += cpu_time() - cpu0;
        drop(stream);

        // Re-read everything on every event (what go-kratos's etcd registry does).
        let mut stream = reader
            .watch(prefix.clone(), Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        let _created = stream.message().await.unwrap();
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            writer.put(k, v, None).await.unwrap();
            let _ = stream.message().await.unwrap();
            let all = reader
                .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
                .await
                .unwrap();
            let mut decoded = Vec::with_capacity(all.kvs().len());
            for kv in all.kvs() {
                reread_bytes += kv.key().len() + kv.value().len();
                if let Ok(inst) = layout.decode("ev", kv.key(), kv.value()) {
                    decoded.push(inst);
                }
            }
            assert_eq!(decoded.len(), n);
        }
        reread_cpu += cpu_time() - cpu0;
        drop(stream);
    }
    let m = per_round * ROUNDS;
    let per = |d: Duration| d.saturating_sub(writer_cpu).as_secs_f64() * 1e6 / m as f64;
    let (ours, floor, reread) = (per(ours_cpu), per(floor_cpu), per(reread_cpu));
    println!(
        "| per change | Octopus (incremental watch) | re-read the prefix | ratio | raw watch receiving the event, nothing else (the floor) |\n|---|---|---|---|---|"
    );
    println!(
        "| CPU time (this process, writer's share removed) | {ours:.1} µs | {reread:.1} µs | {:.0}× | {floor:.1} µs |",
        reread / ours.max(1e-9)
    );
    let event_bytes = event_bytes as f64 / m as f64;
    println!(
        "| bytes read (keys + values, prev included) | {event_bytes:.0} B | {:.0} B | {:.0}× | {event_bytes:.0} B |",
        reread_bytes as f64 / m as f64,
        reread_bytes as f64 / m as f64 / event_bytes
    );
}

/// The `i`th change of the per-change scenario's service of `n` instances: one
/// instance (spread over all of them) gets a new label. Key and value.
fn ev_change(layout: &Arc<dyn KeyLayout>, n: usize, i: usize) -> (String, Vec<u8>) {
    let inst = instance("ev", (i * 7919) % n).with_metadata("change", i.to_string());
    (layout.key(&inst, octopus::LeaseId(0)), layout.encode(&inst).unwrap())
}

/// `changes` changes of a 10,000-instance service seen by one Octopus watch
/// (`ours`) or one raw watch that only receives them.
async fn changes_alone(ours: bool, changes: usize) {
    let n = 10_000;
    let server = big_etcd().await;
    let mut writer = raw(&server).await;
    load(&mut writer, "ev", n).await;
    let layout = layout();
    let change = |i: usize| ev_change(&layout, n, i);
    let cpu0 = cpu_time();
    if ours {
        let discovery = WatchDiscovery::new(Arc::new(backend(&server).await), layout.clone());
        let mut watch = discovery.watch("ev").await.unwrap();
        watch.next().await.unwrap();
        for i in 0..changes {
            let (k, v) = change(i);
            let rev = writer.put(k, v, None).await.unwrap().header().unwrap().revision();
            watch.wait_for(|s| s.revision >= rev).await.unwrap();
        }
    } else {
        let mut reader = raw(&server).await;
        let options = WatchOptions::new().with_prefix().with_prev_key();
        let mut stream = reader.watch(layout.prefix("ev"), Some(options)).await.unwrap();
        let _created = stream.message().await.unwrap();
        for i in 0..changes {
            let (k, v) = change(i);
            writer.put(k, v, None).await.unwrap();
            let _ = stream.message().await.unwrap();
        }
    }
    println!(
        "profile-event-{}={changes}: {:?} of CPU",
        if ours { "ours" } else { "raw" },
        cpu_time() - cpu0
    );
}

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

// ---------------------------------------------------------------- main

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
