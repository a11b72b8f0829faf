//! One LeaseKeepAlive stream per client, as etcd's Go clientv3 keeps: every
//! lease this backend keeps alive (each registration's, or the shared one) sends
//! its keepalives on that stream, and etcd's answers are matched to them by
//! lease id.
//!
//! etcd-client opens a keepalive stream per lease; its `LeaseKeeper` sends on
//! the stream's request channel, which (with etcd-client's `pub-response-field`
//! feature) is reachable, so that one stream carries requests for any lease. A
//! task owns the stream: it queues each request, keeps the callers waiting per
//! lease in order, and answers each with etcd's TTL (0: the lease is gone). When
//! the stream breaks, every caller waiting gets the error, and the next
//! keepalive opens a new stream.
//!
//! As in the watch multiplexer: requests wait in a bounded channel (callers
//! feel the backpressure), a request whose caller has gone (its keepalive timed
//! out) is dropped rather than sent, the outbox never holds more keepalives for
//! a lease than callers wait on it, and a writer task does the sending, so a
//! send stuck on a stalled connection never stops the answers from being
//! routed. The stream is opened beside the routing, not inside it.

mod link;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, LeaseKeepAliveResponse};
use futures_util::StreamExt;
use octopus_discovery_core::{Error, LeaseId, LeaseKeeper, OwnedTask, Result};
use tokio::sync::{mpsc, oneshot};

use crate::call::bounded;
use crate::convert::etcd_err;
use link::{Connector, Link, Opening};

/// Keepalives waiting for the task at most; more callers wait to queue.
const REQUEST_QUEUE: usize = 256;

type Reply = oneshot::Sender<Result<Option<Duration>>>;

/// The handle to the task that owns the client's keepalive stream.
pub(crate) struct LeaseMux {
    requests: mpsc::Sender<(LeaseId, Reply)>,
    streams: Arc<AtomicU64>,
    _task: OwnedTask<()>,
}

impl LeaseMux {
    pub(crate) fn spawn(client: Client, limit: Duration) -> Self {
        LeaseMux::with_connector(client, limit)
    }

    fn with_connector(connector: impl Connector, limit: Duration) -> Self {
        let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
        let streams = Arc::new(AtomicU64::new(0));
        let task = OwnedTask::spawn(run(connector, rx, limit, streams.clone()));
        LeaseMux {
            requests,
            streams,
            _task: task,
        }
    }

    /// Keepalive streams opened so far (one, plus one per reconnection).
    pub(crate) fn streams(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// A keeper for `lease` on the shared stream.
    pub(crate) fn keeper(&self, lease: LeaseId, limit: Duration) -> Box<dyn LeaseKeeper> {
        Box::new(MuxKeeper {
            lease,
            requests: self.requests.clone(),
            limit,
        })
    }
}

struct MuxKeeper {
    lease: LeaseId,
    requests: mpsc::Sender<(LeaseId, Reply)>,
    limit: Duration,
}

#[async_trait]
impl LeaseKeeper for MuxKeeper {
    async fn keep_alive(&mut self) -> Result<Option<Duration>> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.requests
                .send((self.lease, reply))
                .await
                .map_err(|_| Error::closed("keepalive stream"))?;
            answer.await.map_err(|_| Error::closed("keepalive stream"))?
        };
        bounded(self.limit, "keepalive", asked).await?
    }
}

/// The stream and what rides on it.
#[derive(Default)]
struct State {
    link: Option<Link>,
    /// The stream being opened, and the request that opens it.
    opening: Option<(Opening, LeaseId, Reply)>,
    /// Callers waiting for an answer, per lease, oldest first.
    waiting: BTreeMap<i64, VecDeque<Reply>>,
    /// Keepalives waiting for room in the writer's queue, and how many per lease.
    outbox: VecDeque<LeaseId>,
    queued: BTreeMap<i64, usize>,
}

