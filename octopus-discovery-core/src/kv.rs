//! The small etcd-shaped key-value interface that every backend provides.
//!
//! Registration and discovery logic (leases, keepalive, fencing, watch resume,
//! resync) is written once in this crate against [`KvBackend`]; a backend only
//! translates these calls to its store. That is what lets the simulator and the
//! conformance suite prove one implementation for every backend.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;

use crate::{Error, LeaseId, Result, Revision};

/// The end of the range of keys that start with `prefix`, as etcd computes it
/// (`[0]`, "every key from here on", when no such end exists).
///
/// ```
/// assert_eq!(octopus_discovery_core::prefix_end(b"a"), b"b");
/// assert_eq!(octopus_discovery_core::prefix_end(b"a\xff"), b"b");
/// assert_eq!(octopus_discovery_core::prefix_end(b""), vec![0]);
/// ```
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// The TTL the server granted (it may raise a TTL below its minimum).
    pub ttl: Duration,
}

/// Which history a revision belongs to: etcd's cluster id and the revision.
///
/// A new cluster id, or a revision lower than one seen before, means the store
/// lost its history (restored from backup, wiped): revisions seen before mean
/// nothing any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The store's revision when the request was served.
    pub revision: Revision,
}

/// A key and its value with etcd's metadata. Serde's form (the field names) is
/// what `octopus dev --data` files hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty in a delete event).
    pub value: Vec<u8>,
    /// Revision of the key's creation.
    pub create_revision: Revision,
    /// Revision of its last modification (of the deletion, in a delete event).
    pub mod_revision: Revision,
    /// Number of modifications since creation.
    pub version: i64,
    /// The lease it is attached to ([`LeaseId::NONE`]: none).
    pub lease: LeaseId,
}

/// Whether a watch event is a put or a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// The key was created or modified.
    Put,
    /// The key was deleted (explicitly or by lease expiry).
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for a delete: key and `mod_revision` only).
    pub kv: KeyValue,
    /// The key before the change, when there was one.
    pub prev: Option<KeyValue>,
}

/// What a watch stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, all at `revision` or earlier, in revision order.
    Events {
        /// The header revision of the response.
        revision: Revision,
        /// The changes.
        events: Vec<Event>,
    },
    /// Nothing changed up to `revision` (etcd's progress notification).
    Progress {
        /// The revision the watch has caught up to.
        revision: Revision,
    },
    /// The watch's revision has been compacted away under it (etcd cancels such
    /// a watch): the history between the caller's revision and `compacted` is
    /// gone, and the caller must read the current state instead. The stream ends
    /// after it.
    Compacted {
        /// The store's compaction revision (0 when the backend did not say).
        compacted: Revision,
    },
}

/// What [`KvBackend::watch`] opened: a stream, or the news that its start
/// revision is already compacted (a protocol answer, not an error).
pub enum WatchStart {
    /// The watch is created; its messages.
    Stream(WatchStream),
    /// The start revision is older than the store's compaction point.
    Compacted {
        /// The store's compaction revision (0 when the backend did not say).
        compacted: Revision,
    },
}

impl WatchStart {
    /// The stream, if the watch started.
    pub fn stream(self) -> Option<WatchStream> {
        match self {
            WatchStart::Stream(s) => Some(s),
            WatchStart::Compacted { .. } => None,
        }
    }
}

impl std::fmt::Debug for WatchStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchStart::Stream(_) => f.write_str("WatchStart::Stream(..)"),
            WatchStart::Compacted { compacted } => write!(f, "WatchStart::Compacted {{ compacted: {compacted} }}"),
        }
    }
}

/// A stream of watch messages; it ends, or yields an error, when the watch is lost.
/// [`WatchMessage::Compacted`] says the start revision is gone.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchMessage>> + Send>>;

