//! [`LeaseRegistry`]: the registration lifecycle, written once for every backend.
//!
//! One task per registration: grant a lease, write the key guarded by the lease,
//! keep the lease alive, put the key back if someone deletes it, and when the lease
//! is lost, re-grant and re-write with capped, jittered backoff — forever unless
//! the user set a retry limit.

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

use crate::keepalive::{Beat, KeepAlive};
use crate::registry::Command;
use crate::shared::{SharedLease, SharedState};
use crate::{
    Backoff, Error, Event, EventKind, JitterRng, KeyLayout, KvBackend, LeaseId, PutOutcome, RegisterOptions,
    Registration, Registry, Result, Revision, ServiceInstance, Status, WatchMessage, WatchStream,
};

/// A [`Registry`] over any [`KvBackend`].
pub struct LeaseRegistry<B> {
    backend: Arc<B>,
    layout: Arc<dyn KeyLayout>,
    rng: Mutex<JitterRng>,
    /// With a shared lease: its settings, and the live lease if any registration runs.
    shared: Option<(RegisterOptions, Mutex<Weak<SharedLease>>)>,
    /// Keys registered through this registry and still live. Under a shared lease
    /// the store cannot tell two of our registrations of one id apart, so this does.
    live: Arc<Mutex<BTreeSet<String>>>,
}

/// Removes a key from the registry's live set when its task ends.
struct LiveKey(Arc<Mutex<BTreeSet<String>>>, String);

impl Drop for LiveKey {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

impl<B> std::fmt::Debug for LeaseRegistry<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseRegistry")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl<B: KvBackend> LeaseRegistry<B> {
    /// A registry writing keys in `layout`; jitter from OS entropy.
    pub fn new(backend: Arc<B>, layout: Arc<dyn KeyLayout>) -> Self {
        LeaseRegistry {
            backend,
            layout,
            rng: Mutex::new(JitterRng::from_entropy()),
            shared: None,
            live: Arc::default(),
        }
    }

    /// Every registration shares one lease, granted and kept alive with `options`'
    /// TTL, keepalive and retry settings (the per-registration TTL is then unused):
    /// keepalive cost is one stream per process, whatever the number of instances.
    /// When the shared lease is lost, every registration re-registers under the next.
    /// Registering a service/id that this registry already holds is an
    /// [`Error::Conflict`] at once, since both would hold the same lease.
    pub fn with_shared_lease(self, options: RegisterOptions) -> Self {
        LeaseRegistry {
            shared: Some((options, Mutex::new(Weak::new()))),
            ..self
        }
    }

    fn shared_lease(&self) -> Option<Arc<SharedLease>> {
        let (opts, slot) = self.shared.as_ref()?;
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lease) = slot.upgrade() {
            return Some(lease);
        }
        let rng = self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork();
        let lease = SharedLease::start(self.backend.clone(), opts, Backoff::new(opts.retry, rng));
        *slot = Arc::downgrade(&lease);
        Some(lease)
    }

    /// Draws every registration's jitter from `rng` unless its options bring their own.
    pub fn with_rng(self, rng: JitterRng) -> Self {
        LeaseRegistry {
            rng: Mutex::new(rng),
            ..self
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }
}

