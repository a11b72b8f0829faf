//! The keepalive stream itself, as the multiplexer sees it: lease ids go into
//! a bounded channel that a writer task drains onto the gRPC stream (a send
//! stuck on a stalled connection holds up that writer, never the routing
//! loop), and answers come out of a stream. A [`Connector`] opens one; the
//! tests open fake ones.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveResponse};
use futures_util::Stream;
use octopus_discovery_core::{LeaseId, OwnedTask, Result};
use tokio::sync::mpsc;

use crate::call::bounded;
use crate::convert::etcd_err;

/// Keepalives queued for the writer at most: the routing loop keeps any more
/// in its outbox.
const WRITER_QUEUE: usize = 16;

/// etcd's answers on one stream.
pub(super) type Answers =
    Pin<Box<dyn Stream<Item = std::result::Result<LeaseKeepAliveResponse, etcd_client::Error>> + Send>>;

/// An open keepalive stream.
pub(super) struct Link {
    /// Leases to send a keepalive for. Closed when the writer has given up.
    pub(super) ops: mpsc::Sender<LeaseId>,
    pub(super) answers: Answers,
    /// The writer, stopped with the link.
    pub(super) _writer: Option<OwnedTask<()>>,
}

/// What opening a stream gives: the stream, or `None` when the lease it was
/// opened with is gone (etcd's client reads that first answer itself).
pub(super) type Opening = Pin<Box<dyn Future<Output = Result<Option<Link>>> + Send>>;

/// Opens keepalive streams with a keepalive for `first`.
pub(super) trait Connector: Send + 'static {
    fn open(&self, first: LeaseId, limit: Duration) -> Opening;
}

impl Connector for Client {
    fn open(&self, first: LeaseId, limit: Duration) -> Opening {
        let mut leases = self.lease_client();
        Box::pin(async move {
            let (opener, answers) = match bounded(limit, "lease keepalive", leases.keep_alive(first.0)).await? {
                Ok(stream) => stream,
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => return Ok(None),
                Err(e) => return Err(etcd_err("lease keepalive", e)),
            };
            let (ops, queue) = mpsc::channel(WRITER_QUEUE);
            Ok(Some(Link {
                ops,
                answers: Box::pin(answers),
                _writer: Some(OwnedTask::spawn(write(opener, queue))),
            }))
        })
    }
}

/// Sends a keepalive for each lease in order, on the stream's request channel
/// (which any lease's keepalives may share); ends when the stream refuses one.
async fn write(mut keeper: etcd_client::LeaseKeeper, mut queue: mpsc::Receiver<LeaseId>) {
    while let Some(lease) = queue.recv().await {
        keeper.id = lease.0;
        if keeper.keep_alive().await.is_err() {
            return;
        }
    }
}
