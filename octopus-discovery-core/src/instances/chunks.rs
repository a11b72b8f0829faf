//! The chunks behind [`Instances`]: sorted runs of instances shared between
//! consecutive lists, located by binary search, edited by copying one chunk.

use std::sync::{Arc, OnceLock};

use super::index::Index;
use super::{last_id, Chunk, Instances, Shared};
use crate::ServiceInstance;

/// Instances per chunk for a list of `len`: about √len, so that a change, which
/// copies a pointer per chunk and the one chunk it falls in (each copy an `Arc`
/// count to raise, most of them on cache lines the CPU has not touched since the
/// last change), copies as few as it can: 16 to 31 for 200 instances (7 to 13
/// chunks), 100 to 199 for 10,000 (50 to 100 chunks). A bulk build cuts chunks of
/// this size; a chunk that grows to twice it splits.
fn chunk_target(len: usize) -> usize {
    len.isqrt().clamp(MIN_CHUNK, MAX_CHUNK)
}

const MIN_CHUNK: usize = 16;
const MAX_CHUNK: usize = 128;

/// Where `id` is or would go: the chunk (past the last chunk: the last one) and,
/// when there is a chunk, the binary search's answer within it.
pub(super) fn locate(chunks: &[Chunk], id: &str) -> (usize, Option<Result<usize, usize>>) {
    let at = chunks
        .partition_point(|c| last_id(c) < id)
        .min(chunks.len().saturating_sub(1));
    let found = chunks.get(at).map(|c| c.binary_search_by(|x| x.id.as_str().cmp(id)));
    (at, found)
}

/// A position in a list of chunks.
pub(super) struct Cursor<'a> {
    chunks: &'a [Chunk],
    chunk: usize,
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(chunks: &'a [Chunk]) -> Self {
        Cursor {
            chunks,
            chunk: 0,
            at: 0,
        }
    }

    pub(super) fn at_chunk_start(&self) -> bool {
        self.at == 0
    }

    pub(super) fn chunk(&self) -> Option<&'a Chunk> {
        self.chunks.get(self.chunk)
    }

    pub(super) fn skip_chunk(&mut self) {
        self.chunk += 1;
        self.at = 0;
    }

    pub(super) fn peek(&self) -> Option<&'a Arc<ServiceInstance>> {
        self.chunks.get(self.chunk).map(|c| &c[self.at])
    }

    /// What is left of the current chunk.
    pub(super) fn rest(&self) -> &'a [Arc<ServiceInstance>] {
        self.chunks.get(self.chunk).map_or(&[], |c| &c[self.at..])
    }

    /// Moves on by `n` (at most what is left of the current chunk).
    pub(super) fn skip(&mut self, n: usize) {
        self.at += n;
        if self.chunks.get(self.chunk).is_some_and(|c| self.at == c.len()) {
            self.skip_chunk();
        }
    }

    pub(super) fn advance(&mut self) {
        self.skip(1);
    }
}

/// `chunk` with its `removed` entries from `i` on replaced by `new`, if any:
/// a new chunk, built in one allocation.
fn spliced(chunk: &Chunk, i: usize, removed: usize, new: Option<&Arc<ServiceInstance>>) -> Chunk {
    chunk[..i]
        .iter()
        .chain(new)
        .chain(&chunk[i + removed..])
        .cloned()
        .collect()
}

/// The chunked list a watch cache edits in place, one instance at a time;
/// [`snapshot`](Self::snapshot) shares its chunks.
#[derive(Debug)]
pub(crate) struct Chunks {
    pub(super) chunks: Vec<Chunk>,
    pub(super) len: usize,
    /// Whether a search [`Index`] is kept: by a list that lives and is
    /// edited change after change (a watch cache's), not by the copy that
    /// [`Instances::with`] edits once, where building it would cost more than
    /// it saves.
    indexed: bool,
    /// When indexed, built on the first edit and kept by every edit after it.
    index: Option<Index>,
}

impl Default for Chunks {
    fn default() -> Self {
        Chunks::from_sorted(Vec::new())
    }
}

impl Chunks {
    /// From a list sorted by id with unique ids, to be edited change after
    /// change (indexed).
    pub(crate) fn from_sorted(sorted: Vec<Arc<ServiceInstance>>) -> Chunks {
        let chunks = sorted.chunks(chunk_target(sorted.len())).map(Chunk::from).collect();
        Chunks {
            len: sorted.len(),
            chunks,
            indexed: true,
            index: None,
        }
    }

    /// From chunks holding `len` instances, in order, to be edited once (not
    /// indexed).
    pub(super) fn once(chunks: Vec<Chunk>, len: usize) -> Chunks {
        Chunks {
            chunks,
            len,
            indexed: false,
            index: None,
        }
    }

