//! The wall clock, for the one thing that needs it: stamping when a registration
//! was written, so that discovery can measure how long the change took to reach
//! it (`octopus_discovery_propagation_seconds`, as Kubernetes measures endpoint
//! propagation from its `last-change-trigger-time`). Behaviour never depends on it.
//! The simulator replaces it with simulated time, so runs stay deterministic
//! (`hooks::set_wall_clock`, feature `sim-hooks`; without the feature the
//! clock is always the system's).

use std::time::Duration;

/// Time since the Unix epoch, or `None` when unknown.
#[cfg(feature = "sim-hooks")]
pub type WallClock = fn() -> Option<Duration>;

#[cfg(feature = "sim-hooks")]
static CLOCK: std::sync::RwLock<Option<WallClock>> = std::sync::RwLock::new(None);

/// Replaces the wall clock of this process (the simulator's simulated time).
#[cfg(feature = "sim-hooks")]
pub fn set_wall_clock(clock: WallClock) {
    *CLOCK.write().unwrap_or_else(|p| p.into_inner()) = Some(clock);
}

#[allow(clippy::disallowed_methods)] // metrics only, and replaceable: see the module docs
fn system() -> Option<Duration> {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()
}

/// Now, since the Unix epoch.
pub(crate) fn wall_now() -> Option<Duration> {
    #[cfg(feature = "sim-hooks")]
    if let Some(clock) = *CLOCK.read().unwrap_or_else(|p| p.into_inner()) {
        return clock();
    }
    system()
}
