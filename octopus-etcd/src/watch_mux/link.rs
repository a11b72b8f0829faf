//! The watch stream itself, as the multiplexer sees it: requests go into a
//! bounded channel that a writer task drains onto the gRPC stream (so a send
//! that hangs on a stalled connection holds up that writer, never the routing
//! loop), and answers come out of a stream. A [`Connector`] opens one; the
//! tests open fake ones and answer in whatever order they like.

use std::future::Future;
use std::pin::Pin;

use etcd_client::{Client, WatchOptions, WatchRequestSender, WatchResponse};
use futures_util::Stream;
use octopus_discovery_core::{OwnedTask, Result, Revision};
use tokio::sync::mpsc;

use crate::convert::etcd_err;

/// Requests queued for the writer at most: the routing loop keeps any more in
/// its outbox, and stops taking creates while one is unanswered anyway.
const WRITER_QUEUE: usize = 16;

/// What a create asks etcd for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) key: String,
    pub(crate) prefix: bool,
    pub(crate) start: Revision,
    /// Previous values with each event (etcd's `prev_kv`): etcd reads its
    /// store once more per event for them, so only callers that show them ask.
    pub(crate) prev: bool,
}

impl Spec {
    /// A watch on `key` (a prefix when `prefix`) from `start`, without previous values.
    pub(crate) fn new(key: &str, prefix: bool, start: Revision) -> Self {
        Self {
            key: key.to_owned(),
            prefix,
            start,
            prev: false,
        }
    }

    /// The same watch, with previous values.
    pub(crate) fn with_prev(self) -> Self {
        Self { prev: true, ..self }
    }

    fn options(&self) -> WatchOptions {
        let mut opts = WatchOptions::new()
            .with_start_revision(self.start)
            .with_progress_notify();
        if self.prev {
            opts = opts.with_prev_key();
        }
        if self.prefix {
            opts.with_prefix()
        } else {
            opts
        }
    }
}

/// One request on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Create(Spec),
    Cancel(i64),
}

/// etcd's answers on one stream.
pub(super) type Answers = Pin<Box<dyn Stream<Item = std::result::Result<WatchResponse, etcd_client::Error>> + Send>>;

/// An open watch stream.
pub(super) struct Link {
    /// Requests for the writer. Closed when the writer has given up (the
    /// stream is broken).
    pub(super) ops: mpsc::Sender<Op>,
    pub(super) answers: Answers,
    /// The writer, stopped with the link.
    pub(super) _writer: Option<OwnedTask<()>>,
}

/// Opens watch streams; `first` is the create the stream opens with (etcd's
/// client sends it as part of opening).
pub(super) trait Connector: Send + 'static {
    fn open(&self, first: Spec) -> Pin<Box<dyn Future<Output = Result<Link>> + Send>>;
}

impl Connector for Client {
    fn open(&self, first: Spec) -> Pin<Box<dyn Future<Output = Result<Link>> + Send>> {
        let mut watches = self.watch_client();
        Box::pin(async move {
            let stream = watches
                .watch(first.key.as_str(), Some(first.options()))
                .await
                .map_err(|e| etcd_err("watch", e))?;
            let (sender, answers) = stream.split();
            let (ops, queue) = mpsc::channel(WRITER_QUEUE);
            Ok(Link {
                ops,
                answers: Box::pin(answers),
                _writer: Some(OwnedTask::spawn(write(sender, queue))),
            })
        })
    }
}

/// Sends each request in order; ends when the stream refuses one (the routing
/// loop sees the stream's end on the answer side, or the closed queue).
async fn write(mut sender: WatchRequestSender, mut queue: mpsc::Receiver<Op>) {
    while let Some(op) = queue.recv().await {
        let sent = match op {
            Op::Create(spec) => sender.watch(spec.key.as_str(), Some(spec.options())).await,
            Op::Cancel(id) => sender.cancel(id).await,
        };
        if sent.is_err() {
            return;
        }
    }
}
