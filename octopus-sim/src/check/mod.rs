//! The invariant checker: reads a run's event log and reports every violation of
//! the invariants of docs/RELIABILITY.md (summed up in docs/ARCHITECTURE.md,
//! "The contract"), each against a bound computed from the run's settings (see
//! [`SimConfig`]'s bound methods). Each invariant's preconditions are stated
//! once, in docs/RELIABILITY.md's table and beside its check.

mod clients;
mod facts;
mod leases;
mod report;
mod views;

use std::time::Duration;

pub use report::{Report, Violation, INVARIANTS};

use crate::config::SimConfig;
use crate::run::RunLog;

/// Checks every invariant over `run`'s log.
pub fn check(cfg: &SimConfig, run: &RunLog) -> Report {
    let mut report = Report::default();
    if let Some(failure) = &run.failure {
        report.check("7 convergence", false, Duration::ZERO, || {
            format!("a host's software failed: {failure}")
        });
    }
    let c = facts::Checked::new(cfg, run);
    leases::leases(&c, &mut report);
    views::propagation(&c, &mut report);
    views::convergence(&c, &mut report);
    views::deregistration(&c, &mut report);
    views::per_view(&c, &mut report);
    clients::retries(&c, &mut report);
    clients::calls(&c, &mut report);
    clients::protected(&c, &mut report);
    clients::protection_holds(&c, &mut report);
    report.violations.sort_by_key(|v| v.at);
    report
}