/// Receives a watch's messages in the task that reads them from the backend
/// (see [`KvBackend::watch_into`]): a change reaches its consumer without
/// another task in between.
///
/// Its methods run in the backend's reading task, which serves every other
/// watch of the client too: they must not block and should be short.
pub trait WatchSink: Send + 'static {
    /// One message, in order. `false` says the sink cannot take more (it fell
    /// behind): the watch then ends, and [`end`](WatchSink::end) follows.
    fn message(&mut self, message: WatchMessage) -> bool;

    /// The watch is lost (the stream broke, or the backend ended it). Not
    /// called when the watch's owner cancels it by dropping its [`WatchGuard`].
    /// A sink dropped without this call means the same as a closed stream.
    fn end(self: Box<Self>, error: Error);
}

/// Keeps a watch opened by [`KvBackend::watch_into`]; dropping it cancels the
/// watch (and drops its sink).
pub struct WatchGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl WatchGuard {
    /// A guard that holds `inner` (whose drop cancels the watch).
    pub fn new(inner: impl Send + Sync + 'static) -> Self {
        WatchGuard(Box::new(inner))
    }
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchGuard(..)")
    }
}

/// What [`KvBackend::watch_into`] opened.
#[derive(Debug)]
pub enum SinkStart {
    /// The watch is created; its messages go to the sink while this lives.
    Watching(WatchGuard),
    /// The start revision is older than the store's compaction point.
    Compacted {
        /// The store's compaction revision (0 when the backend did not say).
        compacted: Revision,
    },
}

/// The outcome of a fenced write ([`crate::fencing::put_owned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written; the write's revision.
    Written(Revision),
    /// The key is held by another lease and was left alone.
    Conflict {
        /// The lease that holds it ([`LeaseId::NONE`]: no lease).
        owner: LeaseId,
    },
}

/// What [`KvBackend::create`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// The key was absent and is now written; the write's revision.
    Written(Revision),
    /// The key is there: as it is (its lease and mod revision tell the owner and
    /// guard the overwrite). `None` if it went away before it could be read.
    Present(Option<KeyValue>),
}

/// What [`KvBackend::time_to_live`] knows of a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseTtl {
    /// The lease lives; this much time is left before it expires without a keepalive.
    Remaining(Duration),
    /// The lease is gone (expired or revoked).
    Gone,
    /// The backend cannot tell (the default for backends that do not implement it).
    Unknown,
}

/// Keeps one lease alive; one per lease, reused for every refresh.
#[async_trait]
pub trait LeaseKeeper: Send {
    /// Refreshes the lease. `Ok(None)` means the lease is gone (etcd answered TTL ≤ 0).
    async fn keep_alive(&mut self) -> Result<Option<Duration>>;
}

