//! One simulated run: build the hosts, play the schedule, collect the event log.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
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

/// Turns the registration task's "retrying registration" tracing event into
/// [`Ev::Retry`]: the delay it drew and the ceiling it drew it under.
struct RetryRecorder(Log);

#[derive(Default)]
struct RetryFields {
    id: Option<String>,
    delay_us: Option<u64>,
    ceiling_us: Option<u64>,
    message: Option<String>,
}

impl Visit for RetryFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "delay_us" => self.delay_us = Some(value),
            "ceiling_us" => self.ceiling_us = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "id" {
            self.id = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "id" => self.id = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

/// The one callsite the recorder reads: registration retries, events of
/// `octopus_core::lease`.
fn recorded(m: &tracing::Metadata<'_>) -> bool {
    m.is_event() && m.target() == "octopus_core::lease"
}

impl<S: tracing::Subscriber> Layer<S> for RetryRecorder {
    // Interest in nothing else: every other span and event (h2's, tonic's, tower's,
    // turmoil's) is then disabled at its callsite instead of being built, entered
    // and dropped through the registry on every poll (about a tenth of a seed's
    // wall time, by perf).
    fn register_callsite(&self, m: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if recorded(m) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, m: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        recorded(m)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("octopus_core") {
            return;
        }
        let mut f = RetryFields::default();
        event.record(&mut f);
        if f.message.as_deref() != Some("retrying registration") {
            return;
        }
        if let (Some(id), Some(delay), Some(ceiling)) = (f.id, f.delay_us, f.ceiling_us) {
            self.0.push(Ev::Retry {
                id,
                delay: Duration::from_micros(delay),
                ceiling: Duration::from_micros(ceiling),
            });
        }
    }
}

/// Simulated time as the `fmt` layer's timestamp (`--trace`).
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:>9.3}s", turmoil::sim_elapsed().unwrap_or_default().as_secs_f64())
    }
}

/// Runs `cfg` to its end. With `trace`, the library's own tracing goes to stderr.
pub fn run(cfg: &SimConfig, trace: bool) -> RunLog {
    let log = Log::default();
    let recorder = RetryRecorder(log.clone());
    let fmt = trace.then(|| {
        tracing_subscriber::fmt::layer()
            .with_timer(SimTime)
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG)
    });
    match fmt {
        // --trace: everything at debug, printed, and the retries recorded.
        Some(fmt) => {
            let recorder = recorder.with_filter(tracing_subscriber::filter::filter_fn(recorded));
            let subscriber = tracing_subscriber::registry().with(recorder).with(fmt);
            tracing::subscriber::with_default(subscriber, || drive(cfg, log))
        }
        None => {
            let subscriber = tracing_subscriber::registry().with(recorder);
            tracing::subscriber::with_default(subscriber, || drive(cfg, log))
        }
    }
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
    octopus_core::clock::set_wall_clock(turmoil::since_epoch);
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
