//! The registry side: [`Registry`], [`RegisterOptions`], and the [`Registration`] handle.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use tokio::sync::{oneshot, watch};

use crate::mailbox::{Command, Outbox};
use crate::task::OwnedTask;
use crate::{BackoffPolicy, Error, JitterRng, LeaseId, Result, ServiceInstance};

/// etcd's largest lease TTL (`MaxLeaseTTL`, 9,000,000,000 s). Every backend
/// holds TTLs to it: etcd and the mem store refuse a longer grant, and a longer
/// TTL in a server's answer (a misbehaving server's, up to `i64::MAX` seconds)
/// counts as this, so that the instants computed from it (a lease's deadline,
/// the next keepalive) cannot overflow.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(9_000_000_000);

/// Registers service instances under a lease that it keeps alive.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Validates `instance`, then starts a background task that registers it, keeps
    /// its lease alive and re-registers it whenever the lease is lost.
    ///
    /// Returns after the first attempt, whatever its outcome: a registry that is down
    /// when a service starts does not keep the service from starting, and the task
    /// registers it as soon as the registry is back. Wait for
    /// [`Registration::registered`] to require that it is registered now.
    async fn register(&self, instance: ServiceInstance, options: RegisterOptions) -> Result<Registration>;

    /// Deregisters every registration made through this registry, live or
    /// dropped (a dropped handle's background deregistration included), and
    /// waits for them, at most the longest deregistration timeout among them:
    /// when it returns `Ok`, every key is gone. Later registrations fail with
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed); held handles see [`RegistrationStatus::Deregistered`].
    /// `Err(Timeout)` when some did not finish in time (their keys then expire
    /// with their leases). The default does nothing, for registries with no
    /// background work.
    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }
}

/// Where a registration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationStatus {
    /// The first attempt is under way.
    Registering,
    /// The key is written and its lease is being kept alive.
    Registered {
        /// The lease that holds the key.
        lease: LeaseId,
    },
    /// The lease or the connection was lost; the task retries with backoff.
    Lost {
        /// What happened.
        reason: String,
    },
    /// Another registration holds the same service and id. The task does not
    /// overwrite it; it retries with backoff until the key is free.
    Conflict {
        /// The lease that holds the key ([`LeaseId::NONE`]: a key without a lease).
        owner: LeaseId,
    },
    /// Deregistered: the key is deleted and the lease revoked. Final.
    Deregistered,
    /// The retry limit set in [`BackoffPolicy::with_max_retries`] was reached. Final.
    Failed {
        /// The last error.
        reason: String,
    },
}

impl RegistrationStatus {
    /// True for [`RegistrationStatus::Registered`].
    pub fn is_registered(&self) -> bool {
        matches!(self, RegistrationStatus::Registered { .. })
    }

    /// True for the final states.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RegistrationStatus::Deregistered | RegistrationStatus::Failed { .. }
        )
    }
}

impl fmt::Display for RegistrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationStatus::Registering => f.write_str("registering"),
            RegistrationStatus::Registered { lease } => write!(f, "registered (lease {lease})"),
            RegistrationStatus::Lost { reason } => write!(f, "lost: {reason}"),
            RegistrationStatus::Conflict { owner } => write!(f, "conflict: key held by lease {owner:#x}"),
            RegistrationStatus::Deregistered => f.write_str("deregistered"),
            RegistrationStatus::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// Lease and retry settings for one registration.
#[derive(Clone, Debug)]
pub struct RegisterOptions {
    pub(crate) ttl: Duration,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) retry: BackoffPolicy,
    /// Boxed: set only for replayable runs, and every registration's task holds its options.
    pub(crate) rng: Option<Box<JitterRng>>,
    pub(crate) deregister_timeout: Duration,
}

impl Default for RegisterOptions {
    /// TTL 10 s, keepalive a third of the TTL after each answer (on a 500 ms
    /// tick), retry from 1 s capped at 30 s forever,
    /// deregistration bounded by 5 s.
    fn default() -> Self {
        RegisterOptions {
            ttl: Duration::from_secs(10),
            keepalive: None,
            retry: BackoffPolicy::default(),
            rng: None,
            deregister_timeout: Duration::from_secs(5),
        }
    }
}

