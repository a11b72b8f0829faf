//! etcd's gRPC proxy's watch coalescing, as far as a client can tell
//! (`MemEtcdOptions::coalesce_watches`): the proxy keeps one watch on etcd per
//! range its clients follow and shares it among them. A create for a range
//! already followed is answered at once ("already sent by etcd; emulate create
//! event", etcd's `server/proxy/grpcproxy/watch_broadcast.go`); one for a new
//! range only once the proxy's own watch on etcd is created. So creates on one
//! stream can be answered out of order.
//!
//! Only the answers' timing is modelled: every watch still reads the store
//! itself, so events stay exact. A range counts as followed once a watch on it
//! has been answered, whatever revision it started from (the proxy also needs
//! the newcomer not to start behind the shared watch; otherwise it opens a
//! second one, and the answer waits again).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A watched range: key and range end, as the create asked.
pub(crate) type Range = (Vec<u8>, Vec<u8>);

/// The ranges the server's watches follow, shared by every stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Follows(Arc<Mutex<BTreeMap<Range, Follow>>>);

#[derive(Debug, Default)]
struct Follow {
    /// Watches on the range, answered or not.
    watchers: usize,
    /// Whether the shared watch is created (its first answer came).
    created: bool,
}

/// One watch's share of a range: leaves it when dropped (the watch cancelled,
/// or its stream gone).
#[derive(Debug)]
pub(crate) struct Following {
    follows: Follows,
    range: Range,
}

impl Follows {
    /// Joins `range`: whether it was followed already (the create is answered at
    /// once), and the share that leaves it.
    pub(crate) fn join(&self, range: Range) -> (bool, Following) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let follow = all.entry(range.clone()).or_default();
        follow.watchers += 1;
        let followed = follow.created;
        (
            followed,
            Following {
                follows: self.clone(),
                range,
            },
        )
    }
}

impl Following {
    /// The shared watch on this range is created: later creates on it are
    /// answered at once.
    pub(crate) fn created(&self) {
        let mut all = self.follows.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(follow) = all.get_mut(&self.range) {
            follow.created = true;
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut all = self.follows.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(follow) = all.get_mut(&self.range) {
            follow.watchers -= 1;
            if follow.watchers == 0 {
                all.remove(&self.range);
            }
        }
    }
}
