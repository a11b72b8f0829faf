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

use crate::registry::MAX_LEASE_TTL;
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

/// `t + d`, or, should that overflow, the latest instant reachable from `t`
/// within [`MAX_LEASE_TTL`] (in practice: `t + d` always fits, since `d` is
/// bounded by the TTL or a validated interval).
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).or_else(|| t.checked_add(MAX_LEASE_TTL)).unwrap_or(t)
}

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
    later(t, Duration::from_nanos(late as u64))
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
    /// schedule, on the ticks that start at `epoch`. `granted` is the server's
    /// TTL, taken as at most [`MAX_LEASE_TTL`].
    pub(crate) fn new(lease: LeaseId, granted: Duration, opts: &RegisterOptions, epoch: Instant) -> Self {
        let now = Instant::now();
        let granted = granted.min(MAX_LEASE_TTL);
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
        let due = later(answer, self.interval);
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
                if self.ttl_spent(now) {
                    return Beat::Lost(format!("keepalive failed for the whole ttl: {e}"));
                }
                tracing::debug!(error = %e, lease = %self.lease, "keepalive failed; retrying within the ttl");
                self.next = later(now, (interval / 3).max(Duration::from_millis(1)));
                Beat::Retrying
            }
        }
    }

    /// Whether the lease's server-side deadline (last success + granted TTL) has
    /// passed at `now`.
    fn ttl_spent(&self, now: Instant) -> bool {
        // Checked, though `granted` is clamped: a deadline past the end of time never comes.
        self.last_ok
            .checked_add(self.granted)
            .is_some_and(|deadline| now >= deadline)
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

    /// A backend whose keepalives always fail (the server is unreachable).
    struct Unreachable;

    #[async_trait::async_trait]
    impl KvBackend for Unreachable {
        async fn grant(&self, _: Duration) -> crate::Result<crate::Lease> {
            unreachable!()
        }
        async fn keeper(&self, _: LeaseId) -> crate::Result<Box<dyn LeaseKeeper>> {
            Err(Error::backend_message("unreachable"))
        }
        async fn revoke(&self, _: LeaseId) -> crate::Result<()> {
            unreachable!()
        }
        async fn create(&self, _: &str, _: Vec<u8>, _: LeaseId) -> crate::Result<crate::kv::Created> {
            unreachable!()
        }
        async fn put_if_unchanged(
            &self,
            _: &str,
            _: Vec<u8>,
            _: LeaseId,
            _: crate::Revision,
        ) -> crate::Result<Option<crate::Revision>> {
            unreachable!()
        }
        async fn delete_owned(&self, _: &str, _: LeaseId) -> crate::Result<bool> {
            unreachable!()
        }
        async fn delete(&self, _: &str) -> crate::Result<bool> {
            unreachable!()
        }
        async fn range_prefix(&self, _: &str) -> crate::Result<(crate::Header, Vec<crate::KeyValue>)> {
            unreachable!()
        }
        async fn get(&self, _: &str) -> crate::Result<(crate::Header, Option<crate::KeyValue>)> {
            unreachable!()
        }
        async fn header(&self) -> crate::Result<crate::Header> {
            unreachable!()
        }
        async fn watch(&self, _: &str, _: bool, _: crate::Revision) -> crate::Result<crate::WatchStart> {
            unreachable!()
        }
        async fn watch_with_prev(&self, _: &str, _: bool, _: crate::Revision) -> crate::Result<crate::WatchStart> {
            unreachable!()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_ttl_from_the_server_is_clamped_not_a_panic() {
        // A misbehaving server grants (or answers) a TTL near i64::MAX seconds.
        let epoch = Instant::now();
        for granted in [Duration::from_secs(i64::MAX as u64), Duration::MAX] {
            for opts in [
                RegisterOptions::default(),
                RegisterOptions::default().keepalive_interval(Duration::from_secs(1)),
            ] {
                let mut ka = KeepAlive::new(LeaseId(1), granted, &opts, epoch);
                // A failed keepalive retries within that TTL (it has not passed).
                assert!(matches!(ka.beat(&Unreachable).await, Beat::Retrying));
                assert!(ka.next > Instant::now());
                assert!(ka.granted <= MAX_LEASE_TTL, "{:?}", ka.granted);
                assert!(ka.next - ka.last_ok <= MAX_LEASE_TTL / 3 + TICK);
            }
        }
        // A sane TTL still runs out: failures past it lose the lease.
        let opts = RegisterOptions::default().keepalive_interval(Duration::from_secs(1));
        let mut ka = KeepAlive::new(LeaseId(2), Duration::from_secs(3), &opts, epoch);
        assert!(matches!(ka.beat(&Unreachable).await, Beat::Retrying));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(matches!(ka.beat(&Unreachable).await, Beat::Lost(_)));
    }
}
