//! [`ChannelBuilder`]: the one way to set up a [`BalancedChannel`], as tonic's
//! `Endpoint` sets up a `Channel`.

use std::sync::Arc;
use std::time::Duration;

use octopus_discovery_core::{IntoTarget, JitterRng, Resolvers, Result, ServiceWatch, Target};

use crate::balance::Settings;
use crate::{
    BalancedChannel, Connector, OutlierDetection, PanicThreshold, Policy, Readiness, TcpConnector, ZonePreference,
};

/// How to reach a service: where its instances come from (a target that
/// discovery resolves, or a discovery watch), its balancing policy, how to
/// connect, where randomness comes from, and how the channel treats its
/// instances. [`connect`](ChannelBuilder::connect) makes the channel, whose
/// settings are then fixed: this builder is the only place they are set.
///
/// The facade's `Client::channel_to` returns one for a target:
///
/// ```no_run
/// # async fn demo(resolvers: octopus_discovery_core::Resolvers) -> octopus_discovery_core::Result<()> {
/// use octopus_grpc::{ChannelBuilder, Policy};
/// use octopus_discovery_core::Target;
/// let channel = ChannelBuilder::new(resolvers, "mem", Target::for_service("greeter")?.with_version("v1"))
///     .policy(Policy::P2c)
///     .first_answer_timeout(std::time::Duration::from_secs(2))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `connect`"]
pub struct ChannelBuilder {
    source: Source,
    connector: Option<Arc<dyn Connector>>,
    rng: Option<JitterRng>,
    settings: Settings,
}

/// Where a channel's instances come from.
enum Source {
    /// A target that `resolvers` resolve; one without a scheme gets `scheme`.
    Target {
        resolvers: Resolvers,
        scheme: String,
        target: Result<Target>,
    },
    /// A discovery watch already open on `service`.
    Watch { service: String, watch: ServiceWatch },
}

impl std::fmt::Debug for ChannelBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ChannelBuilder");
        match &self.source {
            Source::Target { target, .. } => d.field("target", target),
            Source::Watch { service, .. } => d.field("service", service),
        };
        d.field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl ChannelBuilder {
    /// A builder for `target`: a target without a scheme gets `scheme`, and
    /// `resolvers` resolve it (what the facade's `Client::channel_to` makes).
    pub fn new(resolvers: Resolvers, scheme: &str, target: impl IntoTarget) -> Self {
        Self::from_source(Source::Target {
            resolvers,
            scheme: scheme.to_owned(),
            target: target.into_target(),
        })
    }

    /// A builder over a discovery watch already open on `service` (a simulator,
    /// a test, a discovery of one's own): the channel follows `watch`.
    pub fn from_watch(service: &str, watch: ServiceWatch) -> Self {
        Self::from_source(Source::Watch {
            service: service.to_owned(),
            watch,
        })
    }

    fn from_source(source: Source) -> Self {
        ChannelBuilder {
            source,
            connector: None,
            rng: None,
            settings: Settings::default(),
        }
    }

    /// The balancing policy (default round robin).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.settings.policy = policy;
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
        self.settings.first_answer_timeout = timeout;
        self
    }

    /// Keeps instances that vanish from a view below `threshold.share` of those in
    /// use, for at most `threshold.hold` (see [`PanicThreshold`]; default off).
    pub fn panic_threshold(mut self, threshold: PanicThreshold) -> Self {
        self.settings.panic_threshold = threshold;
        self
    }

    /// Slow start: an instance that joins after the first answer ramps up to its
    /// full share over `window` (default zero: off).
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.settings.slow_start = window;
        self
    }

    /// Ejects instances whose responses fail with the given gRPC statuses (see
    /// [`OutlierDetection`]; default off: only failed connections eject).
    pub fn outlier_detection(mut self, detection: OutlierDetection) -> Self {
        self.settings.outlier_detection = Some(detection);
        self
    }

    /// Prefers instances in the caller's zone (their `zone` metadata), spilling
    /// over to every zone when too few local ones are available (see
    /// [`ZonePreference`]; default off). `.zone("eu-1")` takes the default rule.
    pub fn zone(mut self, zone: impl Into<ZonePreference>) -> Self {
        self.settings.zone = Some(zone.into());
        self
    }

    /// What the channel's `poll_ready` reports (see [`Readiness`]; default
    /// [`Readiness::AtCall`], ready at once). [`Readiness::Reported`] keeps tower's
    /// contract, for tower's `buffer`, `concurrency_limit`, `timeout` and
    /// `load_shed` layers.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.settings.readiness = readiness;
        self
    }

    /// Makes the channel: resolves the target (one without a scheme by the
    /// builder's `scheme`; one with a scheme must name a resolver it has), or
    /// follows the watch. Fails only when the target is invalid or cannot be
    /// resolved.
    pub async fn connect(self) -> Result<BalancedChannel> {
        let (service, watch) = match self.source {
            Source::Target {
                resolvers,
                scheme,
                target,
            } => {
                let target = target?;
                let target = if target.scheme().is_empty() {
                    target.with_scheme(&scheme)
                } else {
                    target
                };
                let watch = resolvers.resolve_target(&target).await?;
                (target.service().to_owned(), watch)
            }
            Source::Watch { service, watch } => (service, watch),
        };
        Ok(BalancedChannel::new(
            &service,
            watch,
            self.connector.unwrap_or_else(|| Arc::new(TcpConnector::default())),
            self.rng.unwrap_or_else(JitterRng::from_entropy),
            self.settings,
        ))
    }
}
