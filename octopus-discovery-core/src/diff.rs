//! Diffs between two id-sorted instance lists: the one merge step that
//! [`diff`] and [`Instances::diff_from`](crate::Instances::diff_from) both walk with.

use std::borrow::Borrow;
use std::sync::Arc;

use crate::ServiceInstance;

/// Instances added, removed and updated between two snapshots. It shares the
/// snapshots' instances (an `Arc` each) rather than copying them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Present now, absent before.
    pub added: Vec<Arc<ServiceInstance>>,
    /// Present before, absent now.
    pub removed: Vec<Arc<ServiceInstance>>,
    /// Present in both with different contents: `(before, now)`.
    pub updated: Vec<(Arc<ServiceInstance>, Arc<ServiceInstance>)>,
}

impl Diff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// Diffs two id-sorted instance lists in one merge pass.
///
/// ```
/// use octopus_discovery_core::{diff, ServiceInstance};
/// let a = ServiceInstance::new("s", "a", "127.0.0.1", 1)?;
/// let b = ServiceInstance::new("s", "b", "127.0.0.1", 2)?;
/// let d = diff(&[a.clone()], &[a.clone().with_weight(5), b.clone()]);
/// assert_eq!(*d.added[0], b);
/// assert_eq!(d.updated.len(), 1);
/// assert!(d.removed.is_empty());
/// # Ok::<(), octopus_discovery_core::Error>(())
/// ```
pub fn diff<T: Borrow<ServiceInstance>>(before: &[T], now: &[T]) -> Diff {
    let mut d = Diff::default();
    let (mut i, mut j) = (0, 0);
    let shared = |x: &T| Arc::new(x.borrow().clone());
    loop {
        match merge_step(&mut d, before.get(i), now.get(j), shared) {
            Step::Both => {
                i += 1;
                j += 1;
            }
            Step::Before => i += 1,
            Step::Now => j += 1,
            Step::Done => return d,
        }
    }
}

/// Which list a merge of two id-sorted lists moves on in.
pub(crate) enum Step {
    Both,
    Before,
    Now,
    Done,
}

/// The id of a list's entry.
fn id<T: Borrow<ServiceInstance>>(x: &T) -> &str {
    &x.borrow().id
}

/// One step of the merge behind every diff: records in `d` what the heads of the
/// two lists say (each recorded instance as `shared` makes it an `Arc`), and says
/// which list(s) to move on in. The same instance (one `Arc` in both lists) is
/// unchanged without comparing its fields.
pub(crate) fn merge_step<T: Borrow<ServiceInstance>>(
    d: &mut Diff,
    before: Option<&T>,
    now: Option<&T>,
    shared: impl Fn(&T) -> Arc<ServiceInstance>,
) -> Step {
    match (before, now) {
        // The same instance (shared by both lists): equal without reading it.
        // A chunk that a change copied holds every other instance of it
        // unchanged, so this is most of what a diff of two snapshots meets.
        (Some(b), Some(n)) if std::ptr::eq(b.borrow(), n.borrow()) => Step::Both,
        (Some(b), Some(n)) if id(b) == id(n) => {
            if b.borrow() != n.borrow() {
                d.updated.push((shared(b), shared(n)));
            }
            Step::Both
        }
        (Some(b), Some(n)) if id(b) < id(n) => {
            d.removed.push(shared(b));
            Step::Before
        }
        (_, Some(n)) => {
            d.added.push(shared(n));
            Step::Now
        }
        (Some(b), None) => {
            d.removed.push(shared(b));
            Step::Before
        }
        (None, None) => Step::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn inst(id: u8, weight: u32) -> ServiceInstance {
        ServiceInstance::new("s", format!("i{id:03}"), "127.0.0.1", 1)
            .unwrap()
            .with_weight(weight)
    }

    proptest! {
        #[test]
        fn diff_matches_a_map_comparison(
            a in proptest::collection::btree_map(0u8..50, 0u32..3, 0..30),
            b in proptest::collection::btree_map(0u8..50, 0u32..3, 0..30),
        ) {
            let list = |m: &BTreeMap<u8, u32>| m.iter().map(|(k, w)| inst(*k, *w)).collect::<Vec<_>>();
            let d = diff(&list(&a), &list(&b));
            let inst = |id: &u8, weight: &u32| Arc::new(inst(*id, *weight));
            let added: Vec<_> = b.iter().filter(|(k, _)| !a.contains_key(k)).map(|(k, w)| inst(k, w)).collect();
            let removed: Vec<_> = a.iter().filter(|(k, _)| !b.contains_key(k)).map(|(k, w)| inst(k, w)).collect();
            let updated: Vec<_> = a.iter()
                .filter_map(|(k, w)| b.get(k).filter(|w2| *w2 != w).map(|w2| (inst(k, w), inst(k, w2))))
                .collect();
            prop_assert_eq!(d, Diff { added, removed, updated });
        }
    }
}
