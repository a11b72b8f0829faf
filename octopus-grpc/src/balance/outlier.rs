//! Outlier detection and ejection for a balanced channel: a failed connection
//! ejects its instance; with [`OutlierDetection`](super::OutlierDetection), so do failing responses.

use std::sync::atomic::Ordering;

use super::channel::BalancedChannel;
use super::endpoints::{nanos_since, Backend};

impl BalancedChannel {
    /// Reads a response's gRPC status (in its headers when the call failed at
    /// once, as a unary error does: a trailers-only response) for outlier
    /// detection; a response without one counts as a success.
    pub(super) fn observe(&self, backend: &Backend, headers: &http::HeaderMap) {
        let code = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(tonic::Code::from_i32)
            .unwrap_or(tonic::Code::Ok);
        let detection = self.inner.outlier.as_ref().and_then(|d| {
            d.codes
                .contains(&code)
                .then_some((d.consecutive.max(1), d.max_ejected_share))
        });
        let Some((consecutive, max_ejected_share)) = detection else {
            // The connection answered and the status does not count: the
            // ejection backoff starts over.
            backend.failures.store(0, Ordering::Relaxed);
            backend.status_failures.store(0, Ordering::Relaxed);
            return;
        };
        let failed = backend.status_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failed < consecutive {
            return;
        }
        backend.status_failures.store(0, Ordering::Relaxed);
        let (ejected, n) = (self.ejected().len(), self.snapshot().all.len());
        if (ejected + 1) as f64 > max_ejected_share * n as f64 {
            tracing::warn!(service = %self.inner.endpoints.service, endpoint = %backend.instance.endpoint(), ejected, "not ejecting a failing instance: the ejected share is at its cap");
            return;
        }
        self.eject(backend);
    }

    /// The instances ejected now (after failed connections or, with outlier
    /// detection, failing responses).
    pub fn ejected(&self) -> Vec<String> {
        let mut now = None;
        self.snapshot()
            .all
            .iter()
            .filter(|b| !b.available(&mut now, self.inner.endpoints.epoch))
            .map(|b| b.instance.id.clone())
            .collect()
    }

    pub(super) fn eject(&self, backend: &Backend) {
        let failures = backend.failures.fetch_add(1, Ordering::Relaxed);
        let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
        let period = self.inner.eject_base.saturating_mul(factor).min(self.inner.eject_cap);
        let until = nanos_since(self.inner.endpoints.epoch)
            .saturating_add(u64::try_from(period.as_nanos()).unwrap_or(u64::MAX));
        backend.ejected_until.store(until, Ordering::Relaxed);
        backend.ejections.increment(1);
        tracing::warn!(service = %self.inner.endpoints.service, endpoint = %backend.instance.endpoint(), ?period, "ejected an unreachable instance");
    }
}
