//! One gRPC watch stream per client, as etcd's Go clientv3 keeps: every watch
//! this backend opens (the discovery caches of all services, each registered
//! service's watch on its registrations' keys) is a watch id on that stream.
//!
//! A task owns the stream and routes every response by its watch id: events
//! and progress to that watch, a compaction or a cancel by etcd to that watch
//! alone (the others go on), a progress broadcast (watch id -1) to all. When the
//! stream breaks, every watch on it ends with the error; their owners watch
//! again from their own revisions, and the first of them opens a new stream.
//! A watch is delivered either to a sink that this task calls itself (the
//! discovery caches': a change is applied and published here, with no task
//! hop between the stream and the view) or to a bounded channel its owner
//! reads as a stream.
//!
//! A `created` answer carries no trace of the create it answers, and etcd's
//! gRPC proxy answers out of order (a create for a range it already follows at
//! once, a new range only once etcd has created the watch behind it). So, as
//! clientv3 does (its `resuming` queue), one create is in flight at a time: the
//! next leaves only when the last is answered, and a `created` answer belongs
//! to the one create unanswered. What the protocol leaves over is cleaned up on
//! etcd: a `created` nobody waits for (or whose caller has gone) and events for
//! an id nobody owns are cancelled, each id once.
//!
//! Every queue is bounded: creates wait in a bounded channel (callers feel the
//! backpressure), each watch buffers a bounded number of messages (one that
//! falls behind, or a sink that refuses a message, ends alone, and its owner
//! watches again from its revision, instead of holding up the stream), the
//! writer's queue is bounded and the
//! outbox holds at most the one create plus one cancel per watch id. Requests
//! go to the network through a writer task, so a send stuck on a stalled
//! connection never stops the routing.

mod link;
#[cfg(test)]
mod sink_tests;
mod sub;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use etcd_client::{Client, WatchResponse};
use futures_util::task::AtomicWaker;
use octopus_discovery_core::{Error, OwnedTask, Result, Revision, WatchMessage, WatchSink};
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::convert::{convert, etcd_err};
pub(crate) use link::Spec;
use link::{Connector, Link, Op};
pub(crate) use sub::Handle;
use sub::{ChannelSink, Sub, Watcher};

/// Creates waiting for their turn at most; more callers wait to queue.
const CREATE_QUEUE: usize = 64;
/// Messages a watch holds unread at most before it ends as fallen behind.
const WATCH_BUFFER: usize = 1024;

/// The handle to the task that owns the client's watch stream.
pub(crate) struct WatchMux {
    creates: mpsc::Sender<Create>,
    /// Cancels from dropped watches. Unbounded, but each watch sends at most
    /// one: it never holds more entries than there are watches.
    _cancels: mpsc::UnboundedSender<Cancel>,
    stats: Arc<MuxStats>,
    _task: OwnedTask<()>,
}

type Reply = oneshot::Sender<Result<Answer>>;

#[cfg(test)]
impl Opened {
    /// The created watch; panics on a compacted start.
    fn into_watch(self) -> (octopus_discovery_core::WatchStream, Revision) {
        match self {
            Opened::Watch(w, r) => (w, r),
            Opened::Pushed(..) => panic!("a pushed watch has no stream"),
            Opened::Compacted(c) => panic!("compacted at {c}"),
        }
    }
}

/// etcd's answer to one create, as the routing loop hands it to its caller.
enum Answer {
    /// Created, at the store's revision then.
    Watch(Sub, Revision),
    /// Created, its messages going to the caller's sink.
    Pushed(Handle, Revision),
    /// Refused: the start revision is compacted (etcd's compaction revision).
    Compacted(Revision),
}

/// What creating a watch on the shared stream gave.
pub(crate) enum Opened {
    /// The watch, and the revision etcd created it at (0 if etcd did not say).
    Watch(octopus_discovery_core::WatchStream, Revision),
    /// The watch, its messages handed to the sink it was opened with (the
    /// handle keeps it), and the revision etcd created it at.
    Pushed(Handle, Revision),
    /// etcd refused it: its start revision is compacted (etcd's compaction revision).
    Compacted(Revision),
}

struct Create {
    spec: Spec,
    /// Where its messages go; `None`: to a stream the caller reads.
    sink: Option<Box<dyn WatchSink>>,
    reply: Reply,
}

