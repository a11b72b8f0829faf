//! etcd's Lease service over the store.

use std::pin::Pin;
use std::time::Duration;

use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest,
    PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use futures_util::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{status, AuditEvent, MemEtcd};

type KeepAliveStream = Pin<Box<dyn futures_util::Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send>>;

/// etcd's largest lease TTL, in seconds, as a grant request gives its TTL.
const MAX_TTL: i64 = octopus_discovery_core::MAX_LEASE_TTL.as_secs() as i64;

#[tonic::async_trait]
impl PbLeaseService for MemEtcd {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        if req.ttl > MAX_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        // etcd raises a TTL below its minimum (about 1.5 s on default settings); this
        // server's minimum is 1 s.
        let ttl = Duration::from_secs(req.ttl.max(1) as u64);
        let (header, id, ttl) = self.store().grant(req.id, ttl).map_err(status)?;
        self.audit(AuditEvent::Grant { lease: id, ttl, peer });
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(self.header_at(header.revision)),
            id,
            ttl: ttl.as_secs() as i64,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let lease = request.get_ref().id;
        let header = self.store().revoke(lease).map_err(status)?;
        self.audit(AuditEvent::Revoke {
            lease,
            revision: header.revision,
            peer: request.remote_addr(),
        });
        Ok(Response::new(PbLeaseRevokeResponse {
            header: Some(self.header_at(header.revision)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let server = self.clone();
        let peer = request.remote_addr();
        let responses = request.into_inner().map(move |req| {
            let req = req?;
            // An unknown or expired lease answers TTL 0, as etcd does.
            let ttl = server.store().keep_alive(req.id).map_or(0, |ttl| ttl.as_secs() as i64);
            server.audit(AuditEvent::KeepAlive {
                lease: req.id,
                ttl,
                peer,
            });
            Ok(PbLeaseKeepAliveResponse {
                header: Some(server.header()),
                id: req.id,
                ttl,
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let resp = match self.store().time_to_live(req.id) {
            Ok(info) => PbLeaseTimeToLiveResponse {
                header: Some(self.header()),
                id: req.id,
                // etcd rounds the time left down to whole seconds.
                ttl: info.remaining.as_secs() as i64,
                granted_ttl: info.granted.as_secs() as i64,
                keys: if req.keys { info.keys } else { Vec::new() },
            },
            // etcd answers an unknown lease with TTL -1.
            Err(_) => PbLeaseTimeToLiveResponse {
                header: Some(self.header()),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, _: Request<PbLeaseLeasesRequest>) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(self.header()),
            leases: self
                .store()
                .leases()
                .into_iter()
                .map(|id| PbLeaseStatus { id })
                .collect(),
        }))
    }
}
