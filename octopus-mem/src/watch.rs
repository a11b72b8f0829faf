//! The watcher table: each watch's range and channel, fed the events of every
//! revision the store commits.

use std::collections::BTreeMap;

use octopus_discovery_core::{Event, Revision, WatchMessage};
use tokio::sync::mpsc;

use crate::range::KeyRange;

#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    tx: mpsc::UnboundedSender<WatchMessage>,
}

impl Watcher {
    /// Sends the events of revision `rev` that fall in the range; false if the receiver is gone.
    fn send(&self, rev: Revision, events: &[Event]) -> bool {
        let events: Vec<Event> = events
            .iter()
            .filter(|ev| self.range.contains(&ev.kv.key))
            .map(|ev| Event {
                prev: if self.prev_kv { ev.prev.clone() } else { None },
                ..ev.clone()
            })
            .collect();
        events.is_empty() || self.tx.send(WatchMessage::Events { revision: rev, events }).is_ok()
    }
}

/// The store's watches, by id.
#[derive(Debug)]
pub(crate) struct Watchers {
    live: BTreeMap<i64, Watcher>,
    next: i64,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            live: BTreeMap::new(),
            next: 1,
        }
    }
}

impl Watchers {
    /// Adds a watch on `range`, first sent `past` (revisions already committed
    /// from its start on); returns its id and its receiver.
    pub(crate) fn add<'a>(
        &mut self,
        range: KeyRange,
        prev_kv: bool,
        past: impl Iterator<Item = &'a (Revision, Vec<Event>)>,
    ) -> (i64, mpsc::UnboundedReceiver<WatchMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = Watcher { range, prev_kv, tx };
        for (rev, events) in past {
            watcher.send(*rev, events);
        }
        let id = self.next;
        self.next += 1;
        self.live.insert(id, watcher);
        (id, rx)
    }

    pub(crate) fn remove(&mut self, id: i64) {
        self.live.remove(&id);
    }

    /// Sends every watch the events of revision `rev` in its range; watches whose
    /// receiver is gone are dropped here.
    pub(crate) fn notify(&mut self, rev: Revision, events: &[Event]) {
        self.live.retain(|_, w| w.send(rev, events));
    }

    /// Sends every watch a progress notification at `revision`.
    pub(crate) fn progress(&self, revision: Revision) {
        for w in self.live.values() {
            let _ = w.tx.send(WatchMessage::Progress { revision });
        }
    }
}
