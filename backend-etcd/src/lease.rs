//! etcd's Lease service: grant, keep alive, revoke.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, LeaseKeepAliveStream};
use octopus_core::{Error, Lease, LeaseId, LeaseKeeper, Result};

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

/// Opens a keepalive stream for `lease`.
pub(crate) async fn keeper(client: &Client, lease: LeaseId, limit: Duration) -> Result<Box<dyn LeaseKeeper>> {
    let mut client = client.lease_client();
    // etcd-client opens the stream with one keepalive and reads its answer: a
    // lease that is gone shows here, and must not look like a network error.
    let (keeper, stream) = match bounded(limit, "lease keepalive", client.keep_alive(lease.0)).await? {
        Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => {
            return Err(Error::LeaseNotFound(lease));
        }
        r => r.map_err(|e| etcd_err("lease keepalive", e))?,
    };
    Ok(Box::new(EtcdKeeper { keeper, stream, limit }))
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

struct EtcdKeeper {
    keeper: etcd_client::LeaseKeeper,
    stream: LeaseKeepAliveStream,
    limit: Duration,
}

#[async_trait]
impl LeaseKeeper for EtcdKeeper {
    async fn keep_alive(&mut self) -> Result<Option<Duration>> {
        let (keeper, stream) = (&mut self.keeper, &mut self.stream);
        let answer = within(self.limit, "keepalive", async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await?;
        match answer {
            Some(resp) if resp.ttl() > 0 => Ok(Some(Duration::from_secs(resp.ttl() as u64))),
            Some(_) => Ok(None),
            None => Err(Error::backend("keepalive", "etcd ended the keepalive stream")),
        }
    }
}
