//! A service's cache task: read the service's keys, watch from the revision after,
//! resume after a disconnect, resync after a compaction or a lost history, and
//! publish each state as a snapshot (fresh, or stale with the last known instances).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use super::stats::DiscoveryStats;
use crate::kv::next_message;
use crate::view::View;
use crate::{
    Backoff, Error, EventKind, Freshness, Header, KeyLayout, KeyValue, KvBackend, Result, Revision, ServiceInstance,
    Snapshot, WatchMessage, WatchStart, WatchStream,
};

pub(super) struct CacheTask<B> {
    pub(super) backend: Arc<B>,
    pub(super) layout: Arc<dyn KeyLayout>,
    pub(super) stats: Arc<DiscoveryStats>,
    pub(super) service: String,
    pub(super) prefix: String,
    pub(super) backoff: Backoff,
    pub(super) retry_cap: std::time::Duration,
    pub(super) tx: watch::Sender<Option<Snapshot>>,
    pub(super) state: View,
    pub(super) revision: Revision,
    pub(super) cluster: Option<u64>,
    pub(super) resyncs: u64,
    pub(super) stale_since: Option<Instant>,
    /// Keys whose decode error was logged already: log once, count always.
    pub(super) logged: BTreeSet<Vec<u8>>,
    /// Where fresh views are saved, and read from at a cold start.
    pub(super) cold: Option<Arc<crate::cache_file::ColdCache>>,
    /// Its metrics' handles.
    pub(super) series: crate::telemetry::CacheSeries,
}

/// Why the task must read everything again.
#[derive(PartialEq, Eq)]
enum Sync {
    /// Never read yet.
    Initial,
    /// The watch's start revision was compacted.
    Compacted,
    /// The store's history was lost (new cluster id or revisions ran backwards).
    HistoryLost,
}

