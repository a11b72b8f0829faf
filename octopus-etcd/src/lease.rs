//! etcd's Lease service: grant and revoke (keepalives: [`crate::lease_mux`]).

use std::time::Duration;

use etcd_client::Client;
use octopus_discovery_core::{Lease, LeaseId, LeaseTtl, Result};

use crate::call::{bounded, within};
use crate::convert::etcd_err;

/// A TTL in seconds as the server answered it, as a duration: at least `floor`
/// seconds, and at most etcd's maximum, since a misbehaving server's answer (up
/// to `i64::MAX` seconds) would overflow the deadlines computed from it.
fn server_ttl(secs: i64, floor: i64) -> Duration {
    let max = octopus_discovery_core::MAX_LEASE_TTL.as_secs() as i64;
    Duration::from_secs(secs.clamp(floor, max) as u64)
}

/// Grants a lease of `ttl`, rounded up to whole seconds (etcd's grain).
pub(crate) async fn grant(client: &Client, ttl: Duration, limit: Duration) -> Result<Lease> {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let mut lease = client.lease_client();
    let resp = within(limit, "lease grant", lease.grant(secs.max(1) as i64, None)).await?;
    Ok(Lease {
        id: LeaseId(resp.id()),
        ttl: server_ttl(resp.ttl(), 1),
    })
}

/// Revokes `lease`; a lease already gone is not an error.
pub(crate) async fn revoke(client: &Client, lease: LeaseId, limit: Duration) -> Result<()> {
    let mut client = client.lease_client();
    match bounded(limit, "lease revoke", client.revoke(lease.0)).await? {
        Ok(_) => Ok(()),
        Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(etcd_err("lease revoke", e)),
    }
}

/// The time left on `lease`, without refreshing it (etcd answers TTL -1 for a
/// lease that is gone).
pub(crate) async fn time_to_live(client: &Client, lease: LeaseId, limit: Duration) -> Result<LeaseTtl> {
    let mut client = client.lease_client();
    match bounded(limit, "lease time-to-live", client.time_to_live(lease.0, None)).await? {
        Ok(resp) if resp.ttl() < 0 => Ok(LeaseTtl::Gone),
        Ok(resp) => Ok(LeaseTtl::Remaining(server_ttl(resp.ttl(), 0))),
        Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(LeaseTtl::Gone),
        Err(e) => Err(etcd_err("lease time-to-live", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_ttl_is_bounded_by_etcds_maximum() {
        let max = Duration::from_secs(9_000_000_000);
        assert_eq!(server_ttl(10, 1), Duration::from_secs(10));
        assert_eq!(server_ttl(0, 1), Duration::from_secs(1));
        assert_eq!(server_ttl(-1, 1), Duration::from_secs(1));
        assert_eq!(server_ttl(0, 0), Duration::ZERO);
        assert_eq!(server_ttl(9_000_000_000, 1), max);
        // A misbehaving server's TTL: the deadline computed from it must not overflow.
        for secs in [9_000_000_001, i64::MAX / 2, i64::MAX] {
            let ttl = server_ttl(secs, 1);
            assert_eq!(ttl, max);
            assert!(tokio::time::Instant::now().checked_add(ttl).is_some());
        }
    }
}
