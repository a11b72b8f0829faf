//! What one simulated run is: its seed, its hosts, its timing, and the bounds the
//! invariants are checked against (derived from the timing, never tuned per seed).

use std::time::Duration;

/// Simulated milliseconds per step. Every step polls every host, so a run's wall
/// time is proportional to steps, and a coarser step runs more seeds per second
/// (docs/RELIABILITY.md, Speed). Messages and timers resolve to this grain; the
/// base latency (2 ms) and every bound the checker uses are coarser than one
/// step's difference. A seed names a run together with its step: one found at
/// another grain replays with that `--tick-ms`.
pub const DEFAULT_TICK_MS: u64 = 3;

/// One run's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Everything random in the run comes from this.
    pub seed: u64,
    /// Simulated time of the whole run (safety phase, then heal phase).
    pub duration: Duration,
    /// Hosts that register an instance.
    pub registrants: usize,
    /// Hosts that watch the service (and call it through the balancer).
    pub discoverers: usize,
    /// Lease TTL (whole seconds: etcd grants whole seconds).
    pub ttl: Duration,
    /// Registration retry backoff: first ceiling and cap.
    pub retry_base: Duration,
    /// Registration retry cap (B).
    pub retry_cap: Duration,
    /// Discovery reconnect cap.
    pub discovery_retry_cap: Duration,
    /// HTTP/2 keepalive interval and timeout on every etcd connection.
    pub h2_keepalive: (Duration, Duration),
    /// Per-request timeout towards etcd.
    pub request_timeout: Duration,
    /// Largest one-way message latency during faults (D).
    pub max_latency: Duration,
    /// Latency outside latency faults.
    pub base_latency: Duration,
    /// How far simulated time moves per step: the resolution of every timer and
    /// message delivery.
    pub tick: Duration,
    /// Fraction of the run that has faults; the rest heals.
    pub safety_fraction: f64,
    /// How often each discoverer calls the greeter through the balancer.
    pub call_interval: Duration,
    /// Whether a second process with the same instance id as `reg-0` joins (the fencing scenario).
    pub twin: bool,
    /// Changes to the schedule drawn from the seed (shrinking a failing seed).
    pub edits: crate::edits::Edits,
    /// Harsher worlds, each off by default (`octopus-sim --world big` turns all on).
    pub world: World,
}

/// Harsher worlds than the default one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    /// One client's link to etcd flaps: cut for 0.3–1 s every 1–3 s, for up to a
    /// minute of the safety phase (nacos-sdk-go#587's repeated faults).
    pub flapping: bool,
    /// Registrants keep their registration on their process's shared lease.
    pub shared_lease: bool,
    /// Once, every client host crashes and restarts while etcd is down.
    pub restart_all: bool,
    /// A minority of the discoverers sits behind a slow link (latency up to D)
    /// for the whole run.
    pub slow_minority: bool,
    /// etcd answers watch creates as its gRPC proxy does (a range already
    /// followed at once, a new one after [`PROXY_CREATE_DELAY`]), and every
    /// discoverer also watches a service of its own (named after its host and
    /// start), opened with the shared one: so a restarted discoverer sends a
    /// create for a new range and one for a followed range at once, and their
    /// answers come back in the other order.
    pub proxy: bool,
}

/// How long the proxy world's etcd takes to answer a create for a range no
/// watch follows yet: the proxy creating its own watch on the etcd behind it.
pub const PROXY_CREATE_DELAY: Duration = Duration::from_millis(10);

impl SimConfig {
    /// The defaults for `seed`: 1 etcd, 5 registrants, 3 discoverers, 60 s.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            duration: Duration::from_secs(60),
            registrants: 5,
            discoverers: 3,
            ttl: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(2),
            discovery_retry_cap: Duration::from_secs(2),
            h2_keepalive: (Duration::from_millis(500), Duration::from_secs(1)),
            request_timeout: Duration::from_secs(1),
            max_latency: Duration::from_millis(100),
            base_latency: Duration::from_millis(2),
            tick: Duration::from_millis(DEFAULT_TICK_MS),
            safety_fraction: 0.6,
            call_interval: Duration::from_millis(250),
            twin: true,
            edits: crate::edits::Edits::default(),
            world: World::default(),
        }
    }

    /// Longest keepalive wait (K): a third of the TTL after the last answer,
    /// rounded up to the next 500 ms tick.
    pub fn keepalive(&self) -> Duration {
        self.ttl / 3 + Duration::from_millis(500)
    }

    /// Time to notice a dead connection (H): HTTP/2 keepalive interval + timeout.
    pub fn dead_connection(&self) -> Duration {
        self.h2_keepalive.0 + self.h2_keepalive.1
    }

    /// A round trip at the largest latency.
    pub fn round_trip(&self) -> Duration {
        self.max_latency * 2
    }

    /// When the last fault heals (t_h).
    pub fn heal_at(&self) -> Duration {
        self.duration.mul_f64(self.safety_fraction)
    }

    /// How long a registrant with a healthy link needs to refresh its lease after
    /// the link came back: notice the dead connection, wait for the next keepalive
    /// (retried at a third of its interval), reconnect and ask within the request
    /// timeout.
    pub fn refresh_bound(&self) -> Duration {
        self.dead_connection() + self.keepalive() + self.request_timeout + self.round_trip() * 2
    }

    /// How long a discoverer with a healthy link needs to have a working watch again:
    /// notice the dead connection, back off, read and watch again.
    pub fn rewatch_bound(&self) -> Duration {
        self.dead_connection() + self.discovery_retry_cap + self.request_timeout * 2 + self.round_trip() * 3
    }

    /// How long each discoverer's protected channel keeps vanished instances after
    /// a mass disappearance (its panic threshold's hold): long enough for the
    /// registrants to notice a lost lease at their next keepalive and write
    /// their keys again, with backoff, over a slow link.
    pub fn panic_hold(&self) -> Duration {
        self.ttl * 2 + self.retry_cap + self.request_timeout * 2
    }

    /// How long after a change a connected watcher's view shows it.
    pub fn propagation_bound(&self) -> Duration {
        self.round_trip() + Duration::from_millis(50)
    }

    /// Invariant 1's bound: after the last heal, every live instance is in every
    /// view by then (a lease that expired during the faults is noticed, re-granted
    /// after at most one backoff, and the watch that carries it is back).
    pub fn heal_bound(&self) -> Duration {
        self.refresh_bound() + self.ttl + self.retry_cap + self.rewatch_bound() + self.propagation_bound()
    }
}
