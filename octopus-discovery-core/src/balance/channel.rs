use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tonic::body::Body;
use tower::{Service, ServiceExt};

use super::endpoints::{
    nanos_since, Backend, Endpoints, InFlight, OutlierDetection, PanicThreshold, Set, ZonePreference,
};
use super::follow::follow;
use super::pick::{choose, Picker};
use super::{Connector, Policy, Readiness};
use crate::{JitterRng, OwnedTask, ServiceInstance, ServiceWatch};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) struct Inner {
    pub(super) endpoints: Arc<Endpoints>,
    pub(super) policy: Policy,
    pub(super) next: AtomicUsize,
    pub(super) rng: Mutex<JitterRng>,
    pub(super) eject_base: Duration,
    pub(super) eject_cap: Duration,
    pub(super) follower: Mutex<Option<OwnedTask<()>>>,
    /// How long a call waits for that first answer when its request carries no
    /// deadline (`grpc-timeout`) of its own.
    pub(super) first_answer_timeout_ns: AtomicU64,
    pub(super) outlier: std::sync::RwLock<Option<OutlierDetection>>,
    /// Whether `outlier` is set: read first, so that calls take no lock without it.
    pub(super) outlier_on: std::sync::atomic::AtomicBool,
    /// Whether `poll_ready` reports (see [`Readiness`]).
    pub(super) reported: std::sync::atomic::AtomicBool,
}

pub(super) type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A load-balanced channel to the instances of one service. Clone it freely:
/// clones share the endpoints, the policy's state and the follower task, which
/// stops when the last clone is dropped.
pub struct BalancedChannel {
    pub(super) inner: Arc<Inner>,
    /// With [`Readiness::Reported`], what `poll_ready` waits on (per clone, as
    /// tower's readiness is); behind a mutex only to keep the channel `Sync`.
    pub(super) waiting: Mutex<Option<Wait>>,
}

