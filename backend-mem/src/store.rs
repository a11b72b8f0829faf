//! The store: keys with etcd's revisions, transactions, history for watches, compaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use octopus_core::{prefix_end, Event, EventKind, Header, KeyValue, Revision};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lease::LeaseState;
use crate::watch::Watcher;
use crate::Error;

/// A key range in etcd's terms: `range_end` empty is the single key `key`;
/// `range_end == [0]` is every key from `key` on; otherwise `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// First key.
    pub key: Vec<u8>,
    /// End (exclusive), see the type's docs.
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// The single key `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Every key that starts with `prefix` (every key, for an empty prefix).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        KeyRange { key, range_end }
    }

    /// True if `k` is in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => k == self.key.as_slice(),
            [0] => k >= self.key.as_slice(),
            end => k >= self.key.as_slice() && k < end,
        }
    }

    fn bounds(&self) -> (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) {
        use std::ops::Bound::*;
        match self.range_end.as_slice() {
            [] => (Included(self.key.as_slice()), Included(self.key.as_slice())),
            [0] => (Included(self.key.as_slice()), Unbounded),
            end if end <= self.key.as_slice() => (Included(self.key.as_slice()), Excluded(self.key.as_slice())),
            end => (Included(self.key.as_slice()), Excluded(end)),
        }
    }
}

/// What a transaction compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0: absent).
    Version(i64),
    /// The key's create revision (0: absent).
    Create(Revision),
    /// The key's mod revision (0: absent).
    Mod(Revision),
    /// The key's value.
    Value(Vec<u8>),
    /// The key's lease (0: none or absent).
    Lease(i64),
}

/// How a transaction compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One comparison of a transaction, on every key of `range` (etcd compares each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The keys compared.
    pub range: KeyRange,
    /// The operator.
    pub op: CompareOp,
    /// The field and the value to compare with.
    pub target: CompareTarget,
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read a range (at the transaction's revision).
    Range(KeyRange),
    /// Write `key = value`, attached to `lease` (0: none).
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease (0: none).
        lease: i64,
    },
    /// Delete a range.
    Delete(KeyRange),
    /// Read a range as it was at a past revision (a compacted or future one
    /// fails the whole transaction, as in etcd).
    RangeAt(KeyRange, Revision),
}

/// The result of one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// The keys read.
    Range(Vec<KeyValue>),
    /// The key before the put, if any.
    Put(Option<KeyValue>),
    /// The keys deleted, as they were.
    Delete(Vec<KeyValue>),
}

/// The result of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// The store's header after it.
    pub header: Header,
    /// Whether every comparison held (then `success` ran, else `failure`).
    pub succeeded: bool,
    /// One result per operation that ran.
    pub results: Vec<OpResult>,
}

static NEXT_CLUSTER: AtomicU64 = AtomicU64::new(0x0c70_0000_0000_0001);

/// An in-memory store with etcd's data model. Cloning shares the store.
///
/// Time is `tokio::time`, so leases expire in paused and simulated time too.
/// Expired leases are collected before every operation, and by
/// [`MemBackend`](crate::MemBackend)'s expiry task when nothing else happens.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) inner: Arc<Mutex<Inner>>,
    pub(crate) wake: Arc<Notify>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cluster_id: u64,
    pub(crate) revision: Revision,
    pub(crate) compact_revision: Revision,
    pub(crate) kvs: BTreeMap<Vec<u8>, KeyValue>,
    pub(crate) leases: BTreeMap<i64, LeaseState>,
    pub(crate) next_lease: i64,
    /// Events at revisions ≥ the compaction point, for watches that start in the past.
    pub(crate) history: Vec<(Revision, Vec<Event>)>,
    pub(crate) watchers: BTreeMap<i64, Watcher>,
    pub(crate) next_watcher: i64,
    /// Revisions of history kept before the oldest are compacted away.
    pub(crate) history_limit: usize,
}

/// Revisions of history a store keeps by default; older ones are compacted, as
/// etcd's auto-compaction does, so a long-running store does not grow without bound.
pub const DEFAULT_HISTORY_LIMIT: usize = 100_000;

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// The first lease id a store hands out: distinct per cluster id, as etcd's ids
/// (member id and time) are, so that a client holding a lease of a store that lost
/// its data cannot mistake a new store's lease for its own.
pub(crate) fn first_lease(cluster_id: u64) -> i64 {
    0x7e57_0000_0000_0000 | ((cluster_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) << 24) as i64
}

