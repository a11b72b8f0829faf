//! What an operator's console follows: every registration under the layout's
//! root at one revision, then every change to it with its revision, and the time
//! left on a lease. Read-only; an addition to [`Inspector`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use octopus_discovery_core::{
    Error, EventKind, KeyValue, LeaseTtl, Result, Revision, WatchMessage, WatchStart, WatchStream,
};

use crate::{Entry, Inspector, LeaseId};

/// One key's change, decoded as [`Inspector::entries`] decodes keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryChange {
    /// The revision of the change.
    pub revision: Revision,
    /// The key after the change; `None` when it was deleted.
    pub entry: Option<Entry>,
    /// The key before the change, when there was one.
    pub prev: Option<Entry>,
}

impl EntryChange {
    /// The service the key is under.
    pub fn service(&self) -> &str {
        match (&self.entry, &self.prev) {
            (Some(e), _) | (None, Some(e)) => &e.service,
            (None, None) => "",
        }
    }
}

/// What [`EntryChanges`] yields: the changes of one watch response, or `Progress`
/// (nothing changed up to `revision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Every change in it is at this revision or earlier.
    pub revision: Revision,
    /// The changes, in revision order (empty for a progress notification).
    pub changes: Vec<EntryChange>,
}

/// Every change under the layout's root; from [`Inspector::changes`]. It ends, or
/// yields an error, when the watch is lost: read [`Inspector::all_entries`] again
/// and start over from its revision.
pub struct EntryChanges {
    inspector: Inspector,
    root: String,
    stream: WatchStream,
    /// The first revision not yet seen.
    next: Revision,
}

impl std::fmt::Debug for EntryChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryChanges")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    fn root(&self) -> Result<String> {
        self.layout.root().ok_or_else(|| {
            Error::invalid_option(
                "layout",
                format!("{:?}", self.layout),
                "this layout has no common prefix to list services under: name a service",
            )
        })
    }

    /// The service of a key under `root`, and the key decoded as an [`Entry`].
    fn decode_kv(&self, root: &str, kv: KeyValue) -> Option<Entry> {
        let rest = kv.key.get(root.len()..)?;
        let end = rest.iter().position(|b| *b == b'/')?;
        let service = String::from_utf8_lossy(&rest[..end]).into_owned();
        let instance = self
            .layout
            .decode(&service, &kv.key, &kv.value)
            .map_err(|e| e.to_string());
        Some(Entry {
            service,
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            lease: kv.lease,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            instance,
        })
    }

    /// Every key of every service, at one revision.
    pub async fn all_entries(&self) -> Result<(Revision, Vec<Entry>)> {
        let root = self.root()?;
        let (header, kvs) = self.backend.range_prefix(&root).await?;
        let entries = kvs.into_iter().filter_map(|kv| self.decode_kv(&root, kv)).collect();
        Ok((header.revision, entries))
    }

    /// Every change to every service's keys from revision `start` on (the
    /// revision of [`all_entries`](Self::all_entries) plus one), with what each
    /// key held before. A compacted `start`, or a compaction under the stream,
    /// is an error (of kind [`Backend`](crate::ErrorKind::Backend)): read
    /// [`all_entries`](Self::all_entries) again and follow from there.
    pub async fn changes(&self, start: Revision) -> Result<EntryChanges> {
        let root = self.root()?;
        let stream = match self.backend.watch_with_prev(&root, true, start).await? {
            WatchStart::Stream(stream) => stream,
            WatchStart::Compacted { compacted } => return Err(compacted_error(start, compacted)),
        };
        Ok(EntryChanges {
            inspector: self.clone(),
            root,
            stream,
            next: start,
        })
    }

    /// The time left on `lease`, without refreshing it.
    pub async fn lease_ttl(&self, lease: LeaseId) -> Result<LeaseTtl> {
        self.backend.time_to_live(lease).await
    }
}

impl Stream for EntryChanges {
    type Item = Result<ChangeBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let message = match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(m))) => m,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let batch = match message {
            WatchMessage::Compacted { compacted } => {
                return Poll::Ready(Some(Err(compacted_error(this.next, compacted))))
            }
            WatchMessage::Progress { revision } => ChangeBatch {
                revision,
                changes: Vec::new(),
            },
            WatchMessage::Events { revision, events } => ChangeBatch {
                revision,
                changes: events
                    .into_iter()
                    .filter_map(|event| {
                        let revision = event.kv.mod_revision;
                        let (entry, prev) = match event.kind {
                            EventKind::Put => (this.inspector.decode_kv(&this.root, event.kv), event.prev),
                            // A delete without its previous value still names its key.
                            EventKind::Delete => (None, event.prev.or(Some(event.kv))),
                        };
                        let prev = prev.and_then(|kv| this.inspector.decode_kv(&this.root, kv));
                        (entry.is_some() || prev.is_some()).then_some(EntryChange { revision, entry, prev })
                    })
                    .collect(),
            },
        };
        this.next = this.next.max(batch.revision + 1);
        Poll::Ready(Some(Ok(batch)))
    }
}

/// The registry's history from `start` is compacted away (up to `compacted`).
fn compacted_error(start: Revision, compacted: Revision) -> Error {
    Error::backend_message(format!(
        "the registry's history from revision {start} is compacted (up to {compacted}): read it again"
    ))
}
