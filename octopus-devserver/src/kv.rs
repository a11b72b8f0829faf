//! etcd's KV service over the store.

use std::net::SocketAddr;
use std::pin::Pin;

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbCompare, PbCompareTarget, PbDeleteRequest, PbDeleteResponse,
    PbKvService, PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbResponseOp,
    PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnResponse,
};
use octopus_discovery_core::KeyValue;
use octopus_mem::{Compare, CompareOp, CompareTarget, KeyRange, Op, OpResult};
use tonic::{Request, Response, Status};

use super::{convert, status, unimplemented, AuditEvent, MemEtcd};

type RangeStream = Pin<Box<dyn futures_util::Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

impl MemEtcd {
    /// Applies a range request's sort, filters, limit and projections to `kvs`.
    fn range_response(&self, mut kvs: Vec<KeyValue>, req: &PbRangeRequest, revision: i64) -> PbRangeResponse {
        // etcd counts the range before its revision filters (and before the limit).
        let count = kvs.len() as i64;
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        // etcd: a sort target other than the key with no order means ascending.
        let order = match (req.sort_order, req.sort_target) {
            (0, 0) => 0,
            (0, _) => 1,
            (o, _) => o,
        };
        if order != 0 {
            kvs.sort_by(|a, b| {
                let ord = match req.sort_target {
                    1 => a.version.cmp(&b.version),
                    2 => a.create_revision.cmp(&b.create_revision),
                    3 => a.mod_revision.cmp(&b.mod_revision),
                    4 => a.value.cmp(&b.value),
                    _ => a.key.cmp(&b.key),
                };
                if order == 2 {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
        // etcd reads no key-value for count_only, so it never says there are more.
        let more = !req.count_only && req.limit > 0 && kvs.len() as i64 > req.limit;
        if more {
            kvs.truncate(req.limit as usize);
        }
        let kvs = if req.count_only {
            Vec::new()
        } else {
            kvs.iter()
                .map(|kv| {
                    let mut pb = convert::kv(kv);
                    if req.keys_only {
                        pb.value.clear();
                    }
                    pb
                })
                .collect()
        };
        PbRangeResponse {
            header: Some(self.header_at(revision)),
            kvs,
            more,
            count,
        }
    }

    fn do_range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, Status> {
        let range = convert::range(req.key.clone(), req.range_end.clone())?;
        let (header, kvs, _) = self.store().range(&range, req.revision, 0).map_err(status)?;
        Ok(self.range_response(kvs, req, header.revision))
    }

    fn do_put(&self, req: PbPutRequest, peer: Option<SocketAddr>) -> Result<PbPutResponse, Status> {
        if req.key.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        if req.ignore_value && !req.value.is_empty() {
            return Err(Status::invalid_argument("etcdserver: value is provided"));
        }
        if req.ignore_lease && req.lease != 0 {
            return Err(Status::invalid_argument("etcdserver: lease is provided"));
        }
        let key = KeyRange::key(req.key.clone());
        loop {
            // ignore_value / ignore_lease keep the current ones: a guarded write on the
            // mod revision read, retried if the key changed in between.
            let mut compare = Vec::new();
            let (mut value, mut lease) = (req.value.clone(), req.lease);
            if req.ignore_value || req.ignore_lease {
                let (_, kvs, _) = self.store().range(&key, 0, 1).map_err(status)?;
                let Some(current) = kvs.into_iter().next() else {
                    return Err(Status::invalid_argument("etcdserver: key not found"));
                };
                if req.ignore_value {
                    value = current.value;
                }
                if req.ignore_lease {
                    lease = current.lease.0;
                }
                compare.push(Compare {
                    range: key.clone(),
                    op: CompareOp::Equal,
                    target: CompareTarget::Mod(current.mod_revision),
                });
            }
            let op = Op::Put {
                key: req.key.clone(),
                value,
                lease,
            };
            let r = self.store().txn(&compare, &[op], &[]).map_err(status)?;
            if !r.succeeded {
                continue;
            }
            self.audit(AuditEvent::Write {
                revision: r.header.revision,
                peer,
            });
            let prev = match r.results.into_iter().next() {
                Some(OpResult::Put(prev)) => prev,
                _ => None,
            };
            return Ok(PbPutResponse {
                header: Some(self.header_at(r.header.revision)),
                prev_kv: prev.filter(|_| req.prev_kv).as_ref().map(convert::kv),
            });
        }
    }

    fn do_delete(&self, req: PbDeleteRequest, peer: Option<SocketAddr>) -> Result<PbDeleteResponse, Status> {
        let range = convert::range(req.key, req.range_end)?;
        let (header, deleted) = self.store().delete(&range).map_err(status)?;
        if !deleted.is_empty() {
            self.audit(AuditEvent::Write {
                revision: header.revision,
                peer,
            });
        }
        Ok(PbDeleteResponse {
            header: Some(self.header_at(header.revision)),
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv {
                deleted.iter().map(convert::kv).collect()
            } else {
                Vec::new()
            },
        })
    }

    fn do_txn(&self, req: PbTxnRequest, peer: Option<SocketAddr>) -> Result<PbTxnResponse, Status> {
        let compare = req.compare.iter().map(compare).collect::<Result<Vec<_>, _>>()?;
        let success = ops(&req.success)?;
        let failure = ops(&req.failure)?;
        let r = self.store().txn(&compare, &success.0, &failure.0).map_err(status)?;
        let wrote = r.results.iter().any(|res| match res {
            OpResult::Put(_) => true,
            OpResult::Delete(deleted) => !deleted.is_empty(),
            OpResult::Range(_) => false,
        });
        if wrote {
            self.audit(AuditEvent::Write {
                revision: r.header.revision,
                peer,
            });
        }
        let requests = if r.succeeded { &success.1 } else { &failure.1 };
        let revision = r.header.revision;
        // etcd answers a read inside a transaction at the revision it started from,
        // or at the new one once an earlier operation of it changed something.
        let before = if wrote { revision - 1 } else { revision };
        let mut changed = false;
        let responses = r
            .results
            .into_iter()
            .zip(requests)
            .map(|(result, request)| {
                let read_at = if changed { revision } else { before };
                changed |= match &result {
                    OpResult::Put(_) => true,
                    OpResult::Delete(deleted) => !deleted.is_empty(),
                    OpResult::Range(_) => false,
                };
                let response = match (result, request) {
                    (OpResult::Range(kvs), PbTxnOpRequest::RequestRange(req)) => {
                        PbTxnOpResponse::ResponseRange(self.range_response(kvs, req, read_at))
                    }
                    (OpResult::Put(prev), PbTxnOpRequest::RequestPut(req)) => {
                        PbTxnOpResponse::ResponsePut(PbPutResponse {
                            header: Some(self.header_at(revision)),
                            prev_kv: prev.filter(|_| req.prev_kv).as_ref().map(convert::kv),
                        })
                    }
                    (OpResult::Delete(deleted), PbTxnOpRequest::RequestDeleteRange(req)) => {
                        PbTxnOpResponse::ResponseDeleteRange(PbDeleteResponse {
                            header: Some(self.header_at(revision)),
                            deleted: deleted.len() as i64,
                            prev_kvs: if req.prev_kv {
                                deleted.iter().map(convert::kv).collect()
                            } else {
                                Vec::new()
                            },
                        })
                    }
                    _ => unreachable!("the store answers each operation with its own kind"),
                };
                PbResponseOp {
                    response: Some(response),
                }
            })
            .collect();
        Ok(PbTxnResponse {
            header: Some(self.header_at(revision)),
            succeeded: r.succeeded,
            responses,
        })
    }
}

fn compare(c: &PbCompare) -> Result<Compare, Status> {
    let range = if c.key.is_empty() {
        return Err(Status::invalid_argument("etcdserver: key is not provided"));
    } else {
        KeyRange {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
        }
    };
    let op = match c.result {
        0 => CompareOp::Equal,
        1 => CompareOp::Greater,
        2 => CompareOp::Less,
        3 => CompareOp::NotEqual,
        other => return Err(Status::invalid_argument(format!("unknown compare result {other}"))),
    };
    let target = match (PbCompareTarget::try_from(c.target), &c.target_union) {
        (Ok(PbCompareTarget::Version), Some(PbTargetUnion::Version(v))) => CompareTarget::Version(*v),
        (Ok(PbCompareTarget::Create), Some(PbTargetUnion::CreateRevision(v))) => CompareTarget::Create(*v),
        (Ok(PbCompareTarget::Mod), Some(PbTargetUnion::ModRevision(v))) => CompareTarget::Mod(*v),
        (Ok(PbCompareTarget::Value), Some(PbTargetUnion::Value(v))) => CompareTarget::Value(v.clone()),
        (Ok(PbCompareTarget::Lease), Some(PbTargetUnion::Lease(v))) => CompareTarget::Lease(*v),
        // A missing target value compares with the type's zero, as protobuf's defaults do in etcd.
        (Ok(PbCompareTarget::Version), None) => CompareTarget::Version(0),
        (Ok(PbCompareTarget::Create), None) => CompareTarget::Create(0),
        (Ok(PbCompareTarget::Mod), None) => CompareTarget::Mod(0),
        (Ok(PbCompareTarget::Value), None) => CompareTarget::Value(Vec::new()),
        (Ok(PbCompareTarget::Lease), None) => CompareTarget::Lease(0),
        _ => {
            return Err(Status::invalid_argument(
                "etcdserver: compare target does not match its value",
            ))
        }
    };
    Ok(Compare { range, op, target })
}

/// The store's operations, and the requests they came from (for the response's options).
fn ops(requests: &[etcd_client::proto::PbTxnRequestOp]) -> Result<(Vec<Op>, Vec<PbTxnOpRequest>), Status> {
    let mut ops = Vec::with_capacity(requests.len());
    let mut reqs = Vec::with_capacity(requests.len());
    for r in requests {
        let Some(req) = &r.request else {
            return Err(Status::invalid_argument("etcdserver: empty txn operation"));
        };
        ops.push(match req {
            PbTxnOpRequest::RequestRange(r) => {
                let range = convert::range(r.key.clone(), r.range_end.clone())?;
                if r.revision > 0 {
                    Op::RangeAt(range, r.revision)
                } else {
                    Op::Range(range)
                }
            }
            PbTxnOpRequest::RequestPut(p) => {
                if p.ignore_value || p.ignore_lease {
                    return Err(unimplemented("ignore_value/ignore_lease inside a txn"));
                }
                if p.key.is_empty() {
                    return Err(Status::invalid_argument("etcdserver: key is not provided"));
                }
                Op::Put {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    lease: p.lease,
                }
            }
            PbTxnOpRequest::RequestDeleteRange(d) => Op::Delete(convert::range(d.key.clone(), d.range_end.clone())?),
            PbTxnOpRequest::RequestTxn(_) => return Err(unimplemented("a nested txn")),
        });
        reqs.push(req.clone());
    }
    Ok((ops, reqs))
}

#[tonic::async_trait]
impl PbKvService for MemEtcd {
    async fn range(&self, request: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        self.do_range(request.get_ref()).map(Response::new)
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(&self, _: Request<PbRangeRequest>) -> Result<Response<RangeStream>, Status> {
        Err(unimplemented("KV.RangeStream"))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let peer = request.remote_addr();
        self.do_put(request.into_inner(), peer).map(Response::new)
    }

    async fn delete_range(&self, request: Request<PbDeleteRequest>) -> Result<Response<PbDeleteResponse>, Status> {
        let peer = request.remote_addr();
        self.do_delete(request.into_inner(), peer).map(Response::new)
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let peer = request.remote_addr();
        self.do_txn(request.into_inner(), peer).map(Response::new)
    }

    async fn compact(&self, request: Request<PbCompactionRequest>) -> Result<Response<PbCompactionResponse>, Status> {
        let header = self.store().compact(request.get_ref().revision).map_err(status)?;
        Ok(Response::new(PbCompactionResponse {
            header: Some(self.header_at(header.revision)),
        }))
    }
}