impl Clone for BalancedChannel {
    fn clone(&self) -> Self {
        BalancedChannel {
            inner: self.inner.clone(),
            waiting: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for BalancedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancedChannel")
            .field("service", &self.inner.endpoints.service)
            .field("policy", &self.inner.policy)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

impl BalancedChannel {
    /// How long a call made before discovery's first answer waits for it when the
    /// call has no deadline of its own: 10 s.
    pub const DEFAULT_FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

    /// Balances over the instances `watch` yields, connecting with `connector` and
    /// drawing randomness (p2c, weighted) from `rng`.
    pub fn new(
        service: &str,
        watch: ServiceWatch,
        policy: Policy,
        connector: Arc<dyn Connector>,
        rng: JitterRng,
    ) -> Self {
        let inner = Arc::new(Inner {
            endpoints: Arc::new(Endpoints::new(service)),
            policy,
            next: AtomicUsize::new(0),
            rng: Mutex::new(rng),
            eject_base: Duration::from_millis(500),
            eject_cap: Duration::from_secs(30),
            follower: Mutex::new(None),
            first_answer_timeout_ns: AtomicU64::new(Self::DEFAULT_FIRST_ANSWER_TIMEOUT.as_nanos() as u64),
            outlier: std::sync::RwLock::new(None),
            outlier_on: std::sync::atomic::AtomicBool::new(false),
            reported: std::sync::atomic::AtomicBool::new(false),
        });
        let task = OwnedTask::spawn(follow(Arc::downgrade(&inner.endpoints), watch, connector));
        *inner.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        BalancedChannel {
            inner,
            waiting: Mutex::new(None),
        }
    }

    /// Protects against a mass disappearance (see [`PanicThreshold`]): when a
    /// fresh view holds fewer than `threshold.share` of the instances in use,
    /// the vanished ones are kept for at most `threshold.hold` or until the view
    /// recovers. Off by default ([`PanicThreshold::OFF`]).
    pub fn with_panic_threshold(self, threshold: PanicThreshold) -> Self {
        *self.inner.endpoints.panic.lock().unwrap_or_else(|p| p.into_inner()) = threshold;
        self
    }

    /// Slow start: an instance that joins after the first answer takes a share of
    /// its traffic that ramps up linearly over `window` (the first answer's
    /// instances start warm). Off (zero) by default.
    pub fn with_slow_start(self, window: Duration) -> Self {
        let ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.inner.endpoints.slow_start_ns.store(ns, Ordering::Relaxed);
        self
    }

    /// Prefers instances in the caller's zone, spilling over to every zone when
    /// too few local ones are available (see [`ZonePreference`]). Off by default:
    /// every zone alike.
    pub fn with_zone(self, zone: impl Into<ZonePreference>) -> Self {
        self.inner.endpoints.set_zone(Some(zone.into()));
        self
    }

    /// What `poll_ready` reports (default [`Readiness::AtCall`]: ready at once).
    pub fn with_readiness(self, readiness: Readiness) -> Self {
        self.inner
            .reported
            .store(readiness == Readiness::Reported, Ordering::Relaxed);
        self
    }

    /// How many times the mass-disappearance protection has started.
    pub fn protections(&self) -> u64 {
        self.inner.endpoints.protections.load(Ordering::Relaxed)
    }

    /// Sets how long a call made before discovery's first answer waits for it
    /// when the request carries no `grpc-timeout` (default
    /// [`DEFAULT_FIRST_ANSWER_TIMEOUT`](Self::DEFAULT_FIRST_ANSWER_TIMEOUT)). Only
    /// before the first answer: after it, a call with no instance to go to fails
    /// at once.
    pub fn with_first_answer_timeout(self, timeout: Duration) -> Self {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.inner.first_answer_timeout_ns.store(nanos, Ordering::Relaxed);
        self
    }

    /// Waits until discovery has answered, at most `limit`; true if it has.
    async fn first_answer(&self, limit: Duration) -> bool {
        if *self.inner.endpoints.resolved.borrow() {
            return true;
        }
        let mut rx = self.inner.endpoints.resolved.subscribe();
        let answered = matches!(tokio::time::timeout(limit, rx.wait_for(|r| *r)).await, Ok(Ok(_)));
        answered
    }

    /// The endpoints balanced over now, in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.snapshot().all.iter().map(|b| b.instance.endpoint()).collect()
    }

    /// Waits until at least `n` endpoints are known (start-up, tests).
    pub async fn ready_endpoints(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.snapshot().all.len() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// The calls in flight on each instance now (made, not yet answered or
    /// dropped), by instance id.
    pub fn in_flight(&self) -> std::collections::BTreeMap<String, usize> {
        self.snapshot()
            .all
            .iter()
            .map(|b| (b.instance.id.clone(), b.in_flight.load(Ordering::Relaxed)))
            .collect()
    }

    pub(super) fn snapshot(&self) -> Arc<Set> {
        self.inner.endpoints.snapshot()
    }

    /// The instance the policy picks for the next call (this advances the policy's
    /// state, as a call would), or `Unavailable` saying why none can take it.
    pub fn pick(&self) -> Result<Arc<ServiceInstance>, tonic::Status> {
        self.pick_backend().map(|b| b.instance.clone())
    }

    fn pick_backend(&self) -> Result<Arc<Backend>, tonic::Status> {
        let e = &self.inner.endpoints;
        let set = self.snapshot();
        choose(
            &set,
            &Picker {
                all: &set.all,
                policy: self.inner.policy,
                next: &self.inner.next,
                rng: &self.inner.rng,
                epoch: e.epoch,
                slow_start_ns: e.slow_start_ns.load(Ordering::Relaxed),
                service: &e.service,
            },
        )
    }
}

impl Service<http::Request<Body>> for BalancedChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // By default each call waits for discovery, picks its instance and waits
        // for that channel's readiness (see `Readiness`).
        if !self.inner.reported.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        self.poll_reported(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if !*this.inner.endpoints.resolved.borrow() {
                // As gRPC waits for its resolver's first result: a call made right
                // after the channel was must not fail on a list not yet filled.
                let limit = grpc_timeout(req.headers()).unwrap_or_else(|| {
                    Duration::from_nanos(this.inner.first_answer_timeout_ns.load(Ordering::Relaxed))
                });
                if !this.first_answer(limit).await {
                    return Err(tonic::Status::unavailable(format!(
                        "{}: discovery has not answered within {limit:?}",
                        this.inner.endpoints.service
                    ))
                    .into());
                }
            }
            let backend = this.pick_backend()?;
            backend.picks.increment(1);
            // Falls when this future is dropped too: a call cancelled by a
            // timeout must not leave its instance looking busy for ever.
            let in_flight = InFlight::start(&backend);
            let mut channel = backend.channel.clone();
            let started = (this.inner.policy == Policy::P2cEwma).then(Instant::now);
            let result = match channel.ready().await {
                Ok(ch) => ch.call(req).await,
                Err(e) => Err(e),
            };
            drop(in_flight);
            if let Some(started) = started {
                // Time to the response's headers: a unary call's whole answer.
                backend.observe_latency(started.elapsed(), nanos_since(this.inner.endpoints.epoch));
            }
            match result {
                Ok(resp) => {
                    this.observe(&backend, resp.headers());
                    Ok(resp)
                }
                Err(e) => {
                    // Server errors arrive as responses; an Err is the connection.
                    this.eject(&backend);
                    Err(tonic::Status::unavailable(format!(
                        "{}: instance {} at {} failed: {e}",
                        this.inner.endpoints.service,
                        backend.instance.id,
                        backend.instance.endpoint()
                    ))
                    .into())
                }
            }
        })
    }
}