async fn run(
    connector: impl Connector,
    mut requests: mpsc::Receiver<(LeaseId, Reply)>,
    limit: Duration,
    streams: Arc<AtomicU64>,
) {
    let mut s = State::default();
    loop {
        let (is_opening, has_link) = (s.opening.is_some(), s.link.is_some());
        let writer = s.link.as_ref().filter(|_| !s.outbox.is_empty()).map(|l| l.ops.clone());
        let opening = s.opening.as_mut().map(|(f, _, _)| f);
        let answers = s.link.as_mut().map(|l| &mut l.answers);
        tokio::select! {
            request = requests.recv(), if !is_opening => {
                let Some((lease, reply)) = request else { return };
                if reply.is_closed() {
                    continue; // the caller gave up before its turn
                }
                if s.link.is_some() {
                    s.enqueue(lease, reply);
                } else {
                    s.opening = Some((connector.open(lease, limit), lease, reply));
                }
            },
            opened = async { Some(opening?.await) }, if is_opening => {
                let Some((_, lease, reply)) = s.opening.take() else { continue };
                match opened {
                    Some(Ok(Some(link))) => {
                        streams.fetch_add(1, Ordering::Relaxed);
                        s.link = Some(link);
                        // Opening sent one keepalive and read its answer; this
                        // caller's is the next on the stream, if it still waits.
                        if !reply.is_closed() {
                            s.enqueue(lease, reply);
                        }
                    }
                    // The lease opening the stream is gone.
                    Some(Ok(None)) => drop(reply.send(Ok(None))),
                    Some(Err(e)) => drop(reply.send(Err(e))),
                    None => {}
                }
            },
            permit = async { writer?.reserve_owned().await.ok() }, if writer.is_some() => match permit {
                Some(permit) => {
                    if let Some(lease) = s.outbox.pop_front() {
                        s.dequeued(lease);
                        permit.send(lease);
                    }
                }
                None => s.fail_all("the keepalive stream is closed"),
            },
            answer = async { answers?.next().await }, if has_link => match answer {
                Some(Ok(resp)) => s.answer(&resp),
                None => s.fail_all("etcd ended the keepalive stream"),
                Some(Err(e)) => {
                    let e = etcd_err("keepalive", e).to_string();
                    s.fail_all(&e);
                }
            },
        }
    }
}

impl State {
    /// Adds a caller waiting on `lease`, and a keepalive to send unless enough
    /// are queued already for the callers still waiting.
    fn enqueue(&mut self, lease: LeaseId, reply: Reply) {
        let waiting = self.waiting.entry(lease.0).or_default();
        waiting.retain(|r| !r.is_closed());
        waiting.push_back(reply);
        let queued = self.queued.entry(lease.0).or_default();
        if *queued < waiting.len() {
            *queued += 1;
            self.outbox.push_back(lease);
        }
    }

    /// One keepalive for `lease` has left the outbox.
    fn dequeued(&mut self, lease: LeaseId) {
        if let std::collections::btree_map::Entry::Occupied(mut n) = self.queued.entry(lease.0) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
    }

    /// etcd's answer for one lease, to its oldest caller still waiting (only
    /// that lease's queue: a scan of every lease per answer would cost a client
    /// with n leases O(n²) per keepalive round).
    fn answer(&mut self, resp: &LeaseKeepAliveResponse) {
        let std::collections::btree_map::Entry::Occupied(mut queue) = self.waiting.entry(resp.id()) else {
            return;
        };
        let ttl = (resp.ttl() > 0).then(|| Duration::from_secs(resp.ttl() as u64));
        while let Some(reply) = queue.get_mut().pop_front() {
            if reply.send(Ok(ttl)).is_ok() {
                break;
            }
        }
        if queue.get().is_empty() {
            queue.remove();
        }
    }

    /// The stream is gone: every caller waiting gets the error.
    fn fail_all(&mut self, why: &str) {
        for (_, queue) in std::mem::take(&mut self.waiting) {
            for reply in queue {
                let _ = reply.send(Err(Error::backend("keepalive", why.to_owned())));
            }
        }
        self.outbox.clear();
        self.queued.clear();
        self.link = None;
    }
}
