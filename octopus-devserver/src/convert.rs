//! Conversions between the store's types and etcd's protobuf types.

use etcd_client::proto::{PbEvent, PbKeyValue};
use octopus_discovery_core::{Event, EventKind, KeyValue};
use octopus_mem::KeyRange;

pub(super) fn kv(kv: &KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key.clone(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.clone(),
        lease: kv.lease.0,
    }
}

/// etcd's event types: 0 = PUT, 1 = DELETE.
pub(super) fn event(ev: &Event) -> PbEvent {
    PbEvent {
        r#type: match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        },
        kv: Some(kv(&ev.kv)),
        prev_kv: ev.prev.as_ref().map(kv),
    }
}

/// A request's `key`/`range_end` pair; an empty key is etcd's "key is not provided".
pub(super) fn range(key: Vec<u8>, range_end: Vec<u8>) -> Result<KeyRange, tonic::Status> {
    if key.is_empty() && range_end != [0] {
        return Err(tonic::Status::invalid_argument("etcdserver: key is not provided"));
    }
    Ok(KeyRange { key, range_end })
}
