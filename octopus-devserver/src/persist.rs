//! Saving a dev server's store to a file and loading it back: what
//! `octopus dev --data FILE` keeps across restarts. Keys and leases are kept,
//! history is not: a watch from before the restart resyncs, as after a compaction.

use std::path::Path;
use std::time::Duration;

use octopus_discovery_core::KeyValue;
use serde::{Deserialize, Serialize};

use octopus_mem::{Store, StoreImage, DEFAULT_HISTORY_LIMIT};

/// The file format's name and version, checked on load.
pub const FORMAT: &str = "octopus-dev/1";

#[derive(Debug, Serialize, Deserialize)]
struct File {
    format: String,
    cluster_id: u64,
    revision: i64,
    next_lease: i64,
    kvs: Vec<KeyValue>,
    leases: Vec<Lease>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    id: i64,
    ttl_ms: u64,
}

/// Loads a store saved by [`save`]; every lease starts again with its full TTL.
/// Errors name the file and what is wrong with it.
pub fn load(path: &Path) -> Result<Store, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File =
        serde_json::from_str(&text).map_err(|e| format!("{} is not an octopus store file: {e}", path.display()))?;
    if file.format != FORMAT {
        return Err(format!(
            "{}: format {:?}, this octopus reads {FORMAT:?}",
            path.display(),
            file.format
        ));
    }
    Ok(Store::from_image(StoreImage {
        cluster_id: file.cluster_id,
        revision: file.revision,
        compact_revision: file.revision,
        kvs: file.kvs,
        leases: file
            .leases
            .iter()
            .map(|l| (l.id, Duration::from_millis(l.ttl_ms)))
            .collect(),
        history: Vec::new(),
        history_limit: DEFAULT_HISTORY_LIMIT,
        next_lease: file.next_lease,
    }))
}

/// Saves `store`'s keys and leases to `path` (written beside it, then renamed:
/// a crash never leaves half a file); returns how many of each.
pub fn save(store: &Store, path: &Path) -> Result<(usize, usize), String> {
    let image = store.image();
    let file = File {
        format: FORMAT.into(),
        cluster_id: image.cluster_id,
        revision: image.revision,
        next_lease: image.next_lease,
        kvs: image.kvs,
        leases: image
            .leases
            .iter()
            .map(|(id, ttl)| Lease {
                id: *id,
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            })
            .collect(),
    };
    let counts = (file.kvs.len(), file.leases.len());
    let text = serde_json::to_string(&file).map_err(|e| format!("cannot encode the store: {e}"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_saved_store_loads_with_its_keys_leases_and_revision() {
        let dir = std::env::temp_dir().join(format!("octopus-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.json");
        let store = Store::new();
        let (_, lease, _) = store.grant(0, Duration::from_secs(60)).unwrap();
        store.put(b"/a", b"1", lease).unwrap();
        store.put(b"/b", b"2", 0).unwrap();
        assert_eq!(save(&store, &path).unwrap(), (2, 1));
        let back = load(&path).unwrap();
        assert_eq!(back.image().kvs, store.image().kvs);
        assert_eq!(back.image().revision, store.image().revision);
        assert_eq!(back.image().leases, store.image().leases);

        std::fs::write(&path, "{\"format\":\"other/9\"}").unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            err.contains("store.json") && err.contains("not an octopus store file"),
            "{err}"
        );
        std::fs::write(
            &path,
            serde_json::to_string(&serde_json::json!({
                "format": "octopus-dev/0", "cluster_id": 1, "revision": 1, "next_lease": 1, "kvs": [], "leases": []
            }))
            .unwrap(),
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.contains("octopus-dev/0"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
