//! The state a balanced channel shares with the task that follows discovery: the
//! endpoints (one backend per instance: its connection, load and ejection state),
//! whether discovery has answered, and the mass-disappearance protection's
//! setting and counters.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use octopus_discovery_core::ServiceInstance;

/// One instance: its channel, load and ejection state.
pub(super) struct Backend {
    pub(super) instance: Arc<ServiceInstance>,
    pub(super) channel: Channel,
    pub(super) in_flight: AtomicUsize,
    /// Consecutive connection failures; the ejection doubles with each.
    pub(super) failures: AtomicU32,
    pub(super) picks: metrics::Counter,
    pub(super) ejections: metrics::Counter,
    /// Ejected until this many nanoseconds after the channel's epoch; 0: not ejected.
    /// An atomic, so that the common case (nothing ejected) reads no clock and takes no lock.
    pub(super) ejected_until: AtomicU64,
    /// In slow start until this many nanoseconds after the channel's epoch; 0:
    /// warm (the common case reads no clock).
    pub(super) warm_until: AtomicU64,
    /// Consecutive responses with an ejecting gRPC status (outlier detection).
    pub(super) status_failures: AtomicU32,
    /// Moving average of response times, in nanoseconds (0: none yet), and
    /// when it was last updated (nanoseconds since the epoch).
    pub(super) ewma_ns: AtomicU64,
    pub(super) ewma_at: AtomicU64,
}

/// How fast the latency average forgets: an observation this old weighs 1/e.
const EWMA_DECAY_NS: f64 = 10e9;
/// An instance not measured for this long is tried again.
const EWMA_RETRY_NS: u64 = 1_000_000_000;

impl Backend {
    /// Folds a response time into the moving average, weighing the old average by
    /// how recent it is (go-zero's p2c_ewma: `w = e^(-Δt/τ)`, τ = 10 s).
    pub(super) fn observe_latency(&self, rtt: Duration, now_ns: u64) {
        let rtt = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        let last = self.ewma_at.swap(now_ns, Ordering::Relaxed);
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let next = if old == 0 {
            rtt
        } else {
            let w = (-(now_ns.saturating_sub(last) as f64) / EWMA_DECAY_NS).exp();
            (old as f64 * w + rtt as f64 * (1.0 - w)) as u64
        };
        self.ewma_ns.store(next.max(1), Ordering::Relaxed);
    }

    /// The load p2c_ewma compares at `now_ns`: (calls in flight + 1) × the
    /// latency average. An instance not measured for a second weighs 0, so that
    /// it is tried again (go-zero's forced pick): one slow answer must not keep
    /// an instance out for good.
    pub(super) fn ewma_load(&self, now_ns: u64) -> u128 {
        if now_ns.saturating_sub(self.ewma_at.load(Ordering::Relaxed)) > EWMA_RETRY_NS {
            return 0;
        }
        let flight = self.in_flight.load(Ordering::Relaxed) as u128 + 1;
        flight * u128::from(self.ewma_ns.load(Ordering::Relaxed))
    }

    /// In slow start at `now` (nanoseconds since the epoch, read on first need):
    /// the share of its full traffic it takes now, below 1; `None` when warm.
    pub(super) fn warming(&self, now: &mut Option<u64>, epoch: Instant, window: u64) -> Option<f64> {
        let until = self.warm_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let t = *now.get_or_insert_with(|| nanos_since(epoch));
        if t >= until || window == 0 {
            self.warm_until.store(0, Ordering::Relaxed);
            return None;
        }
        let age = window.saturating_sub(until - t);
        Some(age as f64 / window as f64)
    }

    pub(super) fn available(&self, now: &mut Option<u64>, epoch: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= *now.get_or_insert_with(|| nanos_since(epoch))
    }
}

/// One call in flight on a backend: the count rises when it is made and falls
/// when it is dropped, however the call ends (answered, failed, or its future
/// dropped by a timeout or a `select!`), as tower's `PendingRequests` handle
/// does. Carried inside the call's future, so a cancelled call leaves no count
/// behind for p2c to avoid the instance by.
pub(super) struct InFlight(Arc<Backend>);

