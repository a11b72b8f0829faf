//! Conversions from etcd-client's types to Octopus's, in one place: key-values,
//! response headers, watch responses and errors.

use etcd_client::{EventType, WatchResponse};
use octopus_discovery_core::{Error, Event, EventKind, Header, KeyValue, LeaseId, Result, WatchMessage};

/// An etcd-client error as Octopus's backend error, naming the operation. The
/// cause stays an error value: a gRPC status as [`EtcdStatus`] (its code kept), a
/// transport error as tonic's own (its chain kept); others as etcd-client's.
pub(crate) fn etcd_err(op: &'static str, e: etcd_client::Error) -> Error {
    match e {
        etcd_client::Error::GRpcStatus(status) => Error::backend(op, EtcdStatus(status)),
        etcd_client::Error::TransportError(e) => Error::backend(op, e),
        etcd_client::Error::IoError(e) => Error::backend(op, e),
        other => Error::backend(op, other),
    }
}

/// A gRPC status that etcd (or the connection to it) answered, as an error
/// whose message is one sentence and whose [`code`](EtcdStatus::code) and
/// source (the transport error beneath, if any) are kept.
#[derive(Debug)]
pub struct EtcdStatus(tonic::Status);

impl EtcdStatus {
    /// The gRPC code, e.g. `Unavailable` when etcd could not be reached.
    pub fn code(&self) -> tonic::Code {
        self.0.code()
    }

    /// etcd's message, e.g. `etcdserver: requested lease not found`.
    pub fn message(&self) -> &str {
        self.0.message()
    }
}

impl std::fmt::Display for EtcdStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd answered {:?}", self.0.code())?;
        if !self.0.message().is_empty() {
            write!(f, ": {}", self.0.message())?;
        }
        Ok(())
    }
}

impl std::error::Error for EtcdStatus {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
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
            return Ok(WatchMessage::Compacted {
                compacted: resp.compact_revision(),
            });
        }
        return Err(Error::backend_message(format!(
            "etcd cancelled the watch: {}",
            resp.cancel_reason()
        )));
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
