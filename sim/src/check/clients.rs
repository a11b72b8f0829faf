//! Invariants on the clients' own behaviour: 10 (retry hygiene: backoff within
//! its bounds, jittered, never giving up) and 11 (balanced calls after healing).

use std::collections::BTreeSet;
use std::time::Duration;

use super::facts::Checked;
use super::report::Report;
use crate::log::{secs, Ev};

/// 10: backoff within its bounds, jittered, and never giving up.
pub(super) fn retries(c: &Checked<'_>, report: &mut Report) {
    let (cfg, run, f) = (c.cfg, c.run, &c.f);
    let mut at_ceiling = 0;
    for (at, ev) in &run.entries {
        match ev {
            Ev::Retry { id, delay, ceiling } => {
                report.check(
                    "10 retry hygiene",
                    delay <= ceiling && *ceiling <= cfg.retry_cap,
                    *at,
                    || {
                        format!(
                            "{id} backed off {delay:?} (ceiling {ceiling:?}, cap {:?})",
                            cfg.retry_cap
                        )
                    },
                );
                if delay == ceiling {
                    at_ceiling += 1;
                }
            }
            Ev::Status { host, status } => {
                report.check("10 retry hygiene", !status.starts_with("failed"), *at, || {
                    format!("{host}'s registration gave up: {status}")
                });
            }
            _ => {}
        }
    }
    let retries = run
        .entries
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Retry { .. }))
        .count();
    report.check("10 retry hygiene", at_ceiling < 3, f.end, || {
        format!("{at_ceiling} of {retries} backoff delays equal their ceiling exactly: the retries are not jittered")
    });
}

/// 11: calls through the balancer, once everything has converged.
pub(super) fn calls(c: &Checked<'_>, report: &mut Report) {
    let (run, f) = (c.run, &c.f);
    let (discoverers, p) = (c.discoverers.as_slice(), c.p);
    let calls: Vec<(Duration, &str, &Result<String, String>)> = run
        .entries
        .iter()
        .filter_map(|(_, e)| match e {
            Ev::Call { host, started, result } => Some((*started, host.as_str(), result)),
            _ => None,
        })
        .collect();
    let first_dereg = c.deregistered.values().min().copied().unwrap_or(f.end);
    for d in discoverers {
        let mut reached = BTreeSet::new();
        let mut n = 0;
        for (started, _, result) in calls.iter().filter(|(t, h, _)| h == d && *t >= c.converge_at) {
            let started = *started;
            match result {
                Err(e) => report.check("11 balanced calls", false, started, || {
                    format!(
                        "{d}'s call at {} failed with {e} after everything healed",
                        secs(started)
                    )
                }),
                Ok(instance) => {
                    let now = f.instances_at(started);
                    let before = f.instances_at(started.saturating_sub(p));
                    report.check(
                        "11 balanced calls",
                        now.contains(instance) || before.contains(instance),
                        started,
                        || {
                            format!(
                                "{d}'s call at {} reached {instance}, which is not registered",
                                secs(started)
                            )
                        },
                    );
                    if started < first_dereg {
                        reached.insert(instance.clone());
                        n += 1;
                    }
                }
            }
        }
        let expected = f.instances_at(first_dereg.min(f.end).saturating_sub(Duration::from_millis(1)));
        if n >= 2 * expected.len() && n > 0 {
            report.check("11 balanced calls", reached == expected, c.converge_at, || {
                format!("round robin from {d} reached {reached:?} of {expected:?} in {n} calls after healing")
            });
        }
    }
}
