//! Invariants on leases and keys: 2 (crash removal: an expiry is never early, a
//! key under an unrefreshed lease never outlives it), 3 (no false eviction), 9
//! (fencing).

use std::collections::BTreeMap;
use std::time::Duration;

use super::facts::{Change, Checked};
use super::report::Report;
use crate::log::{secs, Ev};

/// Checks 2, 3 and 9 over the run's key lifetimes.
pub(super) fn leases(c: &Checked<'_>, report: &mut Report) {
    let (cfg, run, f) = (c.cfg, c.run, &c.f);
    let expiry_slack = Duration::from_millis(10);
    // Key lifetimes.
    for (at, ev) in &run.entries {
        let at = *at;
        match ev {
            Ev::Delete {
                key,
                revision,
                prev_lease,
            } if *prev_lease != 0 && !f.requested.contains(revision) => {
                // An expiry.
                let lease = *prev_lease;
                let Some((owner, ttl, granted)) = f.grants.get(&lease) else {
                    continue;
                };
                let last = f
                    .refreshes
                    .get(&lease)
                    .into_iter()
                    .flatten()
                    .chain(f.restarts.iter())
                    .chain(std::iter::once(granted))
                    .filter(|t| **t <= at)
                    .max()
                    .copied()
                    .unwrap_or(*granted);
                report.check("2 crash removal", at + expiry_slack >= last + *ttl, at, || {
                    format!(
                        "{key} expired at {} but lease {lease:#x} was last refreshed at {} (ttl {ttl:?})",
                        secs(at),
                        secs(last)
                    )
                });
                let window = cfg.refresh_bound();
                let from = at.saturating_sub(window);
                report.check("3 no false eviction", !f.healthy(owner, from, at), at, || {
                    format!(
                        "{key} (lease {lease:#x} of {owner}) expired at {} although {owner} and its link to etcd \
                         were healthy since {} (refresh bound {window:?})",
                        secs(at),
                        secs(from)
                    )
                });
            }
            Ev::Status { host, status } if status.starts_with("lost") => {
                // A registrant whose link was healthy long enough to refresh must not lose its lease.
                let window = cfg.refresh_bound();
                let from = at.saturating_sub(window);
                report.check("3 no false eviction", !f.healthy(host, from, at), at, || {
                    format!(
                        "{host} lost its registration at {} although it and its link to etcd were healthy since {} \
                         ({status})",
                        secs(at),
                        secs(from)
                    )
                });
            }
            Ev::Put {
                key,
                lease,
                prev_lease: Some(prev),
                ..
            } if prev != lease && *prev != 0 => {
                let owner = f.grants.get(lease).map(|g| g.0.as_str()).unwrap_or("?");
                let previous = f.grants.get(prev).map(|g| g.0.as_str()).unwrap_or("?");
                report.check("9 fencing", owner == previous, at, || {
                    format!(
                        "{owner} overwrote {key} held by {previous}'s live lease {prev:#x} (with its lease {lease:#x})"
                    )
                });
            }
            _ => {}
        }
    }

    // 2, the other half: a key under a lease nobody refreshes is gone by last refresh + TTL.
    let mut live: BTreeMap<String, (i64, Duration)> = BTreeMap::new();
    let overdue = |key: &str, lease: i64, since: Duration, until: Duration, report: &mut Report| {
        let Some((_, ttl, _)) = f.grants.get(&lease) else {
            return;
        };
        let mut points: Vec<Duration> = f
            .refreshes
            .get(&lease)
            .into_iter()
            .flatten()
            .chain(f.restarts.iter())
            .filter(|t| **t >= since && **t < until)
            .copied()
            .collect();
        points.push(since);
        points.sort();
        points.push(until);
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            let ok = b <= a + *ttl + expiry_slack || f.etcd_down_during(a, b);
            report.check("2 crash removal", ok, b, || {
                format!(
                    "{key} under lease {lease:#x} outlived its ttl {ttl:?}: last refreshed at {}, still there at {}",
                    secs(a),
                    secs(b)
                )
            });
        }
    };
    for Change { at: t, key, value } in &f.changes {
        match key {
            None => {
                for (k, (lease, since)) in std::mem::take(&mut live) {
                    overdue(&k, lease, since, *t, report);
                }
            }
            Some(k) => {
                if let Some((lease, since)) = live.remove(k) {
                    overdue(k, lease, since, *t, report);
                }
                if let Some((lease, _)) = value {
                    if *lease != 0 {
                        live.insert(k.clone(), (*lease, *t));
                    }
                }
            }
        }
    }
    for (k, (lease, since)) in live {
        overdue(&k, lease, since, f.end, report);
    }
}
