//! [`Inspector`]: what an operator's tool sees in a registry (the `octopus` CLI's
//! `ls`, `get` and `deregister`): every key, decoded or not, with its lease.

use std::collections::BTreeMap;
use std::sync::Arc;

use octopus_discovery_core::{Error, KeyLayout, KvBackend, Result, Revision, ServiceInstance};

/// One key under a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The service it is under.
    pub service: String,
    /// The key, as text (lossy for keys that are not UTF-8).
    pub key: String,
    /// The lease that holds it ([`LeaseId::NONE`](crate::LeaseId::NONE): none).
    pub lease: crate::LeaseId,
    /// Revision of its creation.
    pub create_revision: Revision,
    /// Revision of its last change.
    pub mod_revision: Revision,
    /// The instance, or why the value does not decode (shown, not fatal).
    pub instance: std::result::Result<ServiceInstance, String>,
}

impl Entry {
    /// The instance's id, or the last segment of the key when it does not decode.
    pub fn id(&self) -> &str {
        match &self.instance {
            Ok(i) => &i.id,
            Err(_) => self.key.rsplit('/').find(|s| !s.is_empty()).unwrap_or(&self.key),
        }
    }
}

/// Reads and removes raw registrations; from [`Client::inspector`](crate::Client::inspector).
#[derive(Clone)]
pub struct Inspector {
    pub(crate) backend: Arc<dyn KvBackend>,
    pub(crate) layout: Arc<dyn KeyLayout>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    pub(crate) fn new(backend: Arc<dyn KvBackend>, layout: Arc<dyn KeyLayout>) -> Self {
        Inspector { backend, layout }
    }

    /// Every service with at least one key, and how many keys each has.
    pub async fn services(&self) -> Result<BTreeMap<String, usize>> {
        let Some(root) = self.layout.root() else {
            return Err(Error::invalid_option(
                "layout",
                format!("{:?}", self.layout),
                "this layout has no common prefix to list services under: name a service",
            ));
        };
        let (_, kvs) = self.backend.range_prefix(&root).await?;
        let mut services = BTreeMap::new();
        for kv in kvs {
            let rest = &kv.key[root.len().min(kv.key.len())..];
            let Some(end) = rest.iter().position(|b| *b == b'/') else {
                continue;
            };
            let service = String::from_utf8_lossy(&rest[..end]).into_owned();
            *services.entry(service).or_insert(0) += 1;
        }
        Ok(services)
    }

    /// Every key under `service`, at one revision.
    pub async fn entries(&self, service: &str) -> Result<(Revision, Vec<Entry>)> {
        octopus_discovery_core::validate_name("service", service)?;
        let (header, kvs) = self.backend.range_prefix(&self.layout.prefix(service)).await?;
        let entries = kvs
            .into_iter()
            .map(|kv| Entry {
                service: service.to_owned(),
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                lease: kv.lease,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                instance: self
                    .layout
                    .decode(service, &kv.key, &kv.value)
                    .map_err(|e| e.to_string()),
            })
            .collect();
        Ok((header.revision, entries))
    }

    /// The key of instance `id` of `service`, if registered: the key whose value
    /// decodes to that instance (of several, as a layout whose key is the
    /// address has while an old address's key outlives a move, the newest);
    /// failing that, the one key whose value does not decode and whose last
    /// segment is `id` (a key that does not decode has no id but its key's).
    /// Several such keys are an error naming them: a stray `…/users/0/u1` beside
    /// a `…/users/u1` whose value is broken, and acting on either could be
    /// acting on the wrong one.
    pub async fn entry(&self, service: &str, id: &str) -> Result<Option<Entry>> {
        octopus_discovery_core::validate_name("id", id)?;
        let (_, entries) = self.entries(service).await?;
        let (decoded, undecoded): (Vec<Entry>, Vec<Entry>) = entries
            .into_iter()
            .filter(|e| e.id() == id)
            .partition(|e| e.instance.is_ok());
        if !decoded.is_empty() {
            return Ok(decoded.into_iter().max_by_key(|e| e.create_revision));
        }
        match &undecoded[..] {
            [a, b, ..] => Err(Error::invalid_option(
                "instance",
                format!("{service}/{id}"),
                format!(
                    "{} keys that do not decode claim it ({} and {}{}): remove the wrong ones with etcdctl",
                    undecoded.len(),
                    a.key,
                    b.key,
                    if undecoded.len() > 2 { ", …" } else { "" }
                ),
            )),
            _ => Ok(undecoded.into_iter().next()),
        }
    }

