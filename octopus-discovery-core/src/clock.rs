//! The wall clock, for the one thing that needs it: stamping when a registration
//! was written, so that discovery can measure how long the change took to reach
//! it (`octopus_discovery_propagation_seconds`, as Kubernetes measures endpoint
//! propagation from its `last-change-trigger-time`). Behaviour never depends on it.
//! The simulator replaces it with simulated time, so runs stay deterministic.

use std::sync::RwLock;
use std::time::Duration;

/// Time since the Unix epoch, or `None` when unknown.
pub type WallClock = fn() -> Option<Duration>;

static CLOCK: RwLock<Option<WallClock>> = RwLock::new(None);

/// Replaces the wall clock of this process (the simulator's, say).
pub fn set_wall_clock(clock: WallClock) {
    *CLOCK.write().unwrap_or_else(|p| p.into_inner()) = Some(clock);
}

#[allow(clippy::disallowed_methods)] // metrics only, and replaceable: see the module docs
fn system() -> Option<Duration> {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()
}

/// Now, since the Unix epoch.
pub fn wall_now() -> Option<Duration> {
    match *CLOCK.read().unwrap_or_else(|p| p.into_inner()) {
        Some(clock) => clock(),
        None => system(),
    }
}
