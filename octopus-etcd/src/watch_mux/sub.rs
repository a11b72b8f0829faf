//! One watch as its owner holds it (the backend's `WatchStream`) and as the
//! routing task holds it.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use octopus_discovery_core::{Error, Result, WatchMessage};
use tokio::sync::{mpsc, oneshot};

use super::Cancel;

/// One watch on the shared stream, as the backend's `WatchStream`: its
/// messages, then the error it ended with, if any.
pub(super) struct Sub {
    pub(super) messages: mpsc::Receiver<WatchMessage>,
    pub(super) end: Option<oneshot::Receiver<Error>>,
    pub(super) generation: u64,
    pub(super) id: i64,
    pub(super) cancels: mpsc::WeakUnboundedSender<Cancel>,
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

impl Drop for Sub {
    fn drop(&mut self) {
        if let Some(cancels) = self.cancels.upgrade() {
            let _ = cancels.send(Cancel {
                generation: self.generation,
                id: self.id,
            });
        }
    }
}

/// A live watch, as the task holds it.
pub(super) struct Watcher {
    pub(super) messages: mpsc::Sender<WatchMessage>,
    pub(super) end: oneshot::Sender<Error>,
}
