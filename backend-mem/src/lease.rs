//! Leases: grant, keepalive, revoke, time-to-live, and expiry on `tokio::time`.

use std::collections::BTreeSet;
use std::time::Duration;

use octopus_core::Header;
use tokio::time::Instant;

use crate::store::{Inner, KeyRange, Store};
use crate::Error;

#[derive(Debug)]
pub(crate) struct LeaseState {
    pub(crate) ttl: Duration,
    pub(crate) deadline: Instant,
    pub(crate) keys: BTreeSet<Vec<u8>>,
}

/// What [`Store::time_to_live`] reports.
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

impl Store {
    /// Grants a lease of `ttl` with id `id` (0: the store picks one).
    pub fn grant(&self, id: i64, ttl: Duration) -> Result<(Header, i64, Duration), Error> {
        if ttl.is_zero() {
            return Err(Error::InvalidArgument {
                name: "ttl",
                rule: "must be positive",
            });
        }
        let mut inner = self.lock();
        let id = match id {
            0 => {
                while inner.leases.contains_key(&inner.next_lease) {
                    inner.next_lease += 1;
                }
                inner.next_lease
            }
            id if inner.leases.contains_key(&id) => return Err(Error::LeaseExists(id)),
            id => id,
        };
        inner.next_lease = inner.next_lease.max(id) + 1;
        let deadline = Instant::now() + ttl;
        inner.leases.insert(
            id,
            LeaseState {
                ttl,
                deadline,
                keys: BTreeSet::new(),
            },
        );
        drop(inner);
        self.wake.notify_one();
        Ok((self.header(), id, ttl))
    }

    /// Refreshes a lease to its full TTL; returns the TTL.
    pub fn keep_alive(&self, id: i64) -> Result<Duration, Error> {
        let mut inner = self.lock();
        let lease = inner.leases.get_mut(&id).ok_or(Error::LeaseNotFound(id))?;
        lease.deadline = Instant::now() + lease.ttl;
        Ok(lease.ttl)
    }

    /// Revokes a lease, deleting its keys in one revision.
    pub fn revoke(&self, id: i64) -> Result<Header, Error> {
        let mut inner = self.lock();
        if !inner.leases.contains_key(&id) {
            return Err(Error::LeaseNotFound(id));
        }
        inner.revoke(id);
        Ok(inner.header())
    }

    /// A lease's TTL, time left and keys.
    pub fn time_to_live(&self, id: i64) -> Result<LeaseInfo, Error> {
        let inner = self.lock();
        let lease = inner.leases.get(&id).ok_or(Error::LeaseNotFound(id))?;
        Ok(LeaseInfo {
            id,
            granted: lease.ttl,
            remaining: lease.deadline.saturating_duration_since(Instant::now()),
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    /// The ids of the live leases, sorted.
    pub fn leases(&self) -> Vec<i64> {
        self.lock().leases.keys().copied().collect()
    }

    /// When the next lease expires, if any lease lives.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().leases.values().map(|l| l.deadline).min()
    }
}

impl Inner {
    /// Deletes the keys of `id` in one revision and forgets the lease.
    pub(crate) fn revoke(&mut self, id: i64) {
        let keys = self.lease_keys(id);
        self.leases.remove(&id);
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
        loop {
            let due = self
                .leases
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, l)| (l.deadline, *id))
                .min();
            match due {
                Some((_, id)) => self.revoke(id),
                None => return,
            }
        }
    }
}
