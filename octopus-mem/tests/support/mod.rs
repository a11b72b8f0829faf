//! The in-memory backend with its watches shown to a test's hook; every other
//! call passes through. The hub and catch-up tests count or doctor watches
//! through it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use octopus_discovery_core::fencing::Created;
use octopus_discovery_core::{
    Header, KeyValue, KvBackend, Lease, LeaseId, LeaseKeeper, LeaseTtl, Result, Revision, WatchStart,
};
use octopus_mem::MemBackend;

/// What a test does with the watches opened through [`Hooked`].
pub(crate) trait WatchHook: Send + Sync + 'static {
    /// A watch on `key` (a prefix when `prefix`) is about to open.
    fn opening(&self, _key: &str, _prefix: bool) {}

    /// What the watch opened, as the caller is to see it.
    fn opened(self: Arc<Self>, opened: WatchStart) -> WatchStart;
}

/// The in-memory backend, its watches shown to `hook`.
pub(crate) struct Hooked<H> {
    pub(crate) inner: MemBackend,
    pub(crate) hook: Arc<H>,
}

#[async_trait]
impl<H: WatchHook> KvBackend for Hooked<H> {
    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        self.inner.grant(ttl).await
    }
    async fn keeper(&self, lease: LeaseId) -> Result<Box<dyn LeaseKeeper>> {
        self.inner.keeper(lease).await
    }
    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.inner.revoke(lease).await
    }
    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Created> {
        self.inner.create(key, value, lease).await
    }
    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        rev: Revision,
    ) -> Result<Option<Revision>> {
        self.inner.put_if_unchanged(key, value, lease, rev).await
    }
    async fn delete_owned(&self, key: &str, lease: LeaseId) -> Result<bool> {
        self.inner.delete_owned(key, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn time_to_live(&self, lease: LeaseId) -> Result<LeaseTtl> {
        self.inner.time_to_live(lease).await
    }
    async fn range_prefix(&self, prefix: &str) -> Result<(Header, Vec<KeyValue>)> {
        self.inner.range_prefix(prefix).await
    }
    async fn get(&self, key: &str) -> Result<(Header, Option<KeyValue>)> {
        self.inner.get(key).await
    }
    async fn header(&self) -> Result<Header> {
        self.inner.header().await
    }
    async fn watch(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart> {
        self.hook.opening(key, prefix);
        let opened = self.inner.watch(key, prefix, start).await?;
        Ok(self.hook.clone().opened(opened))
    }
    async fn watch_with_prev(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart> {
        self.inner.watch_with_prev(key, prefix, start).await
    }
}