impl<B: KvBackend> CacheTask<B> {
    pub(super) async fn run(mut self) {
        let mut sync = Some(Sync::Initial);
        loop {
            if crate::bug!(FreshBeforeWatch) && self.stale_since.take().is_some() {
                self.publish();
            }
            if let Some(reason) = sync.take() {
                if let Err(e) = self.resync(&reason).await {
                    self.lost(&e).await;
                    sync = Some(reason);
                    continue;
                }
            } else {
                match self.backend.header().await {
                    Ok(h) if self.history_lost(h) => {
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
            let start = if crate::bug!(WatchResumesFromZero) {
                0
            } else {
                self.revision + 1
            };
            let mut stream = match self.backend.watch(&self.prefix, true, start).await {
                Ok(WatchStart::Stream(s)) => Some(s),
                Ok(WatchStart::Compacted { .. }) => {
                    sync = Some(Sync::Compacted);
                    continue;
                }
                Err(e) => {
                    self.lost(&e).await;
                    continue;
                }
            };
            self.backoff.reset();
            if self.stale_since.take().is_some() {
                self.publish();
            }
            sync = self.follow(&mut stream).await;
            if sync.is_none() {
                self.stats.reconnected();
                crate::telemetry::watch_reconnected(&self.service);
            }
        }
    }

    fn history_lost(&self, h: Header) -> bool {
        self.cluster.is_some_and(|c| c != h.cluster_id) || h.revision < self.revision
    }

    async fn resync(&mut self, reason: &Sync) -> Result<()> {
        // Each page is decoded as it arrives, while the backend reads the next.
        let (backend, prefix) = (self.backend.clone(), self.prefix.clone());
        let mut entries = Vec::new();
        let header = backend
            .range_prefix_pages(&prefix, &mut |kvs| {
                entries.reserve(kvs.len());
                for kv in kvs {
                    if let Some(instance) = self.decode(&kv) {
                        entries.push((relative(&prefix, &kv.key).to_vec(), kv.mod_revision, instance));
                    }
                }
            })
            .await?;
        let reset = *reason == Sync::Compacted || *reason == Sync::HistoryLost || self.history_lost(header);
        if reset && !crate::bug!(ResyncUncounted) {
            self.resyncs += 1;
            self.stats.resynced();
            crate::telemetry::resynced(&self.service);
            tracing::info!(service = %self.service, revision = header.revision, "full resync");
        }
        self.state = View::build(entries);
        self.cluster = Some(header.cluster_id);
        self.revision = header.revision;
        self.stale_since = None;
        self.backoff.reset();
        self.publish();
        Ok(())
    }

    /// Applies watch messages until the watch ends; says whether to resync.
    async fn follow(&mut self, stream: &mut Option<WatchStream>) -> Option<Sync> {
        loop {
            match next_message(stream).await {
                Some(Ok(WatchMessage::Events { revision, events })) => {
                    for ev in &events {
                        match ev.kind {
                            EventKind::Put => self.apply_put(&ev.kv),
                            EventKind::Delete => {
                                self.state.remove(relative(&self.prefix, &ev.kv.key));
                            }
                        }
                        self.revision = self.revision.max(ev.kv.mod_revision);
                    }
                    self.revision = self.revision.max(revision);
                    self.publish();
                }
                Some(Ok(WatchMessage::Progress { revision })) => self.revision = self.revision.max(revision),
                Some(Ok(WatchMessage::Compacted { .. })) => return Some(Sync::Compacted),
                Some(Err(e)) => {
                    self.lost(&e).await;
                    return None;
                }
                None => {
                    self.lost(&Error::closed("watch stream")).await;
                    return None;
                }
            }
        }
    }

    /// A live change: applied, and how long it took to get here measured.
    fn apply_put(&mut self, kv: &KeyValue) {
        match self.layout.decode_stamped(&self.service, &kv.key, &kv.value) {
            Ok((instance, written)) => {
                if let Some(written) = written {
                    self.series.propagated(&self.service, written);
                }
                self.state
                    .put(relative(&self.prefix, &kv.key), kv.mod_revision, instance)
            }
            Err(e) => {
                self.decode_failed(kv, &e);
                // A key that no longer decodes no longer counts as an instance.
                self.state.remove(relative(&self.prefix, &kv.key))
            }
        }
    }

    /// The instance at `kv`, or `None` (counted, and logged once per key) when it
    /// does not decode.
    fn decode(&mut self, kv: &KeyValue) -> Option<ServiceInstance> {
        match self.layout.decode(&self.service, &kv.key, &kv.value) {
            Ok(instance) => Some(instance),
            Err(e) => {
                self.decode_failed(kv, &e);
                None
            }
        }
    }

    /// Counts a value that does not decode, and logs it once per key.
    fn decode_failed(&mut self, kv: &KeyValue, e: &Error) {
        self.stats.decode_failed(&self.service);
        if self.logged.insert(kv.key.clone()) {
            tracing::warn!(service = %self.service, error = %e, "skipping a value that does not decode");
        }
    }

    /// The connection is lost: keep the last known instances, marked stale, then back off.
    async fn lost(&mut self, e: &Error) {
        tracing::debug!(service = %self.service, error = %e, "discovery lost its watch");
        if self.stale_since.is_none() {
            let since = Instant::now();
            self.stale_since = Some(since);
            if self.cluster.is_some() {
                self.publish();
            } else if let Some(saved) = self.cold.as_ref().and_then(|c| c.get(&self.service)) {
                // Never read since the start: the view saved by an earlier run,
                // stale, rather than nothing. The first read replaces it.
                tracing::warn!(service = %self.service, revision = saved.revision, instances = saved.instances.len(), "registry unreachable at start: serving the saved view");
                self.tx.send_replace(Some(Snapshot {
                    revision: saved.revision,
                    instances: saved.instances,
                    freshness: Freshness::Stale { since },
                    resyncs: 0,
                }));
            }
        }
        // Discovery never gives up: past a retry limit it keeps waiting at the cap.
        let delay = self.backoff.next_delay().unwrap_or(self.retry_cap);
        sleep(delay).await;
    }

    fn publish(&mut self) {
        let freshness = match self.stale_since {
            Some(since) => Freshness::Stale { since },
            None => Freshness::Fresh,
        };
        self.series.instances(&self.service, self.state.len());
        tracing::debug!(
            service = %self.service,
            revision = self.revision,
            instances = self.state.len(),
            fresh = self.stale_since.is_none(),
            "discovery view changed"
        );
        let snapshot = Snapshot {
            revision: self.revision,
            instances: self.state.instances(),
            freshness,
            resyncs: self.resyncs,
        };
        if let (Some(cold), true) = (&self.cold, snapshot.is_fresh()) {
            cold.save(&self.service, &snapshot);
        }
        self.tx.send_replace(Some(snapshot));
    }
}

/// A key as the view holds it: without the service's prefix, which every key of
/// a prefix watch shares (the view stores and compares only what differs).
fn relative<'k>(prefix: &str, key: &'k [u8]) -> &'k [u8] {
    key.strip_prefix(prefix.as_bytes()).unwrap_or(key)
}