impl RegisterOptions {
    /// Sets the lease TTL: how long the key outlives the last keepalive.
    /// Between 10 ms and 1 day (checked by [`validate`](Self::validate) when
    /// registering). etcd rounds it up to whole seconds (and its minimum).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the keepalive interval; it must be positive, and shorter than half the
    /// TTL (checked by [`validate`](Self::validate) when registering, so the two
    /// may be set in either order). Default: a third of the TTL the server granted
    /// after each answer, rounded up to the next 500 ms tick of a clock shared by
    /// the process (etcd's Go client renews on such a tick).
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive = Some(interval);
        self
    }

    /// Checks the options: each value's range, and the rules that tie one field
    /// to another. [`Registry::register`](crate::Registry::register) calls it, so
    /// an invalid option is an error naming the option and the rule, whatever
    /// order the options were set in. The setters never fail.
    ///
    /// ```
    /// use std::time::Duration;
    /// use octopus_discovery_core::RegisterOptions;
    /// let options = RegisterOptions::default().ttl(Duration::from_millis(1));
    /// let err = options.validate().unwrap_err().to_string();
    /// assert!(err.contains("ttl") && err.contains("between 10ms and 1 day"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.ttl < Duration::from_millis(10) || self.ttl > Duration::from_secs(86_400) {
            return Err(Error::option("ttl", self.ttl, "must be between 10ms and 1 day"));
        }
        if let Some(interval) = self.keepalive {
            if interval.is_zero() {
                return Err(Error::option("keepalive_interval", interval, "must be positive"));
            }
            // Checked: twice a huge interval (`Duration::MAX`) overflows, and is too long.
            if interval.checked_mul(2).is_none_or(|twice| twice >= self.ttl) {
                return Err(Error::option(
                    "keepalive_interval",
                    interval,
                    format!("must be less than half the ttl ({:?})", self.ttl),
                ));
            }
        }
        if self.deregister_timeout.is_zero() {
            return Err(Error::option(
                "deregister_timeout",
                self.deregister_timeout,
                "must be positive",
            ));
        }
        Ok(())
    }

    /// Sets the retry policy used when the lease or the connection is lost.
    pub fn retry(mut self, policy: BackoffPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Draws retry jitter from `rng` (seed it for replayable runs).
    pub fn jitter_rng(mut self, rng: JitterRng) -> Self {
        self.rng = Some(Box::new(rng));
        self
    }

    /// Bounds how long [`Registration::deregister`] may take.
    pub fn deregister_timeout(mut self, timeout: Duration) -> Self {
        self.deregister_timeout = timeout;
        self
    }

    /// The lease TTL asked for (set by [`ttl`](Self::ttl)).
    pub fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    /// The keepalive interval for a lease granted with `granted` TTL.
    ///
    /// `granted` comes from the server: a TTL above etcd's maximum (a misbehaving
    /// server's answer) counts as that maximum, so that instants computed from the
    /// interval cannot overflow.
    pub fn keepalive_for(&self, granted: Duration) -> Duration {
        let granted = granted.min(MAX_LEASE_TTL);
        self.keepalive.unwrap_or(granted / 3).max(Duration::from_millis(1))
    }
}

/// A live registration. It owns the task that keeps the instance registered.
///
/// Dropping it deregisters in the background (best effort: the lease TTL is the
/// backstop); call [`deregister`](Registration::deregister) to know the key is gone.
#[derive(Debug)]
pub struct Registration {
    service: String,
    id: String,
    status: watch::Receiver<RegistrationStatus>,
    draining: watch::Receiver<bool>,
    commands: Outbox,
    task: Option<OwnedTask<()>>,
}

