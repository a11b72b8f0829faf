//! Conversions from etcd-client's types to Octopus's, in one place: key-values,
//! response headers, watch responses and errors.

use etcd_client::{EventType, WatchResponse};
use octopus_discovery_core::{Error, Event, EventKind, Header, KeyValue, LeaseId, Result, WatchMessage};

/// An etcd-client error as Octopus's backend error, naming the operation.
pub(crate) fn etcd_err(op: &'static str, e: etcd_client::Error) -> Error {
    Error::backend(op, e)
}

/// A key-value from etcd-client, copied ([`into_kv`] takes it over).
pub(crate) fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    into_kv(kv.clone())
}

/// A key-value from etcd-client, taking its key and value over ([`convert_kv`] copies them).
pub(crate) fn into_kv(kv: etcd_client::KeyValue) -> KeyValue {
    let (create_revision, mod_revision, version, lease) =
        (kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease());
    let (key, value) = kv.into_key_value();
    KeyValue {
        key,
        value,
        create_revision,
        mod_revision,
        version,
        lease: LeaseId(lease),
    }
}

/// A response header (zero when etcd sent none).
pub(crate) fn header(h: Option<&etcd_client::ResponseHeader>) -> Header {
    Header {
        cluster_id: h.map_or(0, |h| h.cluster_id()),
        revision: h.map_or(0, |h| h.revision()),
    }
}

/// One watch response: events, progress, or the end of the watch.
pub(crate) fn convert(resp: WatchResponse) -> Result<WatchMessage> {
    let revision = resp.header().map_or(0, |h| h.revision());
    if resp.canceled() {
        if resp.compact_revision() > 0 {
            return Err(Error::Compacted {
                requested: 0,
                compacted: resp.compact_revision(),
            });
        }
        return Err(Error::backend(
            "watch",
            format!("etcd cancelled the watch: {}", resp.cancel_reason()),
        ));
    }
    if resp.events().is_empty() {
        return Ok(WatchMessage::Progress { revision });
    }
    let events = resp
        .events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            Some(Event {
                kind: match ev.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                },
                kv: convert_kv(kv),
                prev: ev.prev_kv().map(convert_kv),
            })
        })
        .collect::<Vec<Event>>();
    Ok(WatchMessage::Events { revision, events })
}
