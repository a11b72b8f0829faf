//! Capped exponential backoff with full jitter from a seedable RNG.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// A random source for jitter and balancing: seeded for replayable runs
/// (the simulator, tests), from OS entropy in production so that a thousand
/// processes do not draw the same delays.
///
/// Jitter needs uniform draws, not secrecy: the generator is a small one
/// (xoshiro256++, 32 bytes of state), since every registration and every
/// discovery task carries one.
#[derive(Debug, Clone)]
pub struct JitterRng(SmallRng);

impl JitterRng {
    /// A generator that always draws the same sequence for the same seed.
    pub fn seeded(seed: u64) -> Self {
        JitterRng(SmallRng::seed_from_u64(seed))
    }

    /// A generator seeded from the operating system's entropy.
    pub fn from_entropy() -> Self {
        JitterRng(SmallRng::from_os_rng())
    }

    /// A uniform draw from `0..=max`.
    pub fn below(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.0.random_range(0..=nanos))
    }

    /// A uniform draw from `0..n` (`n` > 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// A fresh, independent generator drawn from this one (one per task).
    pub fn fork(&mut self) -> Self {
        JitterRng::seeded(self.0.random())
    }
}

/// How to retry: exponential from `base`, capped at `cap`, optionally limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    base: Duration,
    cap: Duration,
    max_retries: Option<u32>,
}

impl Default for BackoffPolicy {
    /// 1 s base, 30 s cap, retry forever.
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            max_retries: None,
        }
    }
}

impl BackoffPolicy {
    /// A policy from `base` doubling up to `cap`; `base` must be positive and `cap ≥ base`.
    pub fn new(base: Duration, cap: Duration) -> Result<Self> {
        if base.is_zero() {
            return Err(Error::option("retry_interval", base, "must be positive"));
        }
        if cap < base {
            return Err(Error::option(
                "retry_cap",
                cap,
                format!("must be at least retry_interval ({base:?})"),
            ));
        }
        Ok(BackoffPolicy {
            base,
            cap,
            max_retries: None,
        })
    }

    /// Gives up after `n` consecutive failed attempts. Without it retries never stop.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// The first ceiling.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The retry limit, if any.
    pub fn max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// The ceiling for the `attempt`-th retry (0-based): `min(cap, base·2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |d| d.min(self.cap))
    }
}

/// The state of one retry loop.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    rng: JitterRng,
}

impl Backoff {
    /// A fresh loop.
    pub fn new(policy: BackoffPolicy, rng: JitterRng) -> Self {
        Backoff {
            policy,
            attempt: 0,
            rng,
        }
    }

    /// The next delay (full jitter: uniform in `0..=ceiling`), or `None` when the
    /// retry limit is reached.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.policy.max_retries.is_some_and(|max| self.attempt >= max) {
            return None;
        }
        let ceiling = self.policy.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        if crate::bug!(NoJitter) {
            return Some(ceiling);
        }
        Some(self.rng.below(ceiling))
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Call after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_ceilings_and_reach_the_cap() {
        let policy = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(2)).unwrap();
        let mut b = Backoff::new(policy, JitterRng::seeded(1));
        for attempt in 0..100u32 {
            let d = b.next_delay().unwrap();
            assert!(d <= policy.ceiling(attempt), "attempt {attempt}: {d:?}");
        }
        assert_eq!(policy.ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.ceiling(3), Duration::from_millis(800));
        assert_eq!(policy.ceiling(40), Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_and_replays() {
        let policy = BackoffPolicy::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        let draw = |seed| {
            let mut b = Backoff::new(policy, JitterRng::seeded(seed));
            (0..1000).map(|_| b.next_delay().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let delays = draw(7);
        let low = delays.iter().filter(|d| **d < Duration::from_millis(500)).count();
        assert!(
            (400..600).contains(&low),
            "full jitter should be uniform: {low}/1000 below half"
        );
    }

    #[test]
    fn retry_limit_and_reset() {
        let policy = BackoffPolicy::default().with_max_retries(2);
        let mut b = Backoff::new(policy, JitterRng::seeded(0));
        assert!(b.next_delay().is_some() && b.next_delay().is_some());
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert!(b.next_delay().is_some());
    }

    #[test]
    fn bad_policies_are_errors() {
        assert!(BackoffPolicy::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        let err = BackoffPolicy::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("retry_cap"), "{err}");
    }
}
