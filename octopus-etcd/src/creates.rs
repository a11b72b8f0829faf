//! The fenced write's first step, `create` (write a key if absent, else read
//! it), for many registrations at once: creates that wait while earlier ones
//! are in flight leave together, as one transaction.
//!
//! etcd spends most of a registration on the requests themselves (gRPC, a raft
//! entry, an apply), not on the keys: one transaction that compares N keys'
//! create revisions and puts all N (each under its own lease) costs it less
//! than N transactions. A lone create leaves at once, exactly as before; only a
//! burst (a start, a recovery storm) is combined, and only up to
//! [`IN_FLIGHT`] transactions are in flight, so a burst's creates queue behind
//! them and leave together.
//!
//! A combined transaction writes all of its keys or none. When some key is
//! present it writes none and reads them all: the creates of present keys are
//! answered with what was read, the others leave again with the next batch.
//! When it fails (a lease not found, a lost connection), each of its creates
//! is sent again alone, so that one create's error stays its own; a timeout is
//! every create's (sent alone, each would make its caller wait a second
//! limit). A transaction refused for its size (a cluster's lower
//! `--max-txn-ops` or `--max-request-bytes`) also makes later batches half its
//! size.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use futures_util::stream::{FuturesUnordered, StreamExt};
use octopus_discovery_core::fencing::Created;
use octopus_discovery_core::{Error, ErrorKind, LeaseId, OwnedTask, Result};
use tokio::sync::{mpsc, oneshot};

use crate::call::within;
use crate::convert::{convert_kv, header};

/// Transactions in flight at most; more creates wait and leave together.
const IN_FLIGHT: usize = 4;
/// Creates in one transaction at most (etcd's default `--max-txn-ops` is 128).
/// A cluster that refuses a transaction as too large (a lower `--max-txn-ops`,
/// or `--max-request-bytes` against large values) halves it, down to one.
const BATCH_MAX: usize = 64;

/// One caller's create.
struct Job {
    key: String,
    value: Vec<u8>,
    lease: LeaseId,
    reply: oneshot::Sender<Result<Created>>,
    /// Sent alone: a combined transaction that held it failed.
    alone: bool,
}

/// The handle to the task that combines creates.
pub(crate) struct Creates {
    jobs: mpsc::UnboundedSender<Job>,
    _task: OwnedTask<()>,
}

impl Creates {
    pub(crate) fn spawn(client: Client, limit: Duration) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        Creates {
            jobs,
            _task: OwnedTask::spawn(run(client, limit, rx)),
        }
    }

    /// Writes `key` under `lease` if absent; else reads it.
    pub(crate) async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Created> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key: key.to_owned(),
            value,
            lease,
            reply,
            alone: false,
        };
        self.jobs.send(job).map_err(|_| Error::closed("etcd client"))?;
        answer.await.map_err(|_| Error::closed("etcd client"))?
    }
}

/// What one transaction left to do: creates to send again (alone or not), and
/// its size when etcd refused it as too large.
type Leftover = (Vec<Job>, Option<usize>);

async fn run(client: Client, limit: Duration, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    let mut most = BATCH_MAX;
    loop {
        while in_flight.len() < IN_FLIGHT {
            let Some(batch) = next_batch(&mut queue, most) else {
                break;
            };
            in_flight.push(send(client.clone(), batch, limit));
        }
        if !open && queue.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            job = jobs.recv(), if open => match job {
                Some(job) => {
                    queue.push_back(job);
                    // Whatever else is waiting joins it.
                    while let Ok(job) = jobs.try_recv() {
                        queue.push_back(job);
                    }
                }
                None => open = false,
            },
            Some((leftover, refused)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(size) = refused.filter(|size| size / 2 < most) {
                    most = (size / 2).max(1);
                    tracing::debug!(most, "etcd refused a combined create as too large; combining fewer");
                }
                for job in leftover.into_iter().rev() {
                    queue.push_front(job);
                }
            }
        }
    }
}

/// The next transaction's creates: one sent alone, or up to `most` creates of
/// distinct keys (a transaction may put a key once), in order.
fn next_batch(queue: &mut VecDeque<Job>, most: usize) -> Option<Vec<Job>> {
    queue.retain(|job| !job.reply.is_closed()); // their callers gave up
    let first = queue.pop_front()?;
    if first.alone {
        return Some(vec![first]);
    }
    let mut keys = BTreeSet::from([first.key.clone()]);
    let mut batch = vec![first];
    let mut rest = VecDeque::with_capacity(queue.len());
    while let Some(job) = queue.pop_front() {
        if batch.len() < most && !job.alone && keys.insert(job.key.clone()) {
            batch.push(job);
        } else {
            rest.push_back(job);
        }
    }
    *queue = rest;
    Some(batch)
}

/// Sends one transaction for `batch` and answers what it settled.
async fn send(client: Client, batch: Vec<Job>, limit: Duration) -> Leftover {
    let compares: Vec<Compare> = batch
        .iter()
        .map(|j| Compare::create_revision(j.key.as_str(), CompareOp::Equal, 0))
        .collect();
    let puts: Vec<TxnOp> = batch
        .iter()
        .map(|j| {
            TxnOp::put(
                j.key.as_str(),
                j.value.clone(),
                Some(PutOptions::new().with_lease(j.lease.0)),
            )
        })
        .collect();
    let gets: Vec<TxnOp> = batch.iter().map(|j| TxnOp::get(j.key.as_str(), None)).collect();
    let txn = Txn::new().when(compares).and_then(puts).or_else(gets);
    let resp = within(limit, "txn", client.kv_client().txn(txn)).await;
    match resp {
        Ok(resp) if resp.succeeded() => {
            let revision = header(resp.header()).revision;
            for job in batch {
                let _ = job.reply.send(Ok(Created::Written(revision)));
            }
            (Vec::new(), None)
        }
        Ok(resp) => {
            let alone = batch.len() == 1;
            let mut leftover = Vec::new();
            let found = resp.op_responses().into_iter().map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(convert_kv),
                _ => None,
            });
            for (job, kv) in batch.into_iter().zip(found) {
                match kv {
                    Some(kv) => drop(job.reply.send(Ok(Created::Present(Some(kv))))),
                    // Alone, it was there and went away before the read could see it.
                    None if alone => drop(job.reply.send(Ok(Created::Present(None)))),
                    // Absent: another key stopped the write, not this one.
                    None => leftover.push(job),
                }
            }
            (leftover, None)
        }
        // A timeout is the batch's (the connection's), and sending each alone
        // would make its callers wait a second limit: each gets it.
        Err(e) if batch.len() == 1 || e.kind() == ErrorKind::Timeout => {
            let mut first = Some(e);
            for job in batch {
                let e = first.take().unwrap_or_else(|| Error::timeout("txn", limit));
                let _ = job.reply.send(Err(e));
            }
            (Vec::new(), None)
        }
        Err(e) => {
            let refused = too_large(&e).then_some(batch.len());
            let again = batch.into_iter().map(|job| Job { alone: true, ..job }).collect();
            (again, refused)
        }
    }
}

/// Whether etcd refused a transaction for its size: more operations than its
/// `--max-txn-ops`, or more bytes than its `--max-request-bytes`.
fn too_large(e: &Error) -> bool {
    let text = e.chain();
    text.contains("too many operations") || text.contains("request is too large")
}
