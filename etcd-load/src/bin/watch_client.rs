//! The Octopus side of the propagation scenario (benches/etcd_load.rs), a process
//! of its own as the Go peer `octopuswatch` is: `W` watchers of `SERVICE`, on one
//! `octopus::Client` (`shared`: one discovery cache, one etcd connection, as a
//! service watches) or on `W` clients (`each`). For every instance a watcher
//! sees added it prints "seen ID NANOS": NANOS is the wall-clock Unix time in
//! nanoseconds when the change reached the watcher (the harness, on the same
//! machine, subtracts the time it sent the put). It prints "ready" once every
//! watch has its first view, and runs until its stdin closes.
//!
//!     watch_client ENDPOINT SERVICE W shared|each

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
        eprintln!("usage: watch_client ENDPOINT SERVICE W shared|each");
        std::process::exit(2);
    };
    let w: usize = w.parse().expect("W is a number");
    let shared = match mode.as_str() {
        "shared" => true,
        "each" => false,
        other => panic!("mode is shared or each, not {other:?}"),
    };
    let url = format!("etcd://{endpoint}");
    let connect = || async {
        octopus::connect(&url).await.unwrap_or_else(|e| {
            eprintln!("connect: {e}");
            std::process::exit(1)
        })
    };
    let one = connect().await;
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
    let mut tasks = Vec::new();
    for _ in 0..w {
        let client = if shared { one.clone() } else { connect().await };
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
