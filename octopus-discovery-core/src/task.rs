//! [`OwnedTask`]: the one way Octopus owns a task it spawns.
//!
//! Every task Octopus spawns has exactly one owner, an `OwnedTask`: dropping the
//! owner stops the task (tokio aborts it at its next await), awaiting the owner
//! waits for the task's end. A task that must outlive its owner says so with
//! [`OwnedTask::detach`] (a dropped registration's background deregistration is
//! the one such task). Tasks that serve many connections own them in a
//! [`tokio::task::JoinSet`], which is itself owned this way, so stopping a server
//! stops its connections too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

/// A spawned task and its one owner: dropping it aborts the task; awaiting it
/// waits for the task's output.
#[derive(Debug)]
#[must_use = "dropping the owner stops the task"]
pub struct OwnedTask<T> {
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> OwnedTask<T> {
    /// Spawns `future` on the current tokio runtime, owned by the returned value.
    pub fn spawn(future: impl Future<Output = T> + Send + 'static) -> Self {
        OwnedTask {
            handle: Some(tokio::spawn(future)),
        }
    }
}

impl<T> OwnedTask<T> {
    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the task now (as dropping the owner does).
    pub fn abort(&self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }

    /// Lets the task run to its end with no owner: for work that must finish after
    /// the thing that started it is gone.
    pub fn detach(mut self) {
        self.handle.take();
    }
}

impl<T> Future for OwnedTask<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.handle.as_mut() {
            Some(h) => Pin::new(h).poll(cx),
            None => Poll::Pending, // detached: consumed, so never polled again
        }
    }
}

impl<T> Drop for OwnedTask<T> {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn dropping_the_owner_stops_the_task_and_detach_lets_it_finish() {
        let (stopped, finished) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
        let s = stopped.clone();
        let owned = OwnedTask::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.store(false, Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        drop(owned);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            stopped.load(Ordering::SeqCst),
            "the task ran on after its owner was dropped"
        );

        let f = finished.clone();
        let detached = OwnedTask::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            f.store(true, Ordering::SeqCst);
        });
        detached.detach();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(finished.load(Ordering::SeqCst), "a detached task runs to its end");
    }

    #[tokio::test]
    async fn awaiting_the_owner_gives_the_output() {
        let owned = OwnedTask::spawn(async { 7 });
        assert_eq!(owned.await.unwrap(), 7);
    }
}
