//! Watches: from a start revision (replaying history), over a key range, with
//! previous values on request.

use octopus_core::{Event, Revision, WatchMessage};
use tokio::sync::mpsc;

use crate::store::{Inner, KeyRange, Store};
use crate::Error;

#[derive(Debug)]
pub(crate) struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    tx: mpsc::UnboundedSender<WatchMessage>,
}

/// A watch on the store; dropping it cancels the watch.
#[derive(Debug)]
pub struct StoreWatch {
    /// The watch id (unique in the store).
    pub id: i64,
    /// Messages, in revision order.
    pub rx: mpsc::UnboundedReceiver<WatchMessage>,
    store: Store,
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        self.store.cancel_watch(self.id);
    }
}

impl Store {
    /// Watches `range` from `start` (0: the next revision). Changes already in the
    /// history from `start` on are delivered first. A start before the compaction
    /// point fails with [`Error::Compacted`].
    pub fn watch(&self, range: KeyRange, start: Revision, prev_kv: bool) -> Result<StoreWatch, Error> {
        let mut inner = self.lock();
        if start > 0 && start < inner.compact_revision {
            return Err(Error::Compacted {
                requested: start,
                compacted: inner.compact_revision,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = Watcher { range, prev_kv, tx };
        if start > 0 {
            let from = inner.history.partition_point(|(rev, _)| *rev < start);
            for (rev, events) in &inner.history[from..] {
                watcher.send(*rev, events);
            }
        }
        let id = inner.next_watcher;
        inner.next_watcher += 1;
        inner.watchers.insert(id, watcher);
        Ok(StoreWatch {
            id,
            rx,
            store: self.clone(),
        })
    }

    /// Cancels a watch.
    pub fn cancel_watch(&self, id: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.watchers.remove(&id);
    }

    /// Sends every watcher a progress notification at the current revision.
    pub fn progress(&self) {
        let inner = self.lock();
        for w in inner.watchers.values() {
            let _ = w.tx.send(WatchMessage::Progress {
                revision: inner.revision,
            });
        }
    }
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

impl Inner {
    pub(crate) fn notify(&mut self, rev: Revision, events: &[Event]) {
        // Watchers whose receiver is gone are dropped here.
        self.watchers.retain(|_, w| w.send(rev, events));
    }
}
