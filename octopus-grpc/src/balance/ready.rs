//! `poll_ready` under [`Readiness::Reported`](super::Readiness::Reported):
//! pending until discovery's first answer and while no instance can take a
//! call, woken when the endpoints change or an ejection ends.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use super::channel::{BalancedChannel, BoxError, Wait};

impl BalancedChannel {
    pub(super) fn poll_reported(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            let waiting = self.waiting.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Some(wait) = waiting.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *waiting = None;
            }
            match self.readiness() {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(wait) => *self.waiting.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(wait),
            }
        }
    }

    /// With [`Readiness::Reported`]: `Ok` when discovery has answered and some
    /// instance can take a call; else what to wait for: the next change of the
    /// endpoints, or the end of the earliest ejection.
    fn readiness(&self) -> std::result::Result<(), Wait> {
        let e = &self.inner.endpoints;
        // Subscribed before looking, so that a change made meanwhile wakes us.
        let mut changes = e.resolved.subscribe();
        let mut ends = None;
        if *changes.borrow_and_update() {
            let set = self.snapshot();
            let mut now = None;
            if set.all.iter().any(|b| b.available(&mut now, e.epoch)) {
                return Ok(());
            }
            ends = set
                .all
                .iter()
                .map(|b| b.ejected_until.load(Ordering::Relaxed))
                .filter(|until| *until > 0)
                .min()
                .map(|until| e.epoch + Duration::from_nanos(until));
        }
        Err(Box::pin(async move {
            let ended = async {
                match ends {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = changes.changed() => {}
                () = ended => {}
            }
        }))
    }
}
