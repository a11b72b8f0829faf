//! One watch as its owner holds it and as the routing task holds it: either a
//! stream (the backend's `WatchStream`, fed through a bounded channel) or a
//! sink that the routing task calls itself (no task hop per message).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use octopus_discovery_core::{Error, Result, WatchMessage, WatchSink};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use super::Cancel;

/// The owner's hold on watch `id` of stream `generation`: dropping it asks the
/// routing task to cancel the watch on etcd.
pub(crate) struct Handle {
    pub(super) generation: u64,
    pub(super) id: i64,
    pub(super) cancels: mpsc::WeakUnboundedSender<Cancel>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(cancels) = self.cancels.upgrade() {
            let _ = cancels.send(Cancel {
                generation: self.generation,
                id: self.id,
            });
        }
    }
}

/// One watch on the shared stream, as the backend's `WatchStream`: its
/// messages, then the error it ended with, if any.
pub(super) struct Sub {
    pub(super) messages: mpsc::Receiver<WatchMessage>,
    pub(super) end: Option<oneshot::Receiver<Error>>,
    pub(super) _handle: Handle,
}

impl Stream for Sub {
    type Item = Result<WatchMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(message) = ready!(self.messages.poll_recv(cx)) {
            return Poll::Ready(Some(Ok(message)));
        }
        // The task sends the end before it lets go of the messages.
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        let end = ready!(Pin::new(end).poll(cx)).ok();
        self.end = None;
        Poll::Ready(end.map(Err))
    }
}

/// The routing task's end of a [`Sub`]: a bounded channel, and the error to
/// end with.
pub(super) struct ChannelSink {
    pub(super) messages: mpsc::Sender<WatchMessage>,
    pub(super) end: oneshot::Sender<Error>,
}

impl WatchSink for ChannelSink {
    fn message(&mut self, message: WatchMessage) -> bool {
        match self.messages.try_send(message) {
            // A closed one: the owner has dropped its watch, and its cancel is
            // on the way (it must still find the watch listed to tell etcd).
            Ok(()) | Err(TrySendError::Closed(_)) => true,
            Err(TrySendError::Full(_)) => false,
        }
    }

    fn end(self: Box<Self>, error: Error) {
        let _ = self.end.send(error);
    }
}

/// A live watch, as the task holds it.
pub(super) struct Watcher {
    pub(super) sink: Box<dyn WatchSink>,
}