/// The owner of watch `id` of stream `generation` dropped it.
struct Cancel {
    generation: u64,
    id: i64,
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
        WatchMux::with_connector(client)
    }

    fn with_connector(connector: impl Connector) -> Self {
        let (creates, creates_rx) = mpsc::channel(CREATE_QUEUE);
        let (cancels, cancels_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MuxStats::default());
        let task = OwnedTask::spawn(run(
            connector,
            creates_rx,
            cancels_rx,
            cancels.downgrade(),
            stats.clone(),
        ));
        WatchMux {
            creates,
            _cancels: cancels,
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

    /// [`open`](Self::open) without a sink: the messages come as a stream.
    #[cfg(test)]
    pub(crate) async fn watch(&self, spec: Spec) -> Result<Opened> {
        self.open(spec, None).await
    }

    /// Opens the watch `spec` describes; resolves once etcd has created it (or
    /// refused it: compacted), with the store's revision when it was created
    /// (0 if etcd did not say). With `sink`, the routing task hands it every
    /// message itself ([`Opened::Pushed`]); without, the caller reads a stream
    /// ([`Opened::Watch`]).
    pub(crate) async fn open(&self, spec: Spec, sink: Option<Box<dyn WatchSink>>) -> Result<Opened> {
        let (reply, answer) = oneshot::channel();
        self.creates
            .send(Create { spec, sink, reply })
            .await
            .map_err(|_| Error::closed("watch stream"))?;
        Ok(match answer.await.map_err(|_| Error::closed("watch stream"))?? {
            Answer::Watch(sub, created) => Opened::Watch(Box::pin(sub), created),
            Answer::Pushed(handle, created) => Opened::Pushed(handle, created),
            Answer::Compacted(compacted) => Opened::Compacted(compacted),
        })
    }
}

/// A create sent, waiting for etcd's `created` answer.
struct Pending {
    start: Revision,
    sink: Option<Box<dyn WatchSink>>,
    reply: Reply,
}

type Opening = Pin<Box<dyn Future<Output = Result<Link>> + Send>>;

/// The stream and what rides on it.
#[derive(Default)]
struct State {
    link: Option<Link>,
    /// The stream being opened (with the create in `unanswered`).
    opening: Option<Opening>,
    /// Increases with every stream opened: a cancel for an older stream's watch
    /// is moot (that watch ended with its stream).
    generation: u64,
    /// Creates sent and not answered: one at most (several only under the
    /// simulator's deliberate `positional-created` bug).
    unanswered: VecDeque<Pending>,
    /// Requests waiting for room in the writer's queue.
    outbox: VecDeque<Op>,
    watches: BTreeMap<i64, Watcher>,
    /// Ids this stream has asked etcd to cancel (each once), until etcd
    /// confirms.
    cancelled: BTreeSet<i64>,
}

/// Whether the simulator switched on its deliberate bug `PositionalCreated`
/// (it exists only with the feature `sim-hooks`).
fn positional_created() -> bool {
    #[cfg(feature = "sim-hooks")]
    return octopus_discovery_core::hooks::enabled(octopus_discovery_core::hooks::Bug::PositionalCreated);
    #[cfg(not(feature = "sim-hooks"))]
    false
}

/// The routing loop. Answers from etcd are the busy source: every wake-up polls
/// the stream, until it has nothing more. The quiet ones (creates and cancels
/// from this client) are polled only when their channels have woken the task
/// since they last answered `Pending`, so a change that arrives costs the
/// stream's poll and its routing, and no poll of an idle channel.
async fn run(
    connector: impl Connector,
    mut creates: mpsc::Receiver<Create>,
    mut cancels: mpsc::UnboundedReceiver<Cancel>,
    me: mpsc::WeakUnboundedSender<Cancel>,
    stats: Arc<MuxStats>,
) {
    let mut s = State::default();
    let quiet = Arc::new(Quiet::default());
    let quiet_waker = Waker::from(quiet.clone());
    // Whether each quiet channel has answered `Pending` (and so holds the
    // waker) since it last woke the task: then polling it again is no use.
    let (mut creates_armed, mut cancels_armed) = (false, false);
    // Waiting for room in the writer's queue for the outbox's first request.
    let mut reserving: Option<Reserving> = None;
    // What `stats.watches` holds (stored only when it changes).
    let mut watches_seen = 0;
    std::future::poll_fn(move |cx| {
        quiet.task.register(cx.waker());
        let mut routed = 0;
        loop {
            // A load first: the flag is seldom set, and a swap would write its line every time.
            if quiet.woken.load(Ordering::Acquire) && quiet.woken.swap(false, Ordering::AcqRel) {
                (creates_armed, cancels_armed) = (false, false);
            }
            let mut quiet_cx = Context::from_waker(&quiet_waker);
            let mut progress = false;
            let may_create = s.opening.is_none() && (s.unanswered.is_empty() || positional_created());
            if may_create && !creates_armed {
                match creates.poll_recv(&mut quiet_cx) {
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Ready(Some(create)) => {
                        s.create(&connector, create);
                        progress = true;
                    }
                    Poll::Pending => creates_armed = true,
                }
            }
            if !cancels_armed {
                match cancels.poll_recv(&mut quiet_cx) {
                    Poll::Ready(Some(Cancel { generation, id })) => {
                        if generation == s.generation && s.watches.remove(&id).is_some() {
                            s.cancel_on_etcd(id);
                        }
                        progress = true;
                    }
                    // Ready(None): no cancel can come any more (the handle's
                    // sender is gone, and so are the creates: the next poll of
                    // those ends).
                    Poll::Ready(None) | Poll::Pending => cancels_armed = true,
                }
            }
            if let Some(opening) = s.opening.as_mut() {
                if let Poll::Ready(opened) = opening.as_mut().poll(cx) {
                    s.opening = None;
                    match opened {
                        Ok(link) => {
                            s.generation += 1;
                            s.link = Some(link);
                            stats.streams.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => s.fail_all(e),
                    }
                    progress = true;
                }
            }
            if !s.outbox.is_empty() || reserving.is_some() {
                progress |= s.write(&mut reserving, cx);
            }
            if let Some(link) = s.link.as_mut() {
                if let Poll::Ready(answer) = link.answers.as_mut().poll_next(cx) {
                    match answer {
                        Some(Ok(resp)) => s.route(resp, &me),
                        None => s.fail_all(Error::closed("watch stream")),
                        Some(Err(e)) => s.fail_all(etcd_err("watch", e)),
                    }
                    routed += 1;
                    progress = true;
                }
            }
            if s.watches.len() != watches_seen {
                watches_seen = s.watches.len();
                stats.watches.store(watches_seen, Ordering::Relaxed);
            }
            if !progress {
                return Poll::Pending;
            }
            if routed >= ROUTE_BUDGET {
                // A long burst: let the other tasks on this thread run, then go on.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    })
    .await
}

/// Answers routed in one poll of the loop at most, before it yields.
const ROUTE_BUDGET: usize = 64;

/// The waker the quiet channels (creates, cancels) hold: it notes that one of
/// them has something, then wakes the task.
#[derive(Default)]
struct Quiet {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Quiet {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Room being reserved in the writer's queue, on the stream of a generation.
type Reserving = (u64, Pin<Box<dyn Future<Output = Option<mpsc::OwnedPermit<Op>>> + Send>>);

impl State {
    /// Hands the outbox's requests to the writer while its queue has room; when
    /// it is full, waits for room (`reserving`). True if anything happened.
    fn write(&mut self, reserving: &mut Option<Reserving>, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            let Some(link) = self.link.as_ref() else {
                *reserving = None;
                return progress;
            };
            match reserving.as_mut() {
                Some((generation, wait)) if *generation == self.generation => {
                    let Poll::Ready(permit) = wait.as_mut().poll(cx) else {
                        return progress;
                    };
                    *reserving = None;
                    let Some(permit) = permit else {
                        self.fail_all(Error::closed("watch stream"));
                        return true;
                    };
                    if let Some(op) = self.outbox.pop_front() {
                        permit.send(op);
                    }
                    progress = true;
                    continue;
                }
                Some(_) => *reserving = None, // for a stream that is gone
                None => {}
            }
            let Some(op) = self.outbox.pop_front() else {
                return progress;
            };
            match link.ops.try_send(op) {
                Ok(()) => progress = true,
                Err(mpsc::error::TrySendError::Full(op)) => {
                    // Waited for next time round, so that it holds the task's waker.
                    self.outbox.push_front(op);
                    let ops = link.ops.clone();
                    *reserving = Some((self.generation, Box::pin(async move { ops.reserve_owned().await.ok() })));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.fail_all(Error::closed("watch stream"));
                    return true;
                }
            }
        }
    }

    /// Sends a create (opening the stream with it when there is none), unless
    /// its caller has stopped waiting.
    fn create(&mut self, connector: &impl Connector, Create { spec, sink, reply }: Create) {
        if reply.is_closed() {
            return;
        }
        let start = spec.start;
        if self.link.is_some() {
            self.outbox.push_back(Op::Create(spec));
        } else {
            self.opening = Some(connector.open(spec));
        }
        self.unanswered.push_back(Pending { start, sink, reply });
    }

    /// Asks etcd to cancel watch `id`, once.
    fn cancel_on_etcd(&mut self, id: i64) {
        if self.link.is_some() && self.cancelled.insert(id) {
            self.outbox.push_back(Op::Cancel(id));
        }
    }

    /// One response from etcd, to the watch it belongs to.
    fn route(&mut self, resp: WatchResponse, me: &mpsc::WeakUnboundedSender<Cancel>) {
        let id = resp.watch_id();
        if resp.created() {
            self.created(resp, me);
        } else if id == -1 {
            // A progress answer for the whole stream (etcd's RequestProgress).
            let revision = resp.header().map_or(0, |h| h.revision());
            let ids: Vec<i64> = self.watches.keys().copied().collect();
            for id in ids {
                self.deliver(id, WatchMessage::Progress { revision });
            }
        } else if !self.watches.contains_key(&id) {
            if resp.canceled() {
                self.cancelled.remove(&id); // etcd confirms: the id is done
            } else {
                // Trailing events of a watch cancelled here (already asked), or
                // an id nobody owns: cancel it, once (as clientv3 does).
                self.cancel_on_etcd(id);
            }
        } else {
            match convert(resp) {
                Ok(message) => self.deliver(id, message),
                // Compacted or cancelled by etcd: that watch ends, the others go on.
                Err(e) => self.end(id, e),
            }
        }
    }

    /// etcd's answer to the create unanswered.
    fn created(&mut self, resp: WatchResponse, me: &mpsc::WeakUnboundedSender<Cancel>) {
        let id = resp.watch_id();
        let Some(Pending { start, sink, reply }) = self.unanswered.pop_front() else {
            tracing::warn!(id, "etcd created a watch nobody asked for; cancelling it");
            if !resp.canceled() {
                self.cancel_on_etcd(id);
            }
            return;
        };
        if resp.canceled() {
            let answer = if resp.compact_revision() > 0 {
                Ok(Answer::Compacted(resp.compact_revision()))
            } else {
                Err(Error::backend_message(format!(
                    "etcd refused the watch from revision {start}: {}",
                    resp.cancel_reason()
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        if reply.is_closed() {
            self.cancel_on_etcd(id); // the caller gave up waiting
            return;
        }
        let handle = Handle {
            generation: self.generation,
            id,
            cancels: me.clone(),
        };
        let created = resp.header().map_or(0, |h| h.revision());
        let (sink, answer) = match sink {
            Some(sink) => (sink, Answer::Pushed(handle, created)),
            None => {
                let (messages, rx) = mpsc::channel(WATCH_BUFFER);
                let (end, end_rx) = oneshot::channel();
                let sub = Sub {
                    messages: rx,
                    end: Some(end_rx),
                    _handle: handle,
                };
                (
                    Box::new(ChannelSink { messages, end }) as Box<dyn WatchSink>,
                    Answer::Watch(sub, created),
                )
            }
        };
        // Listed before the reply: if the caller gives up now, dropping the
        // handle asks for its cancel, which finds it here and tells etcd.
        self.watches.insert(id, Watcher { sink });
        drop(reply.send(Ok(answer)));
    }

    /// Hands `message` to watch `id`; a watch that cannot take it (a stream
    /// whose buffer is full) has fallen behind and ends (its owner watches
    /// again from its own revision).
    fn deliver(&mut self, id: i64, message: WatchMessage) {
        let Some(w) = self.watches.get_mut(&id) else { return };
        if !w.sink.message(message) {
            self.end(
                id,
                Error::backend_message("the watch fell behind (its messages went unread) and was ended"),
            );
            self.cancel_on_etcd(id);
        }
    }

    /// Ends watch `id` with `err` (after the messages it holds).
    fn end(&mut self, id: i64, err: Error) {
        if let Some(w) = self.watches.remove(&id) {
            w.sink.end(err);
        }
    }

    /// The stream is gone: every watch on it and every create waiting ends with `err`.
    fn fail_all(&mut self, err: Error) {
        let text = err.to_string();
        for (_, w) in std::mem::take(&mut self.watches) {
            w.sink.end(Error::backend("watch", text.clone()));
        }
        let mut first = Some(err);
        for p in self.unanswered.drain(..) {
            let e = first.take().unwrap_or_else(|| Error::backend("watch", text.clone()));
            let _ = p.reply.send(Err(e));
        }
        self.outbox.clear();
        self.cancelled.clear();
        self.link = None;
        self.opening = None;
    }
}
