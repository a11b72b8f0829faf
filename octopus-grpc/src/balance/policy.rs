use std::fmt;
use std::str::FromStr;

use octopus_discovery_core::Error;

/// How a [`BalancedChannel`](super::BalancedChannel) picks an instance per call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Each instance in turn (the default).
    #[default]
    RoundRobin,
    /// The first reachable instance by id; the next one when it fails.
    PickFirst,
    /// The less loaded of two instances drawn at random (seeded).
    P2c,
    /// At random, in proportion to each instance's weight (seeded).
    Weighted,
    /// Like [`P2c`](Policy::P2c), the load weighed by each instance's latency: of
    /// two instances drawn at random, the one with the lower (calls in flight + 1)
    /// × moving average of its response time (go-zero's `p2c_ewma`).
    P2cEwma,
}

impl Policy {
    /// Every policy (the documentation lists them all).
    pub const ALL: [Policy; 5] = [
        Policy::RoundRobin,
        Policy::PickFirst,
        Policy::P2c,
        Policy::P2cEwma,
        Policy::Weighted,
    ];
}

/// A new policy must join [`Policy::ALL`]: this match stops compiling otherwise.
const _: fn(Policy) = |p| match p {
    Policy::RoundRobin | Policy::PickFirst | Policy::P2c | Policy::P2cEwma | Policy::Weighted => {}
};

impl FromStr for Policy {
    type Err = Error;

    /// gRPC's names: `round_robin`, `pick_first`, plus `p2c`, `p2c_ewma` and `weighted`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "round_robin" => Ok(Policy::RoundRobin),
            "pick_first" => Ok(Policy::PickFirst),
            "p2c" => Ok(Policy::P2c),
            "weighted" => Ok(Policy::Weighted),
            "p2c_ewma" => Ok(Policy::P2cEwma),
            other => Err(Error::invalid_option(
                "policy",
                format!("{other:?}"),
                "must be round_robin, pick_first, p2c, p2c_ewma or weighted",
            )),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::RoundRobin => "round_robin",
            Policy::PickFirst => "pick_first",
            Policy::P2c => "p2c",
            Policy::Weighted => "weighted",
            Policy::P2cEwma => "p2c_ewma",
        })
    }
}

/// What a [`BalancedChannel`](super::BalancedChannel)'s `poll_ready` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// Ready at once; each call waits for discovery's first answer (up to its
    /// own deadline) and fails with `Unavailable` when no instance can take it.
    /// What tonic's generated clients expect: they call `ready()` before every
    /// call and turn a readiness error into `Unknown`, and a deadline set on a
    /// request is only known to the call.
    #[default]
    AtCall,
    /// tower's contract, as tower's own balancer keeps it: pending until
    /// discovery's first answer, and pending while no instance can take a call
    /// (every one ejected, or none registered), woken when the endpoints change
    /// or an ejection ends. Never an error: tower's `Service` says a readiness
    /// error means the service is dead for good (a `Buffer` would fail every later
    /// call). Compose it with tower's `timeout` or `load_shed` to bound the wait
    /// or fail at once, and `buffer` / `concurrency_limit` to queue.
    Reported,
}
