//! Keeping one lease alive: the loop a registration and a shared lease both run.
//!
//! The default schedule costs etcd no more than its Go client, clientv3: the
//! next keepalive is due a third of the granted TTL after the last answer,
//! rounded up to the next 500 ms tick of a grid that starts when the registry
//! (the client) was made, so that a client's leases also renew on the same
//! ticks. (A grid of the registry's, not of the process: two runs of one
//! simulated world in one process keep the same schedule.) An interval the user set
//! ([`RegisterOptions::keepalive_interval`](crate::RegisterOptions::keepalive_interval))
//! is kept exactly.
//!
//! How soon a lost lease is noticed: at the latest at the next keepalive, at most
//! a third of the TTL plus 500 ms after the last answer (the set interval, when
//! one is set); and, while the registration's watch on its key is up, as soon as
//! etcd deletes the key (an expired or revoked lease deletes it), since a
//! deletion makes the keepalive beat at once.

use std::time::Duration;

use tokio::time::{timeout, Instant};

use crate::{Error, KvBackend, LeaseId, LeaseKeeper, RegisterOptions};

/// What one keepalive attempt found.
pub(crate) enum Beat {
    /// The lease was refreshed.
    Alive,
    /// The attempt failed, but the lease may still live at the server: try again soon.
    Retrying,
    /// The lease is gone: why.
    Lost(String),
}

/// The tick the default schedule rounds up to, as clientv3's keepalive loop does.
const TICK: Duration = Duration::from_millis(500);

/// The first instant after `t`, or `t` itself, on the 500 ms grid that starts
/// at `epoch`.
fn on_tick(t: Instant, epoch: Instant) -> Instant {
    let tick = TICK.as_nanos();
    let late = if t >= epoch {
        let rem = (t - epoch).as_nanos() % tick;
        if rem == 0 {
            0
        } else {
            tick - rem
        }
    } else {
        (epoch - t).as_nanos() % tick
    };
    t + Duration::from_nanos(late as u64)
}

/// Refreshes a lease every `interval`. A failed attempt is retried until the
/// lease's server-side deadline (last success + granted TTL) has passed, so that a
/// blip shorter than the TTL churns no lease; an answer of TTL ≤ 0 is lost at once.
pub(crate) struct KeepAlive {
    lease: LeaseId,
    granted: Duration,
    interval: Duration,
    /// The default schedule: `interval` after an answer, rounded up to the tick.
    aligned: bool,
    /// Where the ticks start: the registry's, so that its leases renew together.
    epoch: Instant,
    keeper: Option<Box<dyn LeaseKeeper>>,
    last_ok: Instant,
    /// When the next attempt is due.
    pub(crate) next: Instant,
}

impl KeepAlive {
    /// Keeps `lease` alive every interval `opts` set, or on the default
    /// schedule, on the ticks that start at `epoch`.
    pub(crate) fn new(lease: LeaseId, granted: Duration, opts: &RegisterOptions, epoch: Instant) -> Self {
        let now = Instant::now();
        let mut ka = KeepAlive {
            lease,
            granted,
            interval: opts.keepalive_for(granted),
            aligned: opts.keepalive.is_none(),
            epoch,
            keeper: None,
            last_ok: now,
            next: now,
        };
        ka.next = ka.after(now);
        ka
    }

    /// When the beat after an answer at `answer` is due.
    fn after(&self, answer: Instant) -> Instant {
        let due = answer + self.interval;
        if self.aligned {
            on_tick(due, self.epoch)
        } else {
            due
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
                self.next = self.after(now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_default_schedule_falls_on_shared_ticks_and_a_set_interval_is_exact() {
        let granted = Duration::from_secs(10);
        let epoch = Instant::now();
        tokio::time::advance(Duration::from_millis(61)).await;
        let default = RegisterOptions::default();
        let a = KeepAlive::new(LeaseId(1), granted, &default, epoch);
        tokio::time::advance(Duration::from_millis(137)).await;
        let b = KeepAlive::new(LeaseId(2), granted, &default, epoch);
        let third = granted / 3;
        for ka in [&a, &b] {
            let since = ka.next - ka.last_ok;
            assert!(since >= third && since < third + TICK, "due {since:?} after the answer");
        }
        for ka in [&a, &b] {
            assert_eq!(
                (ka.next - epoch).as_nanos() % TICK.as_nanos(),
                0,
                "a lease's beat falls on the registry's grid"
            );
        }
        let opts = RegisterOptions::default().keepalive_interval(Duration::from_millis(1234));
        let set = KeepAlive::new(LeaseId(3), granted, &opts, epoch);
        assert_eq!(set.next - set.last_ok, Duration::from_millis(1234));
    }
}