#[async_trait]
impl<B: KvBackend> Registry for LeaseRegistry<B> {
    async fn register(&self, instance: ServiceInstance, options: RegisterOptions) -> Result<Registration> {
        instance.validate()?;
        let value = self.layout.encode(&instance)?;
        let live = match self.shared {
            Some(_) => {
                let name = format!("{}/{}", instance.service, instance.id);
                if !self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone()) {
                    return Err(Error::Conflict {
                        key: self.layout.key(&instance, LeaseId(0)),
                        owner: 0,
                    });
                }
                Some(Box::new(LiveKey(self.live.clone(), name)))
            }
            None => None,
        };
        let mut options = options;
        let rng = match options.rng.take() {
            Some(rng) => *rng,
            None => self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork(),
        };
        let (status_tx, status_rx) = watch::channel(Status::Registering);
        crate::telemetry::status_changed(&instance.service, None, &Status::Registering);
        let (cmd_tx, cmd_rx) = crate::registry::inbox();
        let (service, id) = (instance.service.clone(), instance.id.clone());
        let task = Task {
            backend: self.backend.clone(),
            layout: self.layout.clone(),
            backoff: Backoff::new(options.retry, rng),
            opts: options,
            instance,
            value,
            status: status_tx,
            commands: cmd_rx,
            lease: None,
            unsure: Vec::new(),
            shared: self.shared_lease(),
            _live: live,
        };
        let registration = Registration::new(service, id, status_rx.clone(), cmd_tx, tokio::spawn(task.run()));
        let mut first = status_rx;
        let _ = first.wait_for(|s| *s != Status::Registering).await;
        Ok(registration)
    }
}

/// Why the registered phase ended.
enum Exit {
    /// Deregistered, abandoned or dropped: the task ends.
    Done,
    /// Back to the retry loop with this status.
    Retry(Status),
}

struct Task<B> {
    backend: Arc<B>,
    layout: Arc<dyn KeyLayout>,
    opts: RegisterOptions,
    backoff: Backoff,
    instance: ServiceInstance,
    value: Vec<u8>,
    status: watch::Sender<Status>,
    commands: crate::registry::Inbox,
    /// The lease that holds (or last held) our key.
    lease: Option<(LeaseId, Duration)>,
    /// Leases whose write failed with an error: it may have landed anyway.
    unsure: Vec<LeaseId>,
    /// The registry's shared lease, when it has one: then this task neither grants,
    /// keeps alive nor revokes leases.
    shared: Option<Arc<SharedLease>>,
    _live: Option<Box<LiveKey>>,
}

/// Unsure leases remembered; older ones have long expired (nothing keeps them alive).
const MAX_UNSURE: usize = 8;

impl<B: KvBackend> Task<B> {
    fn key(&self, lease: LeaseId) -> String {
        self.layout.key(&self.instance, lease)
    }

    fn set(&self, status: Status) {
        tracing::info!(service = %self.instance.service, id = %self.instance.id, %status, "registration status");
        let old = self.status.send_replace(status);
        crate::telemetry::status_changed(&self.instance.service, Some(&old), &self.status.borrow());
    }

