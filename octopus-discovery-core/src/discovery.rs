//! The discovery side: [`Discovery`], and [`ServiceWatch`], a stream of snapshots that
//! also offers what changed between them ([`Change`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_core::Stream;

use crate::latest::Subscriber;
use crate::{Diff, Error, Instances, Result, Snapshot, Target};

/// Finds the live instances of a service and follows their changes.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// The instances of `service`: from the live watch cache when one is fresh (an
    /// `Arc` clone; it may lag a write by one watch round trip, like the Go
    /// framework's `GetInstances`), otherwise one read from the registry.
    ///
    /// When that read fails (the registry is unreachable) and a watch of the
    /// service holds a last known state, that state is returned, as the watch
    /// serves it; [`ServiceWatch::latest`] says whether it is fresh or stale and since
    /// when. Without a watch, the read's error is returned.
    async fn instances(&self, service: &str) -> Result<Instances>;

    /// Follows `service`. Every local watcher of one service shares one registry watch.
    async fn watch(&self, service: &str) -> Result<ServiceWatch>;

    /// Stops every watch of this discovery (their [`ServiceWatch`]es end, and
    /// the registry streams under them close); later calls fail with
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed). The default does nothing, for
    /// discoveries with no background work.
    fn close(&self) {}
}

/// A stream of [`Snapshot`]s of one service: a [`futures_core::Stream`], as
/// tower's `Discover` is.
///
/// The first item is the initial state; each later one waits for a change and is
/// the latest state. A slow consumer skips intermediate states: it never works
/// through a queue of outdated ones. [`next_change`](ServiceWatch::next_change) gives
/// each state with what changed since the one before (added, removed, updated).
/// Every way of reading it is cancel-safe: a read dropped before it finished
/// loses nothing.
pub struct ServiceWatch {
    /// The cache's publications (the first that holds a state, then each newer one).
    rx: Subscriber<Option<Snapshot>>,
    filter: Option<Arc<Target>>,
    /// The last state yielded, for [`next_change`](ServiceWatch::next_change).
    last: Option<Instances>,
    _keepalive: Arc<dyn Send + Sync>,
}

/// A state of the service and what changed since the state before it.
#[derive(Clone, Debug)]
pub struct Change {
    /// The state now.
    pub snapshot: Snapshot,
    /// Added, removed and updated instances since the previous state this watch
    /// yielded (for the first, every instance is added).
    pub diff: Diff,
}

impl std::fmt::Debug for ServiceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceWatch")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl ServiceWatch {
    /// A watch over `rx`; `keepalive` keeps the producer running while the watch lives.
    ///
    /// Hidden from the docs: users get watches from [`Discovery::watch`], and
    /// backends from [`WatchDiscovery`](crate::WatchDiscovery). It stays public
    /// for the tests of other crates (the gRPC balancer's) that feed a watch by
    /// hand through a [`latest`](crate::latest) channel.
    #[doc(hidden)]
    pub fn new(rx: Subscriber<Option<Snapshot>>, keepalive: Arc<dyn Send + Sync>) -> Self {
        ServiceWatch {
            rx,
            filter: None,
            last: None,
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
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next snapshot and what changed since the previous one this watch yielded.
    pub async fn next_change(&mut self) -> Option<Change> {
        let snapshot = self.next().await?;
        let diff = match &self.last {
            Some(before) => snapshot.instances.diff_from(before),
            None => snapshot.instances.diff_from(&Instances::default()),
        };
        self.last = Some(snapshot.instances.clone());
        Some(Change { snapshot, diff })
    }

    /// The latest snapshot without waiting; `None` before the first sync.
    pub fn latest(&self) -> Option<Snapshot> {
        self.rx.latest().map(|s| self.apply_filter(s))
    }

    /// Waits for a snapshot that satisfies `pred` (handy in tests and start-up code).
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&Snapshot) -> bool) -> Result<Snapshot> {
        loop {
            let snapshot = self.next().await.ok_or(Error::closed("discovery"))?;
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

impl Stream for ServiceWatch {
    type Item = Snapshot;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Snapshot>> {
        let this = &mut *self;
        // A reader's state is the version it has seen: dropping a read loses nothing.
        this.rx
            .poll_changed(cx, Option::is_some)
            .map(|s| s.flatten().map(|s| this.apply_filter(s)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::{Freshness, ServiceInstance};

    fn snapshot(revision: i64, instances: &[(&str, u32)]) -> Option<Snapshot> {
        Some(Snapshot {
            revision,
            instances: instances
                .iter()
                .map(|(id, w)| ServiceInstance::new("s", *id, "127.0.0.1", 1).unwrap().with_weight(*w))
                .collect(),
            freshness: Freshness::Fresh,
            resyncs: 0,
        })
    }

    #[tokio::test]
    async fn a_watch_is_a_stream_of_the_latest_states_with_their_changes() {
        let (tx, rx) = crate::latest::channel(None);
        let mut w = ServiceWatch::new(rx, Arc::new(()));
        tx.publish(snapshot(2, &[("a", 1), ("b", 1)]));
        let first = w.next_change().await.unwrap();
        assert_eq!(first.diff.added.len(), 2, "the first state adds everything");
        // Two changes before the next read: only the latest is seen.
        tx.publish(snapshot(3, &[("a", 1)]));
        tx.publish(snapshot(4, &[("a", 5), ("c", 1)]));
        let change = w.next_change().await.unwrap();
        assert_eq!(change.snapshot.revision, 4);
        let ids = |v: &[Arc<ServiceInstance>]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&change.diff.added), ["c"]);
        assert_eq!(ids(&change.diff.removed), ["b"]);
        assert_eq!(change.diff.updated.len(), 1);
        assert_eq!(change.diff.updated[0].1.weight, 5);
        // As a futures Stream: the next state, then the end when the producer stops.
        tx.publish(snapshot(5, &[]));
        assert_eq!(StreamExt::next(&mut w).await.unwrap().revision, 5);
        drop(tx);
        assert!(StreamExt::next(&mut w).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_dropped_before_it_finished_loses_nothing() {
        let (tx, rx) = crate::latest::channel(snapshot(1, &[("a", 1)]));
        let mut w = ServiceWatch::new(rx, Arc::new(()));
        assert_eq!(w.next().await.unwrap().revision, 1);
        // A read that times out while waiting, then a change: the next read has it.
        assert!(tokio::time::timeout(Duration::from_millis(10), w.next()).await.is_err());
        tx.publish(snapshot(2, &[]));
        assert_eq!(w.next().await.unwrap().revision, 2);
    }
}
