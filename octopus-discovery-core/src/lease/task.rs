//! A registration's task, its state and its retry loop: grant a lease and write
//! the key (taking over from our earlier leases, fencing off anyone else's), and
//! after a loss back off with capped, jittered delays. The registered phase is in
//! [`super::registered`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::hub::Hub;
use crate::fencing::put_owned;
use crate::mailbox::Inbox;
use crate::shared::SharedLease;
use crate::{
    Backoff, Error, ErrorKind, KeyLayout, KvBackend, LeaseId, PutOutcome, RegisterOptions, RegistrationStatus, Result,
    Revision, ServiceInstance,
};

/// Removes a key from the registry's live set when its task ends.
pub(super) struct LiveKey(pub(super) Arc<Mutex<BTreeSet<String>>>, pub(super) String);

impl Drop for LiveKey {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

/// Why the registered phase ended.
pub(super) enum Exit {
    /// Deregistered, abandoned or dropped: the task ends.
    Done,
    /// Back to the retry loop with this status.
    Retry(RegistrationStatus),
}

pub(super) struct Task<B> {
    pub(super) backend: Arc<B>,
    pub(super) layout: Arc<dyn KeyLayout>,
    pub(super) opts: RegisterOptions,
    pub(super) backoff: Backoff,
    pub(super) instance: ServiceInstance,
    pub(super) value: Vec<u8>,
    pub(super) status: watch::Sender<RegistrationStatus>,
    /// Whether the instance is marked draining, as last written or seen on our key.
    pub(super) draining: watch::Sender<bool>,
    pub(super) commands: Inbox,
    /// The lease that holds (or last held) our key.
    pub(super) lease: Option<(LeaseId, Duration)>,
    /// Leases whose write failed with an error: it may have landed anyway.
    pub(super) unsure: Vec<LeaseId>,
    /// The registry's shared lease, when it has one: then this task neither grants,
    /// keeps alive nor revokes leases.
    pub(super) shared: Option<Arc<SharedLease>>,
    /// The watch on our key, shared with this registry's other registrations of
    /// the service.
    pub(super) hub: Arc<Hub>,
    pub(super) _live: Option<Box<LiveKey>>,
    /// The registry's shutdown flag: when it turns true the task deregisters and
    /// ends, as when its handle is dropped.
    pub(super) closing: watch::Receiver<bool>,
    /// Where the registry's keepalive ticks start.
    pub(super) ticks: tokio::time::Instant,
}

/// Unsure leases remembered; older ones have long expired (nothing keeps them alive).
const MAX_UNSURE: usize = 8;

impl<B: KvBackend> Task<B> {
    pub(super) fn key(&self, lease: LeaseId) -> String {
        self.layout.key(&self.instance, lease)
    }

    pub(super) fn set(&self, status: RegistrationStatus) {
        tracing::info!(service = %self.instance.service, id = %self.instance.id, %status, "registration status");
        let old = self.status.send_replace(status);
        crate::telemetry::status_changed(&self.instance.service, Some(&old), &self.status.borrow());
    }

    /// The task's future. (Not an `async fn`: one would hold the task twice, once
    /// as its argument and once as the moved-in binding, in every registration.)
    ///
    /// The future lives as long as the registration, inside tokio's task cell, so its
    /// size is what every registration holds: the passing phases (an attempt, a
    /// backoff) are boxed, and only the registered phase's state is inline.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            loop {
                // Only the revision outlives this block: an attempt's whole result
                // would otherwise stay in the future for the registered phase.
                let revision = {
                    let attempt = match Box::pin(self.establish()).await {
                        Ok(revision) => Ok(revision),
                        Err(e) if e.kind() == ErrorKind::Conflict => Err(RegistrationStatus::Conflict {
                            owner: e.conflict_owner().unwrap_or(LeaseId::NONE),
                        }),
                        Err(e) => Err(RegistrationStatus::Lost { reason: e.to_string() }),
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
    pub(super) async fn back_off(&mut self, status: RegistrationStatus) -> bool {
        let reason = status.to_string();
        self.set(status);
        let ceiling = self.opts.retry.ceiling(self.backoff.attempts());
        let Some(delay) = self.backoff.next_delay() else {
            self.set(RegistrationStatus::Failed { reason });
            return true;
        };
        tracing::debug!(service = %self.instance.service, id = %self.instance.id, ?delay, ?ceiling, "retrying registration");
        crate::observe!(crate::hooks::Observed::Retry {
            service: self.instance.service.clone(),
            id: self.instance.id.clone(),
            delay,
            ceiling,
        });
        self.idle_until(Instant::now() + delay).await
    }

    /// Grants a lease and writes the key under it, taking over from our earlier leases.
    pub(super) async fn establish(&mut self) -> Result<Revision> {
        if self.shared.is_none() && matches!(*self.status.borrow(), RegistrationStatus::Conflict { .. }) {
            // Still held by someone else? Ask with one read before granting a lease
            // that the guarded write would refuse and we would revoke at once.
            if let Some((key, owner)) = self.foreign_owner().await {
                return Err(Error::conflict(key, owner));
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
        match put_owned(&*self.backend, &key, self.value.clone(), lease.id, &ours).await {
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
                self.set(RegistrationStatus::Registered { lease: lease.id });
                Ok(revision)
            }
            Ok(PutOutcome::Conflict { owner }) => {
                if own_leases {
                    let _ = self.backend.revoke(lease.id).await;
                }
                Err(Error::conflict(key, owner))
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
    async fn foreign_owner(&self) -> Option<(String, LeaseId)> {
        let key = self.key(LeaseId(0));
        if key != self.key(LeaseId(1)) {
            return None;
        }
        let (_, kv) = self.backend.get(&key).await.ok()?;
        let holder = kv?.lease;
        let mut ours = self.lease.iter().map(|(id, _)| *id).chain(self.unsure.iter().copied());
        (!ours.any(|l| l == holder)).then_some((key, holder))
    }

    /// Someone deleted our key while our lease lives, or overwrote it (under
    /// another lease, or under ours with what is not our instance): put it back,
    /// unless a newer owner holds it.
    pub(super) async fn heal(&mut self, lease: LeaseId) -> Result<Revision> {
        let key = self.key(lease);
        match put_owned(&*self.backend, &key, self.value.clone(), lease, &[]).await? {
            PutOutcome::Written(rev) => {
                tracing::warn!(service = %self.instance.service, id = %self.instance.id, "key was deleted or overwritten under a live lease; restored");
                Ok(rev)
            }
            PutOutcome::Conflict { owner } => Err(Error::conflict(key, owner)),
        }
    }

    /// Waits out a backoff delay while still answering commands; true when a
    /// command ended the task.
    pub(super) async fn idle_until(&mut self, deadline: Instant) -> bool {
        loop {
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    if Box::pin(self.command(cmd, None)).await.is_some() {
                        return true;
                    }
                }
                () = closing(&mut self.closing) => {
                    let _ = Box::pin(self.command(None, None)).await;
                    return true;
                }
                _ = sleep_until(deadline) => return false,
            }
        }
    }
}

/// Resolves once the registry shuts down; never when the registry is gone
/// without shutting down (the tasks then live on their handles alone).
pub(super) async fn closing(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(super) fn log_err(what: &str, e: &Error) {
    tracing::debug!(error = %e, "{what} failed");
}
