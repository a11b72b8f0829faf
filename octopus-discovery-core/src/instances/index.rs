//! The search index a watch cache's list keeps beside its chunks, so that
//! finding an id's place reads a few contiguous arrays instead of following,
//! at each step of a binary search, a chunk to an instance and the instance to
//! its id: loads that depend on each other, on lines the CPU has seldom kept
//! since the last change.
//!
//! An id's key is its first [`KEY`] bytes, padded with zeros. Where two keys
//! differ they order as their ids do (a padded end sorts before any byte, as a
//! prefix sorts before what it begins); where they are equal, the ids are
//! compared themselves.

use std::cmp::Ordering;

use super::{last_id, Chunk};

/// Bytes of an id kept in its key: the whole of most ids.
const KEY: usize = 24;

/// An id's first [`KEY`] bytes, padded with zeros.
type Key = [u8; KEY];

fn key(id: &str) -> Key {
    let mut k = [0; KEY];
    let n = id.len().min(KEY);
    k[..n].copy_from_slice(&id.as_bytes()[..n]);
    k
}

/// `k` (an id's key) against `id` (with its key `kid`), down to the ids when
/// the keys are equal.
fn compare(k: &Key, full: impl FnOnce() -> Ordering, kid: &Key) -> Ordering {
    match k.cmp(kid) {
        Ordering::Equal => full(),
        other => other,
    }
}

/// A binary search over `0..len` by `order` (the element's order against the
/// sought one), as `slice::binary_search_by` answers.
fn search(len: usize, mut order: impl FnMut(usize) -> Ordering) -> Result<usize, usize> {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match order(mid) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// Each chunk's keys, and the chunks' last keys side by side, following the
/// chunks edit by edit.
#[derive(Debug)]
pub(super) struct Index {
    bounds: Vec<Key>,
    keys: Vec<Vec<Key>>,
}

impl Index {
    pub(super) fn build(chunks: &[Chunk]) -> Index {
        let keys: Vec<Vec<Key>> = chunks.iter().map(|c| c.iter().map(|x| key(&x.id)).collect()).collect();
        Index {
            bounds: keys
                .iter()
                .map(|k| *k.last().expect("chunks are never empty"))
                .collect(),
            keys,
        }
    }

    /// What `super::chunks::locate` answers, for `chunks` as this index follows them.
    pub(super) fn locate(&self, chunks: &[Chunk], id: &str) -> (usize, Option<Result<usize, usize>>) {
        let kid = key(id);
        // The first chunk whose last id is not below `id` (past the end: the last chunk).
        let at = match search(chunks.len(), |c| {
            match compare(&self.bounds[c], || last_id(&chunks[c]).cmp(id), &kid) {
                Ordering::Less => Ordering::Less,
                _ => Ordering::Greater,
            }
        }) {
            Ok(c) | Err(c) => c.min(chunks.len().saturating_sub(1)),
        };
        let found = chunks.get(at).map(|chunk| {
            let keys = &self.keys[at];
            search(keys.len(), |i| compare(&keys[i], || chunk[i].id.as_str().cmp(id), &kid))
        });
        (at, found)
    }

    /// `id` went in at `i` of chunk `at` (a new last chunk when `at` is past the end).
    pub(super) fn inserted(&mut self, at: usize, i: usize, id: &str) {
        if at == self.keys.len() {
            self.keys.push(Vec::new());
            self.bounds.push(key(id));
        }
        self.keys[at].insert(i, key(id));
        self.bound(at);
    }

    /// The id at `i` of chunk `at` left (and the chunk with it, if it was its last).
    pub(super) fn removed(&mut self, at: usize, i: usize) {
        self.keys[at].remove(i);
        if self.keys[at].is_empty() {
            self.keys.remove(at);
            self.bounds.remove(at);
        } else {
            self.bound(at);
        }
    }

    /// Chunk `at` split: its ids from `mid` on are chunk `at + 1`.
    pub(super) fn split(&mut self, at: usize, mid: usize) {
        let right = self.keys[at].split_off(mid);
        self.keys.insert(at + 1, right);
        self.bounds.insert(at + 1, [0; KEY]);
        self.bound(at);
        self.bound(at + 1);
    }

    fn bound(&mut self, at: usize) {
        self.bounds[at] = *self.keys[at].last().expect("an indexed chunk is never empty");
    }

    /// Whether it follows `chunks` (for tests).
    #[cfg(test)]
    pub(super) fn follows(&self, chunks: &[Chunk]) -> bool {
        let fresh = Index::build(chunks);
        fresh.keys == self.keys && fresh.bounds == self.bounds
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Where keys differ they order as the ids do.
        #[test]
        fn keys_order_as_ids_where_they_differ(a in "[a-c\\x00]{0,30}", b in "[a-c\\x00]{0,30}") {
            let (ka, kb) = (key(&a), key(&b));
            if ka != kb {
                prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            }
            prop_assert_eq!(compare(&ka, || a.cmp(&b), &kb), a.cmp(&b));
        }
    }
}
