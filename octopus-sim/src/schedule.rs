//! The fault schedule, drawn from the seed: what happens when, during the safety
//! phase; then the heal phase (nothing but one graceful deregistration).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::config::SimConfig;
use crate::log::FaultKind;

/// One step of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Starts fault `id` between `a` and `b`.
    Fault {
        /// Its id.
        id: u32,
        /// What.
        kind: FaultKind,
        /// First host (the sender, for one-way partitions).
        a: String,
        /// Second host.
        b: String,
    },
    /// Ends fault `id`.
    Heal {
        /// The fault.
        id: u32,
        /// What it was.
        kind: FaultKind,
        /// First host.
        a: String,
        /// Second host.
        b: String,
    },
    /// Crashes a host.
    Crash {
        /// Which.
        host: String,
        /// For etcd: whether it comes back without its data.
        lose_data: bool,
    },
    /// Restarts a crashed host.
    Restart {
        /// Which.
        host: String,
    },
    /// Compacts etcd's history at its current revision.
    Compact,
    /// A registrant deregisters gracefully.
    Deregister {
        /// Which.
        host: String,
    },
}

/// The schedule: actions sorted by time (stable for equal times).
#[derive(Clone, Debug)]
pub struct Schedule {
    /// `(when, what)`.
    pub actions: Vec<(Duration, Action)>,
    /// When the twin starts, if there is one.
    pub twin_start: Option<Duration>,
}

/// The registrants' host names.
pub fn registrants(cfg: &SimConfig) -> Vec<String> {
    (0..cfg.registrants).map(|i| format!("reg-{i}")).collect()
}

/// The discoverers' host names.
pub fn discoverers(cfg: &SimConfig) -> Vec<String> {
    (0..cfg.discoverers).map(|i| format!("disc-{i}")).collect()
}

/// The twin's host name (same instance id as `reg-0`).
pub const TWIN: &str = "twin-0";

fn between(rng: &mut StdRng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_nanos(rng.random_range(lo.as_nanos() as u64..=hi.as_nanos() as u64))
}

/// A host already in a fault, or reserved for the twin scenario, is left alone.
fn free(
    busy: &BTreeMap<String, Duration>,
    reserved: &[(String, Duration, Duration)],
    host: &str,
    from: Duration,
    until: Duration,
) -> bool {
    busy.get(host).is_none_or(|b| *b <= from) && !reserved.iter().any(|(h, f, t)| h == host && from < *t && until > *f)
}

/// Adds fault `next_id` of `kind` between `a` and `b` from `from` to `until`.
fn link_fault(
    actions: &mut Vec<(Duration, Action)>,
    next_id: &mut u32,
    kind: FaultKind,
    (a, b): (String, String),
    from: Duration,
    until: Duration,
) {
    let id = *next_id;
    *next_id += 1;
    actions.push((
        from,
        Action::Fault {
            id,
            kind,
            a: a.clone(),
            b: b.clone(),
        },
    ));
    actions.push((until, Action::Heal { id, kind, a, b }));
}

