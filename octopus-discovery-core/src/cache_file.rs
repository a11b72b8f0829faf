//! The discovery cache file, [`ColdCache`]: the last fresh view of each watched
//! service, kept in a file and served, marked stale, when a process starts while
//! the registry is unreachable (Nacos's failover cache, Eureka's and Dubbo's file
//! caches). A registry URL's `cache_file=` parameter opens one; code that builds
//! a [`WatchDiscovery`](crate::WatchDiscovery) itself hands it to
//! [`with_cold_cache`](crate::WatchDiscovery::with_cold_cache).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Instances, OwnedTask, Result, Revision, ServiceInstance, Snapshot};

/// What the file says it is.
const FORMAT: &str = "octopus-discovery-cache";
const VERSION: u32 = 1;
/// Changes within this long are written together.
const WRITE_DELAY: Duration = Duration::from_millis(200);

/// The file's content.
#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    /// The registry it was written for (see [`ColdCache::open`]).
    scope: String,
    services: BTreeMap<String, Entry>,
}

/// One service's last fresh view, as the file holds it.
#[derive(Serialize, Deserialize)]
struct Entry {
    revision: Revision,
    instances: Vec<ServiceInstance>,
}

/// One service's last fresh view, as held until written: the snapshot's own
/// instances (shared, not copied), so that saving a view costs no more than
/// publishing it; they are copied out only when the file is written.
#[derive(Clone)]
pub(crate) struct Saved {
    pub(crate) revision: Revision,
    pub(crate) instances: Instances,
}

/// The last fresh view of each watched service, persisted to one file.
///
/// A discovery with a cold cache ([`WatchDiscovery::with_cold_cache`](crate::WatchDiscovery::with_cold_cache),
/// or `cache_file=` in a registry URL) saves every fresh view of a service it
/// watches, and when it has never reached the registry since it started and
/// cannot, serves the saved view as a [`Stale`](crate::Freshness::Stale)
/// snapshot. It never overrides a fresh view: the first successful read
/// replaces it. Writes go to a temporary file renamed over the old one, so a
/// crash mid-write leaves the previous file whole.
pub struct ColdCache {
    path: PathBuf,
    scope: String,
    services: Mutex<BTreeMap<String, Saved>>,
    /// A write is scheduled.
    pending: AtomicBool,
    /// Serialises writes, so that the last one writes the latest views.
    writing: Mutex<()>,
    /// Wakes the writer.
    changed: Arc<tokio::sync::Notify>,
    /// The task that writes the file after changes (started by the first save).
    writer: Mutex<Option<OwnedTask<()>>>,
}

impl std::fmt::Debug for ColdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdCache")
            .field("path", &self.path)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ColdCache {
    /// The cache in `path` for the registry `scope` (any text that tells
    /// registries apart: the facade uses the URL's scheme, endpoints and key
    /// layout). A missing file is an empty cache; a file that does not parse, is
    /// not a discovery cache, was written for another scope or holds an invalid
    /// instance is an error naming the file and the problem: delete it, or point
    /// `cache_file` elsewhere.
    pub fn open(path: impl AsRef<Path>, scope: impl Into<String>) -> Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let scope = scope.into();
        let fail = |reason: String| Error::cache_file(path.display().to_string(), reason);
        let services = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File = serde_json::from_slice(&bytes)
                    .map_err(|e| fail(format!("is not a discovery cache ({e}); delete it to start afresh")))?;
                if file.format != FORMAT || file.version != VERSION {
                    return Err(fail(format!(
                        "is {:?} version {}, not {FORMAT:?} version {VERSION}",
                        file.format, file.version
                    )));
                }
                if file.scope != scope {
                    return Err(fail(format!(
                        "was written for registry {:?}, not {scope:?}: one file per registry",
                        file.scope
                    )));
                }
                for (service, entry) in &file.services {
                    for i in &entry.instances {
                        i.validate().map_err(|e| fail(format!("service {service:?}: {e}")))?;
                        if i.service != *service {
                            return Err(fail(format!(
                                "service {service:?} lists an instance of {:?}",
                                i.service
                            )));
                        }
                    }
                }
                file.services
                    .into_iter()
                    .map(|(service, e)| {
                        let saved = Saved {
                            revision: e.revision,
                            instances: e.instances.into_iter().collect(),
                        };
                        (service, saved)
                    })
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(fail(format!("cannot be read: {e}"))),
        };
        Ok(Arc::new(ColdCache {
            path,
            scope,
            services: Mutex::new(services),
            pending: AtomicBool::new(false),
            writing: Mutex::new(()),
            changed: Arc::default(),
            writer: Mutex::new(None),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The services it holds a view of, and how many instances each.
    pub fn services(&self) -> BTreeMap<String, usize> {
        self.lock()
            .iter()
            .map(|(s, e)| (s.clone(), e.instances.len()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Saved>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, service: &str) -> Option<Saved> {
        self.lock().get(service).cloned()
    }

    /// Keeps `snapshot` (fresh) as `service`'s view, and writes the file soon.
    pub(crate) fn save(self: &Arc<Self>, service: &str, snapshot: &Snapshot) {
        let saved = Saved {
            revision: snapshot.revision,
            instances: snapshot.instances.clone(),
        };
        self.lock().insert(service.to_owned(), saved);
        if self.pending.swap(true, Ordering::AcqRel) {
            return; // the scheduled write takes this change too
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.is_none() {
            let (cache, changed) = (Arc::downgrade(self), self.changed.clone());
            *writer = Some(OwnedTask::spawn(async move {
                loop {
                    changed.notified().await;
                    tokio::time::sleep(WRITE_DELAY).await;
                    let Some(cache) = cache.upgrade() else { return };
                    let written = tokio::task::spawn_blocking(move || cache.write()).await;
                    if let Ok(Err(e)) = written {
                        tracing::warn!(error = %e, "cannot save the discovery cache");
                    }
                }
            }));
        }
        self.changed.notify_one();
    }

    /// Writes every view now (a temporary file, renamed over the old one).
    pub fn write(&self) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.pending.store(false, Ordering::Release);
        let views = self.lock().clone(); // shared instances: the lock is brief
        let services = views
            .into_iter()
            .map(|(service, saved)| {
                let instances = saved.instances.iter().map(|i| (**i).clone()).collect();
                let entry = Entry {
                    revision: saved.revision,
                    instances,
                };
                (service, entry)
            })
            .collect();
        let file = File {
            format: FORMAT.into(),
            version: VERSION,
            scope: self.scope.clone(),
            services,
        };
        let fail =
            |e: std::io::Error| Error::cache_file(self.path.display().to_string(), format!("cannot be written: {e}"));
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| fail(std::io::Error::other(e)))?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, bytes).map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}
