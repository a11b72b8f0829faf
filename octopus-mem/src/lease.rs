//! The lease table: ids, TTLs, deadlines on `tokio::time`, and the keys attached
//! to each. It knows nothing of keys' values or revisions: the store's state
//! ([`crate::state`]) deletes a lease's keys when it revokes or expires it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

#[derive(Debug)]
struct LeaseState {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<Vec<u8>>,
}

/// What [`Store::time_to_live`](crate::Store::time_to_live) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease.
    pub id: i64,
    /// The TTL it was granted with.
    pub granted: Duration,
    /// Time left before it expires.
    pub remaining: Duration,
    /// The keys attached to it, sorted.
    pub keys: Vec<Vec<u8>>,
}

/// The live leases and the next id to hand out.
#[derive(Debug)]
pub(crate) struct Leases {
    live: BTreeMap<i64, LeaseState>,
    next: i64,
}

/// The first lease id a store hands out: distinct per cluster id, as etcd's ids
/// (member id and time) are, so that a client holding a lease of a store that lost
/// its data cannot mistake a new store's lease for its own.
fn first_lease(cluster_id: u64) -> i64 {
    0x7e57_0000_0000_0000 | ((cluster_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) << 24) as i64
}

impl Leases {
    /// No lease, ids starting where `cluster_id`'s start.
    pub(crate) fn new(cluster_id: u64) -> Self {
        Leases {
            live: BTreeMap::new(),
            next: first_lease(cluster_id),
        }
    }

    /// `leases` (id, TTL), each with its full TTL from `now` and no keys yet; ids
    /// handed out later are above every one of them and at least `next`.
    pub(crate) fn restore(cluster_id: u64, leases: &[(i64, Duration)], next: i64, now: Instant) -> Self {
        let live: BTreeMap<i64, LeaseState> = leases
            .iter()
            .map(|&(id, ttl)| {
                let state = LeaseState {
                    ttl,
                    deadline: now + ttl.max(Duration::from_millis(1)),
                    keys: BTreeSet::new(),
                };
                (id, state)
            })
            .collect();
        let first = first_lease(cluster_id);
        let next = live.keys().next_back().map_or(first, |id| id + 1).max(first).max(next);
        Leases { live, next }
    }

    /// The live leases (id, granted TTL) and the next id, for an image.
    pub(crate) fn image(&self) -> (Vec<(i64, Duration)>, i64) {
        (self.live.iter().map(|(id, l)| (*id, l.ttl)).collect(), self.next)
    }

    /// Grants a lease of `ttl` with id `id` (0: the next free id), due at `now + ttl`.
    pub(crate) fn grant(&mut self, id: i64, ttl: Duration, now: Instant) -> Result<i64, Error> {
        if ttl.is_zero() {
            return Err(Error::InvalidArgument {
                name: "ttl",
                rule: "must be positive",
            });
        }
        let id = match id {
            0 => {
                while self.live.contains_key(&self.next) {
                    self.next += 1;
                }
                self.next
            }
            id if self.live.contains_key(&id) => return Err(Error::LeaseExists(id)),
            id => id,
        };
        self.next = self.next.max(id) + 1;
        let state = LeaseState {
            ttl,
            deadline: now + ttl,
            keys: BTreeSet::new(),
        };
        self.live.insert(id, state);
        Ok(id)
    }

    /// Refreshes a lease to its full TTL from `now`; returns the TTL.
    pub(crate) fn refresh(&mut self, id: i64, now: Instant) -> Result<Duration, Error> {
        let lease = self.live.get_mut(&id).ok_or(Error::LeaseNotFound(id))?;
        lease.deadline = now + lease.ttl;
        Ok(lease.ttl)
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        self.live.contains_key(&id)
    }

    /// A lease's TTL, time left at `now`, and keys.
    pub(crate) fn info(&self, id: i64, now: Instant) -> Result<LeaseInfo, Error> {
        let lease = self.live.get(&id).ok_or(Error::LeaseNotFound(id))?;
        Ok(LeaseInfo {
            id,
            granted: lease.ttl,
            remaining: lease.deadline.saturating_duration_since(now),
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    /// The ids of the live leases, sorted.
    pub(crate) fn ids(&self) -> Vec<i64> {
        self.live.keys().copied().collect()
    }

    /// When the next lease expires, if any lease lives.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.live.values().map(|l| l.deadline).min()
    }

    /// The lease due first at `now` (earliest deadline, ties by id), if any is due.
    pub(crate) fn first_due(&self, now: Instant) -> Option<i64> {
        self.live
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, l)| (l.deadline, *id))
            .min()
            .map(|(_, id)| id)
    }

    /// Forgets a lease; returns the keys that were attached to it, sorted.
    pub(crate) fn remove(&mut self, id: i64) -> BTreeSet<Vec<u8>> {
        self.live.remove(&id).map(|l| l.keys).unwrap_or_default()
    }

    /// Attaches `key` to lease `id` (nothing if the lease is gone).
    pub(crate) fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.live.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    /// Detaches `key` from lease `id` (nothing if the lease is gone).
    pub(crate) fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.live.get_mut(&id) {
            l.keys.remove(key);
        }
    }
}