impl Registration {
    pub(crate) fn new(
        service: String,
        id: String,
        (status, draining): (watch::Receiver<RegistrationStatus>, watch::Receiver<bool>),
        commands: Outbox,
        task: OwnedTask<()>,
    ) -> Self {
        Registration {
            service,
            id,
            status,
            draining,
            commands,
            task: Some(task),
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A watch of the status, for health checks and logs.
    pub fn status(&self) -> watch::Receiver<RegistrationStatus> {
        self.status.clone()
    }

    /// The status now.
    pub fn current(&self) -> RegistrationStatus {
        self.status.borrow().clone()
    }

    /// Waits until the instance is registered; fails if the registration ends first.
    pub async fn registered(&self) -> Result<LeaseId> {
        let mut rx = self.status.clone();
        let status = rx
            .wait_for(|s| s.is_registered() || s.is_final())
            .await
            .map_err(|_| Error::closed("registration"))?
            .clone();
        match status {
            RegistrationStatus::Registered { lease } => Ok(lease),
            other => Err(Error::closed(if matches!(other, RegistrationStatus::Deregistered) {
                "registration (deregistered)"
            } else {
                "registration (failed)"
            })),
        }
    }

    /// Replaces the instance's metadata, version, weight or address in place.
    /// The service and id cannot change: register a new instance for that.
    pub async fn update(&self, instance: ServiceInstance) -> Result<()> {
        instance.validate()?;
        if instance.service != self.service || instance.id != self.id {
            return Err(Error::invalid_instance(
                "service/id",
                format!("{}/{}", instance.service, instance.id),
                format!(
                    "an update must keep {}/{}; register a new instance instead",
                    self.service, self.id
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Update(Box::new(instance), tx))?;
        rx.await.map_err(|_| Error::closed("registration"))?
    }

    /// Marks the instance draining: it stays registered (operators still list it),
    /// but balancers send it no new calls while another instance can take them,
    /// and [`RegisteredServer`]'s health says `NOT_SERVING`. The mark is the
    /// metadata entry [`DRAINING_KEY`](crate::DRAINING_KEY), written to the key
    /// now and kept through re-registrations and [`update`](Self::update)s until
    /// [`undrain`](Self::undrain). `octopus drain SERVICE/ID` sets the same mark
    /// from outside; the registration adopts it. Fails when the registry's layout
    /// carries no metadata (go-zero's, whose value is only the address).
    ///
    /// [`RegisteredServer`]: https://docs.rs/octopus/latest/octopus/grpc/struct.RegisteredServer.html
    pub async fn drain(&self) -> Result<()> {
        self.set_draining(true).await
    }

    /// Clears the draining mark: the instance takes new calls again.
    pub async fn undrain(&self) -> Result<()> {
        self.set_draining(false).await
    }

    /// Whether the instance is marked draining, as written by [`drain`](Self::drain)
    /// or seen on its key (an operator's `octopus drain`), and every change of it.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.clone()
    }

    async fn set_draining(&self, draining: bool) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Drain(draining, tx))?;
        rx.await.map_err(|_| Error::closed("registration"))?
    }

    /// Deletes the key and revokes the lease, bounded by the deregistration timeout.
    /// When it returns `Ok`, the key is gone from the registry.
    pub async fn deregister(mut self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Deregister(tx)).is_err() {
            return Ok(()); // the task has ended: deregistered or failed already
        }
        let result = rx.await.map_err(|_| Error::closed("registration"))?;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        result
    }

    /// Stops keeping the lease alive without deleting the key, as a crash would:
    /// the key disappears when the lease expires, one TTL later. For tests, demos,
    /// and handing an instance over to the TTL on purpose. Under a shared lease the
    /// key lives as long as the shared lease does, i.e. until the client's last
    /// registration ends too.
    pub async fn abandon(mut self) {
        let _ = self.commands.send(Command::Abandon);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The dropped handle's outbox tells the task to deregister; the task must
        // outlive the handle to do it (the one detached task, see `OwnedTask`).
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated_as_a_whole_in_any_order() {
        let s = Duration::from_secs;
        // Keepalive first, then a TTL that makes it valid: fine in either order.
        let a = RegisterOptions::default().keepalive_interval(s(8)).ttl(s(20));
        let b = RegisterOptions::default().ttl(s(20)).keepalive_interval(s(8));
        assert!(a.validate().is_ok() && b.validate().is_ok());
        assert_eq!(a.lease_ttl(), s(20));
        // A TTL set after the keepalive that it no longer fits: caught as a whole.
        let bad = RegisterOptions::default().keepalive_interval(s(3)).ttl(s(4));
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("keepalive_interval") && err.contains("half the ttl"),
            "{err}"
        );
        let zero = RegisterOptions::default().deregister_timeout(Duration::ZERO);
        assert!(zero.validate().unwrap_err().to_string().contains("deregister_timeout"));
        let zero = RegisterOptions::default().keepalive_interval(Duration::ZERO);
        let err = zero.validate().unwrap_err().to_string();
        assert!(
            err.contains("keepalive_interval") && err.contains("must be positive"),
            "{err}"
        );
        for ttl in [Duration::from_millis(9), s(86_401)] {
            let err = RegisterOptions::default().ttl(ttl).validate().unwrap_err().to_string();
            assert!(err.contains("ttl") && err.contains("between 10ms and 1 day"), "{err}");
        }
    }

    #[test]
    fn huge_durations_are_errors_naming_the_option_not_panics() {
        // Twice `Duration::MAX` overflows: the rule is still an error, not a panic.
        let huge = RegisterOptions::default().keepalive_interval(Duration::MAX);
        let err = huge.validate().unwrap_err().to_string();
        assert!(
            err.contains("keepalive_interval") && err.contains("half the ttl"),
            "{err}"
        );
        // Just past the overflow point too, and with the largest TTL allowed.
        let half = Duration::MAX / 2 + Duration::from_nanos(1);
        let err = RegisterOptions::default()
            .ttl(Duration::from_secs(86_400))
            .keepalive_interval(half)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("keepalive_interval"), "{err}");
        let err = RegisterOptions::default()
            .ttl(Duration::MAX)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("ttl") && err.contains("between 10ms and 1 day"), "{err}");
        // A server's absurd TTL gives a keepalive interval a deadline can be computed from.
        let interval = RegisterOptions::default().keepalive_for(Duration::MAX);
        assert!(interval <= MAX_LEASE_TTL / 3, "{interval:?}");
    }
}