impl InFlight {
    pub(super) fn start(backend: &Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(backend.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Mass-disappearance protection (Envoy's panic threshold, Nacos's protection
/// threshold): when a fresh view holds fewer than `share` of the instances the
/// channel was using, the channel keeps the instances that vanished, beside the
/// ones in the view, for at most `hold` or until the view recovers to `share`.
/// Etcd restored from a backup or wiped loses every key at once, and the
/// registrants put theirs back within seconds; meanwhile their processes still
/// serve. Off (`share` 0) unless set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanicThreshold {
    /// The share (0 to 1) of the instances in use below which a view is
    /// distrusted; 0 turns the protection off.
    pub share: f64,
    /// How long the vanished instances are kept at most.
    pub hold: Duration,
}

/// Whether the simulator switched on its deliberate bug `NoPanicThreshold`
/// (it exists only with the feature `sim-hooks`).
fn no_panic_threshold() -> bool {
    #[cfg(feature = "sim-hooks")]
    return octopus_discovery_core::hooks::enabled(octopus_discovery_core::hooks::Bug::NoPanicThreshold);
    #[cfg(not(feature = "sim-hooks"))]
    false
}

impl PanicThreshold {
    /// No protection: every fresh view is applied as it is.
    pub const OFF: PanicThreshold = PanicThreshold {
        share: 0.0,
        hold: Duration::ZERO,
    };

    /// Whether a view of `now` instances is distrusted against `known` in use.
    pub(super) fn distrusts(&self, now: usize, known: usize) -> bool {
        !no_panic_threshold() && self.share > 0.0 && !self.hold.is_zero() && (now as f64) < self.share * known as f64
    }
}

/// Outlier detection at the request level (gRPC's A50, Envoy's): an instance
/// whose responses carry one of `codes` `consecutive` times in a row is ejected,
/// as an unreachable one is (500 ms, doubling on each repeat up to 30 s), unless
/// that would eject more than `max_ejected_share` of the instances (a fleet-wide
/// problem must not eject everything). Off unless set.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierDetection {
    /// Failing responses in a row that eject (default 5).
    pub consecutive: u32,
    /// The gRPC status codes that count as failures (default `UNAVAILABLE`).
    pub codes: Vec<tonic::Code>,
    /// At most this share of the instances ejected at once (default 0.5).
    pub max_ejected_share: f64,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive: 5,
            codes: vec![tonic::Code::Unavailable],
            max_ejected_share: 0.5,
        }
    }
}

/// Zone-aware routing: prefer the instances whose `zone` metadata is the
/// caller's zone, and spill over to every zone when the local ones that can take
/// a call (not ejected, not draining) are fewer than `min_available`, or fewer
/// than `min_available_share` of the local instances. Spilling over takes every
/// zone's instances, the local ones among them. Off unless set.
#[derive(Clone, Debug, PartialEq)]
pub struct ZonePreference {
    /// The caller's zone.
    pub zone: String,
    /// Spill over below this many available local instances (default 1).
    pub min_available: usize,
    /// Spill over below this share (0 to 1) of the local instances available
    /// (default 0.5: half the zone ejected or draining moves its calls everywhere,
    /// rather than onto the zone's last instances).
    pub min_available_share: f64,
}

impl ZonePreference {
    /// Prefers `zone`, with the default spill-over rule.
    pub fn new(zone: impl Into<String>) -> Self {
        ZonePreference {
            zone: zone.into(),
            min_available: 1,
            min_available_share: 0.5,
        }
    }
}

impl From<&str> for ZonePreference {
    fn from(zone: &str) -> Self {
        ZonePreference::new(zone)
    }
}

impl From<String> for ZonePreference {
    fn from(zone: String) -> Self {
        ZonePreference::new(zone)
    }
}