impl Store {
    /// An empty store with a cluster id of its own (distinct within this process).
    pub fn new() -> Self {
        Store::with_cluster_id(NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed))
    }

    /// An empty store with the given cluster id (the simulator draws it from its seed).
    pub fn with_cluster_id(cluster_id: u64) -> Self {
        Store {
            inner: Arc::new(Mutex::new(Inner {
                cluster_id,
                revision: 1, // etcd starts at 1 as well
                compact_revision: 0,
                kvs: BTreeMap::new(),
                leases: BTreeMap::new(),
                next_lease: first_lease(cluster_id),
                history: Vec::new(),
                watchers: BTreeMap::new(),
                next_watcher: 1,
                history_limit: DEFAULT_HISTORY_LIMIT,
            })),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Keeps at most `revisions` revisions of history (at least 1); older ones are
    /// compacted automatically.
    pub fn with_history_limit(self, revisions: usize) -> Self {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).history_limit = revisions.max(1);
        self
    }

    /// Locks the store after collecting expired leases.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.expire(Instant::now());
        inner
    }

    /// The current header.
    pub fn header(&self) -> Header {
        self.lock().header()
    }

    /// The compaction revision (0: never compacted).
    pub fn compact_revision(&self) -> Revision {
        self.lock().compact_revision
    }

    /// Reads `range` at `revision` (0: current), at most `limit` keys (0: all).
    /// Returns the keys, and whether more were left out by the limit.
    pub fn range(
        &self,
        range: &KeyRange,
        revision: Revision,
        limit: usize,
    ) -> Result<(Header, Vec<KeyValue>, bool), Error> {
        let inner = self.lock();
        let mut kvs = inner.range_at(range, revision)?;
        let more = limit > 0 && kvs.len() > limit;
        if more {
            kvs.truncate(limit);
        }
        Ok((inner.header(), kvs, more))
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
    /// most [`MAX_TXN_OPS`] compares and operations per branch, no key written
    /// twice in a branch, at most [`MAX_REQUEST_BYTES`] of keys and values.
    pub fn txn(&self, compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<TxnResult, Error> {
        check_limits(compare, success, failure)?;
        let mut inner = self.lock();
        let succeeded = compare.iter().all(|c| inner.compare(c));
        let ops = if succeeded { success } else { failure };
        // Check before writing anything: a transaction applies whole or not at all.
        for op in ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && !inner.leases.contains_key(lease) {
                    return Err(Error::LeaseNotFound(*lease));
                }
            }
        }
        // Reads at past revisions first: they must not see this transaction's
        // writes, and one that fails must fail it before anything is written.
        let mut past: Vec<Option<Vec<KeyValue>>> = ops
            .iter()
            .map(|op| match op {
                Op::RangeAt(range, at) => inner.range_at(range, *at).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let rev = inner.revision + 1;
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            results.push(match op {
                Op::RangeAt(..) => OpResult::Range(past[n].take().unwrap_or_default()),
                Op::Range(range) => OpResult::Range(inner.range_at(range, 0)?),
                Op::Put { key, value, lease } => OpResult::Put(inner.apply_put(rev, key, value, *lease, &mut events)),
                Op::Delete(range) => OpResult::Delete(inner.apply_delete(rev, range, &mut events)),
            });
        }
        inner.commit(rev, events);
        Ok(TxnResult {
            header: inner.header(),
            succeeded,
            results,
        })
    }

    /// Compacts history up to `revision`: reads and watches before it fail with
    /// [`Error::Compacted`].
    pub fn compact(&self, revision: Revision) -> Result<Header, Error> {
        let mut inner = self.lock();
        if revision > inner.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: inner.revision,
            });
        }
        if revision <= inner.compact_revision {
            return Err(Error::Compacted {
                requested: revision,
                compacted: inner.compact_revision,
            });
        }
        inner.compact_revision = revision;
        inner.history.retain(|(rev, _)| *rev >= revision);
        Ok(inner.header())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.lock().kvs.len()
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// etcd's default `--max-txn-ops`: compares, and operations in each branch.
pub const MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The checks etcd makes before applying a transaction (its `checkTxnRequest`,
/// `checkIntervals` and request size limit).
fn check_limits(compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<(), Error> {
    for count in [compare.len(), success.len(), failure.len()] {
        if count > MAX_TXN_OPS {
            return Err(Error::TooManyOps {
                count,
                max: MAX_TXN_OPS,
            });
        }
    }
    let key_bytes = |r: &KeyRange| r.key.len() + r.range_end.len();
    let bytes: usize = compare.iter().map(|c| key_bytes(&c.range)).sum::<usize>()
        + [success, failure]
            .iter()
            .flat_map(|ops| ops.iter())
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Range(r) | Op::Delete(r) | Op::RangeAt(r, _) => key_bytes(r),
            })
            .sum::<usize>();
    if bytes > MAX_REQUEST_BYTES {
        return Err(Error::RequestTooLarge {
            bytes,
            max: MAX_REQUEST_BYTES,
        });
    }
    for ops in [success, failure] {
        let mut puts: Vec<&[u8]> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, .. } => Some(key.as_slice()),
                _ => None,
            })
            .collect();
        puts.sort_unstable();
        let twice = puts.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]);
        let deleted = || {
            ops.iter().find_map(|op| match op {
                Op::Delete(range) => puts.iter().find(|k| range.contains(k)).copied(),
                _ => None,
            })
        };
        if let Some(key) = twice.or_else(deleted) {
            return Err(Error::DuplicateKey {
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
    }
    Ok(())
}

impl Inner {
    pub(crate) fn header(&self) -> Header {
        Header {
            cluster_id: self.cluster_id,
            revision: self.revision,
        }
    }

    pub(crate) fn check_revision(&self, revision: Revision) -> Result<(), Error> {
        if revision > self.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision > 0 && revision < self.compact_revision {
            return Err(Error::Compacted {
                requested: revision,
                compacted: self.compact_revision,
            });
        }
        Ok(())
    }

    /// The keys of `range` as they were at `revision` (0: now), rebuilt by undoing
    /// the history after it.
    fn range_at(&self, range: &KeyRange, revision: Revision) -> Result<Vec<KeyValue>, Error> {
        self.check_revision(revision)?;
        let mut view: BTreeMap<&[u8], &KeyValue> = self
            .kvs
            .range::<[u8], _>(range.bounds())
            .map(|(k, v)| (k.as_slice(), v))
            .collect();
        if revision > 0 && revision < self.revision {
            for (_, events) in self.history.iter().rev().take_while(|(rev, _)| *rev > revision) {
                for ev in events.iter().rev().filter(|ev| range.contains(&ev.kv.key)) {
                    match &ev.prev {
                        Some(prev) => view.insert(prev.key.as_slice(), prev),
                        None => view.remove(ev.kv.key.as_slice()),
                    };
                }
            }
        }
        Ok(view.into_values().cloned().collect())
    }

    fn compare(&self, c: &Compare) -> bool {
        let absent = KeyValue {
            key: c.range.key.clone(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: 0,
            version: 0,
            lease: 0,
        };
        let kvs: Vec<&KeyValue> = if c.range.range_end.is_empty() {
            self.kvs.get(&c.range.key).into_iter().collect()
        } else {
            self.kvs.range::<[u8], _>(c.range.bounds()).map(|(_, v)| v).collect()
        };
        // etcd (applyCompare): no key in the range compares the zero key-value,
        // except a value compare, which fails: there is no value to compare.
        let kvs = match (kvs.is_empty(), &c.target) {
            (true, CompareTarget::Value(_)) => return false,
            (true, _) => vec![&absent],
            (false, _) => kvs,
        };
        kvs.into_iter().all(|kv| {
            let ord = match &c.target {
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
                CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
            };
            match c.op {
                CompareOp::Equal => ord.is_eq(),
                CompareOp::NotEqual => ord.is_ne(),
                CompareOp::Less => ord.is_lt(),
                CompareOp::Greater => ord.is_gt(),
            }
        })
    }

    fn apply_put(
        &mut self,
        rev: Revision,
        key: &[u8],
        value: &[u8],
        lease: i64,
        events: &mut Vec<Event>,
    ) -> Option<KeyValue> {
        let prev = self.kvs.get(key).cloned();
        if let Some(old) = prev.as_ref().filter(|p| p.lease != 0 && p.lease != lease) {
            if let Some(l) = self.leases.get_mut(&old.lease) {
                l.keys.remove(key);
            }
        }
        if lease != 0 {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(key.to_vec());
            }
        }
        let kv = KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        self.kvs.insert(key.to_vec(), kv.clone());
        events.push(Event {
            kind: EventKind::Put,
            kv,
            prev: prev.clone(),
        });
        prev
    }

    pub(crate) fn apply_delete(&mut self, rev: Revision, range: &KeyRange, events: &mut Vec<Event>) -> Vec<KeyValue> {
        let keys: Vec<Vec<u8>> = self
            .kvs
            .range::<[u8], _>(range.bounds())
            .map(|(k, _)| k.clone())
            .collect();
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(prev) = self.kvs.remove(&key) else { continue };
            if let Some(l) = self.leases.get_mut(&prev.lease) {
                l.keys.remove(&key);
            }
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key,
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                    lease: 0,
                },
                prev: Some(prev.clone()),
            });
            deleted.push(prev);
        }
        deleted
    }

    /// Makes `events` revision `rev` (if there are any) and tells the watchers.
    pub(crate) fn commit(&mut self, rev: Revision, events: Vec<Event>) {
        if events.is_empty() {
            return; // like etcd: a write that changes nothing takes no revision
        }
        self.revision = rev;
        self.notify(rev, &events);
        self.history.push((rev, events));
        if self.history.len() > self.history_limit {
            // Drop the oldest tenth at once, so that compaction is amortised.
            let drop = (self.history_limit / 10).max(1).min(self.history.len() - 1);
            self.compact_revision = self.history[drop].0;
            self.history.drain(..drop);
        }
    }

    /// Keys attached to `lease`, sorted.
    pub(crate) fn lease_keys(&self, lease: i64) -> BTreeSet<Vec<u8>> {
        self.leases.get(&lease).map(|l| l.keys.clone()).unwrap_or_default()
    }
}
