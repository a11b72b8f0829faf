//! One round of the propagation scenario: the watcher processes, the puts they
//! watch for, and the sightings they report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use octopus_testkit::etcd::EtcdServer;
use tokio::time::{sleep, Instant};

use crate::helpers::{instance, layout, raw};
use crate::measure::child_cpu;

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
pub(crate) enum Watchers {
    /// Raw etcd-client watches on one client.
    RawShared,
    /// Raw etcd-client watches, a client each.
    RawEach,
    /// Raw etcd-client watches on one client, each value decoded into an instance.
    RawDecode,
    /// Raw etcd-client watches, a client each, each value decoded into an instance.
    RawDecodeEach,
    /// Raw etcd-client watches on one client, each value decoded into an
    /// instance that a map from id to instance keeps.
    RawKeep,
    /// Raw etcd-client watches, a client each, each value decoded into an
    /// instance that a map from id to instance (one per watch) keeps.
    RawKeepEach,
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
            Watchers::RawDecode => "raw-decode",
            Watchers::RawDecodeEach => "raw-decode-each",
            Watchers::RawKeep => "raw-keep",
            Watchers::RawKeepEach => "raw-keep-each",
            Watchers::Shared => "octopus",
            Watchers::Each => "octopus-each",
            Watchers::Go => "go",
        }
    }

    /// The `watch_client` mode that runs this side (`None`: the Go peer,
    /// a program of its own).
    fn mode(self) -> Option<&'static str> {
        match self {
            Watchers::Shared => Some("shared"),
            Watchers::Each => Some("each"),
            Watchers::Go => None,
            raw => Some(raw.service()),
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
pub(crate) async fn propagation_round(
    ours: &std::path::Path,
    go: Option<&std::path::Path>,
    puts: usize,
    w: usize,
) -> BTreeMap<Watchers, Round> {
    let server = EtcdServer::start().await;
    let mut writer = raw(&server).await;
    let s = Sightings::default();
    let mut peers: Vec<(Watchers, Peer)> = [
        Watchers::RawShared,
        Watchers::Shared,
        Watchers::RawEach,
        Watchers::Each,
        Watchers::RawDecode,
        Watchers::RawDecodeEach,
        Watchers::RawKeep,
        Watchers::RawKeepEach,
    ]
    .into_iter()
    .filter_map(|side| {
        let args = [
            server.endpoint(),
            side.service().to_owned(),
            w.to_string(),
            side.mode()?.to_owned(),
        ];
        Some((side, peer_watchers(ours, &args)))
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
pub(crate) struct Round {
    /// Every sighting's delay, sorted.
    pub(crate) delays: Vec<Duration>,
    /// Per put, the median delay of the side's watchers.
    per_put: BTreeMap<String, Duration>,
    /// The watcher process's CPU time over the round.
    pub(crate) cpu: Option<Duration>,
}

/// Per put seen by both, `a`'s delay minus `b`'s, in µs.
pub(crate) fn paired(a: &Round, b: &Round) -> Vec<f64> {
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
