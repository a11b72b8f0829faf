//! [`Store`]: a small etcd in memory, shared by clones. It locks the state
//! ([`crate::state`]), collects expired leases, and wakes the expiry task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use octopus_discovery_core::{Header, KeyValue, Revision, WatchMessage};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::image::StoreImage;
use crate::lease::LeaseInfo;
use crate::range::KeyRange;
use crate::state::State;
use crate::txn::{check_limits, Compare, Op, OpResult, TxnResult};
use crate::Error;

static NEXT_CLUSTER: AtomicU64 = AtomicU64::new(0x0c70_0000_0000_0001);

/// An in-memory store with etcd's data model. Cloning shares the store.
///
/// Time is `tokio::time`, so leases expire in paused and simulated time too.
/// Expired leases are collected before every operation, and by
/// [`MemBackend`](crate::MemBackend)'s expiry task when nothing else happens.
#[derive(Clone, Debug)]
pub struct Store {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store with a cluster id of its own (distinct within this process).
    pub fn new() -> Self {
        Store::with_cluster_id(NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed))
    }

    /// An empty store with the given cluster id (the simulator draws it from its seed).
    pub fn with_cluster_id(cluster_id: u64) -> Self {
        Store::from_state(State::new(cluster_id))
    }

    fn from_state(state: State) -> Self {
        Store {
            state: Arc::new(Mutex::new(state)),
            wake: Arc::new(Notify::new()),
        }
    }

    /// A store with `image`'s data. Every lease starts again with its full TTL from
    /// now, as etcd's lessor does when a member becomes leader after a restart; a key
    /// whose lease is missing from the image is kept without a lease.
    pub fn from_image(image: StoreImage) -> Store {
        Store::from_state(State::from_image(image, Instant::now()))
    }

    /// A copy of the store's data as it is (leases that are due but not yet
    /// collected are still in it: this reads no clock, so it works from any runtime).
    pub fn image(&self) -> StoreImage {
        self.lock_unexpired().image()
    }

    /// Keeps at most `revisions` revisions of history (at least 1); older ones are
    /// compacted automatically.
    pub fn with_history_limit(self, revisions: usize) -> Self {
        self.lock_unexpired().set_history_limit(revisions);
        self
    }

    /// Locks the state without collecting expired leases (reads no clock).
    fn lock_unexpired(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the state after collecting expired leases.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock_unexpired();
        state.expire(Instant::now());
        state
    }

    /// The current header.
    pub fn header(&self) -> Header {
        self.lock().header()
    }

    /// The compaction revision (0: never compacted).
    pub fn compact_revision(&self) -> Revision {
        self.lock().compact_revision()
    }

    /// Reads `range` at `revision` (0: current), at most `limit` keys (0: all).
    /// Returns the keys, and whether more were left out by the limit.
    pub fn range(
        &self,
        range: &KeyRange,
        revision: Revision,
        limit: usize,
    ) -> Result<(Header, Vec<KeyValue>, bool), Error> {
        let state = self.lock();
        let mut kvs = state.range_at(range, revision)?;
        let more = limit > 0 && kvs.len() > limit;
        if more {
            kvs.truncate(limit);
        }
        Ok((state.header(), kvs, more))
    }

    /// Writes `key = value` attached to `lease` (0: none); returns the previous value.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<(Header, Option<KeyValue>), Error> {
        let r = self.txn(
            &[],
            &[Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
            }],
            &[],
        )?;
        match r.results.into_iter().next() {
            Some(OpResult::Put(prev)) => Ok((r.header, prev)),
            _ => unreachable!("a put yields a put result"),
        }
    }

    /// Deletes `range`; returns the deleted keys as they were.
    pub fn delete(&self, range: &KeyRange) -> Result<(Header, Vec<KeyValue>), Error> {
        let r = self.txn(&[], &[Op::Delete(range.clone())], &[])?;
        match r.results.into_iter().next() {
            Some(OpResult::Delete(prev)) => Ok((r.header, prev)),
            _ => unreachable!("a delete yields a delete result"),
        }
    }

    /// Runs a transaction atomically, as one revision. etcd's limits apply: at
    /// most [`MAX_TXN_OPS`](crate::MAX_TXN_OPS) compares and operations per branch,
    /// no key written twice in a branch, at most
    /// [`MAX_REQUEST_BYTES`](crate::MAX_REQUEST_BYTES) of keys and values.
    pub fn txn(&self, compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<TxnResult, Error> {
        check_limits(compare, success, failure)?;
        self.lock().txn(compare, success, failure)
    }

    /// Compacts history up to `revision`: reads and watches before it fail with
    /// [`Error::Compacted`].
    pub fn compact(&self, revision: Revision) -> Result<Header, Error> {
        self.lock().compact(revision)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grants a lease of `ttl` with id `id` (0: the store picks one).
    pub fn grant(&self, id: i64, ttl: Duration) -> Result<(Header, i64, Duration), Error> {
        let mut state = self.lock();
        let id = state.grant(id, ttl, Instant::now())?;
        let header = state.header();
        drop(state);
        self.wake.notify_one();
        Ok((header, id, ttl))
    }

    /// Refreshes a lease to its full TTL; returns the TTL.
    pub fn keep_alive(&self, id: i64) -> Result<Duration, Error> {
        self.lock().keep_alive(id, Instant::now())
    }

    /// Revokes a lease, deleting its keys in one revision.
    pub fn revoke(&self, id: i64) -> Result<Header, Error> {
        self.lock().revoke_live(id)
    }

    /// A lease's TTL, time left and keys.
    pub fn time_to_live(&self, id: i64) -> Result<LeaseInfo, Error> {
        self.lock().lease_info(id, Instant::now())
    }

    /// The ids of the live leases, sorted.
    pub fn leases(&self) -> Vec<i64> {
        self.lock().lease_ids()
    }

    /// When the next lease expires, if any lease lives.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().next_deadline()
    }

    /// Watches `range` from `start` (0: the next revision). Changes already in the
    /// history from `start` on are delivered first. A start before the compaction
    /// point fails with [`Error::Compacted`].
    pub fn watch(&self, range: KeyRange, start: Revision, prev_kv: bool) -> Result<StoreWatch, Error> {
        let (id, rx) = self.lock().watch(range, start, prev_kv)?;
        Ok(StoreWatch {
            id,
            rx,
            store: self.clone(),
        })
    }

    /// Cancels a watch.
    pub fn cancel_watch(&self, id: i64) {
        self.lock_unexpired().cancel_watch(id);
    }

    /// Sends every watcher a progress notification at the current revision.
    pub fn progress(&self) {
        self.lock().progress();
    }

    /// A handle that does not keep the store alive (the expiry task's).
    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore {
            state: Arc::downgrade(&self.state),
            wake: self.wake.clone(),
        }
    }
}

/// A handle to a store that does not keep it alive.
#[derive(Debug)]
pub(crate) struct WeakStore {
    state: Weak<Mutex<State>>,
    wake: Arc<Notify>,
}

impl WeakStore {
    /// Notified when a lease is granted (its deadline may be the next).
    pub(crate) fn granted(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The store, if it still lives.
    pub(crate) fn upgrade(&self) -> Option<Store> {
        Some(Store {
            state: self.state.upgrade()?,
            wake: self.wake.clone(),
        })
    }
}

/// A watch on the store; dropping it cancels the watch.
#[derive(Debug)]
pub struct StoreWatch {
    /// The watch id (unique in the store).
    pub id: i64,
    /// Messages, in revision order.
    pub rx: mpsc::UnboundedReceiver<WatchMessage>,
    store: Store,
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        self.store.cancel_watch(self.id);
    }
}
