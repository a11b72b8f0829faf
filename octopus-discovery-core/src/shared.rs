//! One lease shared by many registrations, so that keepalive cost is per process,
//! not per instance.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::keepalive::{Beat, KeepAlive};
use crate::{Backoff, Error, KvBackend, LeaseId, OwnedTask, RegisterOptions, Result};

/// Where the shared lease stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SharedState {
    /// Being granted (again); the last error, if any.
    Pending(String),
    /// Held and kept alive.
    Held(LeaseId, Duration),
}

/// The handle registrations hold; the last one dropped stops the keepalives (the
/// lease then expires after its TTL, as after a crash).
#[derive(Debug)]
pub(crate) struct SharedLease {
    rx: watch::Receiver<SharedState>,
    _task: OwnedTask<()>,
}

impl SharedLease {
    /// Starts the task that grants the lease and keeps it alive (on the
    /// keepalive ticks that start at `ticks`).
    pub(crate) fn start<B: KvBackend>(
        backend: Arc<B>,
        opts: &RegisterOptions,
        backoff: Backoff,
        ticks: Instant,
    ) -> Arc<Self> {
        let (tx, rx) = watch::channel(SharedState::Pending(String::new()));
        let task = OwnedTask::spawn(keep(backend, opts.clone(), backoff, tx, ticks));
        Arc::new(SharedLease { rx, _task: task })
    }

    /// The lease, waiting at most `within` for one to be held.
    pub(crate) async fn lease(&self, within: Duration) -> Result<(LeaseId, Duration)> {
        let mut rx = self.rx.clone();
        let state = match timeout(within, rx.wait_for(|s| matches!(s, SharedState::Held(..)))).await {
            Ok(Ok(state)) => state.clone(),
            Ok(Err(_)) => return Err(Error::closed("shared lease")),
            Err(_) => {
                let why = match &*self.rx.borrow() {
                    SharedState::Pending(e) if !e.is_empty() => e.clone(),
                    _ => "no answer".into(),
                };
                return Err(Error::backend(
                    "shared lease",
                    format!("no shared lease within {within:?}: {why}"),
                ));
            }
        };
        match state {
            SharedState::Held(id, ttl) => Ok((id, ttl)),
            SharedState::Pending(_) => unreachable!("waited for Held"),
        }
    }

    /// Follows the lease's state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<SharedState> {
        self.rx.clone()
    }
}

async fn keep<B: KvBackend>(
    backend: Arc<B>,
    opts: RegisterOptions,
    mut backoff: Backoff,
    tx: watch::Sender<SharedState>,
    ticks: Instant,
) {
    loop {
        let reason = match backend.grant(opts.ttl).await {
            Ok(lease) => {
                backoff.reset();
                tx.send_replace(SharedState::Held(lease.id, lease.ttl));
                tracing::info!(lease = %lease.id, "shared lease granted");
                hold(&*backend, &opts, lease.id, lease.ttl, ticks).await
            }
            Err(e) => e.to_string(),
        };
        tracing::info!(%reason, "shared lease lost");
        tx.send_replace(SharedState::Pending(reason));
        sleep(backoff.next_delay().unwrap_or(opts.retry.cap())).await;
    }
}

/// Keeps `lease` alive until it is lost; returns why.
async fn hold<B: KvBackend>(
    backend: &B,
    opts: &RegisterOptions,
    lease: LeaseId,
    granted: Duration,
    ticks: Instant,
) -> String {
    let mut ka = KeepAlive::new(lease, granted, opts, ticks);
    loop {
        sleep_until(ka.next).await;
        if let Beat::Lost(reason) = ka.beat(backend).await {
            return reason;
        }
    }
}
