//! Keeping one lease alive: the loop a registration and a shared lease both run.

use std::time::Duration;

use tokio::time::{timeout, Instant};

use crate::{Error, KvBackend, LeaseId, LeaseKeeper};

/// What one keepalive attempt found.
pub(crate) enum Beat {
    /// The lease was refreshed.
    Alive,
    /// The attempt failed, but the lease may still live at the server: try again soon.
    Retrying,
    /// The lease is gone: why.
    Lost(String),
}

/// Refreshes a lease every `interval`. A failed attempt is retried until the
/// lease's server-side deadline (last success + granted TTL) has passed, so that a
/// blip shorter than the TTL churns no lease; an answer of TTL ≤ 0 is lost at once.
pub(crate) struct KeepAlive {
    lease: LeaseId,
    granted: Duration,
    interval: Duration,
    keeper: Option<Box<dyn LeaseKeeper>>,
    last_ok: Instant,
    /// When the next attempt is due.
    pub(crate) next: Instant,
}

impl KeepAlive {
    pub(crate) fn new(lease: LeaseId, granted: Duration, interval: Duration) -> Self {
        let now = Instant::now();
        KeepAlive {
            lease,
            granted,
            interval,
            keeper: None,
            last_ok: now,
            next: now + interval,
        }
    }

    /// One attempt; call it at `next`.
    pub(crate) async fn beat<B: KvBackend + ?Sized>(&mut self, backend: &B) -> Beat {
        if self.keeper.is_none() {
            // A failure to open is retried below, within the ttl.
            if let Ok(k) = backend.keeper(self.lease).await {
                self.keeper = Some(k);
            }
        }
        let interval = self.interval;
        let answer = match self.keeper.as_mut() {
            Some(k) => timeout(interval, k.keep_alive())
                .await
                .unwrap_or(Err(Error::timeout("keepalive", interval))),
            None => Err(Error::closed("lease keeper")),
        };
        let now = Instant::now();
        match answer {
            Ok(Some(_)) => {
                self.last_ok = now;
                self.next = now + interval;
                Beat::Alive
            }
            Ok(None) => Beat::Lost(format!("lease {} expired", self.lease)),
            Err(e) => {
                if crate::bug!(KeepaliveStopsAfterFailure) {
                    std::future::pending::<()>().await;
                }
                self.keeper = None; // a failed stream is reopened on the next attempt
                if now >= self.last_ok + self.granted {
                    return Beat::Lost(format!("keepalive failed for the whole ttl: {e}"));
                }
                tracing::debug!(error = %e, lease = %self.lease, "keepalive failed; retrying within the ttl");
                self.next = now + (interval / 3).max(Duration::from_millis(1));
                Beat::Retrying
            }
        }
    }
}
