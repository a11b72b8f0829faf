//! The event log: everything the invariant checker reads, with simulated timestamps,
//! and its digest (the same seed must give the same digest).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    /// A fault began (id, what, between which hosts).
    FaultStart {
        /// Its id, for [`Ev::FaultEnd`].
        id: u32,
        /// What kind.
        kind: FaultKind,
        /// First host.
        a: String,
        /// Second host.
        b: String,
    },
    /// A fault ended.
    FaultEnd {
        /// The id of its [`Ev::FaultStart`].
        id: u32,
    },
    /// A host stopped (crash).
    HostDown {
        /// Which.
        host: String,
    },
    /// A host (re)started.
    HostUp {
        /// Which.
        host: String,
    },
    /// The simulated etcd started; `lost_data` when it came back empty.
    EtcdUp {
        /// Whether it lost its data (a new cluster id, revision 1).
        lost_data: bool,
        /// Its revision when it started.
        revision: i64,
    },
    /// The driver compacted etcd's history.
    Compact {
        /// Up to this revision.
        revision: i64,
    },
    /// A key was written (from etcd's own watch of every key).
    Put {
        /// Key.
        key: String,
        /// Revision.
        revision: i64,
        /// Its lease.
        lease: i64,
        /// The lease of the value it replaced, if the key existed.
        prev_lease: Option<i64>,
        /// The value.
        value: String,
    },
    /// A key was deleted.
    Delete {
        /// Key.
        key: String,
        /// Revision.
        revision: i64,
        /// The lease it had.
        prev_lease: i64,
    },
    /// etcd granted a lease to `host`.
    Grant {
        /// The lease.
        lease: i64,
        /// Its TTL.
        ttl: Duration,
        /// Who asked.
        host: String,
    },
    /// etcd refreshed a lease (`alive` false: it answered "unknown lease").
    KeepAlive {
        /// The lease.
        lease: i64,
        /// Whether it was still alive.
        alive: bool,
    },
    /// `host` revoked a lease.
    Revoke {
        /// The lease.
        lease: i64,
        /// Revision of the deletes.
        revision: i64,
        /// Who.
        host: String,
    },
    /// `host` wrote `revision`.
    Write {
        /// The revision.
        revision: i64,
        /// Who.
        host: String,
    },
    /// A registrant's status changed.
    Status {
        /// The host.
        host: String,
        /// The status, as displayed.
        status: String,
    },
    /// A registration backs off (from its tracing event).
    Retry {
        /// The instance id.
        id: String,
        /// The delay drawn.
        delay: Duration,
        /// The backoff ceiling for this attempt.
        ceiling: Duration,
    },
    /// A registrant's graceful deregistration returned.
    Deregistered {
        /// The host.
        host: String,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A discoverer's view changed.
    View {
        /// The host.
        host: String,
        /// The snapshot's revision.
        revision: i64,
        /// Its resync counter.
        resyncs: u64,
        /// Whether it is fresh (not stale).
        fresh: bool,
        /// The instances: `id@endpoint`, sorted.
        instances: Vec<String>,
    },
    /// How many endpoints a discoverer's protected channel balances over, when
    /// that changes (sampled every 10 ms).
    Endpoints {
        /// `{discoverer}/protected`.
        host: String,
        /// The count.
        endpoints: usize,
    },
    /// A call through the balancer finished.
    Call {
        /// The calling host.
        host: String,
        /// When it started.
        started: Duration,
        /// Which instance answered (`id@endpoint`), or the error.
        result: Result<String, String>,
    },
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Nothing passes either way.
    Partition,
    /// Nothing passes from `a` to `b`.
    PartitionOneway,
    /// Messages are held both ways, then delivered on release.
    Hold,
    /// Latency up to the configured maximum.
    Latency,
}

/// A shared, append-only log.
#[derive(Clone, Debug, Default)]
pub struct Log(Arc<Mutex<Vec<(Duration, Ev)>>>);

impl Log {
    /// Appends `ev` at the current simulated time.
    pub fn push(&self, ev: Ev) {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        self.push_at(now, ev);
    }

    /// Appends `ev` at `at`.
    pub fn push_at(&self, at: Duration, ev: Ev) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((at, ev));
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<(Duration, Ev)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// FNV-1a (64 bit) of `bytes`, continuing from `h` (start from [`FNV_OFFSET`]).
pub fn fnv1a(mut h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a's starting value.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over each entry's time and `Debug` text: stable across runs and
/// platforms, which is all a determinism check needs.
pub fn digest(entries: &[(Duration, Ev)]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut line = String::new();
    for (at, ev) in entries {
        line.clear();
        let _ = writeln!(line, "{}:{ev:?}", at.as_nanos());
        h = fnv1a(h, line.bytes());
    }
    h
}

/// `at` as seconds with millisecond precision, for reports.
pub fn secs(at: Duration) -> String {
    format!("{:.3}s", at.as_secs_f64())
}
