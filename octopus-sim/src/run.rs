//! One simulated run: build the hosts, play the schedule, collect the event log.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::config::SimConfig;
use crate::hosts::{self, Command, Ctx, Shared};
use crate::log::{digest, Ev, FaultKind, Log};
use crate::schedule::{self, Action, TWIN};

/// What a run produced.
#[derive(Debug)]
pub struct RunLog {
    /// Every event, in the order it happened.
    pub entries: Vec<(Duration, Ev)>,
    /// The digest of `entries`.
    pub digest: u64,
    /// When the last fault healed.
    pub heal_at: Duration,
    /// If a host's software failed (an error the simulation cannot go on from).
    pub failure: Option<String>,
}

/// Simulated time as the `fmt` layer's timestamp (`--trace`).
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:>9.3}s", turmoil::sim_elapsed().unwrap_or_default().as_secs_f64())
    }
}

/// Runs `cfg` to its end. With `trace`, the library's own tracing goes to stderr.
///
/// The library is observed through its typed hook (`octopus_discovery_core::hooks`), not its
/// log messages: each registration retry becomes an [`Ev::Retry`].
pub fn run(cfg: &SimConfig, trace: bool) -> RunLog {
    let log = Log::default();
    let retries = log.clone();
    octopus_discovery_core::hooks::set_observer(Some(std::sync::Arc::new(move |event| {
        if let octopus_discovery_core::hooks::Observed::Retry { id, delay, ceiling, .. } = event {
            retries.push(Ev::Retry { id, delay, ceiling });
        }
    })));
    let run = if trace {
        let fmt = tracing_subscriber::fmt::layer()
            .with_timer(SimTime)
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
        let subscriber = tracing_subscriber::registry().with(fmt);
        tracing::subscriber::with_default(subscriber, || drive(cfg, log))
    } else {
        // No subscriber: every tracing callsite is disabled at once.
        drive(cfg, log)
    };
    octopus_discovery_core::hooks::set_observer(None);
    run
}

fn drive(cfg: &SimConfig, log: Log) -> RunLog {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let plan = crate::units::apply(&cfg.edits, schedule::draw(cfg, &mut rng));
    let shared = Shared::default();
    let ctx = Ctx {
        cfg: cfg.clone(),
        log: log.clone(),
        shared: shared.clone(),
    };

    // Registrations stamp their write time: simulated time, so runs stay deterministic.
    octopus_discovery_core::hooks::set_wall_clock(turmoil::since_epoch);
    let mut sim = turmoil::Builder::new()
        .rng_seed(cfg.seed)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_764_000_000))
        .simulation_duration(cfg.duration + Duration::from_secs(60))
        .tick_duration(cfg.tick)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(cfg.base_latency)
        .build();

    let c = ctx.clone();
    sim.host("etcd", move || hosts::etcd(c.clone()));
    for (i, host) in schedule::registrants(cfg).into_iter().enumerate() {
        let c = ctx.clone();
        let id = format!("reg-{i}");
        let name = host.clone();
        sim.host(name.as_str(), move || {
            hosts::registrant(c.clone(), host.clone(), id.clone(), Duration::ZERO)
        });
    }
    if let Some(start) = plan.twin_start {
        let c = ctx.clone();
        sim.host(TWIN, move || {
            hosts::registrant(c.clone(), TWIN.into(), "reg-0".into(), start)
        });
    }
    for host in schedule::discoverers(cfg) {
        let c = ctx.clone();
        let name = host.clone();
        sim.host(name.as_str(), move || hosts::discoverer(c.clone(), host.clone()));
    }

    let mut failure = None;
    let mut next = 0;
    loop {
        let now = sim.elapsed();
        while let Some((at, action)) = plan.actions.get(next) {
            if *at > now {
                break;
            }
            apply(&mut sim, cfg, &shared, &log, now, action);
            next += 1;
        }
        if now >= cfg.duration {
            break;
        }
        if let Err(e) = sim.step() {
            failure = Some(e.to_string());
            break;
        }
    }
    let entries = log.entries();
    RunLog {
        digest: digest(&entries),
        entries,
        heal_at: cfg.heal_at(),
        failure,
    }
}

fn apply(sim: &mut turmoil::Sim<'_>, cfg: &SimConfig, shared: &Shared, log: &Log, now: Duration, action: &Action) {
    match action {
        Action::Fault { id, kind, a, b } => {
            match kind {
                FaultKind::Partition => sim.partition(a.as_str(), b.as_str()),
                FaultKind::PartitionOneway => sim.partition_oneway(a.as_str(), b.as_str()),
                FaultKind::Hold => sim.hold(a.as_str(), b.as_str()),
                FaultKind::Latency => sim.set_link_max_message_latency(a.as_str(), b.as_str(), cfg.max_latency),
            }
            log.push_at(
                now,
                Ev::FaultStart {
                    id: *id,
                    kind: *kind,
                    a: a.clone(),
                    b: b.clone(),
                },
            );
        }
        Action::Heal { id, kind, a, b } => {
            match kind {
                FaultKind::Partition => sim.repair(a.as_str(), b.as_str()),
                FaultKind::PartitionOneway => sim.repair_oneway(a.as_str(), b.as_str()),
                FaultKind::Hold => sim.release(a.as_str(), b.as_str()),
                FaultKind::Latency => sim.set_link_max_message_latency(a.as_str(), b.as_str(), cfg.base_latency),
            }
            log.push_at(now, Ev::FaultEnd { id: *id });
        }
        Action::Crash { host, lose_data } => {
            if *lose_data {
                shared.lose_etcd_data();
            }
            sim.crash(host.as_str());
            log.push_at(now, Ev::HostDown { host: host.clone() });
        }
        Action::Restart { host } => sim.bounce(host.as_str()),
        Action::Compact => shared.send("etcd", Command::Compact),
        Action::Deregister { host } => shared.send(host, Command::Deregister),
    }
}