    /// Marks instance `id` of `service` draining (or serving again) in place: its
    /// key keeps its lease, and a running registration adopts the mark (see
    /// [`Registration::drain`](crate::Registration::drain)). The write is guarded
    /// by the key's revision, so that it never undoes a change made meanwhile:
    /// it reads and tries again, a few times. Returns the entry as written.
    pub async fn set_draining(&self, service: &str, id: &str, draining: bool) -> Result<Entry> {
        for _ in 0..8 {
            let entry = self
                .entry(service, id)
                .await?
                .ok_or_else(|| Error::invalid_option("instance", format!("{service}/{id}"), "is not registered"))?;
            let instance = match &entry.instance {
                Ok(i) => i.clone().with_draining(draining),
                Err(problem) => {
                    return Err(Error::invalid_option(
                        "instance",
                        &entry.key,
                        format!("its value does not decode, so it cannot be marked: {problem}"),
                    ))
                }
            };
            let value = octopus_discovery_core::encode_with_mark(&*self.layout, entry.key.as_bytes(), &instance)?;
            if let Some(revision) = self
                .backend
                .put_if_unchanged(&entry.key, value, entry.lease, entry.mod_revision)
                .await?
            {
                return Ok(Entry {
                    mod_revision: revision,
                    instance: Ok(instance),
                    ..entry
                });
            }
        }
        Err(Error::invalid_option(
            "instance",
            format!("{service}/{id}"),
            "changed under every one of 8 tries to mark it: try again",
        ))
    }

    /// Deletes the key of instance `id` of `service`, whoever holds it; true if it
    /// was there. A process that still runs registers again (that is its job):
    /// this is for the key of a process that is gone, before its TTL runs out.
    pub async fn remove(&self, service: &str, id: &str) -> Result<bool> {
        match self.entry(service, id).await? {
            Some(entry) => self.backend.delete(&entry.key).await,
            None => Ok(false),
        }
    }
}

#[cfg(all(test, feature = "mem"))]
mod tests {
    use super::*;

    /// A registry holding the live `svc/a` and whatever `strays` adds, raw.
    fn inspector(strays: &[&str]) -> (Inspector, octopus_mem::Store) {
        let store = octopus_mem::Store::new();
        let layout: Arc<dyn KeyLayout> = Arc::new(octopus_discovery_core::JsonLayout::new("/octopus").unwrap());
        let live = ServiceInstance::new("svc", "a", "127.0.0.1", 7001).unwrap();
        let value = layout.encode(&live).unwrap();
        store.put(b"/octopus/services/svc/a", &value, 0).unwrap();
        for key in strays {
            store.put(key.as_bytes(), b"not an instance", 0).unwrap();
        }
        let backend = Arc::new(octopus_mem::MemBackend::new(store.clone()));
        (Inspector::new(backend, layout), store)
    }

    /// A key that does not decode and ends in a live instance's id is not that
    /// instance: finding, marking and removing `svc/a` act on the live key.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stray_key_ending_in_an_id_is_not_the_instance() {
        for stray in ["/octopus/services/svc/0/a", "/octopus/services/svc/zz/a"] {
            let (inspector, store) = inspector(&[stray]);
            let entry = inspector.entry("svc", "a").await.unwrap().unwrap();
            assert_eq!(entry.key, "/octopus/services/svc/a", "beside {stray}");
            inspector.set_draining("svc", "a", true).await.unwrap();
            assert!(inspector.remove("svc", "a").await.unwrap());
            let left = store
                .range(&octopus_mem::KeyRange::prefix("/octopus/"), 0, 0)
                .unwrap()
                .1;
            let keys: Vec<&[u8]> = left.iter().map(|kv| kv.key.as_slice()).collect();
            assert_eq!(keys, [stray.as_bytes()], "the stray is left, the live key removed");
            // Now the stray alone ends in `a`: it is the one an operator removes.
            assert_eq!(inspector.entry("svc", "a").await.unwrap().unwrap().key, stray);
        }
    }

    /// Two keys whose values decode to one id (in etcd's naming layout, where
    /// the key is the address, an old address's key outlives a move): the
    /// newest is the instance.
    #[tokio::test(flavor = "current_thread")]
    async fn of_two_decoded_claims_the_newest_is_the_instance() {
        let store = octopus_mem::Store::new();
        let layout: Arc<dyn KeyLayout> = Arc::new(octopus_discovery_core::EtcdNamingLayout::new("/n").unwrap());
        for addr in ["127.0.0.1", "127.0.0.2"] {
            let instance = ServiceInstance::new("svc", "a", addr, 7001).unwrap();
            let key = layout.key(&instance, crate::LeaseId::NONE);
            store
                .put(key.as_bytes(), &layout.encode(&instance).unwrap(), 0)
                .unwrap();
        }
        let backend = Arc::new(octopus_mem::MemBackend::new(store));
        let inspector = Inspector::new(backend, layout);
        let entry = inspector.entry("svc", "a").await.unwrap().unwrap();
        assert_eq!(
            entry.instance.unwrap().addr,
            "127.0.0.2",
            "the later of the two, though second by key"
        );
    }

    /// Two keys that claim an id, neither decoding: an error naming both.
    #[tokio::test(flavor = "current_thread")]
    async fn two_claims_are_an_error_naming_both() {
        let (inspector, store) = inspector(&["/octopus/services/svc/0/b", "/octopus/services/svc/1/b"]);
        let err = inspector.remove("svc", "b").await.unwrap_err().to_string();
        assert!(err.contains("/svc/0/b") && err.contains("/svc/1/b"), "{err}");
        assert_eq!(
            store
                .range(&octopus_mem::KeyRange::prefix("/octopus/"), 0, 0)
                .unwrap()
                .1
                .len(),
            3
        );
    }
}
