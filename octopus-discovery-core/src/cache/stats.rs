//! What a discovery counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a discovery keeps; read them with [`WatchDiscovery::stats`](crate::WatchDiscovery::stats).
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    resyncs: AtomicU64,
    reconnects: AtomicU64,
    decode_errors: AtomicU64,
}

impl DiscoveryStats {
    /// Full re-reads after a compaction or a lost history.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
    /// Watches re-opened after the connection was lost.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
    /// Values skipped because they did not decode.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// Counts a reconnect of a watch.
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a resync (a read of everything again).
    pub(crate) fn resynced(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a value of `service` that did not decode, here and in the metrics.
    pub(crate) fn decode_failed(&self, service: &str) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::decode_error(service);
    }
}
