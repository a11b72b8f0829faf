//! Invariants on what discoverers see: 1 (heal visibility), 7 (convergence), 4
//! (graceful deregister), 5 (monotonic views), 6 (gap-free resume), 8 (no
//! duplicates), 12 (honest freshness).

use std::collections::BTreeSet;
use std::time::Duration;

use super::facts::{id_of, Change, Checked};
use super::report::Report;
use crate::log::{secs, Ev};

/// 1 while connected: a change reaches every connected view within a round trip.
pub(super) fn propagation(c: &Checked<'_>, report: &mut Report) {
    let (cfg, f) = (c.cfg, &c.f);
    let (discoverers, p) = (c.discoverers.as_slice(), c.p);
    for (index, Change { at: t, key, value }) in f.changes.iter().enumerate() {
        let Some(key) = key else { continue };
        let t2 = *t + p;
        if t2 > f.end || f.changed_after(index, key, t2) {
            continue;
        }
        for d in discoverers {
            if !f.healthy(d, t.saturating_sub(cfg.rewatch_bound()), t2) {
                continue;
            }
            let Some(view) = f.view_at(d, t2) else { continue };
            let id = key.rsplit('/').next().unwrap_or(key);
            let ok = match value {
                Some((_, instance)) => view.instances.contains(instance),
                None => !view.instances.iter().any(|i| id_of(i) == id),
            };
            report.check("1 heal visibility", ok, t2, || {
                format!(
                    "{d}'s view at {} (revision {}) misses the {} of {key} at {} although connected",
                    secs(t2),
                    view.revision,
                    if value.is_some() { "put" } else { "delete" },
                    secs(*t)
                )
            });
        }
    }
}

/// 1 and 7 after healing: every live registrant is in etcd, every view equals etcd.
pub(super) fn convergence(c: &Checked<'_>, report: &mut Report) {
    let (run, f) = (c.run, &c.f);
    let discoverers = c.discoverers.as_slice();
    let mut finals = vec![c.converge_at];
    if f.end > c.converge_at {
        finals.push(f.end);
    }
    for at in finals {
        if at > f.end {
            continue;
        }
        let keys = f.keys_at(at);
        let ids: BTreeSet<&str> = keys.values().map(|(_, i)| id_of(i)).collect();
        for (host, _) in f
            .first_up
            .iter()
            .filter(|(h, _)| h.starts_with("reg-") || h.starts_with("twin-"))
        {
            if !f.running(host, at) || c.deregistered.get(host).is_some_and(|t| *t <= at) {
                continue;
            }
            let id = if host.starts_with("twin-") {
                "reg-0".to_owned()
            } else {
                host.clone()
            };
            report.check("1 heal visibility", ids.contains(id.as_str()), at, || {
                format!(
                    "{host} runs but {id} is not registered at {} ({} after the last heal)",
                    secs(at),
                    secs(at - run.heal_at)
                )
            });
        }
        for (key, (lease, instance)) in &keys {
            let owner = f.grants.get(lease).map(|g| g.0.clone()).unwrap_or_default();
            report.check("7 convergence", f.running(&owner, at), at, || {
                format!(
                    "{key} ({instance}) is held at {} by {owner}, which is not running",
                    secs(at)
                )
            });
        }
        let expected = f.instances_at(at);
        for d in discoverers {
            if !f.running(d, at) {
                continue;
            }
            let view = f.view_at(d, at);
            let ok = view.is_some_and(|v| v.fresh && v.instances.iter().cloned().collect::<BTreeSet<_>>() == expected);
            report.check("7 convergence", ok, at, || {
                format!(
                    "{d}'s view at {} ({} after the last heal) is {:?}, etcd holds {:?}",
                    secs(at),
                    secs(at - run.heal_at),
                    view.map(|v| (&v.instances, v.revision, if v.fresh { "fresh" } else { "stale" })),
                    expected
                )
            });
        }
    }
}

