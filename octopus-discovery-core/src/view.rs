//! The watch cache's instances, kept so that publishing a snapshot after a change
//! copies one chunk of pointers and a pointer per chunk (no instance is cloned,
//! nothing is sorted).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::instances::Chunks;
use crate::{Instances, Revision, ServiceInstance};

/// Every key of a service (what the store holds) and, per id, the instance that
/// is published: the newest write when two keys claim one id (go-zero's keys
/// hold the lease, so a re-registration can briefly leave two).
///
/// While every key is its instance's id (Octopus's own layout, and any other
/// whose key ends in the id), no two keys can claim one id, and the published
/// list is the whole view: a change edits it alone, and the two maps stay
/// empty (the view is *direct*). The first key that is not its instance's id
/// fills them.
#[derive(Debug, Default)]
pub(crate) struct View {
    by_key: BTreeMap<Vec<u8>, (Revision, Arc<ServiceInstance>)>,
    by_id: BTreeMap<ById, Claim>,
    /// The winners of `by_id`, as published.
    published: Chunks,
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
        self.published.len()
    }

    /// Whether the published list is the whole view (no key has claimed an id
    /// that is not its own since the maps were last empty).
    fn direct(&self) -> bool {
        self.by_key.is_empty()
    }

    /// A view of `entries` (a full read, keys sorted and distinct): both maps are
    /// built in bulk, so their nodes are full (inserting one by one leaves them
    /// about half full).
    pub(crate) fn build(entries: Vec<(Vec<u8>, Revision, ServiceInstance)>) -> View {
        if entries.iter().all(|(key, _, instance)| key == instance.id.as_bytes()) {
            // Keys sorted and distinct, each its id: the ids are too.
            let sorted = entries.into_iter().map(|(_, _, instance)| Arc::new(instance)).collect();
            return View {
                published: Chunks::from_sorted(sorted),
                ..View::default()
            };
        }
        let by_key: BTreeMap<Vec<u8>, (Revision, Arc<ServiceInstance>)> = entries
            .into_iter()
            .map(|(key, revision, instance)| (key, (revision, Arc::new(instance))))
            .collect();
        // By id, newest first within an id: the first of each id wins.
        let mut sorted: Vec<&(Revision, Arc<ServiceInstance>)> = by_key.values().collect();
        sorted.sort_by(|a, b| a.1.id.cmp(&b.1.id).then(b.0.cmp(&a.0)));
        let mut claims: Vec<(ById, Claim)> = Vec::with_capacity(sorted.len());
        for (revision, instance) in sorted {
            match claims.last_mut() {
                Some((id, claim)) if id.0.id == instance.id => claim.others.push((*revision, instance.clone())),
                _ => claims.push((
                    ById(instance.clone()),
                    Claim {
                        winner: (*revision, instance.clone()),
                        others: Vec::new(),
                    },
                )),
            }
        }
        let published = Chunks::from_sorted(claims.iter().map(|(_, c)| c.winner.1.clone()).collect());
        View {
            by_key,
            by_id: claims.into_iter().collect(),
            published,
        }
    }

    /// Publishes the winner of `id` (or its absence).
    fn sync(&mut self, id: &str) {
        let winner = self.by_id.get(id).map(|c| &c.winner.1);
        self.published.set(id, winner);
    }

    /// `key` now holds `instance`, written at `revision`.
    pub(crate) fn put(&mut self, key: &[u8], revision: Revision, instance: ServiceInstance) {
        let instance = Arc::new(instance);
        if self.direct() {
            if key == instance.id.as_bytes() {
                self.published.set(&instance.id, Some(&instance));
                return;
            }
            self.claims_by_key();
        }
        if let Some(old) = self.by_key.insert(key.to_vec(), (revision, instance.clone())) {
            self.unclaim(&old.1);
            if old.1.id != instance.id {
                self.sync(&old.1.id);
            }
        }
        let this = instance.clone();
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
        self.sync(&this.id);
    }

    /// `key` is gone (deleted, or its value no longer decodes).
    pub(crate) fn remove(&mut self, key: &[u8]) {
        if self.direct() {
            // A key that is not UTF-8 is no id, and is not here.
            if let Ok(id) = std::str::from_utf8(key) {
                self.published.set(id, None);
            }
            return;
        }
        if let Some((_, instance)) = self.by_key.remove(key) {
            self.unclaim(&instance);
            self.sync(&instance.id);
        }
    }

    /// Fills the maps of a direct view: every published instance becomes the
    /// claim of the key that is its id. Their revisions are not kept in a
    /// direct view; 0 stands for them, older than any live change to come,
    /// which is all the claims' order needs (no two of them claim one id).
    fn claims_by_key(&mut self) {
        let published = || self.published.iter();
        self.by_key = published()
            .map(|i| (i.id.as_bytes().to_vec(), (0, i.clone())))
            .collect();
        self.by_id = published()
            .map(|i| {
                let claim = Claim {
                    winner: (0, i.clone()),
                    others: Vec::new(),
                };
                (ById(i.clone()), claim)
            })
            .collect();
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
        self.published.snapshot()
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

        // Built in bulk: the same answers.
        let bulk = View::build(vec![
            (b"/s/a/lease1".to_vec(), 2, inst("a", 1)),
            (b"/s/a/lease2".to_vec(), 3, inst("a", 2)),
            (b"/s/b".to_vec(), 1, inst("b", 1)),
        ]);
        let ports: Vec<(String, u16)> = bulk.instances().iter().map(|i| (i.id.clone(), i.port)).collect();
        assert_eq!(ports, [("a".into(), 2), ("b".into(), 1)]);
        let mut bulk = bulk;
        bulk.remove(b"/s/a/lease2");
        assert_eq!(bulk.instances()[0].port, 1, "the older claim takes over");
        assert!(View::build(Vec::new()).instances().is_empty());
    }

    /// The rule, stated plainly: per id, the claim written last among the keys
    /// that hold it.
    fn expected(store: &BTreeMap<Vec<u8>, (Revision, ServiceInstance)>) -> Vec<(String, u16)> {
        let mut winners: BTreeMap<String, (Revision, u16)> = BTreeMap::new();
        for (revision, instance) in store.values() {
            let w = winners.entry(instance.id.clone()).or_insert((*revision, instance.port));
            if *revision >= w.0 {
                *w = (*revision, instance.port);
            }
        }
        winners.into_iter().map(|(id, (_, port))| (id, port)).collect()
    }

    fn published(v: &View) -> Vec<(String, u16)> {
        v.instances().iter().map(|i| (i.id.clone(), i.port)).collect()
    }

    proptest::proptest! {
        /// Changes in revision order, on keys that are their id and keys that
        /// are not (the first of which ends the direct mode), and full reads in
        /// between: the view always publishes what the rule says.
        #[test]
        fn the_view_follows_the_rule_in_and_out_of_the_direct_mode(
            ops in proptest::collection::vec((0u8..6, 0u8..3, 0u16..4, 0u8..8), 1..60)
        ) {
            let mut v = View::default();
            let mut store: BTreeMap<Vec<u8>, (Revision, ServiceInstance)> = BTreeMap::new();
            for (revision, (key, id, port, what)) in (1..).zip(ops) {
                // Keys k0..k2 are ids a..c's own ("a", "b", "c"); k3..k5 are other keys.
                let key: Vec<u8> = match key {
                    0..=2 => vec![b'a' + key],
                    k => format!("x{k}").into_bytes(),
                };
                let id = if key.len() == 1 { (key[0] as char).to_string() } else { ((b'a' + id) as char).to_string() };
                match what {
                    0 => {
                        v.remove(&key);
                        store.remove(&key);
                    }
                    1 => {
                        // A full read of what is there now, at its revisions.
                        let entries = store.iter().map(|(k, (r, i))| (k.clone(), *r, i.clone())).collect();
                        v = View::build(entries);
                    }
                    _ => {
                        v.put(&key, revision, inst(&id, port + 1));
                        store.insert(key, (revision, inst(&id, port + 1)));
                    }
                }
                proptest::prop_assert_eq!(published(&v), expected(&store));
                proptest::prop_assert_eq!(v.len(), expected(&store).len());
            }
        }
    }
}
