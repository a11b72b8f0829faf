//! A registration's registered phase: keep the lease alive, follow our own key
//! through the service's watch hub and put it back if someone deletes it,
//! answer the handle's commands (update, deregister), and leave for the retry
//! loop when the lease is lost.

use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

use super::hub::{next_events, Membership};
use super::task::{closing, log_err, Exit, Task};
use crate::fencing::put_owned;
use crate::keepalive::{Beat, KeepAlive};
use crate::layout::encode_with_mark;
use crate::mailbox::Command;
use crate::shared::SharedState;
use crate::{
    Error, ErrorKind, Event, EventKind, KvBackend, LeaseId, PutOutcome, RegistrationStatus, Result, Revision,
    ServiceInstance,
};

impl<B: KvBackend> Task<B> {
    /// The registered phase: keepalives, commands, and the watch on our own key.
    pub(super) async fn serve(&mut self, mut revision: Revision) -> Exit {
        let Some((lease, granted)) = self.lease else {
            return Exit::Retry(RegistrationStatus::Lost {
                reason: "no lease".into(),
            });
        };
        let interval = self.opts.keepalive_for(granted);
        let mut ka = KeepAlive::new(lease, granted, &self.opts, self.ticks);
        // Boxed: every registration's task holds this slot for its whole life.
        let mut key_watch: Option<Box<Membership>> = None;
        // We join the service's watch hub at the first keepalive tick, not right
        // after the write: a burst of registrations (a start, a recovery storm) then
        // costs etcd a grant and a write each. The join counts from our write's
        // revision, so a deletion in between is replayed (or found by the join's
        // check) and healed all the same.
        let mut watch_checked = true;
        let mut written = Some(revision);
        let mut shared_rx = self.shared.as_ref().map(|s| s.subscribe());
        loop {
            if !watch_checked {
                // (Re)open the watch on our key only while the connection is known to
                // work (at start, and after a successful keepalive), so that a dead
                // connection never delays the keepalive that detects it.
                watch_checked = true;
                // Right after our own write we know our key as written: join from it.
                // Boxed, as the phases below: inline, a join's reads and heal would
                // be part of every registration's task for its whole life.
                let opened = if written.take() == Some(revision) {
                    Box::pin(self.join_hub(lease, revision + 1, revision)).await
                } else {
                    Box::pin(self.reopen_key_watch(lease)).await
                };
                match opened {
                    Ok((member, rev)) => {
                        key_watch = Some(member);
                        revision = revision.max(rev);
                    }
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        return Exit::Retry(RegistrationStatus::Conflict {
                            owner: e.conflict_owner().unwrap_or(LeaseId::NONE),
                        })
                    }
                    Err(e) => log_err("watch own key", &e),
                }
            }
            tokio::select! {
                biased;
                // Commands and keepalives are boxed: inline, their futures would be part
                // of every registration's task for its whole life, making each larger.
                cmd = self.commands.recv() => match Box::pin(self.command(cmd, Some(lease))).await {
                    Some(exit) => return exit,
                    None => continue,
                },
                // The client shuts down: deregister as a dropped handle does.
                () = closing(&mut self.closing) => {
                    let _ = Box::pin(self.deregister()).await;
                    return Exit::Done;
                }
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
                            return Exit::Retry(RegistrationStatus::Lost { reason });
                        }
                    }
                }
                state = shared_change(&mut shared_rx) => {
                    if !matches!(state, Some(SharedState::Held(id, _)) if id == lease) {
                        return Exit::Retry(RegistrationStatus::Lost { reason: "the shared lease was lost".into() });
                    }
                }
                events = next_events(&mut key_watch) => match events {
                    Some(mut events) => {
                        // Replays (the hub reopened from an older revision) and our own writes.
                        events.retain(|ev| ev.kv.mod_revision > revision);
                        if self.shared.is_none() && events.iter().any(|ev| ev.kind == EventKind::Delete) {
                            // Also how an expired or revoked lease shows: ask at once.
                            ka.next = Instant::now();
                        }
                        // Boxed, as above: events on our own key are rare (someone deleted it).
                        if let Some(exit) = Box::pin(self.on_key_events(lease, events, &mut revision)).await {
                            return exit;
                        }
                    }
                    None => {
                        // The hub dropped us (a compaction, or we fell behind): our key
                        // is read and joined again after the next successful keepalive.
                        key_watch = None;
                    }
                },
            }
        }
    }

    /// Events on our own key: a deletion, a write under a lease that is not ours,
    /// or one under ours that does not decode, is put right (unless a newer owner holds the key: then `Some(exit)`).
    async fn on_key_events(&mut self, lease: LeaseId, events: Vec<Event>, revision: &mut Revision) -> Option<Exit> {
        for ev in events {
            *revision = (*revision).max(ev.kv.mod_revision);
            let ours = ev.kv.lease == lease;
            if ev.kind == EventKind::Put && ours && !self.adopt(&ev.kv.key, &ev.kv.value) {
                // Written under our lease by someone else: an operator's drain mark.
                continue;
            }
            // Deleted, written under a lease that is not ours, or written under
            // ours with a value that does not decode: put it right.
            match self.heal(lease).await {
                Ok(rev) => *revision = (*revision).max(rev),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    return Some(Exit::Retry(RegistrationStatus::Conflict {
                        owner: e.conflict_owner().unwrap_or(LeaseId::NONE),
                    }))
                }
                Err(e) => log_err("restore our key", &e),
            }
        }
        None
    }

    /// Reads our key (restoring it if it is gone or not ours) and joins the hub from there.
    async fn reopen_key_watch(&mut self, lease: LeaseId) -> Result<(Box<Membership>, Revision)> {
        let (header, kv) = self.backend.get(&self.key(lease)).await?;
        let mut revision = header.revision;
        let mut known = kv.as_ref().map_or(0, |kv| kv.mod_revision);
        // Marked while our watch was down, or (`adopt` says) undecodable.
        let repair = kv
            .as_ref()
            .filter(|kv| kv.lease == lease)
            .is_some_and(|kv| self.adopt(&kv.key, &kv.value));
        if repair || kv.is_none_or(|kv| kv.lease != lease) {
            known = self.heal(lease).await?;
            revision = revision.max(known);
        }
        self.join_hub(lease, revision + 1, known).await
    }

    /// Joins the hub for our key, whose state at `start - 1` we know: written or
    /// read at mod revision `known`. When the hub may have routed events on our key
    /// before we joined, reads the key once and handles what changed as those
    /// events would have been; returns the revision we then know the key at.
    async fn join_hub(
        &mut self,
        lease: LeaseId,
        start: Revision,
        known: Revision,
    ) -> Result<(Box<Membership>, Revision)> {
        let key = self.key(lease);
        let member = Box::new(self.hub.join(&key, start));
        if !member.check {
            return Ok((member, start - 1));
        }
        let (header, kv) = self.backend.get(&key).await?;
        let mut revision = header.revision;
        match kv {
            Some(kv) if kv.lease == lease && (kv.mod_revision == known || !self.adopt(&kv.key, &kv.value)) => {}
            _ => revision = revision.max(self.heal(lease).await?),
        }
        Ok((member, revision))
    }

    /// Our key's value as someone else wrote it under our lease: its draining mark
    /// (the one thing an operator changes from outside) becomes ours, so that a
    /// re-registration or an update writes it again. Anything else in it is ours
    /// to state, and the next write puts our value back. True when the value
    /// does not decode at all: then no watcher sees the instance, and it must be
    /// put back now. (A value that decodes is left to the next write: it may be
    /// one of our own earlier writes whose event arrives after a newer one, or,
    /// with a layout whose key is not the id, another registration of this
    /// process sharing the key; rewriting it would undo a newer write or start
    /// the two rewriting each other.)
    fn adopt(&mut self, key: &[u8], value: &[u8]) -> bool {
        if value == self.value.as_slice() {
            return false;
        }
        let Ok(seen) = self.layout.decode(&self.instance.service, key, value) else {
            return true;
        };
        let draining = seen.is_draining();
        if draining == self.instance.is_draining() {
            return false;
        }
        let instance = self.instance.clone().with_draining(draining);
        match self.layout.encode(&instance) {
            Ok(encoded) => {
                tracing::info!(service = %instance.service, id = %instance.id, draining, "draining mark set from outside");
                self.instance = instance;
                self.value = encoded;
                self.draining.send_replace(draining);
            }
            Err(e) => log_err("adopt draining mark", &e),
        }
        false
    }

    /// Handles one command; `lease` is the lease that holds our key now, if any.
    /// `Some(exit)` ends the current phase.
    pub(super) async fn command(&mut self, cmd: Option<Command>, lease: Option<LeaseId>) -> Option<Exit> {
        match cmd {
            Some(Command::Update(instance, reply)) => {
                let draining = self.instance.is_draining();
                self.write_and_answer(instance.with_draining(draining), lease, reply)
                    .await
            }
            Some(Command::Drain(draining, reply)) => {
                let instance = self.instance.clone().with_draining(draining);
                self.write_and_answer(instance, lease, reply).await
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
                crate::telemetry::status_changed(
                    &self.instance.service,
                    Some(&current),
                    &RegistrationStatus::Deregistered,
                );
                Some(Exit::Done)
            }
        }
    }

    /// Writes `instance` (an update, or the draining mark set or cleared),
    /// publishes its mark once written, and answers the handle; `Some(exit)` when
    /// a newer owner holds the key.
    async fn write_and_answer(
        &mut self,
        instance: ServiceInstance,
        lease: Option<LeaseId>,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    ) -> Option<Exit> {
        let draining = instance.is_draining();
        let result = self.update(instance, lease).await;
        if result.is_ok() {
            self.draining
                .send_if_modified(|d| std::mem::replace(d, draining) != draining);
        }
        let conflict = match &result {
            Err(e) => e.conflict_owner(),
            _ => None,
        };
        let _ = reply.send(result);
        conflict.map(|owner| Exit::Retry(RegistrationStatus::Conflict { owner }))
    }

    /// Writes `instance` as ours. An update keeps the draining mark as it is
    /// (only `Drain` changes it): a process that updates its weight must not
    /// undo an operator's drain.
    async fn update(&mut self, instance: ServiceInstance, lease: Option<LeaseId>) -> Result<()> {
        let value = encode_with_mark(
            &*self.layout,
            self.layout.key(&instance, LeaseId(0)).as_bytes(),
            &instance,
        )?;
        self.instance = instance;
        self.value = value;
        let Some(lease) = lease else {
            return Ok(()); // not registered now: the next attempt writes the new value
        };
        match put_owned(&*self.backend, &self.key(lease), self.value.clone(), lease, &[]).await? {
            PutOutcome::Written(_) => Ok(()),
            PutOutcome::Conflict { owner } => Err(Error::conflict(self.key(lease), owner)),
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
            .unwrap_or(Err(Error::timeout("deregister", limit))),
            None => Ok(()),
        };
        self.set(RegistrationStatus::Deregistered);
        result
    }
}

/// The shared lease's next state; pending forever without a shared lease. The wait
/// is boxed, so that registrations without a shared lease (most) do not carry its
/// state in their task.
async fn shared_change(rx: &mut Option<watch::Receiver<SharedState>>) -> Option<SharedState> {
    match rx {
        Some(rx) => match Box::pin(rx.changed()).await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}
