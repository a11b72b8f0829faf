//! A service's cache task: read the service's keys, watch from the revision after,
//! resume after a disconnect, resync after a compaction or a lost history, and
//! publish each state as a snapshot (fresh, or stale with the last known instances).
//!
//! Live changes do not pass through this task: the watch hands them to a
//! [`CacheSink`] in the task that reads them from the backend, which applies
//! them to the view and publishes it there (one task hop fewer per change).
//! This task does everything else, and the two meet in [`CacheState`], behind
//! a lock that neither holds across an await.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::sleep;

use super::state::{CacheState, Ended};
use crate::{Backoff, Error, KvBackend, Result, SinkStart, WatchMessage, WatchSink};

/// Messages held at most while a watch is not yet known to have started.
const HELD_MAX: usize = 1024;

pub(super) struct CacheTask<B> {
    pub(super) backend: Arc<B>,
    pub(super) backoff: Backoff,
    pub(super) retry_cap: Duration,
    pub(super) prefix: String,
    pub(super) state: Arc<Mutex<CacheState>>,
}

/// Why the task must read everything again.
#[derive(PartialEq, Eq)]
pub(super) enum Sync {
    /// Never read yet.
    Initial,
    /// The watch's start revision was compacted.
    Compacted,
    /// The store's history was lost (new cluster id or revisions ran backwards).
    HistoryLost,
}

impl<B: KvBackend> CacheTask<B> {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        lock(&self.state)
    }

    pub(super) async fn run(mut self) {
        let mut sync = Some(Sync::Initial);
        loop {
            if crate::bug!(FreshBeforeWatch) {
                let mut state = self.lock();
                if state.stale_since.take().is_some() {
                    state.publish();
                }
            }
            if let Some(reason) = sync.take() {
                if let Err(e) = self.resync(&reason).await {
                    self.lost(&e).await;
                    sync = Some(reason);
                    continue;
                }
            } else {
                match self.backend.header().await {
                    Ok(h) if self.lock().history_lost(h) => {
                        sync = Some(Sync::HistoryLost);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.lost(&e).await;
                        continue;
                    }
                }
            }
            sync = self.follow().await;
            if sync.is_none() {
                let state = self.lock();
                state.stats.reconnected();
                crate::telemetry::watch_reconnected(&state.service);
            }
        }
    }

    async fn resync(&mut self, reason: &Sync) -> Result<()> {
        // Each page is decoded as it arrives, while the backend reads the next.
        let (backend, prefix, state) = (self.backend.clone(), self.prefix.clone(), self.state.clone());
        let mut entries = Vec::new();
        let header = backend
            .range_prefix_pages(&prefix, &mut |kvs| lock(&state).decode_page(kvs, &mut entries))
            .await?;
        let reset = *reason != Sync::Initial;
        self.lock().rebuilt(entries, header, reset);
        self.backoff.reset();
        Ok(())
    }

    /// Opens the watch from the revision after the view's, and waits until it
    /// ends; says whether to resync (`None`: resume).
    async fn follow(&mut self) -> Option<Sync> {
        let start = if crate::bug!(WatchResumesFromZero) {
            0
        } else {
            self.lock().revision + 1
        };
        let (done, ended) = oneshot::channel();
        let generation = self.lock().arm(done);
        let sink = Box::new(CacheSink {
            state: self.state.clone(),
            generation,
        });
        let guard = match self.backend.watch_into(&self.prefix, true, start, sink).await {
            Ok(SinkStart::Watching(guard)) => guard,
            Ok(SinkStart::Compacted { .. }) => {
                self.lock().disarm();
                return Some(Sync::Compacted);
            }
            Err(e) => {
                self.lock().disarm();
                self.lost(&e).await;
                return None;
            }
        };
        self.backoff.reset();
        self.lock().started();
        let ended = ended.await;
        drop(guard);
        self.lock().disarm();
        match ended {
            Ok(Ended::Compacted) => Some(Sync::Compacted),
            Ok(Ended::Lost(e)) => {
                self.lost(&e).await;
                None
            }
            Err(_) => {
                self.lost(&Error::closed("watch stream")).await;
                None
            }
        }
    }

    /// The connection is lost: keep the last known instances, marked stale, then back off.
    async fn lost(&mut self, e: &Error) {
        self.lock().lost(e);
        // Discovery never gives up: past a retry limit it keeps waiting at the cap.
        let delay = self.backoff.next_delay().unwrap_or(self.retry_cap);
        sleep(delay).await;
    }
}

fn lock(state: &Mutex<CacheState>) -> MutexGuard<'_, CacheState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cache's end of its watch: applies each change and publishes, in the
/// task that reads the watch.
struct CacheSink {
    state: Arc<Mutex<CacheState>>,
    /// The watch it belongs to (see [`CacheState::generation`]).
    generation: u64,
}

impl WatchSink for CacheSink {
    fn message(&mut self, message: WatchMessage) -> bool {
        let mut state = lock(&self.state);
        if state.generation != self.generation {
            return true; // an earlier watch's last words: its cancel is on the way
        }
        match state.held.as_mut() {
            // The task does not yet know that the watch started: keep it for then.
            Some(held) if held.len() >= HELD_MAX => false,
            Some(held) => {
                held.push(message);
                true
            }
            None => {
                state.apply(message);
                true
            }
        }
    }

    fn end(self: Box<Self>, error: Error) {
        let mut state = lock(&self.state);
        if state.generation == self.generation {
            state.finish(Ended::Lost(error));
        }
    }
}

impl Drop for CacheSink {
    /// A sink dropped while its watch is followed (the backend let go of it
    /// without a word): the watch is lost.
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if state.generation == self.generation {
            state.finish(Ended::Lost(Error::closed("watch stream")));
        }
    }
}
