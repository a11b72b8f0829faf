//! [`MemBackend`]: the store behind Octopus's [`KvBackend`] trait, with fault injection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use octopus_discovery_core::fencing::Created;
use octopus_discovery_core::{
    Header, KeyValue, KvBackend, Lease, LeaseId, LeaseKeeper, LeaseTtl, OwnedTask, Result, Revision, WatchMessage,
    WatchStart,
};
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::range::KeyRange;
use crate::store::{Store, StoreWatch, WeakStore};
use crate::txn::{Compare, CompareOp, CompareTarget, Op, OpResult};
use crate::Error;

/// A [`KvBackend`] over a [`Store`]. Cloning shares the store and the fault switch.
///
/// It owns a task that expires leases on time even when no request arrives;
/// the task stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct MemBackend {
    store: Store,
    reachable: Arc<watch::Sender<bool>>,
    _expiry: Arc<OwnedTask<()>>,
}

impl MemBackend {
    /// A backend over `store`. Call from within a tokio runtime (it spawns the expiry task).
    pub fn new(store: Store) -> Self {
        let expiry = OwnedTask::spawn(expire_on_time(store.downgrade()));
        MemBackend {
            store,
            reachable: Arc::new(watch::channel(true).0),
            _expiry: Arc::new(expiry),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Fault injection: while unreachable every call fails and open watches end with
    /// an error, as if the network to the registry were cut. The store itself goes
    /// on (leases still expire), like an etcd server behind a partition.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.send_replace(reachable);
    }

    fn check(&self) -> Result<()> {
        if *self.reachable.borrow() {
            Ok(())
        } else {
            Err(Error::Unreachable.into())
        }
    }
}

/// Revokes leases at their deadline; ends when the store is gone.
async fn expire_on_time(weak: WeakStore) {
    let wake = weak.granted();
    loop {
        let Some(store) = weak.upgrade() else { return };
        let next = store.next_deadline(); // collects what is due, then looks ahead
        drop(store);
        match next {
            Some(deadline) => {
                tokio::select! {
                    biased;
                    _ = wake.notified() => {}
                    _ = sleep_until(deadline) => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

struct MemKeeper {
    backend: MemBackend,
    lease: LeaseId,
}

#[async_trait]
impl LeaseKeeper for MemKeeper {
    async fn keep_alive(&mut self) -> Result<Option<Duration>> {
        self.backend.check()?;
        match self.backend.store.keep_alive(self.lease.0) {
            Ok(ttl) => Ok(Some(ttl)),
            Err(Error::LeaseNotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl MemBackend {
    /// A watch, with previous values when `prev`.
    fn open_watch(&self, key: &str, prefix: bool, start: Revision, prev: bool) -> Result<WatchStart> {
        self.check()?;
        let range = if prefix {
            KeyRange::prefix(key)
        } else {
            KeyRange::key(key)
        };
        let watch = match self.store.watch(range, start, prev) {
            Ok(watch) => watch,
            Err(Error::Compacted { compacted, .. }) => return Ok(WatchStart::Compacted { compacted }),
            Err(e) => return Err(e.into()),
        };
        let mut reachable = self.reachable.subscribe();
        Ok(WatchStart::Stream(Box::pin(MemWatchStream {
            watch: Some(watch),
            cut: Box::pin(async move {
                let _ = reachable.wait_for(|r| !*r).await;
            }),
        })))
    }
}

#[async_trait]
impl KvBackend for MemBackend {
    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        self.check()?;
        let (_, id, ttl) = self.store.grant(0, ttl)?;
        Ok(Lease { id: LeaseId(id), ttl })
    }

    async fn keeper(&self, lease: LeaseId) -> Result<Box<dyn LeaseKeeper>> {
        self.check()?;
        Ok(Box::new(MemKeeper {
            backend: self.clone(),
            lease,
        }))
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.check()?;
        match self.store.revoke(lease.0) {
            Ok(_) | Err(Error::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn time_to_live(&self, lease: LeaseId) -> Result<LeaseTtl> {
        self.check()?;
        match self.store.time_to_live(lease.0) {
            Ok(info) => Ok(LeaseTtl::Remaining(info.remaining)),
            Err(Error::LeaseNotFound(_)) => Ok(LeaseTtl::Gone),
            Err(e) => Err(e.into()),
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Created> {
        self.check()?;
        let absent = Compare {
            range: KeyRange::key(key),
            op: CompareOp::Equal,
            target: CompareTarget::Create(0),
        };
        let put = Op::Put {
            key: key.as_bytes().to_vec(),
            value,
            lease: lease.0,
        };
        let r = self.store.txn(&[absent], &[put], &[Op::Range(KeyRange::key(key))])?;
        if r.succeeded {
            return Ok(Created::Written(r.header.revision));
        }
        let current = match r.results.into_iter().next() {
            Some(OpResult::Range(kvs)) => kvs.into_iter().next(),
            _ => None,
        };
        Ok(Created::Present(current))
    }

    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        mod_revision: Revision,
    ) -> Result<Option<Revision>> {
        self.check()?;
        let unchanged = Compare {
            range: KeyRange::key(key),
            op: CompareOp::Equal,
            target: CompareTarget::Mod(mod_revision),
        };
        let put = Op::Put {
            key: key.as_bytes().to_vec(),
            value,
            lease: lease.0,
        };
        let r = self.store.txn(&[unchanged], &[put], &[])?;
        Ok(r.succeeded.then_some(r.header.revision))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check()?;
        Ok(!self.store.delete(&KeyRange::key(key))?.1.is_empty())
    }

    async fn delete_owned(&self, key: &str, lease: LeaseId) -> Result<bool> {
        self.check()?;
        let owned = Compare {
            range: KeyRange::key(key),
            op: CompareOp::Equal,
            target: CompareTarget::Lease(lease.0),
        };
        Ok(self
            .store
            .txn(&[owned], &[Op::Delete(KeyRange::key(key))], &[])?
            .succeeded)
    }

    async fn range_prefix(&self, prefix: &str) -> Result<(Header, Vec<KeyValue>)> {
        self.check()?;
        let (header, kvs, _) = self.store.range(&KeyRange::prefix(prefix), 0, 0)?;
        Ok((header, kvs))
    }

    async fn get(&self, key: &str) -> Result<(Header, Option<KeyValue>)> {
        self.check()?;
        let (header, kvs, _) = self.store.range(&KeyRange::key(key), 0, 0)?;
        Ok((header, kvs.into_iter().next()))
    }

    async fn header(&self) -> Result<Header> {
        self.check()?;
        Ok(self.store.header())
    }

    async fn watch(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart> {
        self.open_watch(key, prefix, start, false)
    }

    async fn watch_with_prev(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart> {
        self.open_watch(key, prefix, start, true)
    }
}

/// A store watch that fails when the backend is made unreachable.
struct MemWatchStream {
    watch: Option<StoreWatch>,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Stream for MemWatchStream {
    type Item = Result<WatchMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(watch) = self.watch.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(msg) = watch.rx.poll_recv(cx) {
            return Poll::Ready(msg.map(Ok));
        }
        if self.cut.as_mut().poll(cx).is_ready() {
            self.watch = None;
            return Poll::Ready(Some(Err(Error::Unreachable.into())));
        }
        Poll::Pending
    }
}