    /// How many instances it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Its instances, sorted by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<ServiceInstance>> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The current list: a copy of one pointer per chunk.
    pub(crate) fn snapshot(&self) -> Instances {
        Chunks::once(self.chunks.clone(), self.len).into_instances()
    }

    pub(super) fn into_instances(self) -> Instances {
        Instances(Arc::new(Shared {
            chunks: self.chunks.into(),
            len: self.len,
            flat: OnceLock::new(),
        }))
    }

    /// [`locate`]; when indexed, by the index (built on the first call).
    fn locate(&mut self, id: &str) -> (usize, Option<Result<usize, usize>>) {
        if !self.indexed {
            return locate(&self.chunks, id);
        }
        let chunks = &self.chunks;
        self.index
            .get_or_insert_with(|| Index::build(chunks))
            .locate(chunks, id)
    }

    /// Makes `id` map to `instance` (`None`: removes it). Copies one chunk.
    pub(crate) fn set(&mut self, id: &str, instance: Option<&Arc<ServiceInstance>>) {
        let (at, found) = self.locate(id);
        match (found, instance) {
            (None, None) | (Some(Err(_)), None) => {}
            (Some(Ok(i)), Some(new)) if Arc::ptr_eq(&self.chunks[at][i], new) => {}
            (None, Some(new)) => {
                self.chunks.push(Chunk::from(vec![new.clone()]));
                if let Some(index) = &mut self.index {
                    index.inserted(self.chunks.len() - 1, 0, &new.id);
                }
                self.len += 1;
            }
            // The same id: the index holds as it is.
            (Some(Ok(i)), Some(new)) => self.chunks[at] = spliced(&self.chunks[at], i, 1, Some(new)),
            (Some(Ok(i)), None) => {
                self.len -= 1;
                if self.chunks[at].len() == 1 {
                    self.chunks.remove(at);
                } else {
                    self.chunks[at] = spliced(&self.chunks[at], i, 1, None);
                }
                if let Some(index) = &mut self.index {
                    index.removed(at, i);
                }
            }
            (Some(Err(i)), Some(new)) => {
                self.len += 1;
                if let Some(index) = &mut self.index {
                    index.inserted(at, i, &new.id);
                }
                let chunk = &self.chunks[at];
                if chunk.len() + 1 >= 2 * chunk_target(self.len) {
                    let mut list = chunk.to_vec();
                    list.insert(i, new.clone());
                    let mid = list.len() / 2;
                    let right = list.split_off(mid);
                    self.chunks[at] = list.into();
                    self.chunks.insert(at + 1, right.into());
                    if let Some(index) = &mut self.index {
                        index.split(at, mid);
                    }
                } else {
                    self.chunks[at] = spliced(chunk, i, 0, Some(new));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn inst(id: u16, port: u16) -> Arc<ServiceInstance> {
        Arc::new(ServiceInstance::new("s", format!("i{id:05}"), "127.0.0.1", port).unwrap())
    }

    fn ids(list: &Instances) -> Vec<(String, u16)> {
        list.iter().map(|i| (i.id.clone(), i.port)).collect()
    }

    proptest! {
        /// Edits one at a time agree with a map, through chunk splits and removals,
        /// and every way of reading (iter, slice, get, len) and diffing agrees.
        #[test]
        fn edits_agree_with_a_map(
            start in proptest::collection::btree_map(0u16..2000, 1u16..4, 0..700),
            edits in proptest::collection::vec((0u16..2000, 0u16..4), 0..400),
        ) {
            let mut model: BTreeMap<u16, u16> = start.clone();
            let mut chunks = Chunks::from_sorted(start.iter().map(|(k, p)| inst(*k, *p)).collect());
            let first = chunks.snapshot();
            let edits_copy = edits.clone();
            for (id, port) in edits {
                let name = format!("i{id:05}");
                if port == 0 {
                    model.remove(&id);
                    chunks.set(&name, None);
                } else {
                    model.insert(id, port);
                    chunks.set(&name, Some(&inst(id, port)));
                }
            }
            let now = chunks.snapshot();
            prop_assert!(chunks.indexed);
            if let Some(index) = &chunks.index {
                prop_assert!(index.follows(&chunks.chunks), "the index follows the chunks");
            }
            // The public copy-on-write path gives the same list.
            let mut cow = first.clone();
            for (id, port) in &edits_copy {
                let name = format!("i{id:05}");
                cow = if *port == 0 { cow.without(&name) } else { cow.with(inst(*id, *port)) };
            }
            prop_assert_eq!(ids(&cow), ids(&now));
            let want: Vec<(String, u16)> = model.iter().map(|(k, p)| (format!("i{k:05}"), *p)).collect();
            prop_assert_eq!(ids(&now), want.clone());
            prop_assert_eq!(now.len(), want.len());
            let sliced: Vec<(String, u16)> = now[..].iter().map(|i| (i.id.clone(), i.port)).collect();
            prop_assert_eq!(sliced, want.clone());
            prop_assert!(now.0.chunks.iter().all(|c| !c.is_empty() && c.len() < 2 * MAX_CHUNK));
            for (k, p) in &model {
                prop_assert_eq!(now.get(&format!("i{k:05}")).map(|i| i.port), Some(*p));
            }
            prop_assert!(now.get("i99999").is_none() && now.get("a").is_none());
            // The chunk-skipping diff agrees with the plain merge diff.
            prop_assert_eq!(now.diff_from(&first), crate::diff(&first[..], &now[..]));
            prop_assert_eq!(first.diff_from(&now), crate::diff(&now[..], &first[..]));
            prop_assert!(now.diff_from(&now.clone()).is_empty());
        }
    }

    /// Ids that arrive in order (as new instances' often do) land at the end
    /// of the last chunk, which splits there; ids that share a long prefix
    /// (longer than the index keeps) are told apart by the ids themselves. The
    /// index follows every edit, and every id is found where it was put.
    #[test]
    fn ids_in_order_and_long_ids_keep_the_index() {
        for prefix in ["i", "a-registration-of-the-user-service-"] {
            let name = |i: u16| format!("{prefix}{i:05}");
            let make = |i: u16, port: u16| Arc::new(ServiceInstance::new("s", name(i), "127.0.0.1", port).unwrap());
            let mut chunks = Chunks::default();
            for i in 0..600 {
                chunks.set(&name(i), Some(&make(i, 1)));
                assert!(
                    chunks.index.as_ref().unwrap().follows(&chunks.chunks),
                    "after {}",
                    name(i)
                );
            }
            for i in (0..600).step_by(7) {
                chunks.set(&name(i), Some(&make(i, 2)));
            }
            for i in (3..600).step_by(11) {
                chunks.set(&name(i), None);
                assert!(
                    chunks.index.as_ref().unwrap().follows(&chunks.chunks),
                    "after removing {}",
                    name(i)
                );
            }
            let list = chunks.snapshot();
            for i in 0..600 {
                let want = match (i % 7, i % 11) {
                    (_, 3) => None,
                    (0, _) => Some(2),
                    _ => Some(1),
                };
                assert_eq!(list.get(&name(i)).map(|x| x.port), want, "{}", name(i));
            }
        }
    }

    #[test]
    fn one_change_copies_one_chunk() {
        let mut chunks = Chunks::from_sorted((0..1000).map(|i| inst(i, 1)).collect());
        let before = chunks.snapshot();
        chunks.set("i00500", Some(&inst(500, 2)));
        let after = chunks.snapshot();
        let shared = before
            .0
            .chunks
            .iter()
            .zip(after.0.chunks.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, before.0.chunks.len() - 1);
        let copied = before.with(inst(500, 2));
        assert_eq!(copied, after);
        assert_eq!(
            copied
                .0
                .chunks
                .iter()
                .zip(before.0.chunks.iter())
                .filter(|(a, b)| Arc::ptr_eq(a, b))
                .count(),
            before.0.chunks.len() - 1
        );
        assert_eq!(before.without("i00500").len(), 999);
        assert_eq!(before.without("nope").len(), 1000);
        let d = after.diff_from(&before);
        assert_eq!(d.updated.len(), 1);
        assert!(d.added.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn chunks_split_as_they_grow_and_go_when_empty() {
        let mut chunks = Chunks::default();
        for i in (0..1000).rev() {
            chunks.set(&format!("i{i:05}"), Some(&inst(i, 1)));
        }
        let list = chunks.snapshot();
        assert_eq!(list.len(), 1000);
        assert!(
            list.0.chunks.len() >= 1000 / (2 * chunk_target(1000)),
            "{} chunks",
            list.0.chunks.len()
        );
        assert!(list.0.chunks.iter().all(|c| c.len() < 2 * chunk_target(1000)));
        assert!(list.windows(2).all(|w| w[0].id < w[1].id));
        for i in 0..1000 {
            chunks.set(&format!("i{i:05}"), None);
        }
        assert!(chunks.snapshot().is_empty());
        assert!(chunks.chunks.is_empty());
    }

    #[test]
    fn collecting_sorts_and_keeps_the_last_of_an_id() {
        let list: Instances = vec![inst(3, 1), inst(1, 1), inst(3, 2)].into_iter().collect();
        assert_eq!(ids(&list), [("i00001".into(), 1), ("i00003".into(), 2)]);
        assert!(Instances::default().is_empty());
        assert_eq!(&Instances::default()[..], &[] as &[Arc<ServiceInstance>]);
        assert_eq!(format!("{:?}", Instances::default()), "[]");
    }
}
