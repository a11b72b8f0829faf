//! etcd's Lease service: grant and revoke (keepalives: [`crate::lease_mux`]).

use std::time::Duration;

use etcd_client::Client;
use octopus_discovery_core::{Lease, LeaseId, LeaseTtl, Result};

use crate::call::{bounded, within};
use crate::convert::etcd_err;

/// Grants a lease of `ttl`, rounded up to whole seconds (etcd's grain).
pub(crate) async fn grant(client: &Client, ttl: Duration, limit: Duration) -> Result<Lease> {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let mut lease = client.lease_client();
    let resp = within(limit, "lease grant", lease.grant(secs.max(1) as i64, None)).await?;
    Ok(Lease {
        id: LeaseId(resp.id()),
        ttl: Duration::from_secs(resp.ttl().max(1) as u64),
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
        Ok(resp) => Ok(LeaseTtl::Remaining(Duration::from_secs(resp.ttl() as u64))),
        Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(LeaseTtl::Gone),
        Err(e) => Err(etcd_err("lease time-to-live", e)),
    }
}
