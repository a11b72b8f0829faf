//! What discovery yields: the instances of a service at one revision.

use tokio::time::Instant;

use crate::diff::Diff;
use crate::{Instances, Revision, ServiceInstance};

/// How current a snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Connected: the watch is live.
    Fresh,
    /// The connection to the registry was lost at `since`; these are the last known
    /// instances, kept rather than replaced by an empty list.
    Stale {
        /// When the connection was lost.
        since: Instant,
    },
}

/// The instances of one service at one revision, sorted by id.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The store revision this state reflects.
    pub revision: Revision,
    /// The instances, sorted by id. Cloning a snapshot is an `Arc` clone; the
    /// instances are shared with the cache (and the next snapshots), not copied.
    pub instances: Instances,
    /// Whether the watch behind it is live.
    pub freshness: Freshness,
    /// How many times discovery had to rebuild this view from scratch because the
    /// store lost its history (restored, wiped) or compacted past the watch.
    pub resyncs: u64,
}

impl Snapshot {
    /// True when the watch behind the snapshot is live.
    pub fn is_fresh(&self) -> bool {
        self.freshness == Freshness::Fresh
    }

    /// The instance with `id`, if present.
    pub fn get(&self, id: &str) -> Option<&ServiceInstance> {
        self.instances.get(id).map(|i| &**i)
    }

    /// What changed from `earlier` to `self` (see [`Instances::diff_from`]).
    pub fn diff_from(&self, earlier: &Snapshot) -> Diff {
        self.instances.diff_from(&earlier.instances)
    }
}
