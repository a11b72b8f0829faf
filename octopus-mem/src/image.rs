//! A copy of a store's data, to restart a store from (the simulator's etcd restart
//! that keeps its data; `octopus dev --data`): [`Store::image`](crate::Store::image)
//! and [`Store::from_image`](crate::Store::from_image).

use std::time::Duration;

use octopus_discovery_core::{Event, KeyValue, Revision};

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
        while let Ok(octopus_discovery_core::WatchMessage::Events { events, .. }) = w.rx.try_recv() {
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