/// The request's deadline from its `grpc-timeout` header (`<digits><unit>`, the
/// unit one of H, M, S, m, u, n), as tonic's clients write it.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel over instances `a` and `b` (ports 1 and 2: nothing is called),
    /// and the sender that keeps its discovery open.
    async fn two_instances(policy: Policy) -> (BalancedChannel, tokio::sync::watch::Sender<Option<crate::Snapshot>>) {
        let a = crate::ServiceInstance::new("s", "a", "127.0.0.1", 1).unwrap();
        let b = crate::ServiceInstance::new("s", "b", "127.0.0.1", 2).unwrap();
        let snapshot = crate::Snapshot {
            revision: 1,
            instances: [a, b].into_iter().collect(),
            freshness: crate::Freshness::Fresh,
            resyncs: 0,
        };
        let (tx, rx) = tokio::sync::watch::channel(Some(snapshot));
        let watch = ServiceWatch::new(rx, Arc::new(()));
        let connector: Arc<dyn Connector> = Arc::new(super::super::TcpConnector::default());
        let channel = BalancedChannel::new("s", watch, policy, connector, JitterRng::seeded(7));
        assert!(channel.ready_endpoints(2, Duration::from_secs(1)).await);
        (channel, tx)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn p2c_compares_two_distinct_instances() {
        let (channel, tx) = two_instances(Policy::P2c).await;
        // `a` is busy: every pick of two distinct instances prefers `b`. Drawing the
        // same instance twice would pick `a` about a quarter of the time.
        channel.snapshot().all[0].in_flight.store(10, Ordering::Relaxed);
        for _ in 0..200 {
            assert_eq!(channel.pick().unwrap().id, "b");
        }
        drop(tx);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn p2c_ewma_prefers_the_lower_latency_and_retries_a_stale_one() {
        let (channel, tx) = two_instances(Policy::P2cEwma).await;
        let epoch = channel.inner.endpoints.epoch;
        let all = channel.snapshot().all.clone();
        // `a` answers in 40 ms, `b` in 1 ms, both just measured.
        all[0].observe_latency(Duration::from_millis(40), nanos_since(epoch));
        all[1].observe_latency(Duration::from_millis(1), nanos_since(epoch));
        for _ in 0..200 {
            assert_eq!(channel.pick().unwrap().id, "b");
        }
        // With 50 calls in flight on `b`, `a` is the lighter.
        all[1].in_flight.store(50, Ordering::Relaxed);
        assert_eq!(channel.pick().unwrap().id, "a");
        all[1].in_flight.store(0, Ordering::Relaxed);
        // Over a second without a measurement of `a`: it is tried again.
        tokio::time::advance(Duration::from_millis(1100)).await;
        all[1].observe_latency(Duration::from_millis(1), nanos_since(epoch));
        assert_eq!(channel.pick().unwrap().id, "a");
        drop(tx);
    }

    #[test]
    fn grpc_timeout_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_timeout(&h), None);
        for (v, d) in [
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("2M", Duration::from_secs(120)),
            ("1H", Duration::from_secs(3600)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            h.insert("grpc-timeout", http::HeaderValue::from_static(v));
            assert_eq!(grpc_timeout(&h), Some(d), "{v}");
        }
        for bad in ["", "S", "5", "5x", "-5S"] {
            h.insert("grpc-timeout", http::HeaderValue::from_static(bad));
            assert_eq!(grpc_timeout(&h), None, "{bad:?}");
        }
    }
}
