//! The Rust sides of the propagation scenario (benches/etcd_load/propagation.rs), each a
//! process of its own as the Go peer `octopuswatch` is: `W` watchers of
//! `SERVICE`, on one `octopus::Client` (`shared`: one discovery cache, one etcd
//! connection, as a service watches) or on `W` clients (`each`); or `W` raw
//! etcd-client watches of the service's prefix (`raw-shared`: one client, a
//! stream per watch as etcd-client opens them; `raw-each`: a client each), the
//! baseline; `raw-decode` and `raw-decode-each` are `raw-shared` and
//! `raw-each` that also decode each value into a `ServiceInstance` with
//! serde_json and validate it, as a user of raw etcd-client who wants instances
//! would (the wire's cost plus the decoding's); `raw-keep` is `raw-decode`
//! that also keeps what it decoded, a map from id to instance that puts and
//! deletes edit, as a user of raw etcd-client who wants the current instances
//! would (the decoding's cost plus the keeping's, without handing the map on;
//! `raw-keep-each`: a client each);
//! it reads the clock once the map holds the instance, as Octopus's watcher
//! reads it once it holds the view (the other raw sides read it when the
//! response arrives, before decoding).
//! For every instance a watcher sees added it prints "seen ID NANOS":
//! NANOS is the wall-clock Unix time in nanoseconds when the change reached the
//! watcher (the harness, on the same machine, subtracts the time it sent the
//! put). Sightings are kept in memory while the puts run (a watcher's report is
//! an append under a short lock, and no I/O, as in `octopuswatch`). It prints
//! "ready" once every watch is created; then, for each line "report" on its
//! stdin, the sightings since the last report and "end". It runs until its stdin
//! closes. With `WATCH_CLIENT_KEEPALIVE` set, the raw sides' clients send HTTP/2
//! keepalive pings as Octopus's do (every 10 s, dead after 5 s without an
//! answer); Octopus's always do.
//!
//!     watch_client ENDPOINT SERVICE W shared|each|raw-shared|raw-each|raw-decode|raw-decode-each|raw-keep|raw-keep-each

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

/// The modes, as the usage line lists them.
const MODES: &str = "shared|each|raw-shared|raw-each|raw-decode|raw-decode-each|raw-keep|raw-keep-each";

#[allow(clippy::disallowed_methods)] // across processes only the wall clock is shared
fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, service, w, mode] = &args[..] else {
        eprintln!("usage: watch_client ENDPOINT SERVICE W {MODES}");
        std::process::exit(2);
    };
    let w: usize = w.parse().expect("W is a number");
    let shared = match mode.as_str() {
        "shared" => true,
        "each" => false,
        "raw-shared" => return raw(endpoint, service, w, true, Raw::Bytes).await,
        "raw-each" => return raw(endpoint, service, w, false, Raw::Bytes).await,
        "raw-decode" => return raw(endpoint, service, w, true, Raw::Decode).await,
        "raw-decode-each" => return raw(endpoint, service, w, false, Raw::Decode).await,
        "raw-keep" => return raw(endpoint, service, w, true, Raw::Keep).await,
        "raw-keep-each" => return raw(endpoint, service, w, false, Raw::Keep).await,
        other => panic!("mode is one of {MODES}, not {other:?}"),
    };
    let url = format!("etcd://{endpoint}");
    let connect = || async {
        octopus::connect(&url).await.unwrap_or_else(|e| {
            eprintln!("connect: {e}");
            std::process::exit(1)
        })
    };
    // One client for every watch when shared; none left idle otherwise.
    let one = if shared { Some(connect().await) } else { None };
    let out = Lines::default();
    let mut tasks = Vec::new();
    for _ in 0..w {
        let client = match &one {
            Some(one) => one.clone(),
            None => connect().await,
        };
        let mut watch = client.watch(service).await.expect("watching");
        let mut previous = watch.next().await.expect("a first view");
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = client;
            while let Some(snapshot) = watch.next().await {
                // The time the change arrived; what changed is worked out after.
                let now = unix_nanos();
                let diff = snapshot.diff_from(&previous);
                for added in &diff.added {
                    out.report(&added.id, now);
                }
                previous = snapshot;
            }
        }));
    }
    ready_until_stdin_closes(&out, tasks).await;
}

