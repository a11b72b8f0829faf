//! [`ChannelBuilder`]: a balanced gRPC channel to a target, set up as tonic's
//! `Endpoint` is (feature `grpc`).

use std::sync::Arc;
use std::time::Duration;

use crate::{IntoTarget, JitterRng, Resolvers, Result, Target};
use octopus_discovery_core::balance::{
    BalancedChannel, Connector, OutlierDetection, PanicThreshold, Policy, Readiness, TcpConnector, ZonePreference,
};

/// How to reach a target: its balancing policy, how to connect, where jitter comes
/// from, and how long a first call waits for discovery. Made by
/// [`Client::channel_to`](crate::Client::channel_to); [`connect`](ChannelBuilder::connect) makes the channel.
///
/// ```no_run
/// # async fn demo() -> octopus::Result<()> {
/// use octopus::grpc::Policy;
/// use octopus::Target;
/// let client = octopus::connect("mem://").await?;
/// let channel = client
///     .channel_to(Target::for_service("greeter")?.with_version("v1"))
///     .policy(Policy::P2c)
///     .first_answer_timeout(std::time::Duration::from_secs(2))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `connect`"]
pub struct ChannelBuilder {
    resolvers: Resolvers,
    scheme: String,
    target: Result<Target>,
    policy: Policy,
    connector: Option<Arc<dyn Connector>>,
    rng: Option<JitterRng>,
    first_answer_timeout: Option<Duration>,
    panic_threshold: PanicThreshold,
    slow_start: Duration,
    outlier_detection: Option<OutlierDetection>,
    zone: Option<ZonePreference>,
    readiness: Readiness,
}

impl std::fmt::Debug for ChannelBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBuilder")
            .field("target", &self.target)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ChannelBuilder {
    /// A builder for `target`; a target without a scheme gets `scheme`, and
    /// `resolvers` resolve it.
    pub(crate) fn new(resolvers: Resolvers, scheme: &str, target: impl IntoTarget) -> Self {
        ChannelBuilder {
            resolvers,
            scheme: scheme.to_owned(),
            target: target.into_target(),
            policy: Policy::RoundRobin,
            connector: None,
            rng: None,
            first_answer_timeout: None,
            panic_threshold: PanicThreshold::OFF,
            slow_start: Duration::ZERO,
            outlier_detection: None,
            zone: None,
            readiness: Readiness::AtCall,
        }
    }

    /// The balancing policy (default round robin).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How to open a connection to an instance (default plain TCP, [`TcpConnector`]).
    pub fn connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Where the policy's random choices come from (seed it for replayable runs;
    /// default: from the system's entropy).
    pub fn rng(mut self, rng: JitterRng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// How long a call made before discovery's first answer waits for it when the
    /// request carries no deadline (default
    /// [`BalancedChannel::DEFAULT_FIRST_ANSWER_TIMEOUT`], 10 s).
    pub fn first_answer_timeout(mut self, timeout: Duration) -> Self {
        self.first_answer_timeout = Some(timeout);
        self
    }

    /// Keeps instances that vanish from a view below `threshold.share` of those in
    /// use, for at most `threshold.hold` (see [`PanicThreshold`]; default off).
    pub fn panic_threshold(mut self, threshold: PanicThreshold) -> Self {
        self.panic_threshold = threshold;
        self
    }

    /// Slow start: an instance that joins after the first answer ramps up to its
    /// full share over `window` (default zero: off).
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = window;
        self
    }

    /// Ejects instances whose responses fail with the given gRPC statuses (see
    /// [`OutlierDetection`]; default off: only failed connections eject).
    pub fn outlier_detection(mut self, detection: OutlierDetection) -> Self {
        self.outlier_detection = Some(detection);
        self
    }

    /// Prefers instances in the caller's zone (their `zone` metadata), spilling
    /// over to every zone when too few local ones are available (see
    /// [`ZonePreference`]; default off). `.zone("eu-1")` takes the default rule.
    pub fn zone(mut self, zone: impl Into<ZonePreference>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// What the channel's `poll_ready` reports (see [`Readiness`]; default
    /// [`Readiness::AtCall`], ready at once). [`Readiness::Reported`] keeps tower's
    /// contract, for tower's `buffer`, `concurrency_limit`, `timeout` and
    /// `load_shed` layers.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Resolves the target and makes the channel. A target without a scheme is
    /// resolved by this client's own discovery; one with a scheme must name it.
    pub async fn connect(self) -> Result<BalancedChannel> {
        let target = self.target?;
        let target = if target.scheme().is_empty() {
            target.with_scheme(&self.scheme)
        } else {
            target
        };
        let watch = self.resolvers.resolve_target(&target).await?;
        let channel = BalancedChannel::new(
            target.service(),
            watch,
            self.policy,
            self.connector.unwrap_or_else(|| Arc::new(TcpConnector::default())),
            self.rng.unwrap_or_else(JitterRng::from_entropy),
        );
        let channel = channel
            .with_panic_threshold(self.panic_threshold)
            .with_slow_start(self.slow_start)
            .with_readiness(self.readiness);
        let channel = match self.zone {
            Some(zone) => channel.with_zone(zone),
            None => channel,
        };
        let channel = match self.outlier_detection {
            Some(d) => channel.with_outlier_detection(d),
            None => channel,
        };
        Ok(match self.first_answer_timeout {
            Some(t) => channel.with_first_answer_timeout(t),
            None => channel,
        })
    }
}
