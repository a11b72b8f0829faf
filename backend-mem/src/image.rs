//! A copy of a store's data, to restart a store from (the simulator's etcd restart
//! that keeps its data; `octopus dev --data`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus_core::{Event, KeyValue, Revision};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lease::LeaseState;
use crate::store::{Inner, Store};

/// Everything a store holds but its watchers: keys, leases (id and TTL), history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreImage {
    /// The cluster id.
    pub cluster_id: u64,
    /// The current revision.
    pub revision: Revision,
    /// The compaction revision.
    pub compact_revision: Revision,
    /// The keys, sorted.
    pub kvs: Vec<KeyValue>,
    /// The live leases: id and granted TTL.
    pub leases: Vec<(i64, Duration)>,
    /// Events at revisions after the compaction point.
    pub history: Vec<(Revision, Vec<Event>)>,
    /// Revisions of history kept before the oldest are compacted.
    pub history_limit: usize,
    /// The next lease id to try: ids are never handed out twice, not even after
    /// a restart (a client may still hold an expired one).
    pub next_lease: i64,
}

impl Store {
    /// A copy of the store's data as it is (leases that are due but not yet
    /// collected are still in it: this reads no clock, so it works from any runtime).
    pub fn image(&self) -> StoreImage {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        StoreImage {
            cluster_id: inner.cluster_id,
            revision: inner.revision,
            compact_revision: inner.compact_revision,
            kvs: inner.kvs.values().cloned().collect(),
            leases: inner.leases.iter().map(|(id, l)| (*id, l.ttl)).collect(),
            history: inner.history.clone(),
            history_limit: inner.history_limit,
            next_lease: inner.next_lease,
        }
    }

    /// A store with `image`'s data. Every lease starts again with its full TTL from
    /// now, as etcd's lessor does when a member becomes leader after a restart; a key
    /// whose lease is missing from the image is kept without a lease.
    pub fn from_image(image: StoreImage) -> Store {
        let now = Instant::now();
        let mut leases: BTreeMap<i64, LeaseState> = image
            .leases
            .iter()
            .map(|&(id, ttl)| {
                let state = LeaseState {
                    ttl,
                    deadline: now + ttl.max(Duration::from_millis(1)),
                    keys: Default::default(),
                };
                (id, state)
            })
            .collect();
        let mut kvs = BTreeMap::new();
        for mut kv in image.kvs {
            match leases.get_mut(&kv.lease) {
                Some(l) => {
                    l.keys.insert(kv.key.clone());
                }
                None => kv.lease = 0,
            }
            kvs.insert(kv.key.clone(), kv);
        }
        let first = crate::store::first_lease(image.cluster_id);
        let next_lease = leases
            .keys()
            .next_back()
            .map_or(first, |id| id + 1)
            .max(first)
            .max(image.next_lease);
        Store {
            inner: Arc::new(Mutex::new(Inner {
                cluster_id: image.cluster_id,
                revision: image.revision,
                compact_revision: image.compact_revision,
                kvs,
                leases,
                next_lease,
                history: image.history,
                watchers: BTreeMap::new(),
                next_watcher: 1,
                history_limit: image.history_limit.max(1),
            })),
            wake: Arc::new(Notify::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{KeyRange, Store};

    #[tokio::test(start_paused = true)]
    async fn restart_keeps_data_history_and_lease_ids() {
        let store = Store::with_cluster_id(7);
        let (_, lease, _) = store.grant(0, Duration::from_secs(10)).unwrap();
        store.put(b"/a", b"1", lease).unwrap(); // revision 2
        store.put(b"/b", b"2", 0).unwrap(); // revision 3
        let (_, gone, _) = store.grant(0, Duration::from_secs(1)).unwrap();
        store.revoke(gone).unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;

        let restarted = Store::from_image(store.image());
        assert_eq!(restarted.header(), store.header());
        let (_, kvs, _) = restarted.range(&KeyRange::prefix("/"), 0, 0).unwrap();
        assert_eq!(kvs.len(), 2);
        // History survives: a watch from revision 2 replays both puts.
        let mut w = restarted.watch(KeyRange::prefix("/"), 2, false).unwrap();
        let mut seen = 0;
        while let Ok(octopus_core::WatchMessage::Events { events, .. }) = w.rx.try_recv() {
            seen += events.len();
        }
        assert_eq!(seen, 2);
        // The lease starts its full TTL again, and lease ids are never reused.
        let info = restarted.time_to_live(lease).unwrap();
        assert_eq!(info.remaining, Duration::from_secs(10));
        let (_, fresh, _) = restarted.grant(0, Duration::from_secs(1)).unwrap();
        assert!(fresh > gone && fresh > lease, "{fresh:#x} reuses an old id");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(restarted.range(&KeyRange::key("/a"), 0, 0).unwrap().1.is_empty());
    }
}
