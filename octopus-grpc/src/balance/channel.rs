use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use octopus_discovery_core::{JitterRng, OwnedTask, ServiceInstance, ServiceWatch};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A channel's settings, fixed when [`ChannelBuilder`](crate::ChannelBuilder)
/// builds it: no method changes them afterwards, so that a clone handed to one
/// caller cannot change how another clone balances.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) policy: Policy,
    /// How long a call waits for discovery's first answer when its request
    /// carries no deadline (`grpc-timeout`) of its own.
    pub(crate) first_answer_timeout: Duration,
    pub(crate) panic_threshold: PanicThreshold,
    /// Slow start's window (zero: off).
    pub(crate) slow_start: Duration,
    pub(crate) outlier_detection: Option<OutlierDetection>,
    pub(crate) zone: Option<ZonePreference>,
    pub(crate) readiness: Readiness,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::RoundRobin,
            first_answer_timeout: BalancedChannel::DEFAULT_FIRST_ANSWER_TIMEOUT,
            panic_threshold: PanicThreshold::OFF,
            slow_start: Duration::ZERO,
            outlier_detection: None,
            zone: None,
            readiness: Readiness::AtCall,
        }
    }
}

/// What every clone of a channel shares: the endpoints with their load and
/// ejection state, the policy's state, the follower task, and the settings
/// (read-only).
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
    pub(super) first_answer_timeout: Duration,
    /// Outlier detection at the request level; `None`: off.
    pub(super) outlier: Option<OutlierDetection>,
    /// Whether `poll_ready` reports (see [`Readiness`]).
    pub(super) reported: bool,
}

pub(super) type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A load-balanced channel to the instances of one service, built by
/// [`ChannelBuilder`](crate::ChannelBuilder). Clone it freely: clones share the
/// endpoints, their load (calls in flight), the policy's state and the follower
/// task, which stops when the last clone is dropped. Its settings are fixed when
/// it is built: no method of a clone changes how another balances.
///
/// There is no setter to reach through a clone:
///
/// ```compile_fail
/// fn retune(channel: &octopus_grpc::BalancedChannel) {
///     let _ = channel.clone().with_zone("eu-1");
/// }
/// ```
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

    /// Balances over the instances `watch` yields under `settings`, connecting
    /// with `connector` and drawing randomness (p2c, weighted, slow start) from
    /// `rng`.
    pub(crate) fn new(
        service: &str,
        watch: ServiceWatch,
        connector: Arc<dyn Connector>,
        rng: JitterRng,
        settings: Settings,
    ) -> Self {
        let Settings {
            policy,
            first_answer_timeout,
            panic_threshold,
            slow_start,
            outlier_detection,
            zone,
            readiness,
        } = settings;
        let slow_start_ns = u64::try_from(slow_start.as_nanos()).unwrap_or(u64::MAX);
        let inner = Arc::new(Inner {
            endpoints: Arc::new(Endpoints::new(service, panic_threshold, slow_start_ns, zone)),
            policy,
            next: AtomicUsize::new(0),
            rng: Mutex::new(rng),
            eject_base: Duration::from_millis(500),
            eject_cap: Duration::from_secs(30),
            follower: Mutex::new(None),
            first_answer_timeout,
            outlier: outlier_detection,
            reported: readiness == Readiness::Reported,
        });
        let task = OwnedTask::spawn(follow(Arc::downgrade(&inner.endpoints), watch, connector));
        *inner.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        BalancedChannel {
            inner,
            waiting: Mutex::new(None),
        }
    }

    /// Whether discovery's latest answer was stale (its registry unreachable):
    /// the channel keeps balancing over the last known endpoints meanwhile.
    pub fn is_stale(&self) -> bool {
        self.inner.endpoints.stale.load(Ordering::Acquire)
    }

    /// How many times the mass-disappearance protection has started.
    pub fn protections(&self) -> u64 {
        self.inner.endpoints.protections.load(Ordering::Relaxed)
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
                slow_start_ns: e.slow_start_ns,
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
        if !self.inner.reported {
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
                let limit = grpc_timeout(req.headers()).unwrap_or(this.inner.first_answer_timeout);
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
mod tests;
