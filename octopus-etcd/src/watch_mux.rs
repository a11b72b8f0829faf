//! One gRPC watch stream per client, as etcd's Go clientv3 keeps: every watch
//! this backend opens (the discovery caches of all services, every
//! registration's watch on its own key) is a watch id on that stream.
//!
//! A task owns the stream. It sends create and cancel requests on it, matches
//! each `created` answer to the oldest create waiting (etcd answers creates in
//! the order they were sent), and routes every later response by its watch id:
//! events and progress to that watch, a compaction or a cancel by etcd to that
//! watch alone (the others go on), a progress broadcast (watch id -1) to all.
//! When the stream breaks, every watch on it ends with the error; their owners
//! watch again from their own revisions, and the first of them opens a new
//! stream. A watch whose stream is dropped is cancelled on etcd's side.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use etcd_client::{Client, WatchOptions, WatchRequestSender, WatchResponse, WatchResponseStream};
use futures_util::Stream;
use octopus_discovery_core::{Error, OwnedTask, Result, Revision, WatchMessage};
use tokio::sync::{mpsc, oneshot};

use crate::convert::{convert, etcd_err};

/// The handle to the task that owns the client's watch stream.
pub(crate) struct WatchMux {
    requests: mpsc::UnboundedSender<Request>,
    stats: Arc<MuxStats>,
    _task: OwnedTask<()>,
}

enum Request {
    Create {
        key: String,
        prefix: bool,
        start: Revision,
        reply: oneshot::Sender<Result<Opened>>,
    },
    /// The owner of watch `id` of stream `generation` dropped it.
    Cancel { generation: u64, id: i64 },
}

/// A create sent, waiting for etcd's `created` answer.
struct Pending {
    start: Revision,
    reply: oneshot::Sender<Result<Opened>>,
}

/// What a client's watch stream carries, for tests and the load harness:
/// counters the task updates without a lock (it would otherwise take one per
/// message routed).
#[derive(Debug, Default)]
struct MuxStats {
    /// Watch streams opened so far (one, plus one per reconnection).
    streams: AtomicU64,
    /// Watches live on the current stream.
    watches: AtomicUsize,
}

impl WatchMux {
    pub(crate) fn spawn(client: Client) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MuxStats::default());
        let task = OwnedTask::spawn(run(client, rx, requests.downgrade(), stats.clone()));
        WatchMux {
            requests,
            stats,
            _task: task,
        }
    }

    /// Watch streams opened so far, and watches live on the current one.
    pub(crate) fn stats(&self) -> (u64, usize) {
        (
            self.stats.streams.load(Ordering::Relaxed),
            self.stats.watches.load(Ordering::Relaxed),
        )
    }

    /// Opens a watch on `key` (a prefix when `prefix`) from revision `start`;
    /// resolves once etcd has created it (or refused it: compacted), with the
    /// store's revision when it was created (0 if etcd did not say).
    pub(crate) async fn watch(&self, key: &str, prefix: bool, start: Revision) -> Result<Opened> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Create {
                key: key.to_owned(),
                prefix,
                start,
                reply,
            })
            .map_err(|_| Error::closed("watch stream"))?;
        answer.await.map_err(|_| Error::closed("watch stream"))?
    }
}

/// What creating a watch on the shared stream gave.
pub(crate) enum Opened {
    /// The watch, and the revision etcd created it at.
    Watch(Sub, Revision),
    /// etcd refused it: its start revision is compacted (etcd's compaction revision).
    Compacted(Revision),
}

/// One watch on the shared stream, as the backend's `WatchStream`.
pub(crate) struct Sub {
    messages: mpsc::UnboundedReceiver<Result<WatchMessage>>,
    generation: u64,
    id: i64,
    mux: mpsc::WeakUnboundedSender<Request>,
}

impl Stream for Sub {
    type Item = Result<WatchMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.messages.poll_recv(cx)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        if let Some(mux) = self.mux.upgrade() {
            let _ = mux.send(Request::Cancel {
                generation: self.generation,
                id: self.id,
            });
        }
    }
}

/// The stream and what rides on it.
#[derive(Default)]
struct State {
    stream: Option<(WatchRequestSender, WatchResponseStream)>,
    /// Increases with every stream opened: a cancel for an older stream's watch
    /// is moot (that watch ended with its stream).
    generation: u64,
    pending: VecDeque<Pending>,
    watches: BTreeMap<i64, mpsc::UnboundedSender<Result<WatchMessage>>>,
}