/// What a raw watcher does with each event.
#[derive(Clone, Copy, PartialEq)]
enum Raw {
    /// Reports the id at the key's end.
    Bytes,
    /// Decodes and validates the value, and reports the instance's id.
    Decode,
    /// As `Decode`, and keeps the instance in a map from id to instance (a
    /// delete removes it).
    Keep,
}

/// `w` raw etcd-client watches of the service's prefix, on one client (`shared`)
/// or each on its own, each doing `work` with every event.
async fn raw(endpoint: &str, service: &str, w: usize, shared: bool, work: Raw) {
    use etcd_client::{Client, EventType, WatchOptions};
    let prefix = format!("/octopus/services/{service}/");
    let out = Lines::default();
    // WATCH_CLIENT_KEEPALIVE=1: HTTP/2 keepalive as Octopus sets it (a ping
    // every 10 s, dead after 5 s without an answer, idle or not).
    let options = std::env::var_os("WATCH_CLIENT_KEEPALIVE").map(|_| {
        etcd_client::ConnectOptions::new()
            .with_keep_alive(std::time::Duration::from_secs(10), std::time::Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
    });
    let connect = || Client::connect([endpoint], options.clone());
    let one = if shared {
        Some(connect().await.expect("connect"))
    } else {
        None
    };
    let mut tasks = Vec::new();
    for _ in 0..w {
        let mut c = match &one {
            Some(one) => one.clone(),
            None => connect().await.expect("connect"),
        };
        let mut stream = c
            .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watching");
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = c;
            let mut kept = std::collections::BTreeMap::<String, Arc<octopus::ServiceInstance>>::new();
            while let Ok(Some(resp)) = stream.message().await {
                // The time the response arrived (`Keep` reads it once it has kept the instance).
                let now = if work == Raw::Keep { 0 } else { unix_nanos() };
                for ev in resp.events() {
                    let id = || {
                        let key = ev.kv().and_then(|kv| kv.key_str().ok()).unwrap_or("");
                        key.rsplit('/').next().unwrap_or(key)
                    };
                    if ev.event_type() != EventType::Put {
                        if work == Raw::Keep {
                            kept.remove(id());
                        }
                        continue;
                    }
                    if work == Raw::Bytes {
                        out.report(id(), now);
                        continue;
                    }
                    let value = ev.kv().map_or(&[][..], |kv| kv.value());
                    match serde_json::from_slice::<octopus::ServiceInstance>(value) {
                        Ok(i) if i.validate().is_ok() => match work {
                            Raw::Keep => {
                                // Seen once the map holds it, as Octopus's watcher
                                // sees a change once it holds the view with it.
                                let i = Arc::new(i);
                                kept.insert(i.id.clone(), i.clone());
                                out.report(&i.id, unix_nanos());
                            }
                            _ => out.report(&i.id, now),
                        },
                        _ => eprintln!("not an instance: {}", String::from_utf8_lossy(value)),
                    }
                }
            }
        }));
    }
    ready_until_stdin_closes(&out, tasks).await;
}

/// The sightings not written yet.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn report(&self, id: &str, at: u128) {
        let line = format!("seen {id} {at}\n");
        self.0.lock().unwrap().push(line);
    }

    /// Writes what was reported since the last call, then "end".
    fn write(&self, out: &mut impl Write) {
        let lines = std::mem::take(&mut *self.0.lock().unwrap());
        for line in &lines {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = writeln!(out, "end");
        let _ = out.flush();
    }
}

/// Says "ready", then writes the sightings at each "report" line on stdin until
/// it closes, then stops the watchers.
async fn ready_until_stdin_closes(lines: &Lines, tasks: Vec<tokio::task::JoinHandle<()>>) {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let lines = lines.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for _ in std::io::stdin().lock().lines().map_while(Result::ok) {
            lines.write(&mut out);
        }
    })
    .await;
    // Done: exit without stopping and tearing down the watchers (a count of
    // the process's work per change must not include freeing what it kept).
    drop(tasks);
    std::process::exit(0);
}