/// The backends in use, and the tiers a pick tries in turn: the caller's zone,
/// every instance not draining, then every instance.
pub(super) struct Set {
    /// Every backend, sorted by instance id.
    pub(super) all: Vec<Arc<Backend>>,
    /// Those not marked draining.
    pub(super) serving: Vec<Arc<Backend>>,
    /// Those not draining in the caller's zone (empty without a zone preference).
    pub(super) local: Vec<Arc<Backend>>,
    pub(super) zone: Option<ZonePreference>,
}

impl Set {
    pub(super) fn new(all: Vec<Arc<Backend>>, zone: Option<ZonePreference>) -> Self {
        let serving: Vec<_> = all.iter().filter(|b| !b.instance.is_draining()).cloned().collect();
        let local = match &zone {
            Some(z) => serving
                .iter()
                .filter(|b| b.instance.zone() == Some(z.zone.as_str()))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        Set {
            all,
            serving,
            local,
            zone,
        }
    }
}

/// What the channel and its follower share.
pub(super) struct Endpoints {
    pub(super) service: String,
    /// The backends in use.
    pub(super) backends: RwLock<Arc<Set>>,
    /// True once discovery has answered (or stopped): until then a call waits
    /// for the first answer instead of failing on an empty list.
    pub(super) resolved: tokio::sync::watch::Sender<bool>,
    /// The mass-disappearance protection's setting.
    pub(super) panic: PanicThreshold,
    /// Times the protection started (a view was distrusted).
    pub(super) protections: AtomicU64,
    /// Whether discovery's latest answer was stale (its registry unreachable),
    /// once the follower has dealt with it.
    pub(super) stale: AtomicBool,
    /// The channel's clock origin: ejection and slow start are nanoseconds after it.
    pub(super) epoch: Instant,
    /// Slow start: how long a new instance's share ramps up, in nanoseconds (0: off).
    pub(super) slow_start_ns: u64,
}

impl Endpoints {
    /// No endpoints yet, for `service`, with the protection's setting, slow
    /// start's window (nanoseconds) and the zone preference the channel keeps.
    pub(super) fn new(service: &str, panic: PanicThreshold, slow_start_ns: u64, zone: Option<ZonePreference>) -> Self {
        Endpoints {
            service: service.to_owned(),
            backends: RwLock::new(Arc::new(Set::new(Vec::new(), zone))),
            resolved: tokio::sync::watch::Sender::new(false),
            panic,
            protections: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            epoch: Instant::now(),
            slow_start_ns,
        }
    }

    /// The backends in use.
    pub(super) fn snapshot(&self) -> Arc<Set> {
        self.backends.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `all` the backends in use, with the zone preference in force.
    pub(super) fn replace(&self, all: Vec<Arc<Backend>>) {
        let mut backends = self.backends.write().unwrap_or_else(|p| p.into_inner());
        *backends = Arc::new(Set::new(all, backends.zone.clone()));
    }

    /// Counts a new backend for `instance` over `channel`; with `warming`, in slow
    /// start (an instance that joined a running channel, not the first answer's).
    pub(super) fn backend(&self, instance: &Arc<ServiceInstance>, channel: Channel, warming: bool) -> Arc<Backend> {
        let window = self.slow_start_ns;
        let warm_until = if warming && window > 0 {
            nanos_since(self.epoch).saturating_add(window)
        } else {
            0
        };
        let labels = [("service", self.service.clone()), ("endpoint", instance.endpoint())];
        Arc::new(Backend {
            picks: metrics::counter!(octopus_discovery_core::telemetry::BALANCER_PICKS, &labels),
            ejections: metrics::counter!(octopus_discovery_core::telemetry::BALANCER_EJECTIONS, &labels),
            instance: instance.clone(),
            channel,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            warm_until: AtomicU64::new(warm_until),
            status_failures: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
        })
    }

    /// Counts and logs the start of a protection.
    pub(super) fn protecting(&self, view: usize, known: usize, hold: Duration) {
        self.protections.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(octopus_discovery_core::telemetry::BALANCER_PROTECTIONS, "service" => self.service.clone())
            .increment(1);
        tracing::warn!(
            service = %self.service,
            view,
            known,
            ?hold,
            "discovery shows far fewer instances than in use: keeping the vanished ones for now"
        );
    }
}
