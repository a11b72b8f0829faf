//! [`LeaseRegistry`]: the registration lifecycle, written once for every backend.
//!
//! One task per registration: grant a lease, write the key guarded by the lease,
//! keep the lease alive, put the key back if someone deletes it, and when the lease
//! is lost, re-grant and re-write with capped, jittered backoff — forever unless
//! the user set a retry limit. The registrations of one service share one watch
//! on their keys (`lease/hub.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

mod hub;
mod registered;
mod task;

use crate::shared::SharedLease;
use crate::{
    Backoff, Error, JitterRng, KeyLayout, KvBackend, LeaseId, OwnedTask, RegisterOptions, Registration,
    RegistrationStatus, Registry, Result, ServiceInstance,
};
use hub::Hub;
use task::{LiveKey, Task};

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
    /// Set to true by `shutdown`. Every registration's task holds a receiver and
    /// drops it when it ends, so `closed()` on this sender says all have ended.
    closing: watch::Sender<bool>,
    /// The longest deregistration timeout of any registration made here: how
    /// long `shutdown` waits.
    deregister_limit: Mutex<Duration>,
    /// Each service's key-watch hub, shared by its registrations while any runs.
    hubs: Mutex<BTreeMap<String, Weak<Hub>>>,
    /// Where its keepalive ticks start: its leases renew on the same ticks.
    ticks: tokio::time::Instant,
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
            closing: watch::Sender::new(false),
            deregister_limit: Mutex::new(Duration::ZERO),
            hubs: Mutex::default(),
            ticks: tokio::time::Instant::now(),
        }
    }

    /// Every registration shares one lease, granted and kept alive with `options`'
    /// TTL, keepalive and retry settings (the per-registration TTL is then unused):
    /// keepalive cost is one stream per process, whatever the number of instances.
    /// When the shared lease is lost, every registration re-registers under the next.
    /// Registering a service/id that this registry already holds is
    /// an error of kind [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) at once, since both would hold the same lease.
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
        let lease = SharedLease::start(self.backend.clone(), opts, Backoff::new(opts.retry, rng), self.ticks);
        *slot = Arc::downgrade(&lease);
        Some(lease)
    }

    /// The watch hub of `service`'s registrations, started if none runs.
    fn hub(&self, service: &str) -> Arc<Hub> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hub) = hubs.get(service).and_then(Weak::upgrade) {
            return hub;
        }
        hubs.retain(|_, hub| hub.strong_count() > 0);
        let rng = self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork();
        let hub = Hub::start(self.backend.clone(), self.layout.prefix(service), rng);
        hubs.insert(service.to_owned(), Arc::downgrade(&hub));
        hub
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
        options.validate()?;
        if let Some((shared, _)) = &self.shared {
            shared.validate()?;
        }
        let closing = self.closing.subscribe();
        if *closing.borrow() {
            return Err(Error::closed("registry (the client was shut down)"));
        }
        {
            let mut limit = self.deregister_limit.lock().unwrap_or_else(|p| p.into_inner());
            *limit = (*limit).max(options.deregister_timeout);
        }
        let value = self.layout.encode(&instance)?;
        let live = match self.shared {
            Some(_) => {
                let name = format!("{}/{}", instance.service, instance.id);
                if !self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone()) {
                    return Err(Error::conflict(self.layout.key(&instance, LeaseId(0)), LeaseId::NONE));
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
        let (status_tx, status_rx) = watch::channel(RegistrationStatus::Registering);
        let (draining_tx, draining_rx) = watch::channel(instance.is_draining());
        crate::telemetry::status_changed(&instance.service, None, &RegistrationStatus::Registering);
        let (cmd_tx, cmd_rx) = crate::mailbox::inbox();
        let (service, id) = (instance.service.clone(), instance.id.clone());
        let task = Task {
            backend: self.backend.clone(),
            layout: self.layout.clone(),
            backoff: Backoff::new(options.retry, rng),
            opts: options,
            instance,
            value,
            status: status_tx,
            draining: draining_tx,
            commands: cmd_rx,
            lease: None,
            unsure: Vec::new(),
            shared: self.shared_lease(),
            hub: self.hub(&service),
            _live: live,
            closing,
            ticks: self.ticks,
        };
        let registration = Registration::new(
            service,
            id,
            (status_rx.clone(), draining_rx),
            cmd_tx,
            OwnedTask::spawn(task.run()),
        );
        let mut first = status_rx;
        let _ = first.wait_for(|s| *s != RegistrationStatus::Registering).await;
        Ok(registration)
    }

    async fn shutdown(&self) -> Result<()> {
        self.closing.send_replace(true);
        let limit = match *self.deregister_limit.lock().unwrap_or_else(|p| p.into_inner()) {
            Duration::ZERO => RegisterOptions::default().deregister_timeout,
            limit => limit,
        };
        // Each task sees the flag, deregisters (bounded by its own timeout) and
        // ends, dropping its receiver; detached ones included.
        match tokio::time::timeout(limit, self.closing.closed()).await {
            Ok(()) => Ok(()),
            Err(_) => {
                let left = self.closing.receiver_count();
                tracing::warn!(
                    left,
                    ?limit,
                    "shutdown: registrations still deregistering; their keys expire with their leases"
                );
                Err(Error::timeout("shutdown (deregistering every registration)", limit))
            }
        }
    }
}
