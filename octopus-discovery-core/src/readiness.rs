//! [`Readiness`]: whether every registration a process tracks is registered, for
//! a readiness probe (the facade's `/readyz`, feature `metrics`) and for
//! servers that register themselves (`octopus-grpc`'s `RegisteredServer`).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{Registration, RegistrationStatus};

/// The registrations a readiness probe (`/readyz`) answers for: ready when
/// every one tracked is registered.
#[derive(Clone, Default, Debug)]
pub struct Readiness {
    tracked: Arc<Mutex<Vec<watch::Receiver<RegistrationStatus>>>>,
}

impl Readiness {
    /// Counts `registration` in readiness until it is deregistered.
    pub fn track(&self, registration: &Registration) {
        self.tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(registration.status());
    }

    /// Holds readiness at "not ready" until the returned guard is dropped: for the
    /// time before a registration exists to track (its first attempt).
    pub fn pending(&self) -> Pending {
        let (tx, rx) = watch::channel(RegistrationStatus::Registering);
        self.tracked.lock().unwrap_or_else(|p| p.into_inner()).push(rx);
        Pending(tx)
    }

    /// True when every tracked registration is registered (deregistered ones no
    /// longer count).
    pub fn is_ready(&self) -> bool {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        // A deregistered registration no longer counts; a failed one keeps the
        // process unready (its last status stays readable after its task ended).
        tracked.retain(|rx| !matches!(*rx.borrow(), RegistrationStatus::Deregistered));
        tracked.iter().all(|rx| rx.borrow().is_registered())
    }
}

/// Keeps a [`Readiness`] not ready while it lives ([`Readiness::pending`]).
#[derive(Debug)]
pub struct Pending(watch::Sender<RegistrationStatus>);

impl Drop for Pending {
    fn drop(&mut self) {
        // Deregistered entries no longer count.
        self.0.send_replace(RegistrationStatus::Deregistered);
    }
}
