//! The registry side: [`Registry`], [`RegisterOptions`], and the [`Registration`] handle.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::{BackoffPolicy, Error, JitterRng, LeaseId, Result, ServiceInstance};

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
}

/// Where a registration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
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
        /// The lease that holds the key (0: a key without a lease).
        owner: i64,
    },
    /// Deregistered: the key is deleted and the lease revoked. Final.
    Deregistered,
    /// The retry limit set in [`BackoffPolicy::with_max_retries`] was reached. Final.
    Failed {
        /// The last error.
        reason: String,
    },
}

impl Status {
    /// True for [`Status::Registered`].
    pub fn is_registered(&self) -> bool {
        matches!(self, Status::Registered { .. })
    }

    /// True for the final states.
    pub fn is_final(&self) -> bool {
        matches!(self, Status::Deregistered | Status::Failed { .. })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Registering => f.write_str("registering"),
            Status::Registered { lease } => write!(f, "registered (lease {lease})"),
            Status::Lost { reason } => write!(f, "lost: {reason}"),
            Status::Conflict { owner } => write!(f, "conflict: key held by lease {owner:#x}"),
            Status::Deregistered => f.write_str("deregistered"),
            Status::Failed { reason } => write!(f, "failed: {reason}"),
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
    /// TTL 10 s, keepalive every TTL/3, retry from 1 s capped at 30 s forever,
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
    /// Between 10 ms and 1 day. etcd rounds it up to whole seconds (and its minimum).
    pub fn ttl(mut self, ttl: Duration) -> Result<Self> {
        if ttl < Duration::from_millis(10) || ttl > Duration::from_secs(86_400) {
            return Err(Error::option("ttl", ttl, "must be between 10ms and 1 day"));
        }
        self.ttl = ttl;
        Ok(self)
    }

    /// Sets the keepalive interval; it must be shorter than half the TTL.
    /// Default: a third of the TTL the server granted.
    pub fn keepalive_interval(mut self, interval: Duration) -> Result<Self> {
        if interval.is_zero() || interval * 2 >= self.ttl {
            return Err(Error::option(
                "keepalive_interval",
                interval,
                format!("must be positive and less than half the ttl ({:?})", self.ttl),
            ));
        }
        self.keepalive = Some(interval);
        Ok(self)
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

    /// The TTL asked for.
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// The keepalive interval for a lease granted with `granted` TTL.
    pub fn keepalive_for(&self, granted: Duration) -> Duration {
        self.keepalive.unwrap_or(granted / 3).max(Duration::from_millis(1))
    }
}

pub(crate) enum Command {
    /// Boxed: a command is part of the registered phase's state while it is handled.
    Update(Box<ServiceInstance>, oneshot::Sender<Result<()>>),
    Deregister(oneshot::Sender<Result<()>>),
    Abandon,
}

/// A registration's command queue: one small allocation, and none for the queue
/// until a command comes. (A tokio mpsc channel would allocate ~1.4 KB per
/// registration up front; with thousands of registrations in one process, that
/// long-lived memory is most of what a registration costs to hold.)
pub(crate) fn inbox() -> (Outbox, Inbox) {
    let shared = Arc::new(Mailbox {
        state: Mutex::new(MailboxState {
            queue: VecDeque::new(),
            sender: true,
            receiver: true,
        }),
        notify: Notify::new(),
    });
    (Outbox(shared.clone()), Inbox(shared))
}

struct Mailbox {
    state: Mutex<MailboxState>,
    /// Wakes the receiver (`notify_one` keeps a permit when it is not waiting).
    notify: Notify,
}

struct MailboxState {
    queue: VecDeque<Command>,
    /// Whether the sending and receiving ends are still alive.
    sender: bool,
    receiver: bool,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending end, held by the [`Registration`].
pub(crate) struct Outbox(Arc<Mailbox>);

impl Outbox {
    /// Queues `command`; `Err(Closed)` when the task has ended.
    fn send(&self, command: Command) -> Result<()> {
        let mut state = self.0.lock();
        if !state.receiver {
            return Err(Error::Closed("registration"));
        }
        state.queue.push_back(command);
        drop(state);
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.lock().sender = false;
        self.0.notify.notify_one();
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

/// The receiving end, held by the registration's task.
pub(crate) struct Inbox(Arc<Mailbox>);

impl Inbox {
    /// The next command; `None` once the [`Registration`] is dropped and every
    /// command it sent was received. Cancel-safe: a command is taken only when returned.
    pub(crate) async fn recv(&mut self) -> Option<Command> {
        loop {
            {
                let mut state = self.0.lock();
                if let Some(command) = state.queue.pop_front() {
                    return Some(command);
                }
                if !state.sender {
                    return None;
                }
            }
            self.0.notify.notified().await;
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Commands left unanswered drop their reply senders: their callers see `Closed`.
        let pending = {
            let mut state = self.0.lock();
            state.receiver = false;
            std::mem::take(&mut state.queue)
        };
        drop(pending);
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
    status: watch::Receiver<Status>,
    commands: Outbox,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    pub(crate) fn new(
        service: String,
        id: String,
        status: watch::Receiver<Status>,
        commands: Outbox,
        task: JoinHandle<()>,
    ) -> Self {
        Registration {
            service,
            id,
            status,
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
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The status now.
    pub fn current(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until the instance is registered; fails if the registration ends first.
    pub async fn registered(&self) -> Result<LeaseId> {
        let mut rx = self.status.clone();
        let status = rx
            .wait_for(|s| s.is_registered() || s.is_final())
            .await
            .map_err(|_| Error::Closed("registration"))?
            .clone();
        match status {
            Status::Registered { lease } => Ok(lease),
            other => Err(Error::Closed(if matches!(other, Status::Deregistered) {
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
            return Err(Error::InvalidInstance {
                field: "service/id",
                value: format!("{}/{}", instance.service, instance.id),
                rule: format!(
                    "an update must keep {}/{}; register a new instance instead",
                    self.service, self.id
                ),
            });
        }
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Update(Box::new(instance), tx))?;
        rx.await.map_err(|_| Error::Closed("registration"))?
    }

    /// Deletes the key and revokes the lease, bounded by the deregistration timeout.
    /// When it returns `Ok`, the key is gone from the registry.
    pub async fn deregister(mut self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Deregister(tx)).is_err() {
            return Ok(()); // the task has ended: deregistered or failed already
        }
        let result = rx.await.map_err(|_| Error::Closed("registration"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inbox_delivers_in_order_then_ends_when_the_registration_is_gone() {
        let (outbox, mut inbox) = inbox();
        outbox.send(Command::Abandon).unwrap();
        let (tx, _rx) = oneshot::channel();
        outbox.send(Command::Deregister(tx)).unwrap();
        assert!(matches!(inbox.recv().await, Some(Command::Abandon)));
        // A receiver waiting before the send is woken by it.
        let waiting = tokio::spawn(async move {
            let second = inbox.recv().await;
            let third = inbox.recv().await;
            (matches!(second, Some(Command::Deregister(_))), third.is_none())
        });
        tokio::task::yield_now().await;
        drop(outbox);
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(
            ended.expect("the receiver was woken").unwrap(),
            (true, true),
            "queued commands first, then the end"
        );
    }

    #[tokio::test]
    async fn a_wakeup_is_not_lost_between_check_and_wait() {
        let (outbox, mut inbox) = inbox();
        let receiver = tokio::spawn(async move { inbox.recv().await.is_some() });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        outbox.send(Command::Abandon).unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), receiver).await;
        assert!(woken.expect("the receiver was woken").unwrap());
    }

    #[tokio::test]
    async fn commands_to_an_ended_task_fail_and_pending_replies_are_dropped() {
        let (outbox, inbox) = inbox();
        let (tx, rx) = oneshot::channel();
        outbox.send(Command::Deregister(tx)).unwrap();
        drop(inbox); // the task ended without answering
        assert!(rx.await.is_err(), "the caller sees the reply channel closed");
        assert!(matches!(outbox.send(Command::Abandon), Err(Error::Closed(_))));
    }
}
