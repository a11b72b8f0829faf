//! The discovery side: [`Discovery`] and the [`Watch`] handle.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Error, Instances, Result, Snapshot, Target};

/// Finds the live instances of a service and follows their changes.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// The instances of `service`: from the live watch cache when one is fresh (an
    /// `Arc` clone; it may lag a write by one watch round trip, like the Go
    /// framework's `GetInstances`), otherwise one read from the registry.
    ///
    /// When that read fails (the registry is unreachable) and a watch of the
    /// service holds a last known state, that state is returned, as the watch
    /// serves it; [`Watch::latest`] says whether it is fresh or stale and since
    /// when. Without a watch, the read's error is returned.
    async fn instances(&self, service: &str) -> Result<Instances>;

    /// Follows `service`. Every local watcher of one service shares one registry watch.
    async fn watch(&self, service: &str) -> Result<Watch>;
}

/// A stream of [`Snapshot`]s of one service.
///
/// The first [`next`](Watch::next) yields the initial state; each later one waits for
/// a change and yields the latest state. A slow consumer skips intermediate states:
/// it never works through a queue of outdated ones.
pub struct Watch {
    rx: watch::Receiver<Option<Snapshot>>,
    filter: Option<Arc<Target>>,
    seen_first: bool,
    _keepalive: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// A watch over `rx`; `keepalive` keeps the producer running while the watch lives.
    pub fn new(rx: watch::Receiver<Option<Snapshot>>, keepalive: Arc<dyn Send + Sync>) -> Self {
        Watch {
            rx,
            filter: None,
            seen_first: false,
            _keepalive: keepalive,
        }
    }

    /// Keeps only the instances that match `target`'s filters (`?version=v1&zone=a`).
    pub fn filtered(mut self, target: Target) -> Self {
        self.filter = Some(Arc::new(target)).filter(|t| !t.filters().is_empty());
        self
    }

    /// The next snapshot; `None` when discovery has stopped.
    pub async fn next(&mut self) -> Option<Snapshot> {
        if self.seen_first {
            self.rx.changed().await.ok()?;
        }
        let snapshot = self.rx.wait_for(Option::is_some).await.ok()?.clone();
        self.seen_first = true;
        self.rx.mark_unchanged();
        snapshot.map(|s| self.apply_filter(s))
    }

    /// The latest snapshot without waiting; `None` before the first sync.
    pub fn latest(&self) -> Option<Snapshot> {
        self.rx.borrow().clone().map(|s| self.apply_filter(s))
    }

    /// Waits for a snapshot that satisfies `pred` (handy in tests and start-up code).
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&Snapshot) -> bool) -> Result<Snapshot> {
        loop {
            let snapshot = self.next().await.ok_or(Error::Closed("discovery"))?;
            if pred(&snapshot) {
                return Ok(snapshot);
            }
        }
    }

    fn apply_filter(&self, s: Snapshot) -> Snapshot {
        match &self.filter {
            None => s,
            Some(t) => Snapshot {
                instances: s.instances.iter().filter(|i| t.matches(i)).cloned().collect(),
                ..s
            },
        }
    }
}
