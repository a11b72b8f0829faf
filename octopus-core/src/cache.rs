//! [`WatchDiscovery`]: one shared, self-healing watch cache per service, for every backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, Instant};

use crate::lease::next_message;
use crate::view::View;
use crate::Instances;
use crate::{
    Backoff, BackoffPolicy, Discovery, Error, EventKind, Freshness, Header, JitterRng, KeyLayout, KeyValue, KvBackend,
    Result, Revision, ServiceInstance, Snapshot, Watch, WatchMessage, WatchStream,
};

/// Counters a discovery keeps; read them with [`WatchDiscovery::stats`].
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    resyncs: AtomicU64,
    reconnects: AtomicU64,
    decode_errors: AtomicU64,
}

impl DiscoveryStats {
    /// Full re-reads after a compaction or a lost history.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
    /// Watches re-opened after the connection was lost.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
    /// Values skipped because they did not decode.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// Counts a value of `service` that did not decode, here and in the metrics.
    fn decode_failed(&self, service: &str) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::decode_error(service);
    }
}

/// A [`Discovery`] over any [`KvBackend`].
pub struct WatchDiscovery<B> {
    backend: Arc<B>,
    layout: Arc<dyn KeyLayout>,
    retry: BackoffPolicy,
    rng: Mutex<JitterRng>,
    caches: Mutex<BTreeMap<String, Weak<Cache>>>,
    stats: Arc<DiscoveryStats>,
}

impl<B> std::fmt::Debug for WatchDiscovery<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchDiscovery")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// A running cache; dropping the last [`Watch`] drops it and stops its task.
struct Cache {
    rx: watch::Receiver<Option<Snapshot>>,
    _stop: oneshot::Sender<()>,
}

impl<B: KvBackend> WatchDiscovery<B> {
    /// Discovery reading keys in `layout`; reconnects back off from 100 ms up to 5 s.
    pub fn new(backend: Arc<B>, layout: Arc<dyn KeyLayout>) -> Self {
        let retry = BackoffPolicy::new(std::time::Duration::from_millis(100), std::time::Duration::from_secs(5))
            .expect("static policy is valid");
        WatchDiscovery {
            backend,
            layout,
            retry,
            rng: Mutex::new(JitterRng::from_entropy()),
            caches: Mutex::new(BTreeMap::new()),
            stats: Arc::default(),
        }
    }

    /// Sets the reconnect backoff.
    pub fn with_retry(self, retry: BackoffPolicy) -> Self {
        WatchDiscovery { retry, ..self }
    }

    /// Draws reconnect jitter from `rng`.
    pub fn with_rng(self, rng: JitterRng) -> Self {
        WatchDiscovery {
            rng: Mutex::new(rng),
            ..self
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<DiscoveryStats> {
        &self.stats
    }

    fn decode_all<'a>(&self, service: &str, kvs: &'a [KeyValue]) -> Vec<(&'a [u8], Revision, ServiceInstance)> {
        kvs.iter()
            .filter_map(|kv| match self.layout.decode(service, &kv.key, &kv.value) {
                Ok(i) => Some((kv.key.as_slice(), kv.mod_revision, i)),
                Err(e) => {
                    self.stats.decode_failed(service);
                    tracing::warn!(%service, error = %e, "skipping a value that does not decode");
                    None
                }
            })
            .collect()
    }
}

#[async_trait]
impl<B: KvBackend> Discovery for WatchDiscovery<B> {
    async fn instances(&self, service: &str) -> Result<Instances> {
        crate::instance::validate_name("service", service)?;
        let cached = self
            .caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .and_then(Weak::upgrade);
        let last_known = cached.and_then(|c| c.rx.borrow().clone());
        let stale = match last_known {
            Some(snapshot) if snapshot.is_fresh() => return Ok(snapshot.instances),
            other => other,
        };
        let kvs = match self.backend.range_prefix(&self.layout.prefix(service)).await {
            Ok((_, kvs)) => kvs,
            // The registry cannot be read, and a watch holds the last known state:
            // that, as the watch itself serves it, rather than nothing.
            Err(e) => match stale {
                Some(snapshot) => {
                    tracing::debug!(service, error = %e, "registry unreachable: the last known instances");
                    return Ok(snapshot.instances);
                }
                None => return Err(e),
            },
        };
        let entries = self
            .decode_all(service, &kvs)
            .into_iter()
            .map(|(key, revision, instance)| (key.to_vec(), revision, instance))
            .collect();
        Ok(View::build(entries).instances())
    }

    async fn watch(&self, service: &str) -> Result<Watch> {
        crate::instance::validate_name("service", service)?;
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cache) = caches.get(service).and_then(Weak::upgrade) {
            return Ok(Watch::new(cache.rx.clone(), cache));
        }
        let (tx, rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let rng = self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork();
        let task = CacheTask {
            backend: self.backend.clone(),
            layout: self.layout.clone(),
            stats: self.stats.clone(),
            service: service.to_owned(),
            prefix: self.layout.prefix(service),
            backoff: Backoff::new(self.retry, rng),
            retry_cap: self.retry.cap(),
            tx,
            state: View::default(),
            revision: 0,
            cluster: None,
            resyncs: 0,
            stale_since: None,
            logged: BTreeSet::new(),
        };
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = stop_rx => {}
                _ = task.run() => {}
            }
        });
        let cache = Arc::new(Cache { rx, _stop: stop_tx });
        caches.retain(|_, c| c.strong_count() > 0);
        caches.insert(service.to_owned(), Arc::downgrade(&cache));
        Ok(Watch::new(cache.rx.clone(), cache))
    }
}

struct CacheTask<B> {
    backend: Arc<B>,
    layout: Arc<dyn KeyLayout>,
    stats: Arc<DiscoveryStats>,
    service: String,
    prefix: String,
    backoff: Backoff,
    retry_cap: std::time::Duration,
    tx: watch::Sender<Option<Snapshot>>,
    state: View,
    revision: Revision,
    cluster: Option<u64>,
    resyncs: u64,
    stale_since: Option<Instant>,
    /// Keys whose decode error was logged already: log once, count always.
    logged: BTreeSet<Vec<u8>>,
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
    async fn run(mut self) {
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
                Ok(s) => Some(s),
                Err(Error::Compacted { .. }) => {
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
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
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
            self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
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
                Some(Err(Error::Compacted { .. })) => return Some(Sync::Compacted),
                Some(Err(e)) => {
                    self.lost(&e).await;
                    return None;
                }
                None => {
                    self.lost(&Error::Closed("watch stream")).await;
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
                    crate::telemetry::propagated(&self.service, written);
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
            self.stale_since = Some(Instant::now());
            if self.cluster.is_some() {
                self.publish();
            }
        }
        // Discovery never gives up: past a retry limit it keeps waiting at the cap.
        let delay = self.backoff.next_delay().unwrap_or(self.retry_cap);
        sleep(delay).await;
    }

    fn publish(&self) {
        let freshness = match self.stale_since {
            Some(since) => Freshness::Stale { since },
            None => Freshness::Fresh,
        };
        crate::telemetry::instances(&self.service, self.state.len());
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
        self.tx.send_replace(Some(snapshot));
    }
}

/// A key as the view holds it: without the service's prefix, which every key of
/// a prefix watch shares (16 B less per cached instance, and the view's index
/// compares what differs).
fn relative<'k>(prefix: &str, key: &'k [u8]) -> &'k [u8] {
    key.strip_prefix(prefix.as_bytes()).unwrap_or(key)
}
