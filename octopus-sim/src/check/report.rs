//! What the checker reports: the invariants by name, violations, and how often
//! each invariant was checked.

use std::collections::BTreeMap;
use std::time::Duration;

/// The invariants, by number and name, as docs/RELIABILITY.md states them
/// (its table and its numbered list; `tests/docs.rs` holds the three equal).
/// The eleventh is the balancer's: after healing every call succeeds, reaches
/// only registered instances, and round robin reaches all of them. The twelfth
/// keeps "fresh" honest: a view is published fresh only when etcd can have just
/// confirmed its watch. The thirteenth is the panic threshold's: a protected
/// channel keeps its endpoints while etcd comes back without its data.
pub const INVARIANTS: [&str; 13] = [
    "1 heal visibility",
    "2 crash removal",
    "3 no false eviction",
    "4 graceful deregister",
    "5 monotonic views",
    "6 gap-free resume",
    "7 convergence",
    "8 no duplicates",
    "9 fencing",
    "10 retry hygiene",
    "11 balanced calls",
    "12 honest freshness",
    "13 protected through data loss",
];

/// One broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which (one of [`INVARIANTS`]).
    pub invariant: &'static str,
    /// When.
    pub at: Duration,
    /// What broke it.
    pub detail: String,
}

/// The checker's findings.
#[derive(Debug, Default)]
pub struct Report {
    /// Every violation found.
    pub violations: Vec<Violation>,
    /// How many times each invariant was checked.
    pub checks: BTreeMap<&'static str, u64>,
}

impl Report {
    pub(super) fn check(&mut self, invariant: &'static str, ok: bool, at: Duration, detail: impl FnOnce() -> String) {
        *self.checks.entry(invariant).or_default() += 1;
        if !ok {
            self.violations.push(Violation {
                invariant,
                at,
                detail: detail(),
            });
        }
    }
}
