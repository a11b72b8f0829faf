//! The one request-timeout helper: every request to etcd runs under a limit, and
//! an elapsed limit is [`ErrorKind::Timeout`](octopus_discovery_core::ErrorKind::Timeout) naming the operation.

use std::future::Future;
use std::time::Duration;

use octopus_discovery_core::{Error, Result};
use tokio::time::timeout;

use crate::convert::etcd_err;

/// `f` under `limit`; an elapsed limit is a timeout naming `op`. For calls whose
/// etcd errors need their own reading (a lease not found, a compacted revision).
pub(crate) async fn bounded<T>(limit: Duration, op: &'static str, f: impl Future<Output = T>) -> Result<T> {
    timeout(limit, f).await.map_err(|_| Error::timeout(op, limit))
}

/// `f` under `limit`: its error or a timeout, both naming `op`.
pub(crate) async fn within<T>(
    limit: Duration,
    op: &'static str,
    f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    bounded(limit, op, f).await?.map_err(|e| etcd_err(op, e))
}