    /// The task's future. (Not an `async fn`: one would hold the task twice, once
    /// as its argument and once as the moved-in binding, ~490 B more per registration.)
    ///
    /// The future lives as long as the registration, inside tokio's task cell, so its
    /// size is what every registration holds: the passing phases (an attempt, a
    /// backoff) are boxed, and only the registered phase's state is inline.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            loop {
                // Only the revision outlives this block: an attempt's whole result
                // (72 B) would otherwise stay in the future for the registered phase.
                let revision = {
                    let attempt = match Box::pin(self.establish()).await {
                        Ok(revision) => Ok(revision),
                        Err(Error::Conflict { owner, .. }) => Err(Status::Conflict { owner }),
                        Err(e) => Err(Status::Lost { reason: e.to_string() }),
                    };
                    match attempt {
                        Ok(revision) => revision,
                        Err(status) => {
                            if Box::pin(self.back_off(status)).await {
                                return;
                            }
                            continue;
                        }
                    }
                };
                self.backoff.reset();
                let status = match self.serve(revision).await {
                    Exit::Done => return,
                    Exit::Retry(status) => status,
                };
                if Box::pin(self.back_off(status)).await {
                    return;
                }
            }
        }
    }

    /// Reports `status` and waits out the next backoff delay (answering commands);
    /// true when the task ends: a command ended it, or the retry limit was reached.
    async fn back_off(&mut self, status: Status) -> bool {
        let reason = status.to_string();
        self.set(status);
        let ceiling = self.opts.retry.ceiling(self.backoff.attempts());
        let Some(delay) = self.backoff.next_delay() else {
            self.set(Status::Failed { reason });
            return true;
        };
        tracing::debug!(
            service = %self.instance.service,
            id = %self.instance.id,
            ?delay,
            delay_us = delay.as_micros() as u64,
            ceiling_us = ceiling.as_micros() as u64,
            "retrying registration"
        );
        self.idle_until(Instant::now() + delay).await
    }

    /// Grants a lease and writes the key under it, taking over from our earlier leases.
    async fn establish(&mut self) -> Result<Revision> {
        if self.shared.is_none() && matches!(*self.status.borrow(), Status::Conflict { .. }) {
            // Still held by someone else? Ask with one read before granting a lease
            // that the guarded write would refuse and we would revoke at once.
            if let Some((key, owner)) = self.foreign_owner().await {
                return Err(Error::Conflict { key, owner });
            }
        }
        let lease = match &self.shared {
            Some(shared) => {
                let (id, ttl) = shared.lease(self.opts.ttl).await?;
                crate::Lease { id, ttl }
            }
            None => self.backend.grant(self.opts.ttl).await?,
        };
        let own_leases = self.shared.is_none();
        let ours: Vec<LeaseId> = self
            .lease
            .iter()
            .map(|(id, _)| *id)
            .chain(self.unsure.iter().copied())
            .collect();
        let key = self.key(lease.id);
        match self.backend.put_owned(&key, self.value.clone(), lease.id, &ours).await {
            Ok(PutOutcome::Written(revision)) => {
                // Earlier leases may still live (a keepalive failed, not the lease; a
                // write timed out but landed): revoke them so that they hold nothing.
                for old in ours.into_iter().filter(|old| own_leases && *old != lease.id) {
                    let _ = self.backend.revoke(old).await;
                }
                self.unsure.clear();
                if self.lease.is_some() {
                    crate::telemetry::reregistered(&self.instance.service);
                }
                self.lease = Some((lease.id, lease.ttl));
                self.set(Status::Registered { lease: lease.id });
                Ok(revision)
            }
            Ok(PutOutcome::Conflict { owner }) => {
                if own_leases {
                    let _ = self.backend.revoke(lease.id).await;
                }
                Err(Error::Conflict { key, owner })
            }
            Err(e) => {
                // The write may have reached the store after all (a timeout over a slow
                // link): the next attempt must count this lease as ours, or it would
                // see its own key as someone else's.
                if self.unsure.len() == MAX_UNSURE {
                    self.unsure.remove(0);
                }
                self.unsure.push(lease.id);
                Err(e)
            }
        }
    }

    /// The lease of whoever else holds our key now, if someone does (`None` too
    /// when the read fails, or when the layout puts the lease in the key, so that
    /// there is no key to contend for).
    async fn foreign_owner(&self) -> Option<(String, i64)> {
        let key = self.key(LeaseId(0));
        if key != self.key(LeaseId(1)) {
            return None;
        }
        let (_, kv) = self.backend.get(&key).await.ok()?;
        let holder = kv?.lease;
        let mut ours = self.lease.iter().map(|(id, _)| *id).chain(self.unsure.iter().copied());
        (!ours.any(|l| l.0 == holder)).then_some((key, holder))
    }

    /// The registered phase: keepalives, commands, and the watch on our own key.
    async fn serve(&mut self, mut revision: Revision) -> Exit {
        let Some((lease, granted)) = self.lease else {
            return Exit::Retry(Status::Lost {
                reason: "no lease".into(),
            });
        };
        let interval = self.opts.keepalive_for(granted);
        let mut ka = KeepAlive::new(lease, granted, interval);
        let mut key_watch: Option<WatchStream> = None;
        // The watch on our key opens at the first keepalive tick, not right after the
        // write: a burst of registrations (a start, a recovery storm) then costs
        // etcd a grant and a write each. It watches from our write's revision, so a
        // deletion in between is replayed and healed all the same.
        let mut watch_checked = true;
        let mut written = Some(revision);
        let mut shared_rx = self.shared.as_ref().map(|s| s.subscribe());
        loop {
            if !watch_checked {
                // (Re)open the watch on our key only while the connection is known to
                // work (at start, and after a successful keepalive), so that a dead
                // connection never delays the keepalive that detects it.
                watch_checked = true;
                // Right after our own write there is nothing to check: watch from it.
                let opened = if written.take() == Some(revision) {
                    self.backend
                        .watch(&self.key(lease), false, revision + 1)
                        .await
                        .map(|s| (s, revision))
                } else {
                    self.reopen_key_watch(lease).await
                };
                match opened {
                    Ok((stream, rev)) => {
                        key_watch = Some(stream);
                        revision = revision.max(rev);
                    }
                    Err(Error::Conflict { owner, .. }) => return Exit::Retry(Status::Conflict { owner }),
                    Err(e) => log_err("watch own key", &e),
                }
            }
            tokio::select! {
                biased;
                // Commands and keepalives are boxed: inline, their futures would be part
                // of every registration's task for its whole life (~650 B more each).
                cmd = self.commands.recv() => match Box::pin(self.command(cmd, Some(lease))).await {
                    Some(exit) => return exit,
                    None => continue,
                },
                _ = sleep_until(ka.next) => {
                    if self.shared.is_some() {
                        // The shared lease's own task keeps it alive; the tick only retries
                        // a lost watch on our key.
                        ka.next = Instant::now() + interval;
                        watch_checked = key_watch.is_some();
                        continue;
                    }
                    match Box::pin(ka.beat(&*self.backend)).await {
                        Beat::Alive => watch_checked = key_watch.is_some(),
                        Beat::Retrying => crate::telemetry::keepalive_failed(&self.instance.service),
                        Beat::Lost(reason) => {
                            crate::telemetry::keepalive_failed(&self.instance.service);
                            return Exit::Retry(Status::Lost { reason });
                        }
                    }
                }
                state = shared_change(&mut shared_rx) => {
                    if !matches!(state, Some(SharedState::Held(id, _)) if id == lease) {
                        return Exit::Retry(Status::Lost { reason: "the shared lease was lost".into() });
                    }
                }
                msg = next_message(&mut key_watch) => match msg {
                    Some(Ok(WatchMessage::Events { events, .. })) => {
                        // Boxed, as above: events on our own key are rare (someone deleted it).
                        if let Some(exit) = Box::pin(self.on_key_events(lease, events, &mut revision)).await {
                            return exit;
                        }
                    }
                    Some(Ok(WatchMessage::Progress { revision: r })) => revision = revision.max(r),
                    Some(Err(_)) | None => {
                        // The watch on our key was lost: it is read and watched again
                        // after the next successful keepalive.
                        key_watch = None;
                    }
                },
            }
        }
    }

    /// Events on our own key: a deletion, or a write under a lease that is not ours,
    /// is put right (unless a newer owner holds the key: then `Some(exit)`).
    async fn on_key_events(&mut self, lease: LeaseId, events: Vec<Event>, revision: &mut Revision) -> Option<Exit> {
        for ev in events {
            *revision = (*revision).max(ev.kv.mod_revision);
            let ours = ev.kv.lease == lease.0;
            if ev.kind == EventKind::Delete || !ours {
                match self.heal(lease).await {
                    Ok(rev) => *revision = (*revision).max(rev),
                    Err(Error::Conflict { owner, .. }) => return Some(Exit::Retry(Status::Conflict { owner })),
                    Err(e) => log_err("restore deleted key", &e),
                }
            }
        }
        None
    }

    /// Reads our key (restoring it if it is gone or not ours) and watches it from there.
    async fn reopen_key_watch(&mut self, lease: LeaseId) -> Result<(WatchStream, Revision)> {
        let (header, kv) = self.backend.get(&self.key(lease)).await?;
        let mut revision = header.revision;
        if kv.is_none_or(|kv| kv.lease != lease.0) {
            revision = revision.max(self.heal(lease).await?);
        }
        let stream = self.backend.watch(&self.key(lease), false, revision + 1).await?;
        Ok((stream, revision))
    }

    /// Someone deleted our key while our lease lives (or overwrote it): put it back,
    /// unless a newer owner holds it.
    async fn heal(&mut self, lease: LeaseId) -> Result<Revision> {
        let key = self.key(lease);
        match self.backend.put_owned(&key, self.value.clone(), lease, &[]).await? {
            PutOutcome::Written(rev) => {
                tracing::warn!(service = %self.instance.service, id = %self.instance.id, "key was deleted under a live lease; restored");
                Ok(rev)
            }
            PutOutcome::Conflict { owner } => Err(Error::Conflict { key, owner }),
        }
    }

    /// Handles one command; `lease` is the lease that holds our key now, if any.
    /// `Some(exit)` ends the current phase.
    async fn command(&mut self, cmd: Option<Command>, lease: Option<LeaseId>) -> Option<Exit> {
        match cmd {
            Some(Command::Update(instance, reply)) => {
                let result = self.update(*instance, lease).await;
                let conflict = match &result {
                    Err(Error::Conflict { owner, .. }) => Some(*owner),
                    _ => None,
                };
                let _ = reply.send(result);
                conflict.map(|owner| Exit::Retry(Status::Conflict { owner }))
            }
            Some(Command::Deregister(reply)) => {
                let _ = reply.send(self.deregister().await);
                Some(Exit::Done)
            }
            None => {
                let _ = self.deregister().await;
                Some(Exit::Done)
            }
            Some(Command::Abandon) => {
                // The registration leaves this process's gauge (its key is left to the TTL).
                let current = self.status.borrow().clone();
                crate::telemetry::status_changed(&self.instance.service, Some(&current), &Status::Deregistered);
                Some(Exit::Done)
            }
        }
    }

    async fn update(&mut self, instance: ServiceInstance, lease: Option<LeaseId>) -> Result<()> {
        let value = self.layout.encode(&instance)?;
        self.instance = instance;
        self.value = value;
        let Some(lease) = lease else {
            return Ok(()); // not registered now: the next attempt writes the new value
        };
        match self
            .backend
            .put_owned(&self.key(lease), self.value.clone(), lease, &[])
            .await?
        {
            PutOutcome::Written(_) => Ok(()),
            PutOutcome::Conflict { owner } => Err(Error::Conflict {
                key: self.key(lease),
                owner,
            }),
        }
    }

    async fn deregister(&mut self) -> Result<()> {
        let limit = self.opts.deregister_timeout;
        let result = match self.lease {
            Some((lease, _)) => timeout(limit, async {
                self.backend.delete_owned(&self.key(lease), lease).await?;
                match self.shared {
                    Some(_) => Ok(()), // the lease holds other registrations' keys
                    None => self.backend.revoke(lease).await,
                }
            })
            .await
            .unwrap_or(Err(Error::Timeout {
                op: "deregister",
                after: limit,
            })),
            None => Ok(()),
        };
        self.set(Status::Deregistered);
        result
    }

    /// Waits out a backoff delay while still answering commands; true when a
    /// command ended the task.
    async fn idle_until(&mut self, deadline: Instant) -> bool {
        loop {
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    if Box::pin(self.command(cmd, None)).await.is_some() {
                        return true;
                    }
                }
                _ = sleep_until(deadline) => return false,
            }
        }
    }
}

fn log_err(what: &str, e: &Error) {
    tracing::debug!(error = %e, "{what} failed");
}

/// The shared lease's next state; pending forever without a shared lease. The wait
/// is boxed, so that registrations without a shared lease (most) do not carry its
/// state (144 B) in their task.
async fn shared_change(rx: &mut Option<watch::Receiver<SharedState>>) -> Option<SharedState> {
    match rx {
        Some(rx) => match Box::pin(rx.changed()).await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The next message of an optional stream; pending forever when there is none.
pub(crate) async fn next_message(stream: &mut Option<WatchStream>) -> Option<Result<WatchMessage>> {
    match stream {
        Some(s) => poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await,
        None => std::future::pending().await,
    }
}
