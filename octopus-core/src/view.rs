//! The watch cache's instances, kept so that publishing a snapshot after a change
//! costs one pointer copy per instance (no instance is cloned, nothing is sorted).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Revision, ServiceInstance};

/// A list of instances sorted by id; cloning it is an `Arc` clone.
pub type Instances = Arc<[Arc<ServiceInstance>]>;

/// Every key of a service (what the store holds) and, per id, the instance that
/// is published: the newest write when two keys claim one id (go-zero's keys
/// hold the lease, so a re-registration can briefly leave two).
#[derive(Debug, Default)]
pub(crate) struct View {
    by_key: BTreeMap<Vec<u8>, (Revision, Arc<ServiceInstance>)>,
    by_id: BTreeMap<ById, Claim>,
}

/// An instance ordered by its id: the id is not copied into the map's key.
#[derive(Debug, Clone)]
struct ById(Arc<ServiceInstance>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

#[derive(Debug)]
struct Claim {
    winner: (Revision, Arc<ServiceInstance>),
    others: Vec<(Revision, Arc<ServiceInstance>)>,
}

impl View {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn clear(&mut self) {
        self.by_key.clear();
        self.by_id.clear();
    }

    /// `key` now holds `instance`, written at `revision`.
    pub(crate) fn put(&mut self, key: &[u8], revision: Revision, instance: ServiceInstance) {
        let instance = Arc::new(instance);
        if let Some(old) = self.by_key.insert(key.to_vec(), (revision, instance.clone())) {
            self.unclaim(&old.1);
        }
        match self.by_id.get_mut(instance.id.as_str()) {
            Some(claim) if revision >= claim.winner.0 => {
                let previous = std::mem::replace(&mut claim.winner, (revision, instance));
                claim.others.push(previous);
            }
            Some(claim) => claim.others.push((revision, instance)),
            None => {
                self.by_id.insert(
                    ById(instance.clone()),
                    Claim {
                        winner: (revision, instance),
                        others: Vec::new(),
                    },
                );
            }
        }
    }

    /// `key` is gone (deleted, or its value no longer decodes).
    pub(crate) fn remove(&mut self, key: &[u8]) {
        if let Some((_, instance)) = self.by_key.remove(key) {
            self.unclaim(&instance);
        }
    }

    fn unclaim(&mut self, instance: &Arc<ServiceInstance>) {
        let Some(claim) = self.by_id.get_mut(instance.id.as_str()) else {
            return;
        };
        if Arc::ptr_eq(&claim.winner.1, instance) {
            // The newest of the other claims takes over, if any.
            match (0..claim.others.len()).max_by_key(|&i| claim.others[i].0) {
                Some(i) => claim.winner = claim.others.swap_remove(i),
                None => {
                    self.by_id.remove(instance.id.as_str());
                }
            }
        } else {
            claim.others.retain(|(_, i)| !Arc::ptr_eq(i, instance));
        }
    }

    /// The published instances, sorted by id.
    pub(crate) fn instances(&self) -> Instances {
        self.by_id.values().map(|c| c.winner.1.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, port: u16) -> ServiceInstance {
        ServiceInstance::new("s", id, "127.0.0.1", port).unwrap()
    }

    #[test]
    fn newest_claim_wins_and_the_next_takes_over() {
        let mut v = View::default();
        v.put(b"/s/b", 1, inst("b", 1));
        v.put(b"/s/a/lease1", 2, inst("a", 1));
        v.put(b"/s/a/lease2", 3, inst("a", 2)); // a second key for id a, newer
        let ports: Vec<(String, u16)> = v.instances().iter().map(|i| (i.id.clone(), i.port)).collect();
        assert_eq!(ports, [("a".into(), 2), ("b".into(), 1)]);
        v.remove(b"/s/a/lease2");
        assert_eq!(v.instances()[0].port, 1, "the older claim takes over");
        v.remove(b"/s/a/lease1");
        assert_eq!(v.len(), 1);
        // Overwriting a key replaces its claim.
        v.put(b"/s/b", 4, inst("b", 9));
        assert_eq!(v.instances()[0].port, 9);
        assert_eq!(v.len(), 1);
        v.remove(b"/s/missing");
        v.clear();
        assert!(v.instances().is_empty());
    }
}
