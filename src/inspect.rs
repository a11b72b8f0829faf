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

    /// The key of instance `id` of `service`, if registered.
    pub async fn entry(&self, service: &str, id: &str) -> Result<Option<Entry>> {
        octopus_discovery_core::validate_name("id", id)?;
        let (_, entries) = self.entries(service).await?;
        Ok(entries.into_iter().find(|e| e.id() == id))
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