/// Draws the schedule for `cfg` from `rng`.
pub fn draw(cfg: &SimConfig, rng: &mut StdRng) -> Schedule {
    let t_heal = cfg.heal_at();
    let ttl = cfg.ttl;
    let mut actions = Vec::new();
    let mut busy: BTreeMap<String, Duration> = BTreeMap::new(); // per host: faulted until
    let mut reserved: Vec<(String, Duration, Duration)> = Vec::new();
    let mut next_id = 0u32;
    let mut clients = registrants(cfg);
    clients.extend(discoverers(cfg));
    let twin = cfg.twin && cfg.registrants > 0;
    let twin_start = twin.then(|| between(rng, Duration::from_secs(4), Duration::from_secs(8)));
    if twin {
        clients.push(TWIN.into());
        // The fencing scenario: reg-0 holds the key, is cut off for longer than the
        // TTL while the twin takes over, then comes back.
        let latest = t_heal.saturating_sub(ttl * 3 + Duration::from_secs(1));
        let at = between(rng, Duration::from_secs(10), latest.max(Duration::from_secs(10)));
        let d = between(rng, ttl * 3 / 2, ttl * 3);
        let kind = if rng.random_bool(0.5) {
            FaultKind::Hold
        } else {
            FaultKind::Partition
        };
        let link = ("reg-0".to_owned(), "etcd".to_owned());
        link_fault(&mut actions, &mut next_id, kind, link, at, at + d);
        // No other fault touches reg-0 around it, so the scenario is not disturbed.
        reserved.push(("reg-0".into(), at.saturating_sub(ttl * 2), at + d + ttl * 2));
    }

    // Harsher worlds (each off by default).
    let mut etcd_reserved: Vec<(Duration, Duration)> = Vec::new();
    let mut slow: Vec<String> = Vec::new();
    if cfg.world.slow_minority && cfg.discoverers > 0 {
        // A minority behind a slow link for the whole run (at least one).
        let k = ((cfg.discoverers - 1) / 2).max(1);
        for host in discoverers(cfg).into_iter().take(k) {
            let (a, b, kind) = (host.clone(), "etcd".to_owned(), FaultKind::Latency);
            link_fault(&mut actions, &mut next_id, kind, (a, b), Duration::ZERO, cfg.duration);
            slow.push(host);
        }
    }
    if cfg.world.restart_all && t_heal > ttl * 6 + Duration::from_secs(6) {
        // etcd goes down; while it is down every client host crashes and restarts;
        // then etcd comes back.
        for _ in 0..10 {
            let at = between(rng, Duration::from_secs(5), t_heal.saturating_sub(ttl * 6));
            let crash = at + Duration::from_millis(200);
            let restart = crash + between(rng, Duration::from_millis(300), Duration::from_secs(1));
            let back = restart + between(rng, ttl / 2, ttl * 2);
            let hosts: Vec<&String> = clients
                .iter()
                .filter(|h| h.as_str() != TWIN || twin_start.is_some_and(|s| s < at))
                .collect();
            if !hosts.iter().all(|h| free(&busy, &reserved, h, at, back)) {
                continue;
            }
            actions.push((
                at,
                Action::Crash {
                    host: "etcd".into(),
                    lose_data: false,
                },
            ));
            for h in &hosts {
                actions.push((
                    crash,
                    Action::Crash {
                        host: (*h).clone(),
                        lose_data: false,
                    },
                ));
                actions.push((restart, Action::Restart { host: (*h).clone() }));
            }
            actions.push((back, Action::Restart { host: "etcd".into() }));
            for h in hosts {
                reserved.push((h.clone(), at, back));
            }
            etcd_reserved.push((at, back));
            break;
        }
    }
    if cfg.world.flapping && !clients.is_empty() {
        // One client's link to etcd flaps for up to a minute.
        let host = clients[rng.random_range(0..clients.len())].clone();
        let start = between(
            rng,
            Duration::from_secs(3),
            t_heal.saturating_sub(Duration::from_secs(10)),
        );
        let stop = (start + Duration::from_secs(60)).min(t_heal.saturating_sub(Duration::from_secs(1)));
        if host != TWIN && free(&busy, &reserved, &host, start, stop) {
            let mut t = start;
            while t < stop {
                let cut = between(rng, Duration::from_millis(300), Duration::from_secs(1));
                let (a, b, kind) = (host.clone(), "etcd".to_owned(), FaultKind::Partition);
                link_fault(&mut actions, &mut next_id, kind, (a, b), t, (t + cut).min(stop));
                t += between(rng, Duration::from_secs(1), Duration::from_secs(3)).max(cut + Duration::from_millis(50));
            }
            reserved.push((host, start, stop));
        }
    }
    let etcd_free = |from: Duration, to: Duration| !etcd_reserved.iter().any(|(f, t)| from < *t && to > *f);

    let mut t = Duration::from_secs(3);
    let mut etcd_busy = Duration::ZERO;
    loop {
        t += between(rng, Duration::from_millis(300), Duration::from_millis(2500));
        if t + Duration::from_millis(200) >= t_heal {
            break;
        }
        let roll = rng.random_range(0..100);
        let host = clients[rng.random_range(0..clients.len())].clone();
        let end = |d: Duration| (t + d).min(t_heal);
        match roll {
            0..=54 => {
                let kind = match roll {
                    0..=24 => FaultKind::Partition,
                    25..=36 => FaultKind::PartitionOneway,
                    37..=46 => FaultKind::Hold,
                    _ => FaultKind::Latency,
                };
                let until = end(between(rng, ttl / 5, ttl * 3));
                if !free(&busy, &reserved, &host, t, until) || (kind == FaultKind::Latency && slow.contains(&host)) {
                    continue;
                }
                // Mostly between a client and etcd; sometimes between a discoverer
                // and a registrant (the balancer's traffic).
                let peer = if host.starts_with("disc-") && cfg.registrants > 0 && rng.random_bool(0.25) {
                    format!("reg-{}", rng.random_range(0..cfg.registrants))
                } else {
                    "etcd".to_owned()
                };
                let (a, b) = if kind == FaultKind::PartitionOneway && rng.random_bool(0.5) {
                    (peer, host.clone())
                } else {
                    (host.clone(), peer)
                };
                link_fault(&mut actions, &mut next_id, kind, (a, b), t, until);
                busy.insert(host, until);
            }
            55..=74 => {
                let until = end(between(rng, ttl / 2, ttl * 3));
                if !free(&busy, &reserved, &host, t, until) || (host == TWIN && twin_start.is_some_and(|s| t < s)) {
                    continue;
                }
                actions.push((
                    t,
                    Action::Crash {
                        host: host.clone(),
                        lose_data: false,
                    },
                ));
                actions.push((until, Action::Restart { host: host.clone() }));
                busy.insert(host, until);
            }
            75..=84 => {
                if etcd_busy > t {
                    continue;
                }
                let until = end(between(rng, ttl / 5, ttl * 2));
                if !etcd_free(t, until) {
                    continue;
                }
                let lose_data = rng.random_bool(0.3);
                actions.push((
                    t,
                    Action::Crash {
                        host: "etcd".into(),
                        lose_data,
                    },
                ));
                actions.push((until, Action::Restart { host: "etcd".into() }));
                etcd_busy = until;
            }
            _ => {
                if etcd_busy <= t && etcd_free(t, t) {
                    actions.push((t, Action::Compact));
                }
            }
        }
    }

    // Heal phase: one graceful deregistration, once everything has converged.
    if cfg.registrants >= 2 {
        let at = t_heal + cfg.heal_bound() + Duration::from_secs(1);
        if at + Duration::from_secs(2) < cfg.duration {
            actions.push((
                at,
                Action::Deregister {
                    host: format!("reg-{}", cfg.registrants - 1),
                },
            ));
        }
    }
    actions.sort_by_key(|(at, _)| *at);
    Schedule { actions, twin_start }
}
