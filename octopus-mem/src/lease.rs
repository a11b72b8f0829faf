//! The lease table: ids, TTLs, deadlines on `tokio::time`, and the keys attached
//! to each. It knows nothing of keys' values or revisions: the store's state
//! ([`crate::state`]) deletes a lease's keys when it revokes or expires it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// etcd's largest lease TTL: a longer one is refused, as etcd refuses it, and
/// deadlines computed from the TTLs held stay far from overflow.
const MAX_TTL: Duration = octopus_discovery_core::MAX_LEASE_TTL;

/// The one id never handed out: [`Leases::next`] at this value means the ids
/// above every lease granted are used up (ids count up, and never wrap).
const EXHAUSTED: i64 = i64::MAX;

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
    /// The next id to try, at most [`EXHAUSTED`].
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
    /// handed out later are above every one of them and at least `next`. The
    /// image is data from a file (`octopus dev --data`): a TTL above etcd's
    /// maximum is taken as that maximum, and a lease id of `i64::MAX` leaves no
    /// id above it to hand out (a later grant of id 0 is then an error).
    pub(crate) fn restore(cluster_id: u64, leases: &[(i64, Duration)], next: i64, now: Instant) -> Self {
        let live: BTreeMap<i64, LeaseState> = leases
            .iter()
            .map(|&(id, ttl)| {
                let ttl = ttl.min(MAX_TTL);
                let state = LeaseState {
                    ttl,
                    deadline: now + ttl.max(Duration::from_millis(1)),
                    keys: BTreeSet::new(),
                };
                (id, state)
            })
            .collect();
        let first = first_lease(cluster_id);
        let next = live
            .keys()
            .next_back()
            .map_or(first, |id| id.saturating_add(1))
            .max(first)
            .max(next);
        Leases { live, next }
    }

    /// The live leases (id, granted TTL) and the next id, for an image.
    pub(crate) fn image(&self) -> (Vec<(i64, Duration)>, i64) {
        (self.live.iter().map(|(id, l)| (*id, l.ttl)).collect(), self.next)
    }

    /// Grants a lease of `ttl` with id `id` (0: the next free id), due at `now + ttl`.
    /// Ids count up and never wrap: `i64::MAX` is refused, and once a lease id
    /// just below it was granted, a grant of id 0 finds none left (an error).
    pub(crate) fn grant(&mut self, id: i64, ttl: Duration, now: Instant) -> Result<i64, Error> {
        if ttl.is_zero() {
            return Err(Error::InvalidArgument {
                name: "ttl",
                rule: "must be positive",
            });
        }
        if ttl > MAX_TTL {
            return Err(Error::InvalidArgument {
                name: "ttl",
                rule: "must be at most 9000000000s (etcd's maximum lease TTL)",
            });
        }
        let id = match id {
            0 => {
                while self.next < EXHAUSTED && self.live.contains_key(&self.next) {
                    self.next += 1;
                }
                if self.next == EXHAUSTED {
                    return Err(Error::InvalidArgument {
                        name: "id",
                        rule: "is 0 (pick one), but every id above the highest lease granted is used up \
                               (ids count up to i64::MAX and never wrap); give an id explicitly",
                    });
                }
                self.next
            }
            EXHAUSTED => {
                return Err(Error::InvalidArgument {
                    name: "id",
                    rule: "must be below i64::MAX (9223372036854775807)",
                })
            }
            id if self.live.contains_key(&id) => return Err(Error::LeaseExists(id)),
            id => id,
        };
        // At most EXHAUSTED: `id` is below it, and `next` at it stays there.
        self.next = self.next.max(id).saturating_add(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn lease_ids_near_i64_max_are_errors_never_wrapped() {
        let now = Instant::now();
        let mut leases = Leases::new(7);
        // i64::MAX itself is refused, naming the id and the rule…
        match leases.grant(i64::MAX, TTL, now) {
            Err(Error::InvalidArgument { name: "id", rule }) => assert!(rule.contains("i64::MAX"), "{rule}"),
            other => panic!("{other:?}"),
        }
        // …and the ids handed out after it are still positive.
        let fresh = leases.grant(0, TTL, now).unwrap();
        assert!(fresh > 0, "{fresh:#x}");

        // The id just below: granted; then no id is left above it, and a grant
        // of id 0 says so (ids never wrap to negative ones).
        assert_eq!(leases.grant(i64::MAX - 1, TTL, now), Ok(i64::MAX - 1));
        match leases.grant(0, TTL, now) {
            Err(Error::InvalidArgument { name: "id", rule }) => assert!(rule.contains("used up"), "{rule}"),
            other => panic!("{other:?}"),
        }
        // Explicit ids still work, and ids below the top are kept.
        assert_eq!(leases.grant(42, TTL, now), Ok(42));
        assert!(leases.ids().iter().all(|&id| id > 0), "{:?}", leases.ids());
        assert_eq!(leases.image().1, i64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_lease_id_of_i64_max_is_no_panic() {
        let now = Instant::now();
        for next in [0, i64::MAX] {
            let mut leases = Leases::restore(7, &[(i64::MAX, TTL)], next, now);
            assert!(leases.contains(i64::MAX));
            assert!(matches!(
                leases.grant(0, TTL, now),
                Err(Error::InvalidArgument { name: "id", .. })
            ));
            assert_eq!(leases.grant(5, TTL, now), Ok(5));
        }
        // Just below the top: the one id left is handed out, then none.
        let mut leases = Leases::restore(7, &[(i64::MAX - 2, TTL)], 0, now);
        assert_eq!(leases.grant(0, TTL, now), Ok(i64::MAX - 1));
        assert!(leases.grant(0, TTL, now).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ttls_past_etcds_maximum_are_refused_or_clamped() {
        let now = Instant::now();
        let mut leases = Leases::new(7);
        match leases.grant(0, Duration::MAX, now) {
            Err(Error::InvalidArgument { name: "ttl", rule }) => assert!(rule.contains("at most"), "{rule}"),
            other => panic!("{other:?}"),
        }
        let id = leases.grant(0, MAX_TTL, now).unwrap();
        assert_eq!(leases.refresh(id, now), Ok(MAX_TTL));
        // From a --data file: taken as the maximum.
        let mut leases = Leases::restore(7, &[(9, Duration::MAX)], 0, now);
        assert_eq!(leases.refresh(9, now), Ok(MAX_TTL));
        assert_eq!(leases.info(9, now).unwrap().remaining, MAX_TTL);
    }
}
