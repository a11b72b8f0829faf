//! [`Instances`]: the published instances of a service, sorted by id, in shared
//! chunks, so that a change republishes one chunk and a pointer per chunk rather
//! than a pointer per instance.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

mod chunks;
mod index;

use crate::diff::{merge_step, Diff, Step};
use crate::ServiceInstance;
pub(crate) use chunks::Chunks;
use chunks::{locate, Cursor};

/// A sorted run of instances, shared between consecutive lists.
type Chunk = Arc<[Arc<ServiceInstance>]>;

/// The last id of `chunk` (chunks are never empty).
fn last_id(chunk: &Chunk) -> &str {
    chunk.last().map_or("", |i| i.id.as_str())
}

/// The instances of a service, sorted by id (unique ids).
///
/// Cloning is an `Arc` clone. It dereferences to a slice, `&[Arc<ServiceInstance>]`;
/// the slice is assembled on the first such use and kept (shared by the clones).
/// [`len`](Self::len), [`iter`](Self::iter), [`get`](Self::get) and
/// [`diff_from`](Self::diff_from) work on the chunks directly and never assemble it,
/// so a watcher that does not look at every instance pays nothing per instance
/// for a change.
///
/// ```
/// use std::sync::Arc;
/// use octopus_discovery_core::{Instances, ServiceInstance};
/// let list: Instances = ["b", "a"]
///     .into_iter()
///     .map(|id| Arc::new(ServiceInstance::new("s", id, "127.0.0.1", 80).unwrap()))
///     .collect();
/// assert_eq!(list.len(), 2);
/// assert_eq!(list[0].id, "a"); // sorted by id
/// assert!(list.get("b").is_some());
/// ```
#[derive(Clone, Default)]
pub struct Instances(Arc<Shared>);

/// One allocation per published list: cloning `Instances` is one `Arc` clone.
#[derive(Default)]
struct Shared {
    chunks: Box<[Chunk]>,
    len: usize,
    flat: OnceLock<Box<[Arc<ServiceInstance>]>>,
}

impl Instances {
    /// How many instances.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The instances in id order, without assembling a slice.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceInstance>> + Clone + '_ {
        self.0.chunks.iter().flat_map(|c| c.iter())
    }

    /// The instance with `id`, found by binary search.
    pub fn get(&self, id: &str) -> Option<&Arc<ServiceInstance>> {
        let (at, Some(Ok(i))) = locate(&self.0.chunks, id) else {
            return None;
        };
        Some(&self.0.chunks[at][i])
    }

    /// What changed from `earlier` to `self`. Chunks that both share are skipped
    /// without looking inside (consecutive snapshots of one watch share all but
    /// the changed ones), and instances that both share are not compared.
    pub fn diff_from(&self, earlier: &Instances) -> Diff {
        let mut d = Diff::default();
        let (mut a, mut b) = (Cursor::new(&earlier.0.chunks), Cursor::new(&self.0.chunks));
        loop {
            if a.at_chunk_start() && b.at_chunk_start() {
                if let (Some(x), Some(y)) = (a.chunk(), b.chunk()) {
                    if Arc::ptr_eq(x, y) {
                        a.skip_chunk();
                        b.skip_chunk();
                        continue;
                    }
                }
            }
            // A run of instances both share (around the one a change made, in
            // a chunk it copied): passed in one go, without a merge step each.
            let same = (a.rest().iter().zip(b.rest()))
                .take_while(|(x, y)| Arc::ptr_eq(x, y))
                .count();
            if same > 0 {
                a.skip(same);
                b.skip(same);
                continue;
            }
            match merge_step(&mut d, a.peek(), b.peek(), Arc::clone) {
                Step::Both => {
                    a.advance();
                    b.advance();
                }
                Step::Before => a.advance(),
                Step::Now => b.advance(),
                Step::Done => return d,
            }
        }
    }

    /// A copy with `instance` added (or replacing the one with its id), sharing
    /// every chunk but one with `self`: what a watch publishes after a change.
    pub fn with(&self, instance: Arc<ServiceInstance>) -> Instances {
        let mut chunks = self.editable();
        chunks.set(&instance.id, Some(&instance));
        chunks.into_instances()
    }

    /// A copy without the instance `id`, sharing every chunk but one with `self`.
    pub fn without(&self, id: &str) -> Instances {
        let mut chunks = self.editable();
        chunks.set(id, None);
        chunks.into_instances()
    }

    fn editable(&self) -> Chunks {
        Chunks::once(self.0.chunks.to_vec(), self.0.len)
    }
}

impl Deref for Instances {
    type Target = [Arc<ServiceInstance>];

    fn deref(&self) -> &Self::Target {
        match &*self.0.chunks {
            [] => &[],
            [one] => one,
            _ => self.0.flat.get_or_init(|| self.iter().cloned().collect()),
        }
    }
}

impl fmt::Debug for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Instances {
    fn eq(&self, other: &Self) -> bool {
        self.0.len == other.0.len && self.iter().zip(other.iter()).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
    }
}

impl Eq for Instances {}

/// Collects instances in any order; they are sorted by id, and of several with
/// one id the last wins.
impl FromIterator<Arc<ServiceInstance>> for Instances {
    fn from_iter<I: IntoIterator<Item = Arc<ServiceInstance>>>(iter: I) -> Self {
        let mut list: Vec<Arc<ServiceInstance>> = iter.into_iter().collect();
        if !list.windows(2).all(|w| w[0].id < w[1].id) {
            list.reverse(); // so that the stable sort and dedup keep the last of an id
            list.sort_by(|a, b| a.id.cmp(&b.id));
            list.dedup_by(|a, b| a.id == b.id);
        }
        Chunks::from_sorted(list).into_instances()
    }
}

impl FromIterator<ServiceInstance> for Instances {
    fn from_iter<I: IntoIterator<Item = ServiceInstance>>(iter: I) -> Self {
        iter.into_iter().map(Arc::new).collect()
    }
}

impl<'a> IntoIterator for &'a Instances {
    type Item = &'a Arc<ServiceInstance>;
    type IntoIter = Box<dyn Iterator<Item = &'a Arc<ServiceInstance>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
