//! etcd's Maintenance and Cluster services, as far as clients and etcdctl need them.

use std::pin::Pin;

use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbClusterService, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse, PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest,
    PbSnapshotResponse, PbStatusRequest, PbStatusResponse,
};
use tonic::{Request, Response, Status};

use super::{unimplemented, MemEtcd, VERSION};

type SnapshotStream = Pin<Box<dyn futures_util::Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbMaintenanceService for MemEtcd {
    async fn alarm(&self, request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        // No alarm is ever raised (no quota, no corruption check): GET lists none.
        if request.get_ref().action != 0 {
            return Err(unimplemented("Maintenance.Alarm ACTIVATE/DEACTIVATE"));
        }
        Ok(Response::new(PbAlarmResponse {
            header: Some(self.header()),
            alarms: Vec::new(),
        }))
    }

    async fn status(&self, _: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let header = self.header();
        let revision = header.revision as u64;
        Ok(Response::new(PbStatusResponse {
            header: Some(header),
            version: VERSION.into(),
            leader: self.member_id(),
            raft_index: revision,
            raft_term: self.options.term,
            raft_applied_index: revision,
            ..Default::default()
        }))
    }

    async fn defragment(&self, _: Request<PbDefragmentRequest>) -> Result<Response<PbDefragmentResponse>, Status> {
        // Nothing to defragment in memory.
        Ok(Response::new(PbDefragmentResponse {
            header: Some(self.header()),
        }))
    }

    async fn hash(&self, _: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        Err(unimplemented("Maintenance.Hash"))
    }

    async fn hash_kv(&self, _: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        Err(unimplemented("Maintenance.HashKV"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _: Request<PbSnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        Err(unimplemented("Maintenance.Snapshot"))
    }

    async fn move_leader(&self, _: Request<PbMoveLeaderRequest>) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(unimplemented("Maintenance.MoveLeader"))
    }

    async fn downgrade(&self, _: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(unimplemented("Maintenance.Downgrade"))
    }
}

#[tonic::async_trait]
impl PbClusterService for MemEtcd {
    async fn member_add(&self, _: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(unimplemented("Cluster.MemberAdd (a single member)"))
    }

    async fn member_remove(
        &self,
        _: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(unimplemented("Cluster.MemberRemove (a single member)"))
    }

    async fn member_update(
        &self,
        _: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(unimplemented("Cluster.MemberUpdate (a single member)"))
    }

    async fn member_list(&self, _: Request<PbMemberListRequest>) -> Result<Response<PbMemberListResponse>, Status> {
        Ok(Response::new(PbMemberListResponse {
            header: Some(self.header()),
            members: vec![PbMember {
                id: self.member_id(),
                name: self.options.name.clone(),
                peer_ur_ls: Vec::new(),
                client_ur_ls: self.options.client_urls.clone(),
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(unimplemented("Cluster.MemberPromote (a single member)"))
    }
}
