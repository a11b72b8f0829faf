//! `octopus dev`: the simulator's in-memory etcd on real TCP, for development.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use octopus::core::KeyValue;
use octopus_mem::{Store, StoreImage, DEFAULT_HISTORY_LIMIT};
use octopus_sim::{MemEtcd, MemEtcdOptions};
use serde::{Deserialize, Serialize};

use crate::Result;

const FORMAT: &str = "octopus-dev/1";

/// What `--data` holds: keys and leases (no history).
#[derive(Debug, Serialize, Deserialize)]
struct DevData {
    format: String,
    cluster_id: u64,
    revision: i64,
    next_lease: i64,
    kvs: Vec<DevKv>,
    leases: Vec<DevLease>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DevKv {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct DevLease {
    id: i64,
    ttl_ms: u64,
}

fn load(path: &Path) -> Result<Store> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --data {}: {e}", path.display()))?;
    let data: DevData = serde_json::from_str(&text)
        .map_err(|e| format!("--data {} is not an octopus dev file: {e}", path.display()))?;
    if data.format != FORMAT {
        return Err(format!(
            "--data {}: format {:?}, this octopus reads {FORMAT:?}",
            path.display(),
            data.format
        ));
    }
    let image = StoreImage {
        cluster_id: data.cluster_id,
        revision: data.revision,
        // History is not saved: watches from before the restart resync, as after a compaction.
        compact_revision: data.revision,
        kvs: data
            .kvs
            .into_iter()
            .map(|k| KeyValue {
                key: k.key,
                value: k.value,
                create_revision: k.create_revision,
                mod_revision: k.mod_revision,
                version: k.version,
                lease: k.lease,
            })
            .collect(),
        leases: data
            .leases
            .iter()
            .map(|l| (l.id, Duration::from_millis(l.ttl_ms)))
            .collect(),
        history: Vec::new(),
        history_limit: DEFAULT_HISTORY_LIMIT,
        next_lease: data.next_lease,
    };
    Ok(Store::from_image(image))
}

fn save(store: &Store, path: &Path) -> Result<(usize, usize)> {
    let image = store.image();
    let data = DevData {
        format: FORMAT.into(),
        cluster_id: image.cluster_id,
        revision: image.revision,
        next_lease: image.next_lease,
        kvs: image
            .kvs
            .into_iter()
            .map(|k| DevKv {
                key: k.key,
                value: k.value,
                create_revision: k.create_revision,
                mod_revision: k.mod_revision,
                version: k.version,
                lease: k.lease,
            })
            .collect(),
        leases: image
            .leases
            .iter()
            .map(|(id, ttl)| DevLease {
                id: *id,
                ttl_ms: ttl.as_millis() as u64,
            })
            .collect(),
    };
    let counts = (data.kvs.len(), data.leases.len());
    let text = serde_json::to_string(&data).map_err(|e| format!("cannot encode the data: {e}"))?;
    // Write beside it, then rename: a crash never leaves half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(counts)
}

pub(crate) async fn run(listen: SocketAddr, data: Option<PathBuf>) -> Result {
    let store = match &data {
        Some(path) if path.exists() => load(path)?,
        _ => Store::new(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = MemEtcd::new(
        store.clone(),
        MemEtcdOptions {
            name: "octopus-dev".into(),
            client_urls: vec![format!("http://{addr}")],
            ..MemEtcdOptions::default()
        },
    );
    println!("octopus dev: an in-memory etcd (v3 API) on http://{addr}");
    println!("  implements KV, Lease, Watch, status and member list of a single member; no auth, no TLS");
    println!("  registry URL: etcd://{addr}   etcdctl: etcdctl --endpoints {addr} get --prefix /");
    match &data {
        Some(path) => println!(
            "  data: {} ({} keys loaded; saved on Ctrl-C or SIGTERM)",
            path.display(),
            store.len()
        ),
        None => println!("  data: in memory only (--data FILE keeps it across restarts)"),
    }
    // Watches are long-lived streams: stop at the signal without waiting for them.
    tokio::select! {
        served = server.serve(listener, std::future::pending()) => {
            served.map_err(|e| format!("serving on {addr} failed: {e}"))?;
        }
        _ = octopus::shutdown_signal() => {}
    }
    if let Some(path) = &data {
        let (keys, leases) = save(&store, path)?;
        println!("saved {keys} keys and {leases} leases to {}", path.display());
    }
    Ok(())
}
