//! The invariant checker: reads a run's event log and reports every violation of
//! the invariants in DESIGN.md, each against a bound computed from the run's
//! settings (see [`SimConfig`]'s bound methods).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use octopus_core::{JsonLayout, KeyLayout};

use crate::config::SimConfig;
use crate::hosts::{NAMESPACE, SERVICE};
use crate::log::{secs, Ev, FaultKind};
use crate::run::RunLog;

/// The invariants, by number, as DESIGN.md names them.
/// The eleventh is the balancer's: after healing every call succeeds, reaches
/// only registered instances, and round robin reaches all of them. The twelfth
/// keeps "fresh" honest: a view is published fresh only when etcd can have just
/// confirmed its watch.
pub const INVARIANTS: [&str; 12] = [
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
    fn check(&mut self, invariant: &'static str, ok: bool, at: Duration, detail: impl FnOnce() -> String) {
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

/// An interval during which something was wrong for `hosts`.
#[derive(Debug)]
struct Outage {
    a: String,
    b: String,
    from: Duration,
    to: Duration,
    /// Only `a` → `b` is blocked (a one-way partition); otherwise both ways.
    oneway: bool,
}

type Keys = BTreeMap<String, (i64, String)>;

/// A discoverer's snapshot, as logged.
#[derive(Debug)]
struct View {
    at: Duration,
    revision: i64,
    resyncs: u64,
    fresh: bool,
    instances: Vec<String>,
    /// Which start of the host it came from.
    incarnation: u32,
    /// Which history of etcd its revision belongs to: the number of data losses
    /// before the state it shows was read. A fresh view reads the history in
    /// force when it is published; a stale one keeps its last fresh view's.
    epoch: usize,
}

/// One change of etcd's keys: `key` None is a data loss (every key gone);
/// `value` None is a delete.
#[derive(Debug)]
struct Change {
    at: Duration,
    key: Option<String>,
    value: Option<(i64, String)>,
}

/// What the log says, indexed for the checks.
struct Facts {
    end: Duration,
    /// Link faults (partition, one-way partition, hold) between `a` and `b`.
    links: Vec<Outage>,
    /// Host down intervals (`a` is the host; `b` unused).
    downs: Vec<Outage>,
    /// When each host first ran.
    first_up: BTreeMap<String, Duration>,
    /// lease → (granting host, ttl, when).
    grants: BTreeMap<i64, (String, Duration, Duration)>,
    /// lease → times etcd answered a keepalive for it while it lived.
    refreshes: BTreeMap<i64, Vec<Duration>>,
    /// Times etcd started again with its data (every lease restarts its TTL).
    restarts: Vec<Duration>,
    /// Times etcd came back without data.
    losses: Vec<Duration>,
    /// Compactions: when, and up to which revision.
    compactions: Vec<(Duration, i64)>,
    /// Revisions written by a client's request.
    requested: BTreeSet<i64>,
    /// Every key change, in order: (when, key, new value: (lease, instance) or deleted),
    /// with `None` keys marking a data loss (everything gone).
    changes: Vec<Change>,
    /// Views per discoverer: (when, revision, resyncs, fresh, instances, incarnation).
    views: BTreeMap<String, Vec<View>>,
}

fn instance_of(key: &str, value: &str) -> String {
    let layout = JsonLayout::new(NAMESPACE).expect("static namespace");
    match layout.decode(SERVICE, key.as_bytes(), value.as_bytes()) {
        Ok(i) => format!("{}@{}", i.id, i.endpoint()),
        Err(e) => format!("undecodable({e})"),
    }
}

fn id_of(instance: &str) -> &str {
    instance.split('@').next().unwrap_or(instance)
}

impl Facts {
    fn new(cfg: &SimConfig, entries: &[(Duration, Ev)]) -> Self {
        let end = cfg.duration;
        let mut f = Facts {
            end,
            links: Vec::new(),
            downs: Vec::new(),
            first_up: BTreeMap::new(),
            grants: BTreeMap::new(),
            refreshes: BTreeMap::new(),
            restarts: Vec::new(),
            losses: Vec::new(),
            compactions: Vec::new(),
            requested: BTreeSet::new(),
            changes: Vec::new(),
            views: BTreeMap::new(),
        };
        let mut open: BTreeMap<u32, (String, String, Duration, bool)> = BTreeMap::new();
        let mut down_since: BTreeMap<String, Duration> = BTreeMap::new();
        let mut incarnations: BTreeMap<String, u32> = BTreeMap::new();
        for (at, ev) in entries {
            let at = *at;
            match ev {
                Ev::FaultStart { id, kind, a, b } if *kind != FaultKind::Latency => {
                    let oneway = *kind == FaultKind::PartitionOneway;
                    open.insert(*id, (a.clone(), b.clone(), at, oneway));
                }
                Ev::FaultEnd { id } => {
                    if let Some((a, b, from, oneway)) = open.remove(id) {
                        f.links.push(Outage {
                            a,
                            b,
                            from,
                            to: at,
                            oneway,
                        });
                    }
                }
                Ev::HostDown { host } => {
                    // A crash while already down (etcd crashed again before its
                    // restart) does not end the first outage: down since the first.
                    down_since.entry(host.clone()).or_insert(at);
                }
                Ev::HostUp { host } => {
                    f.first_up.entry(host.clone()).or_insert(at);
                    *incarnations.entry(host.clone()).or_default() += 1;
                    if let Some(from) = down_since.remove(host) {
                        f.downs.push(Outage {
                            a: host.clone(),
                            b: String::new(),
                            from,
                            to: at,
                            oneway: false,
                        });
                    }
                }
                Ev::EtcdUp { lost_data, .. } => {
                    f.first_up.entry("etcd".into()).or_insert(at);
                    if let Some(from) = down_since.remove("etcd") {
                        f.downs.push(Outage {
                            a: "etcd".into(),
                            b: String::new(),
                            from,
                            to: at,
                            oneway: false,
                        });
                    }
                    if *lost_data {
                        f.losses.push(at);
                        f.changes.push(Change {
                            at,
                            key: None,
                            value: None,
                        });
                    } else {
                        f.restarts.push(at);
                    }
                }
                Ev::Compact { revision } => f.compactions.push((at, *revision)),
                Ev::Grant { lease, ttl, host } => {
                    f.grants.insert(*lease, (host.clone(), *ttl, at));
                }
                Ev::KeepAlive { lease, alive: true } => f.refreshes.entry(*lease).or_default().push(at),
                Ev::Write { revision, .. } | Ev::Revoke { revision, .. } => {
                    f.requested.insert(*revision);
                }
                Ev::Put { key, lease, value, .. } => {
                    f.changes.push(Change {
                        at,
                        key: Some(key.clone()),
                        value: Some((*lease, instance_of(key, value))),
                    });
                }
                Ev::Delete { key, .. } => f.changes.push(Change {
                    at,
                    key: Some(key.clone()),
                    value: None,
                }),
                Ev::View {
                    host,
                    revision,
                    resyncs,
                    fresh,
                    instances,
                } => {
                    let inc = incarnations.get(host).copied().unwrap_or(0);
                    let views = f.views.entry(host.clone()).or_default();
                    let epoch = if *fresh {
                        f.losses.len()
                    } else {
                        views
                            .iter()
                            .rev()
                            .find(|v| v.fresh && v.incarnation == inc)
                            .map_or(f.losses.len(), |v| v.epoch)
                    };
                    views.push(View {
                        at,
                        revision: *revision,
                        resyncs: *resyncs,
                        fresh: *fresh,
                        instances: instances.clone(),
                        incarnation: inc,
                        epoch,
                    });
                }
                _ => {}
            }
        }
        for (_, (a, b, from, oneway)) in open {
            f.links.push(Outage {
                a,
                b,
                from,
                to: end,
                oneway,
            });
        }
        for (host, from) in down_since {
            f.downs.push(Outage {
                a: host,
                b: String::new(),
                from,
                to: end,
                oneway: false,
            });
        }
        f
    }

    /// `host` ran, etcd ran, and nothing stood between them during `[from, to]`.
    fn healthy(&self, host: &str, from: Duration, to: Duration) -> bool {
        let overlaps = |o: &Outage| o.from <= to && o.to >= from;
        self.first_up.get(host).is_some_and(|up| *up <= from)
            && self.first_up.get("etcd").is_some_and(|up| *up <= from)
            && !self.downs.iter().any(|o| (o.a == host || o.a == "etcd") && overlaps(o))
            && !self
                .links
                .iter()
                .any(|o| (o.a == host || o.b == host) && (o.a == "etcd" || o.b == "etcd") && overlaps(o))
    }

    /// What kept etcd from answering `host` during all of `[from, to]`, if anything
    /// did: etcd down, or a partition or hold between them that began by `from` and
    /// had not ended by `to` (a hold released at `to` may deliver at `to`). With
    /// `both_ways`, a one-way partition counts in either direction (a watch being
    /// created needs a request and its answer); without, only etcd → `host` (an
    /// open watch stream only needs etcd's messages to arrive).
    fn cut_throughout(&self, host: &str, from: Duration, to: Duration, both_ways: bool) -> Option<String> {
        let covers = |o: &Outage| o.from <= from && o.to > to;
        if let Some(o) = self.downs.iter().find(|o| o.a == "etcd" && covers(o)) {
            return Some(format!("etcd was down from {} to {}", secs(o.from), secs(o.to)));
        }
        let blocks = |o: &Outage| {
            let between = (o.a == host && o.b == "etcd") || (o.a == "etcd" && o.b == host);
            between && (both_ways || !o.oneway || o.a == "etcd")
        };
        self.links.iter().find(|o| blocks(o) && covers(o)).map(|o| {
            let how = if o.oneway { "one way" } else { "both ways" };
            format!(
                "the link {} -> {} was cut ({how}) from {} to {}",
                o.a,
                o.b,
                secs(o.from),
                secs(o.to)
            )
        })
    }

    fn running(&self, host: &str, at: Duration) -> bool {
        self.first_up.get(host).is_some_and(|up| *up <= at)
            && !self.downs.iter().any(|o| o.a == host && o.from <= at && o.to > at)
    }

    fn etcd_down_during(&self, from: Duration, to: Duration) -> bool {
        self.downs.iter().any(|o| o.a == "etcd" && o.from <= to && o.to >= from)
    }

    /// etcd's keys at `at`.
    fn keys_at(&self, at: Duration) -> Keys {
        let mut keys = Keys::new();
        for c in &self.changes {
            if c.at > at {
                break;
            }
            match (&c.key, &c.value) {
                (None, _) => keys.clear(),
                (Some(k), Some(v)) => {
                    keys.insert(k.clone(), v.clone());
                }
                (Some(k), None) => {
                    keys.remove(k);
                }
            }
        }
        keys
    }

    /// The instances etcd holds at `at`.
    fn instances_at(&self, at: Duration) -> BTreeSet<String> {
        self.keys_at(at).into_values().map(|(_, i)| i).collect()
    }

    /// `host`'s view at `at`: its latest snapshot then.
    fn view_at(&self, host: &str, at: Duration) -> Option<&View> {
        self.views.get(host)?.iter().take_while(|v| v.at <= at).last()
    }

    /// Whether `key` changed again after change number `index`, up to `to`
    /// (later in the log, possibly at the same instant).
    fn changed_after(&self, index: usize, key: &str, to: Duration) -> bool {
        self.changes[index + 1..]
            .iter()
            .take_while(|c| c.at <= to)
            .any(|c| c.key.as_deref().is_none_or(|k| k == key))
    }
}

/// Checks every invariant over `run`'s log.
pub fn check(cfg: &SimConfig, run: &RunLog) -> Report {
    let mut report = Report::default();
    if let Some(failure) = &run.failure {
        report.check("7 convergence", false, Duration::ZERO, || {
            format!("a host's software failed: {failure}")
        });
    }
    let f = Facts::new(cfg, &run.entries);
    let discoverers: Vec<String> = f.views.keys().cloned().collect();
    let expiry_slack = Duration::from_millis(10);

    // Key lifetimes, for 2, 3, 9 and propagation.
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
                    overdue(&k, lease, since, *t, &mut report);
                }
            }
            Some(k) => {
                if let Some((lease, since)) = live.remove(k) {
                    overdue(k, lease, since, *t, &mut report);
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
        overdue(&k, lease, since, f.end, &mut report);
    }

    // 1 (while connected): a change reaches every connected view within a round trip.
    let p = cfg.propagation_bound();
    for (index, Change { at: t, key, value }) in f.changes.iter().enumerate() {
        let Some(key) = key else { continue };
        let t2 = *t + p;
        if t2 > f.end || f.changed_after(index, key, t2) {
            continue;
        }
        for d in &discoverers {
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

    // 1 and 7 after healing: every live registrant is in etcd, every view equals etcd.
    let converge_at = run.heal_at + cfg.heal_bound();
    let mut finals = vec![converge_at];
    if f.end > converge_at {
        finals.push(f.end);
    }
    let deregistered: BTreeMap<String, Duration> = run
        .entries
        .iter()
        .filter_map(|(t, e)| match e {
            Ev::Deregistered { host, .. } => Some((host.clone(), *t)),
            _ => None,
        })
        .collect();
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
            if !f.running(host, at) || deregistered.get(host).is_some_and(|t| *t <= at) {
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
        for d in &discoverers {
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

    // 4: a graceful deregistration is gone from etcd when acknowledged, from views a round trip later.
    for (host, at) in &deregistered {
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
        for d in &discoverers {
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

    // 5, 6, 8: per view.
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

    // 10: backoff within its bounds, jittered, and never giving up.
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
    // 11: calls through the balancer, once everything has converged.
    let calls: Vec<(Duration, &str, &Result<String, String>)> = run
        .entries
        .iter()
        .filter_map(|(_, e)| match e {
            Ev::Call { host, started, result } => Some((*started, host.as_str(), result)),
            _ => None,
        })
        .collect();
    let first_dereg = deregistered.values().min().copied().unwrap_or(f.end);
    for d in &discoverers {
        let mut reached = BTreeSet::new();
        let mut n = 0;
        for (started, _, result) in calls.iter().filter(|(t, h, _)| h == d && *t >= converge_at) {
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
            report.check("11 balanced calls", reached == expected, converge_at, || {
                format!("round robin from {d} reached {reached:?} of {expected:?} in {n} calls after healing")
            });
        }
    }
    report.violations.sort_by_key(|v| v.at);
    report
}