/// 4: a graceful deregistration is gone from etcd when acknowledged, from views a round trip later.
pub(super) fn deregistration(c: &Checked<'_>, report: &mut Report) {
    let (run, f) = (c.run, &c.f);
    let (discoverers, p) = (c.discoverers.as_slice(), c.p);
    for (host, at) in &c.deregistered {
        let ok = run
            .entries
            .iter()
            .any(|(t, e)| *t == *at && matches!(e, Ev::Deregistered { host: h, ok: true } if h == host));
        report.check("4 graceful deregister", ok, *at, || {
            format!("{host}'s deregistration failed at {} on healthy links", secs(*at))
        });
        let in_etcd = f.keys_at(*at).values().any(|(_, i)| id_of(i) == host);
        report.check("4 graceful deregister", !in_etcd, *at, || {
            format!(
                "{host} acknowledged its deregistration at {} but etcd still holds it",
                secs(*at)
            )
        });
        for d in discoverers {
            let t2 = *at + p;
            if t2 > f.end || !f.running(d, t2) {
                continue;
            }
            let view = f.view_at(d, t2);
            let ok = view.is_none_or(|v| !v.instances.iter().any(|i| id_of(i) == host));
            report.check("4 graceful deregister", ok, t2, || {
                format!("{d} still lists {host} at {}, {p:?} after its deregistration", secs(t2))
            });
        }
    }
}

/// 5, 6, 8 and 12, view by view.
pub(super) fn per_view(c: &Checked<'_>, report: &mut Report) {
    let (cfg, f) = (c.cfg, &c.f);
    for (d, views) in &f.views {
        for (i, v) in views.iter().enumerate() {
            let ids: BTreeSet<&str> = v.instances.iter().map(|s| id_of(s)).collect();
            report.check("8 no duplicates", ids.len() == v.instances.len(), v.at, || {
                format!("{d}'s view at {} lists an id twice: {:?}", secs(v.at), v.instances)
            });
            let Some(prev) = i.checked_sub(1).map(|j| &views[j]) else {
                continue;
            };
            if prev.incarnation != v.incarnation {
                continue; // a new process
            }
            // Revisions may go back only into a newer history: etcd lost its data
            // after the history the previous view's revision came from (a stale view
            // published after the loss still carries the old history's revision).
            // And only by a counted reset: the view says it started over.
            let lost = v.epoch > prev.epoch;
            let counted = v.resyncs > prev.resyncs;
            report.check(
                "5 monotonic views",
                v.revision >= prev.revision || (lost && counted),
                v.at,
                || {
                    format!(
                        "{d}'s view went back from revision {} ({}) to {} ({}){}",
                        prev.revision,
                        secs(prev.at),
                        v.revision,
                        secs(v.at),
                        if lost {
                            " without counting a resync"
                        } else {
                            " without etcd losing its data"
                        }
                    )
                },
            );
            // 12: a view turns fresh only when its watch is confirmed, which needs a
            // request to etcd and its answer just before; a view that stays fresh
            // needs etcd's messages to arrive.
            if v.fresh {
                let turned = !prev.fresh;
                let window = cfg.max_latency + Duration::from_millis(5);
                let cut = f.cut_throughout(d, v.at.saturating_sub(window), v.at, turned);
                report.check("12 honest freshness", cut.is_none(), v.at, || {
                    format!(
                        "{d} published a fresh view at {} (revision {}) although {} throughout the {window:?} before",
                        secs(v.at),
                        v.revision,
                        cut.unwrap_or_default()
                    )
                });
            }
            if v.resyncs > prev.resyncs {
                // A resync is owed to a data loss after the history the cache followed,
                // or to a compaction that removed revisions it still needed: past the
                // revision of its last fresh view, in that view's history, by now.
                let last_fresh = views[..i]
                    .iter()
                    .rev()
                    .find(|w| w.fresh && w.incarnation == v.incarnation);
                let (since, needed, epoch) = last_fresh.map_or((Duration::ZERO, 0, 0), |w| (w.at, w.revision, w.epoch));
                let history_began = epoch.checked_sub(1).map_or(Duration::ZERO, |e| f.losses[e]);
                let lost = f.losses.iter().filter(|t| **t <= v.at).count() > epoch;
                let compacted = f
                    .compactions
                    .iter()
                    .any(|(t, revision)| *t >= history_began && *t <= v.at && *revision > needed);
                report.check("6 gap-free resume", lost || compacted, v.at, || {
                    format!(
                        "{d} resynced at {} with no data loss and no compaction past revision {needed} (its last \
                         fresh view, at {}) since",
                        secs(v.at),
                        secs(since)
                    )
                });
            }
        }
    }
}
