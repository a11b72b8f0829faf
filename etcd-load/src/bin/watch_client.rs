//! The Rust sides of the propagation scenario (benches/etcd_load.rs), each a
//! process of its own as the Go peer `octopuswatch` is: `W` watchers of
//! `SERVICE`, on one `octopus::Client` (`shared`: one discovery cache, one etcd
//! connection, as a service watches) or on `W` clients (`each`); or `W` raw
//! etcd-client watches of the service's prefix (`raw-shared`: one client, a
//! stream per watch as etcd-client opens them; `raw-each`: a client each), the
//! baseline. For every instance a watcher sees added it prints "seen ID NANOS":
//! NANOS is the wall-clock Unix time in nanoseconds when the change reached the
//! watcher (the harness, on the same machine, subtracts the time it sent the
//! put). It prints "ready" once every watch is created, and runs until its stdin
//! closes.
//!
//!     watch_client ENDPOINT SERVICE W shared|each|raw-shared|raw-each

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

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
        eprintln!("usage: watch_client ENDPOINT SERVICE W shared|each|raw-shared|raw-each");
        std::process::exit(2);
    };
    let w: usize = w.parse().expect("W is a number");
    let shared = match mode.as_str() {
        "shared" => true,
        "each" => false,
        "raw-shared" => return raw(endpoint, service, w, true).await,
        "raw-each" => return raw(endpoint, service, w, false).await,
        other => panic!("mode is shared, each, raw-shared or raw-each, not {other:?}"),
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
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
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
                let mut out = out.lock().unwrap();
                for added in &diff.added {
                    let _ = writeln!(out, "seen {} {now}", added.id);
                }
                let _ = out.flush();
                drop(out);
                previous = snapshot;
            }
        }));
    }
    ready_until_stdin_closes(&out, tasks).await;
}

/// `w` raw etcd-client watches of the service's prefix, on one client (`shared`)
/// or each on its own.
async fn raw(endpoint: &str, service: &str, w: usize, shared: bool) {
    use etcd_client::{Client, EventType, WatchOptions};
    let prefix = format!("/octopus/services/{service}/");
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
    let one = if shared {
        Some(Client::connect([endpoint], None).await.expect("connect"))
    } else {
        None
    };
    let mut tasks = Vec::new();
    for _ in 0..w {
        let mut c = match &one {
            Some(one) => one.clone(),
            None => Client::connect([endpoint], None).await.expect("connect"),
        };
        let mut stream = c
            .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watching");
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = c;
            while let Ok(Some(resp)) = stream.message().await {
                let now = unix_nanos();
                let mut out = out.lock().unwrap();
                for ev in resp.events() {
                    if ev.event_type() == EventType::Put {
                        let key = ev.kv().and_then(|kv| kv.key_str().ok()).unwrap_or("");
                        let _ = writeln!(out, "seen {} {now}", key.rsplit('/').next().unwrap_or(key));
                    }
                }
                let _ = out.flush();
            }
        }));
    }
    ready_until_stdin_closes(&out, tasks).await;
}

/// Says "ready", runs the watchers until the harness closes stdin, then stops them.
async fn ready_until_stdin_closes(
    out: &Mutex<std::io::BufWriter<std::io::Stdout>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    {
        let mut out = out.lock().unwrap();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    })
    .await;
    tasks.iter().for_each(|t| t.abort());
}
