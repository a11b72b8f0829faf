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
    from_pb(kv.0)
}

/// A response header (zero when etcd sent none).
pub(crate) fn header(h: Option<&etcd_client::ResponseHeader>) -> Header {
    Header {
        cluster_id: h.map_or(0, |h| h.cluster_id()),
        revision: h.map_or(0, |h| h.revision()),
    }
}

/// One watch response: events, progress, or the end of the watch. The events'
/// keys and values are taken over, not copied.
pub(crate) fn convert(mut resp: WatchResponse) -> Result<WatchMessage> {
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
    // Collected from the response's own vector: the two event types have one
    // size, so the standard library reuses its allocation.
    let events = std::mem::take(&mut resp.0.events)
        .into_iter()
        .filter_map(|ev| {
            // etcd-client's `event_type()` panics on a type it does not know: a
            // watch that gets one ends (its owner watches again) instead.
            let kind = match ev.r#type {
                t if t == EventType::Put as i32 => EventKind::Put,
                t if t == EventType::Delete as i32 => EventKind::Delete,
                other => {
                    return Some(Err(Error::backend_message(format!(
                        "etcd sent a watch event of unknown type {other} (known: 0, a put; 1, a delete)"
                    ))))
                }
            };
            Some(Ok(Event {
                kind,
                kv: from_pb(ev.kv?),
                prev: ev.prev_kv.map(from_pb),
            }))
        })
        .collect::<Result<Vec<Event>>>()?;
    Ok(WatchMessage::Events { revision, events })
}

/// A key-value as it came off the wire, taken over.
fn from_pb(kv: etcd_client::proto::PbKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: LeaseId(kv.lease),
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{PbEvent, PbKeyValue, PbResponseHeader, PbWatchResponse};

    use super::*;

    fn response(types: &[i32]) -> WatchResponse {
        let kv = |revision| PbKeyValue {
            key: b"/s/a".to_vec(),
            value: b"v".to_vec(),
            mod_revision: revision,
            lease: 5,
            ..Default::default()
        };
        WatchResponse(PbWatchResponse {
            header: Some(PbResponseHeader {
                revision: 12,
                ..Default::default()
            }),
            watch_id: 7,
            events: types
                .iter()
                .zip(11..)
                .map(|(&t, revision)| PbEvent {
                    r#type: t,
                    kv: Some(kv(revision)),
                    prev_kv: (t == 1).then(|| kv(revision - 1)),
                })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn events_keep_their_kind_key_value_and_revisions_and_an_unknown_kind_ends_the_watch() {
        let Ok(WatchMessage::Events { revision, events }) = convert(response(&[0, 1])) else {
            panic!("events")
        };
        assert_eq!(revision, 12);
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.kind, &e.kv.key[..], &e.kv.value[..], e.kv.mod_revision, e.kv.lease))
            .collect();
        let (key, value) = (&b"/s/a"[..], &b"v"[..]);
        assert_eq!(
            seen,
            [
                (EventKind::Put, key, value, 11, LeaseId(5)),
                (EventKind::Delete, key, value, 12, LeaseId(5))
            ]
        );
        assert_eq!(events[1].prev.as_ref().map(|p| p.mod_revision), Some(11));
        let err = convert(response(&[0, 2])).unwrap_err().to_string();
        assert!(err.contains("unknown type 2"), "{err}");
    }
}
