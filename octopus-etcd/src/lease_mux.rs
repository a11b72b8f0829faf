//! One LeaseKeepAlive stream per client, as etcd's Go clientv3 keeps: every
//! lease this backend keeps alive (each registration's, or the shared one) sends
//! its keepalives on that stream, and etcd's answers are matched to them by
//! lease id.
//!
//! etcd-client opens a keepalive stream per lease; its `LeaseKeeper` sends on
//! the stream's request channel, which (with etcd-client's `pub-response-field`
//! feature) is reachable, so that one stream carries requests for any lease. A
//! task owns the stream: it sends each request, keeps the callers waiting per
//! lease in order, and answers each with etcd's TTL (0: the lease is gone). When
//! the stream breaks, every caller waiting gets the error, and the next
//! keepalive opens a new stream.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, LeaseKeepAliveStream};
use octopus_discovery_core::{Error, LeaseId, LeaseKeeper, OwnedTask, Result};
use tokio::sync::{mpsc, oneshot};

use crate::call::bounded;
use crate::convert::etcd_err;

type Reply = oneshot::Sender<Result<Option<Duration>>>;

/// The handle to the task that owns the client's keepalive stream.
pub(crate) struct LeaseMux {
    requests: mpsc::UnboundedSender<(LeaseId, Reply)>,
    streams: Arc<AtomicU64>,
    _task: OwnedTask<()>,
}

impl LeaseMux {
    pub(crate) fn spawn(client: Client, limit: Duration) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let streams = Arc::new(AtomicU64::new(0));
        let task = OwnedTask::spawn(run(client, rx, limit, streams.clone()));
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
    requests: mpsc::UnboundedSender<(LeaseId, Reply)>,
    limit: Duration,
}

#[async_trait]
impl LeaseKeeper for MuxKeeper {
    async fn keep_alive(&mut self) -> Result<Option<Duration>> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((self.lease, reply))
            .map_err(|_| Error::closed("keepalive stream"))?;
        bounded(self.limit, "keepalive", answer)
            .await?
            .map_err(|_| Error::closed("keepalive stream"))?
    }
}

/// The stream: where requests go (the keeper of the lease that opened it, whose
/// request channel any lease's keeper may share), and where answers come from.
struct Stream {
    opener: etcd_client::LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

impl Stream {
    /// Sends a keepalive for `lease` on this stream.
    async fn send(&self, lease: LeaseId) -> std::result::Result<(), etcd_client::Error> {
        let mut keeper = etcd_client::LeaseKeeper {
            id: lease.0,
            sender: self.opener.sender.clone(),
        };
        keeper.keep_alive().await
    }
}

async fn run(
    client: Client,
    mut requests: mpsc::UnboundedReceiver<(LeaseId, Reply)>,
    limit: Duration,
    streams: Arc<AtomicU64>,
) {
    let mut stream: Option<Stream> = None;
    // Callers waiting for an answer, per lease, oldest first.
    let mut waiting: BTreeMap<i64, VecDeque<Reply>> = BTreeMap::new();
    loop {
        let answer = async {
            match stream.as_mut() {
                Some(s) => s.answers.message().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => {
                let Some((lease, reply)) = request else { return };
                if stream.is_none() {
                    match open(&client, lease, limit).await {
                        Ok(Some(s)) => {
                            streams.fetch_add(1, Ordering::Relaxed);
                            stream = Some(s);
                        }
                        Ok(None) => {
                            // The lease opening the stream is gone (etcd-client reads
                            // the first answer itself and says so).
                            let _ = reply.send(Ok(None));
                            continue;
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    }
                }
                let Some(s) = stream.as_mut() else { continue };
                let sent = s.send(lease).await;
                match sent {
                    Ok(()) => waiting.entry(lease.0).or_default().push_back(reply),
                    Err(_) => {
                        let _ = reply.send(Err(Error::closed("keepalive stream")));
                        fail_all(&mut stream, &mut waiting, "the keepalive stream is closed");
                    }
                }
            }
            answer = answer => match answer {
                Ok(Some(resp)) => {
                    // Only this lease's queue: a scan of every lease per answer
                    // would cost a client with n leases O(n²) per keepalive round.
                    if let std::collections::btree_map::Entry::Occupied(mut queue) = waiting.entry(resp.id()) {
                        if let Some(reply) = queue.get_mut().pop_front() {
                            let ttl = (resp.ttl() > 0).then(|| Duration::from_secs(resp.ttl() as u64));
                            let _ = reply.send(Ok(ttl));
                        }
                        if queue.get().is_empty() {
                            queue.remove();
                        }
                    }
                }
                Ok(None) => fail_all(&mut stream, &mut waiting, "etcd ended the keepalive stream"),
                Err(e) => {
                    let e = etcd_err("keepalive", e).to_string();
                    fail_all(&mut stream, &mut waiting, &e);
                }
            },
        }
    }
}

/// Opens the stream with a keepalive for `lease` (etcd-client sends one and
/// reads its answer); `None` when that lease is gone.
async fn open(client: &Client, lease: LeaseId, limit: Duration) -> Result<Option<Stream>> {
    let mut leases = client.lease_client();
    match bounded(limit, "lease keepalive", leases.keep_alive(lease.0)).await? {
        Ok((opener, answers)) => Ok(Some(Stream { opener, answers })),
        Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => Ok(None),
        Err(e) => Err(etcd_err("lease keepalive", e)),
    }
}

fn fail_all(stream: &mut Option<Stream>, waiting: &mut BTreeMap<i64, VecDeque<Reply>>, why: &str) {
    for (_, queue) in std::mem::take(waiting) {
        for reply in queue {
            let _ = reply.send(Err(Error::backend("keepalive", why.to_owned())));
        }
    }
    *stream = None;
}