async fn run(
    client: Client,
    mut requests: mpsc::UnboundedReceiver<Request>,
    me: mpsc::WeakUnboundedSender<Request>,
    stats: Arc<MuxStats>,
) {
    let mut s = State::default();
    loop {
        let response = async {
            match s.stream.as_mut() {
                Some((_, responses)) => responses.message().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => match request {
                None => return,
                Some(Request::Create { key, prefix, start, reply }) => {
                    create(&client, &mut s, &key, prefix, start, reply, &stats).await;
                }
                Some(Request::Cancel { generation, id }) => {
                    if generation == s.generation && s.watches.remove(&id).is_some() {
                        if let Some((sender, _)) = s.stream.as_mut() {
                            let _ = sender.cancel(id).await;
                        }
                    }
                }
            },
            response = response => match response {
                Ok(Some(resp)) => route(&mut s, resp, &me),
                Ok(None) => fail_all(&mut s, Error::closed("watch stream")),
                Err(e) => fail_all(&mut s, etcd_err("watch", e)),
            },
        }
        stats.watches.store(s.watches.len(), Ordering::Relaxed);
    }
}

/// Sends a create on the stream, opening the stream with it when there is none.
async fn create(
    client: &Client,
    s: &mut State,
    key: &str,
    prefix: bool,
    start: Revision,
    reply: oneshot::Sender<Result<Opened>>,
    stats: &MuxStats,
) {
    let mut opts = WatchOptions::new()
        .with_start_revision(start)
        .with_prev_key()
        .with_progress_notify();
    if prefix {
        opts = opts.with_prefix();
    }
    let sent = match s.stream.as_mut() {
        Some((sender, _)) => sender.watch(key, Some(opts)).await,
        None => match client.watch_client().watch(key, Some(opts)).await {
            Ok(stream) => {
                s.generation += 1;
                s.stream = Some(stream.split());
                stats.streams.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    match sent {
        Ok(()) => s.pending.push_back(Pending { start, reply }),
        Err(e) => {
            let _ = reply.send(Err(etcd_err("watch", e)));
            if s.stream.is_some() {
                // The request could not be sent: the stream is broken.
                fail_all(s, Error::closed("watch stream"));
            }
        }
    }
}

/// One response from etcd, to the watch it belongs to.
fn route(s: &mut State, resp: WatchResponse, me: &mpsc::WeakUnboundedSender<Request>) {
    let id = resp.watch_id();
    if resp.created() {
        let Some(Pending { start, reply }) = s.pending.pop_front() else {
            tracing::warn!(id, "etcd created a watch nobody asked for");
            return;
        };
        if resp.canceled() {
            let answer = if resp.compact_revision() > 0 {
                Ok(Opened::Compacted(resp.compact_revision()))
            } else {
                Err(Error::backend_message(format!(
                    "etcd refused the watch from revision {start}: {}",
                    resp.cancel_reason()
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let sub = Sub {
            messages: rx,
            generation: s.generation,
            id,
            mux: me.clone(),
        };
        let created = resp.header().map_or(0, |h| h.revision());
        // Listed before the reply: if the caller gave up waiting, dropping the
        // sub asks for its cancel, which finds it here and tells etcd.
        s.watches.insert(id, tx);
        drop(reply.send(Ok(Opened::Watch(sub, created))));
        return;
    }
    if id == -1 {
        // A progress answer for the whole stream (etcd's RequestProgress).
        let revision = resp.header().map_or(0, |h| h.revision());
        for tx in s.watches.values() {
            let _ = tx.send(Ok(WatchMessage::Progress { revision }));
        }
        return;
    }
    let Some(tx) = s.watches.get(&id) else {
        return; // a watch cancelled on our side; its last responses may trail
    };
    let item = convert(resp);
    let end = item.is_err();
    // A send fails when the owner has dropped its watch: its drop has asked for
    // the cancel, which must still find the watch listed to tell etcd.
    let _ = tx.send(item);
    if end {
        // Compacted or cancelled by etcd: that watch ends, the others go on.
        s.watches.remove(&id);
    }
}

/// The stream is gone: every watch on it and every create waiting ends with `err`.
fn fail_all(s: &mut State, err: Error) {
    let text = err.to_string();
    for (_, tx) in std::mem::take(&mut s.watches) {
        let _ = tx.send(Err(Error::backend("watch", text.clone())));
    }
    for p in s.pending.drain(..) {
        let _ = p.reply.send(Err(Error::backend("watch", text.clone())));
    }
    s.stream = None;
}
