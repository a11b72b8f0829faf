//! The store's state and its one owner: keys with etcd's revisions, the history
//! watches replay, compaction, and the lease and watcher tables. Every change goes
//! through a method here; [`Store`](crate::Store) locks it and calls them.

use std::collections::BTreeMap;
use std::time::Duration;

use octopus_discovery_core::{Event, EventKind, Header, KeyValue, LeaseId, Revision, WatchMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::image::StoreImage;
use crate::lease::{LeaseInfo, Leases};
use crate::range::KeyRange;
use crate::txn::{Compare, Op, OpResult, TxnResult};
use crate::watch::Watchers;
use crate::Error;

/// Revisions of history a store keeps by default; older ones are compacted, as
/// etcd's auto-compaction does, so a long-running store does not grow without bound.
pub const DEFAULT_HISTORY_LIMIT: usize = 100_000;

#[derive(Debug)]
pub(crate) struct State {
    cluster_id: u64,
    revision: Revision,
    compact_revision: Revision,
    kvs: BTreeMap<Vec<u8>, KeyValue>,
    leases: Leases,
    /// Events at revisions ≥ the compaction point, for watches that start in the past.
    history: Vec<(Revision, Vec<Event>)>,
    watchers: Watchers,
    /// Revisions of history kept before the oldest are compacted away.
    history_limit: usize,
}

impl State {
    /// An empty store's state.
    pub(crate) fn new(cluster_id: u64) -> Self {
        State {
            cluster_id,
            revision: 1, // etcd starts at 1 as well
            compact_revision: 0,
            kvs: BTreeMap::new(),
            leases: Leases::new(cluster_id),
            history: Vec::new(),
            watchers: Watchers::default(),
            history_limit: DEFAULT_HISTORY_LIMIT,
        }
    }

    /// The state `image` describes. Every lease starts again with its full TTL from
    /// `now`, as etcd's lessor does when a member becomes leader after a restart; a
    /// key whose lease is missing from the image is kept without a lease.
    pub(crate) fn from_image(image: StoreImage, now: Instant) -> Self {
        let mut leases = Leases::restore(image.cluster_id, &image.leases, image.next_lease, now);
        let mut kvs = BTreeMap::new();
        for mut kv in image.kvs {
            if leases.contains(kv.lease.0) {
                leases.attach(kv.lease.0, &kv.key);
            } else {
                kv.lease = LeaseId::NONE;
            }
            kvs.insert(kv.key.clone(), kv);
        }
        State {
            cluster_id: image.cluster_id,
            revision: image.revision,
            compact_revision: image.compact_revision,
            kvs,
            leases,
            history: image.history,
            watchers: Watchers::default(),
            history_limit: image.history_limit.max(1),
        }
    }

    /// A copy of the data (not the watchers).
    pub(crate) fn image(&self) -> StoreImage {
        let (leases, next_lease) = self.leases.image();
        StoreImage {
            cluster_id: self.cluster_id,
            revision: self.revision,
            compact_revision: self.compact_revision,
            kvs: self.kvs.values().cloned().collect(),
            leases,
            history: self.history.clone(),
            history_limit: self.history_limit,
            next_lease,
        }
    }

    pub(crate) fn set_history_limit(&mut self, revisions: usize) {
        self.history_limit = revisions.max(1);
    }

    pub(crate) fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    pub(crate) fn len(&self) -> usize {
        self.kvs.len()
    }

    /// Runs a transaction (its limits already checked) as one revision.
    pub(crate) fn txn(&mut self, compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<TxnResult, Error> {
        let succeeded = compare.iter().all(|c| c.holds(&self.kvs));
        let ops = if succeeded { success } else { failure };
        // Check before writing anything: a transaction applies whole or not at all.
        for op in ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && !self.leases.contains(*lease) {
                    return Err(Error::LeaseNotFound(*lease));
                }
            }
        }
        // Reads at past revisions first: they must not see this transaction's
        // writes, and one that fails must fail it before anything is written.
        let mut past: Vec<Option<Vec<KeyValue>>> = ops
            .iter()
            .map(|op| match op {
                Op::RangeAt(range, at) => self.range_at(range, *at).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let rev = self.revision + 1;
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            results.push(match op {
                Op::RangeAt(..) => OpResult::Range(past[n].take().unwrap_or_default()),
                Op::Range(range) => OpResult::Range(self.range_at(range, 0)?),
                Op::Put { key, value, lease } => OpResult::Put(self.apply_put(rev, key, value, *lease, &mut events)),
                Op::Delete(range) => OpResult::Delete(self.apply_delete(rev, range, &mut events)),
            });
        }
        self.commit(rev, events);
        Ok(TxnResult {
            header: self.header(),
            succeeded,
            results,
        })
    }

    /// Compacts history up to `revision`.
    pub(crate) fn compact(&mut self, revision: Revision) -> Result<Header, Error> {
        if revision > self.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.compact_revision {
            return Err(Error::Compacted {
                requested: revision,
                compacted: self.compact_revision,
            });
        }
        self.compact_revision = revision;
        self.history.retain(|(rev, _)| *rev >= revision);
        Ok(self.header())
    }

    /// Grants a lease (see [`Leases::grant`]).
    pub(crate) fn grant(&mut self, id: i64, ttl: Duration, now: Instant) -> Result<i64, Error> {
        self.leases.grant(id, ttl, now)
    }

    /// Refreshes a lease to its full TTL; returns the TTL.
    pub(crate) fn keep_alive(&mut self, id: i64, now: Instant) -> Result<Duration, Error> {
        self.leases.refresh(id, now)
    }

    pub(crate) fn lease_info(&self, id: i64, now: Instant) -> Result<LeaseInfo, Error> {
        self.leases.info(id, now)
    }

    pub(crate) fn lease_ids(&self) -> Vec<i64> {
        self.leases.ids()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.leases.next_deadline()
    }

    /// Revokes a live lease, deleting its keys in one revision.
    pub(crate) fn revoke_live(&mut self, id: i64) -> Result<Header, Error> {
        if !self.leases.contains(id) {
            return Err(Error::LeaseNotFound(id));
        }
        self.revoke(id);
        Ok(self.header())
    }

    /// Deletes the keys of `id` in one revision and forgets the lease.
    fn revoke(&mut self, id: i64) {
        let keys = self.leases.remove(id);
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for key in keys {
            self.apply_delete(rev, &KeyRange::key(key), &mut events);
        }
        self.commit(rev, events);
    }

    /// Revokes every lease whose deadline is at or before `now`, earliest first
    /// (ties by id): each is its own revision, as when etcd's lessor revokes them.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(id) = self.leases.first_due(now) {
            self.revoke(id);
        }
    }

    /// Adds a watch on `range` from `start` (0: the next revision); history from
    /// `start` on is sent first. A start before the compaction point fails.
    pub(crate) fn watch(
        &mut self,
        range: KeyRange,
        start: Revision,
        prev_kv: bool,
    ) -> Result<(i64, mpsc::UnboundedReceiver<WatchMessage>), Error> {
        if start > 0 && start < self.compact_revision {
            return Err(Error::Compacted {
                requested: start,
                compacted: self.compact_revision,
            });
        }
        let from = if start > 0 {
            self.history.partition_point(|(rev, _)| *rev < start)
        } else {
            self.history.len()
        };
        Ok(self.watchers.add(range, prev_kv, self.history[from..].iter()))
    }

    pub(crate) fn cancel_watch(&mut self, id: i64) {
        self.watchers.remove(id);
    }

    /// Sends every watch a progress notification at the current revision.
    pub(crate) fn progress(&self) {
        self.watchers.progress(self.revision);
    }

    pub(crate) fn header(&self) -> Header {
        Header {
            cluster_id: self.cluster_id,
            revision: self.revision,
        }
    }

    fn check_revision(&self, revision: Revision) -> Result<(), Error> {
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
    pub(crate) fn range_at(&self, range: &KeyRange, revision: Revision) -> Result<Vec<KeyValue>, Error> {
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

    fn apply_put(
        &mut self,
        rev: Revision,
        key: &[u8],
        value: &[u8],
        lease: i64,
        events: &mut Vec<Event>,
    ) -> Option<KeyValue> {
        let prev = self.kvs.get(key).cloned();
        if let Some(old) = prev.as_ref().filter(|p| !p.lease.is_none() && p.lease.0 != lease) {
            self.leases.detach(old.lease.0, key);
        }
        if lease != 0 {
            self.leases.attach(lease, key);
        }
        let kv = KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease: LeaseId(lease),
        };
        self.kvs.insert(key.to_vec(), kv.clone());
        events.push(Event {
            kind: EventKind::Put,
            kv,
            prev: prev.clone(),
        });
        prev
    }

    fn apply_delete(&mut self, rev: Revision, range: &KeyRange, events: &mut Vec<Event>) -> Vec<KeyValue> {
        let keys: Vec<Vec<u8>> = self
            .kvs
            .range::<[u8], _>(range.bounds())
            .map(|(k, _)| k.clone())
            .collect();
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(prev) = self.kvs.remove(&key) else { continue };
            self.leases.detach(prev.lease.0, &key);
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key,
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                    lease: LeaseId::NONE,
                },
                prev: Some(prev.clone()),
            });
            deleted.push(prev);
        }
        deleted
    }

    /// Makes `events` revision `rev` (if there are any) and tells the watchers.
    fn commit(&mut self, rev: Revision, events: Vec<Event>) {
        if events.is_empty() {
            return; // like etcd: a write that changes nothing takes no revision
        }
        self.revision = rev;
        self.watchers.notify(rev, &events);
        self.history.push((rev, events));
        if self.history.len() > self.history_limit {
            // Drop the oldest tenth at once, so that compaction is amortised.
            let drop = (self.history_limit / 10).max(1).min(self.history.len() - 1);
            self.compact_revision = self.history[drop].0;
            self.history.drain(..drop);
        }
    }
}
