//! Invariants on the clients' own behaviour: 10 (retry hygiene: backoff within
//! its bounds, jittered, never giving up), 11 (balanced calls after healing) and
//! 13 (a protected balancer through a data loss).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::facts::{id_of, Checked};
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

/// 13: after etcd loses its data (every key gone at once, the registrants back
/// only after their next keepalive), a balancer with the panic threshold on does
/// not fail a call for want of an instance while one it knew still runs.
///
/// Preconditions: the call is made through the discoverer's protected channel
/// within the protection's hold after the loss; the discoverer's view when etcd
/// went down listed an instance whose process runs when the call starts, and
/// the discoverer has not restarted since that view (a new process's channel
/// never knew those instances). Failures for other reasons (a partitioned or
/// crashed instance, ejected) are not this invariant's: only "no instance is
/// registered", an empty endpoint list.
pub(super) fn protected(c: &Checked<'_>, report: &mut Report) {
    let (cfg, run, f) = (c.cfg, c.run, &c.f);
    let hold = cfg.panic_hold();
    for (at, ev) in &run.entries {
        let (host, t, result) = match ev {
            Ev::Call { host, started, result } => (host, *started, result.as_ref().err().cloned()),
            Ev::Endpoints { host, endpoints } => (
                host,
                *at,
                (*endpoints == 0).then(|| "no instance is registered: its endpoints are empty".to_owned()),
            ),
            _ => continue,
        };
        let Some(d) = host.strip_suffix("/protected") else {
            continue;
        };
        for &loss in f.losses.iter().filter(|l| **l <= t && t < **l + hold) {
            // When etcd went down before coming back without its data.
            let Some(down) = f
                .downs
                .iter()
                .filter(|o| o.a == "etcd" && o.to == loss)
                .map(|o| o.from)
                .min()
            else {
                continue;
            };
            let Some(view) = f.view_at(d, down) else { continue };
            if !f.running(d, down) || f.downs.iter().any(|o| o.a == d && o.to > view.at && o.from <= t) {
                // The discoverer restarted after that view: its channel is a new
                // one that never knew those instances.
                continue;
            }
            let live: Vec<&String> = view
                .instances
                .iter()
                .filter(|i| running_instance(f, id_of(i), t))
                .collect();
            if live.is_empty() {
                continue;
            }
            let empty = result
                .as_deref()
                .is_some_and(|e| e.contains("no instance is registered"));
            report.check("13 protected through data loss", !empty, t, || {
                format!(
                    "{d}'s protected channel failed a call at {} ({}) {} after etcd lost its data at {}, \
                     although {live:?} of its view before the loss still run",
                    secs(t),
                    result.as_deref().unwrap_or(""),
                    secs(t - loss),
                    secs(loss)
                )
            });
        }
    }
}

/// 13, the protection itself: when a discoverer's first fresh view after a data
/// loss holds fewer than half the endpoints its protected channel had (the
/// channel distrusts it), the channel keeps at least those endpoints until a
/// view recovers to half, or the hold ends. This needs no process to be alive:
/// it is what the panic threshold promises, seen from its endpoint count.
pub(super) fn protection_holds(c: &Checked<'_>, report: &mut Report) {
    let (cfg, run, f) = (c.cfg, c.run, &c.f);
    let hold = cfg.panic_hold();
    // Each protected channel's endpoint counts, as they changed.
    let mut counts: BTreeMap<&str, Vec<(Duration, usize)>> = BTreeMap::new();
    for (at, ev) in &run.entries {
        if let Ev::Endpoints { host, endpoints } = ev {
            if let Some(d) = host.strip_suffix("/protected") {
                counts.entry(d).or_default().push((*at, *endpoints));
            }
        }
    }
    for &loss in &f.losses {
        for (d, series) in &counts {
            let Some(views) = f.views.get(*d) else { continue };
            // The first fresh view after the loss, and the channel's count then.
            let Some(first) = views.iter().find(|v| v.at >= loss && v.fresh) else {
                continue;
            };
            let known = series
                .iter()
                .take_while(|(at, _)| *at < first.at)
                .last()
                .map_or(0, |(_, n)| *n);
            let distrusted = |n: usize| (n as f64) < 0.5 * known as f64;
            if known == 0 || !distrusted(first.instances.len()) {
                continue;
            }
            // Until a fresh view recovers to half, the hold ends, or the process restarts.
            let recovered = views
                .iter()
                .filter(|v| v.at > first.at && v.fresh && v.incarnation == first.incarnation)
                .find(|v| !distrusted(v.instances.len()))
                .map_or(f.end, |v| v.at);
            // A crash ends the process (and its channel) that made the view.
            let restarted = f
                .downs
                .iter()
                .filter(|o| o.a == *d && o.from >= first.at)
                .map(|o| o.from)
                .min()
                .unwrap_or(f.end);
            let end = recovered
                .min(restarted)
                .min(first.at + hold.saturating_sub(Duration::from_millis(20)));
            for (at, n) in series.iter().filter(|(at, _)| *at >= first.at && *at < end) {
                report.check("13 protected through data loss", *n >= known, *at, || {
                    format!(
                        "{d}'s protected channel went from {known} endpoints to {n} at {}, {} after etcd \
                         lost its data at {}: its view of {} was distrusted and the vanished instances \
                         must be kept until {}",
                        secs(*at),
                        secs(*at - loss),
                        secs(loss),
                        first.instances.len(),
                        secs(end)
                    )
                });
            }
        }
    }
}

/// Whether the process that registers instance `id` runs at `at` (`reg-0`'s id is
/// also its twin's).
fn running_instance(f: &super::facts::Facts, id: &str, at: Duration) -> bool {
    f.running(id, at) || (id == "reg-0" && f.first_up.keys().any(|h| h.starts_with("twin-") && f.running(h, at)))
}