/// The etcd-shaped operations that Octopus's registry and discovery need.
///
/// Keys are UTF-8 when Octopus writes them; keys read back are bytes, since other
/// writers share the store.
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// Grants a lease of `ttl`.
    async fn grant(&self, ttl: Duration) -> Result<Lease>;

    /// Opens a keeper for `lease`; a lease that is already gone shows as the
    /// keeper's first [`LeaseKeeper::keep_alive`] answering `Ok(None)`.
    async fn keeper(&self, lease: LeaseId) -> Result<Box<dyn LeaseKeeper>>;

    /// Revokes `lease`, deleting its keys. A lease that is already gone is not an error.
    async fn revoke(&self, lease: LeaseId) -> Result<()>;

    /// In one transaction: writes `key = value` attached to `lease` if the key is
    /// absent, else reads it. The first step of the fenced write.
    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Created>;

    /// In one transaction: writes `key = value` attached to `lease` if the key's
    /// mod revision is still `mod_revision`; the write's revision, or `None` if the
    /// key changed. The second step of the fenced write.
    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        mod_revision: Revision,
    ) -> Result<Option<Revision>>;

    /// Atomically deletes `key` if it is held by `lease`; true if it was deleted.
    async fn delete_owned(&self, key: &str, lease: LeaseId) -> Result<bool>;

    /// Deletes `key` whoever holds it (an operator's tool: `octopus deregister`);
    /// true if it existed.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// The time left on `lease`, read-only (it does not refresh the lease): what an
    /// operator's tool shows. The default answers [`LeaseTtl::Unknown`].
    async fn time_to_live(&self, lease: LeaseId) -> Result<LeaseTtl> {
        let _ = lease;
        Ok(LeaseTtl::Unknown)
    }

    /// Reads every key under `prefix` at one revision (paginated as the backend needs).
    async fn range_prefix(&self, prefix: &str) -> Result<(Header, Vec<KeyValue>)>;

    /// Reads every key under `prefix` at one revision, as
    /// [`range_prefix`](KvBackend::range_prefix) does, handing each page to `page`
    /// as it arrives: a backend that pages may read the next page while the caller
    /// works on this one (the watch cache decodes a page while etcd serves the
    /// next). On an error, the pages already handed over are to be discarded.
    /// The default reads everything, then hands it over as one page.
    async fn range_prefix_pages(&self, prefix: &str, page: &mut (dyn FnMut(Vec<KeyValue>) + Send)) -> Result<Header> {
        let (header, kvs) = self.range_prefix(prefix).await?;
        page(kvs);
        Ok(header)
    }

    /// Reads one key.
    async fn get(&self, key: &str) -> Result<(Header, Option<KeyValue>)>;

    /// The store's current header: a cheap way to tell whether history was lost.
    async fn header(&self) -> Result<Header>;

    /// Watches `key` (or every key under it when `prefix`) from revision `start`.
    /// Events carry no previous values ([`Event::prev`] is `None`): discovery
    /// needs none, and etcd reads its store once more per event to send them. A
    /// compacted `start` is [`WatchStart::Compacted`], either here or as the
    /// stream's first [`WatchMessage::Compacted`]; for a prefix watch it must be
    /// here (a caller calls its view fresh once this returns a stream).
    async fn watch(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart>;

    /// As [`watch`](Self::watch), with each event's previous value in
    /// [`Event::prev`] (when the key existed before): for callers that show what
    /// a change replaced or removed.
    async fn watch_with_prev(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart>;

    /// As [`watch`](Self::watch), with every message handed to `sink` in the
    /// task that reads it from the store. Messages may reach the sink before
    /// this returns, and until it does the caller does not yet know whether the
    /// start was compacted: a sink that must not act on them before then holds
    /// them. The default reads [`watch`](Self::watch)'s stream in a task of its
    /// own; a backend that reads one stream for many watches (etcd's) calls the
    /// sink from that stream's task instead, which spares a task hop per change.
    async fn watch_into(
        &self,
        key: &str,
        prefix: bool,
        start: Revision,
        sink: Box<dyn WatchSink>,
    ) -> Result<SinkStart> {
        let stream = match self.watch(key, prefix, start).await? {
            WatchStart::Stream(stream) => stream,
            WatchStart::Compacted { compacted } => return Ok(SinkStart::Compacted { compacted }),
        };
        Ok(SinkStart::Watching(WatchGuard::new(crate::OwnedTask::spawn(forward(
            stream, sink,
        )))))
    }
}

/// Hands `stream`'s messages to `sink` until either ends.
async fn forward(mut stream: WatchStream, mut sink: Box<dyn WatchSink>) {
    loop {
        match poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            Some(Ok(message)) => {
                if !sink.message(message) {
                    return sink.end(Error::backend_message("the watch's consumer fell behind"));
                }
            }
            Some(Err(e)) => return sink.end(e),
            None => return sink.end(Error::closed("watch stream")),
        }
    }
}

/// The next message of an optional stream; pending forever when there is none.
pub(crate) async fn next_message(stream: &mut Option<WatchStream>) -> Option<Result<WatchMessage>> {
    match stream {
        Some(s) => poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await,
        None => std::future::pending().await,
    }
}
