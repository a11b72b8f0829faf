//! What a run's event log says, indexed for the checks: link faults and host
//! downs (the fault timeline), leases and their refreshes, etcd's key changes and
//! data losses, and every discoverer's views.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use octopus_discovery_core::{JsonLayout, KeyLayout};

use crate::config::SimConfig;
use crate::hosts::{NAMESPACE, SERVICE};
use crate::log::{secs, Ev, FaultKind};
use crate::run::RunLog;

/// The run being checked: its settings, its log, the facts read from the log,
/// and what several invariants share.
pub(super) struct Checked<'a> {
    pub(super) cfg: &'a SimConfig,
    pub(super) run: &'a RunLog,
    pub(super) f: Facts,
    /// The discoverers, by name.
    pub(super) discoverers: Vec<String>,
    /// Graceful deregistrations: host → when acknowledged.
    pub(super) deregistered: BTreeMap<String, Duration>,
    /// When everything must have converged: the last heal plus the heal bound.
    pub(super) converge_at: Duration,
    /// How long after a change a connected watcher's view shows it.
    pub(super) p: Duration,
}

impl<'a> Checked<'a> {
    pub(super) fn new(cfg: &'a SimConfig, run: &'a RunLog) -> Self {
        let f = Facts::new(cfg, &run.entries);
        let discoverers: Vec<String> = f.views.keys().cloned().collect();
        let deregistered: BTreeMap<String, Duration> = run
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                Ev::Deregistered { host, .. } => Some((host.clone(), *t)),
                _ => None,
            })
            .collect();
        Checked {
            cfg,
            run,
            f,
            discoverers,
            deregistered,
            converge_at: run.heal_at + cfg.heal_bound(),
            p: cfg.propagation_bound(),
        }
    }
}

/// An interval during which something was wrong for `hosts`.
#[derive(Debug)]
pub(super) struct Outage {
    pub(super) a: String,
    pub(super) b: String,
    pub(super) from: Duration,
    pub(super) to: Duration,
    /// Only `a` → `b` is blocked (a one-way partition); otherwise both ways.
    pub(super) oneway: bool,
}

pub(super) type Keys = BTreeMap<String, (i64, String)>;

/// A discoverer's snapshot, as logged.
#[derive(Debug)]
pub(super) struct View {
    pub(super) at: Duration,
    pub(super) revision: i64,
    pub(super) resyncs: u64,
    pub(super) fresh: bool,
    pub(super) instances: Vec<String>,
    /// Which start of the host it came from.
    pub(super) incarnation: u32,
    /// Which history of etcd its revision belongs to: the number of data losses
    /// before the state it shows was read. A fresh view reads the history in
    /// force when it is published; a stale one keeps its last fresh view's.
    pub(super) epoch: usize,
}

/// One change of etcd's keys: `key` None is a data loss (every key gone);
/// `value` None is a delete.
#[derive(Debug)]
pub(super) struct Change {
    pub(super) at: Duration,
    pub(super) key: Option<String>,
    pub(super) value: Option<(i64, String)>,
}

/// What the log says, indexed for the checks.
pub(super) struct Facts {
    pub(super) end: Duration,
    /// Link faults (partition, one-way partition, hold) between `a` and `b`.
    pub(super) links: Vec<Outage>,
    /// Host down intervals (`a` is the host; `b` unused).
    pub(super) downs: Vec<Outage>,
    /// When each host first ran.
    pub(super) first_up: BTreeMap<String, Duration>,
    /// lease → (granting host, ttl, when).
    pub(super) grants: BTreeMap<i64, (String, Duration, Duration)>,
    /// lease → times etcd answered a keepalive for it while it lived.
    pub(super) refreshes: BTreeMap<i64, Vec<Duration>>,
    /// Times etcd started again with its data (every lease restarts its TTL).
    pub(super) restarts: Vec<Duration>,
    /// Times etcd came back without data.
    pub(super) losses: Vec<Duration>,
    /// Compactions: when, and up to which revision.
    pub(super) compactions: Vec<(Duration, i64)>,
    /// Revisions written by a client's request.
    pub(super) requested: BTreeSet<i64>,
    /// Every key change, in order: (when, key, new value: (lease, instance) or deleted),
    /// with `None` keys marking a data loss (everything gone).
    pub(super) changes: Vec<Change>,
    /// Views per discoverer: (when, revision, resyncs, fresh, instances, incarnation).
    pub(super) views: BTreeMap<String, Vec<View>>,
}

pub(super) fn instance_of(key: &str, value: &str) -> String {
    let layout = JsonLayout::new(NAMESPACE).expect("static namespace");
    match layout.decode(SERVICE, key.as_bytes(), value.as_bytes()) {
        Ok(i) => format!("{}@{}", i.id, i.endpoint()),
        Err(e) => format!("undecodable({e})"),
    }
}

pub(super) fn id_of(instance: &str) -> &str {
    instance.split('@').next().unwrap_or(instance)
}

impl Facts {
    pub(super) fn new(cfg: &SimConfig, entries: &[(Duration, Ev)]) -> Self {
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
    pub(super) fn healthy(&self, host: &str, from: Duration, to: Duration) -> bool {
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
    pub(super) fn cut_throughout(&self, host: &str, from: Duration, to: Duration, both_ways: bool) -> Option<String> {
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

    pub(super) fn running(&self, host: &str, at: Duration) -> bool {
        self.first_up.get(host).is_some_and(|up| *up <= at)
            && !self.downs.iter().any(|o| o.a == host && o.from <= at && o.to > at)
    }

    pub(super) fn etcd_down_during(&self, from: Duration, to: Duration) -> bool {
        self.downs.iter().any(|o| o.a == "etcd" && o.from <= to && o.to >= from)
    }

    /// etcd's keys at `at`.
    pub(super) fn keys_at(&self, at: Duration) -> Keys {
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
    pub(super) fn instances_at(&self, at: Duration) -> BTreeSet<String> {
        self.keys_at(at).into_values().map(|(_, i)| i).collect()
    }

    /// `host`'s view at `at`: its latest snapshot then.
    pub(super) fn view_at(&self, host: &str, at: Duration) -> Option<&View> {
        self.views.get(host)?.iter().take_while(|v| v.at <= at).last()
    }

    /// Whether `key` changed again after change number `index`, up to `to`
    /// (later in the log, possibly at the same instant).
    pub(super) fn changed_after(&self, index: usize, key: &str, to: Duration) -> bool {
        self.changes[index + 1..]
            .iter()
            .take_while(|c| c.at <= to)
            .any(|c| c.key.as_deref().is_none_or(|k| k == key))
    }
}
