//! [`WatchDiscovery`]: one shared, self-healing watch cache per service, for every backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;

mod state;
mod stats;
mod task;

use crate::cache_file::ColdCache;
use crate::latest;
use crate::view::View;
use crate::Instances;
use crate::{
    Backoff, BackoffPolicy, Discovery, JitterRng, KeyLayout, KeyValue, KvBackend, OwnedTask, Result, Revision,
    ServiceInstance, ServiceWatch, Snapshot,
};
pub use stats::DiscoveryStats;
use task::CacheTask;

/// A [`Discovery`] over any [`KvBackend`].
pub struct WatchDiscovery<B> {
    backend: Arc<B>,
    layout: Arc<dyn KeyLayout>,
    retry: BackoffPolicy,
    rng: Mutex<JitterRng>,
    caches: Mutex<BTreeMap<String, Weak<Cache>>>,
    stats: Arc<DiscoveryStats>,
    cold: Option<Arc<ColdCache>>,
    /// Set by [`Discovery::close`]: no new watch or read.
    closed: std::sync::atomic::AtomicBool,
}

impl<B> std::fmt::Debug for WatchDiscovery<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchDiscovery")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// A running cache; dropping the last [`ServiceWatch`] drops it and stops its task.
struct Cache {
    rx: latest::Subscriber<Option<Snapshot>>,
    task: OwnedTask<()>,
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
            cold: None,
            closed: Default::default(),
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

    /// Saves each watched service's fresh views in `cold`, and serves the saved
    /// view (stale) when the registry cannot be reached before the first read
    /// (see [`ColdCache`], in [`cache_file`](crate::cache_file)).
    pub fn with_cold_cache(self, cold: Arc<ColdCache>) -> Self {
        WatchDiscovery {
            cold: Some(cold),
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
        self.open()?;
        let cached = self
            .caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .and_then(Weak::upgrade);
        let last_known = cached.and_then(|c| c.rx.latest());
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
                None => match self.cold.as_ref().and_then(|c| c.get(service)) {
                    Some(saved) => {
                        tracing::debug!(service, error = %e, "registry unreachable: the saved view");
                        return Ok(saved.instances);
                    }
                    None => return Err(e),
                },
            },
        };
        let entries = self
            .decode_all(service, &kvs)
            .into_iter()
            .map(|(key, revision, instance)| (key.to_vec(), revision, instance))
            .collect();
        Ok(View::build(entries).instances())
    }

    async fn watch(&self, service: &str) -> Result<ServiceWatch> {
        crate::instance::validate_name("service", service)?;
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock that `close` takes: no watch starts after it.
        self.open()?;
        if let Some(cache) = caches.get(service).and_then(Weak::upgrade) {
            return Ok(ServiceWatch::new(cache.rx.clone(), cache));
        }
        let (tx, rx) = latest::channel(None);
        let rng = self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork();
        let prefix = self.layout.prefix(service);
        let state = state::CacheState::new(
            self.layout.clone(),
            self.stats.clone(),
            service,
            prefix.clone(),
            tx,
            self.cold.clone(),
        );
        let task = CacheTask {
            backend: self.backend.clone(),
            backoff: Backoff::new(self.retry, rng),
            retry_cap: self.retry.cap(),
            prefix,
            state: Arc::new(Mutex::new(state)),
        };
        let cache = Arc::new(Cache {
            rx,
            task: OwnedTask::spawn(task.run()),
        });
        caches.retain(|_, c| c.strong_count() > 0);
        caches.insert(service.to_owned(), Arc::downgrade(&cache));
        Ok(ServiceWatch::new(cache.rx.clone(), cache))
    }

    fn close(&self) {
        let caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        // Each task drops its registry watch and its sender: every ServiceWatch
        // of it ends.
        for cache in caches.values().filter_map(Weak::upgrade) {
            cache.task.abort();
        }
    }
}

impl<B> WatchDiscovery<B> {
    fn open(&self) -> Result<()> {
        match self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(crate::Error::closed("discovery (the client was shut down)")),
            false => Ok(()),
        }
    }
}
