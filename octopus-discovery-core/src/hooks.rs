//! Deliberate bugs, for proving that the simulator catches them, and typed events
//! the simulator observes the library through (feature `sim-hooks`).
//!
//! Without the feature the crate's `bug!` checks compile to `false` and none of
//! this exists; with it, every bug is off until [`enable`] switches it on in this
//! process. Only the simulator's runner does that (`octopus-sim --bug NAME`).
//! The simulator also replaces the wall clock ([`set_wall_clock`]) with
//! simulated time, so that its runs stay deterministic.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use crate::clock::{set_wall_clock, WallClock};

/// A bug the simulator must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bug {
    /// The keepalive loop stops for good after its first failure, silently.
    KeepaliveStopsAfterFailure,
    /// Discovery resumes a broken watch from "now" (revision 0) instead of last + 1.
    WatchResumesFromZero,
    /// Backoff waits its full ceiling every time: no jitter.
    NoJitter,
    /// The etcd backend writes a registration's key with a plain put, overwriting
    /// whoever holds it.
    NoFencing,
    /// Discovery calls its view fresh again as soon as it sets out to reconnect,
    /// before its watch is confirmed (before etcd has even answered).
    FreshBeforeWatch,
    /// A full resync (after a compaction or a lost history) does not count itself.
    ResyncUncounted,
    /// The balancer's mass-disappearance protection never starts: every fresh
    /// view is applied as it is, however few instances it holds.
    NoPanicThreshold,
    /// The etcd backend's watch multiplexer sends every create at once and gives
    /// each `created` answer to the oldest create waiting, as if answers kept
    /// the order of the creates (etcd's gRPC proxy does not keep it).
    PositionalCreated,
}

impl Bug {
    /// Every bug, with its command-line name.
    pub const ALL: [(Bug, &'static str); 8] = [
        (Bug::KeepaliveStopsAfterFailure, "keepalive-stops"),
        (Bug::WatchResumesFromZero, "watch-from-zero"),
        (Bug::NoJitter, "no-jitter"),
        (Bug::NoFencing, "no-fencing"),
        (Bug::FreshBeforeWatch, "fresh-before-watch"),
        (Bug::ResyncUncounted, "resync-uncounted"),
        (Bug::NoPanicThreshold, "no-panic-threshold"),
        (Bug::PositionalCreated, "positional-created"),
    ];

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The bug named `name` (see [`Bug::ALL`]).
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.iter().find(|(_, n)| *n == name).map(|(b, _)| *b)
    }
}

// A new `Bug` variant fails to compile here until it gets an arm: give it one, and
// add it to `Bug::ALL` with its command-line name (what `octopus-sim --bug` takes).
// octopus-sim's `tests/docs.rs` then asks for it in `octopus-sim --help`, in
// docs/RELIABILITY.md's bug table and in `scripts/test`'s list of bugs to catch.
const _: fn(Bug) = |bug| match bug {
    Bug::KeepaliveStopsAfterFailure => {}
    Bug::WatchResumesFromZero => {}
    Bug::NoJitter => {}
    Bug::NoFencing => {}
    Bug::FreshBeforeWatch => {}
    Bug::ResyncUncounted => {}
    Bug::NoPanicThreshold => {}
    Bug::PositionalCreated => {}
};

// `Bug::ALL` lists the variants in declaration order, each once.
const _: () = {
    let mut i = 0;
    while i < Bug::ALL.len() {
        assert!(
            Bug::ALL[i].0 as usize == i,
            "Bug::ALL must list every variant once, in declaration order"
        );
        i += 1;
    }
};

static BUGS: AtomicU32 = AtomicU32::new(0);

/// Switches `bug` on for the rest of this process.
pub fn enable(bug: Bug) {
    BUGS.fetch_or(bug.bit(), Ordering::Relaxed);
}

/// Whether `bug` is on.
pub fn enabled(bug: Bug) -> bool {
    BUGS.load(Ordering::Relaxed) & bug.bit() != 0
}

/// What the library tells an observer (the simulator's checker reads these
/// instead of parsing log messages).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observed {
    /// A registration backs off before its next attempt.
    Retry {
        /// The service.
        service: String,
        /// The instance id.
        id: String,
        /// The delay drawn.
        delay: Duration,
        /// The ceiling it was drawn under.
        ceiling: Duration,
    },
}

type Observer = Arc<dyn Fn(Observed) + Send + Sync>;

static OBSERVER: RwLock<Option<Observer>> = RwLock::new(None);

/// Sends every [`Observed`] event of this process to `observer` (replacing any
/// earlier one; `None` stops observing).
pub fn set_observer(observer: Option<Observer>) {
    *OBSERVER.write().unwrap_or_else(|p| p.into_inner()) = observer;
}

/// Hands `event` (made only if someone observes) to the observer.
pub fn observe(event: impl FnOnce() -> Observed) {
    let observer = OBSERVER.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(observer) = observer {
        observer(event());
    }
}
