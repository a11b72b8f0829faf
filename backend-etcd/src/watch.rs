//! etcd watch responses as Octopus watch messages.

use etcd_client::{EventType, WatchResponse, WatchStream as EtcdWatchStream};
use octopus_core::{Error, Event, EventKind, Result, WatchMessage, WatchStream};

use crate::backend::{convert_kv, etcd_err};

/// Turns an etcd watch (already created) into a [`WatchStream`].
pub(crate) fn stream(watch: EtcdWatchStream) -> WatchStream {
    Box::pin(futures_util::stream::unfold(Some(watch), |state| async move {
        let mut watch = state?;
        match watch.message().await {
            Ok(Some(resp)) => {
                let item = convert(resp);
                let end = item.is_err();
                Some((item, (!end).then_some(watch)))
            }
            Ok(None) => None,
            Err(e) => Some((Err(etcd_err("watch", e)), None)),
        }
    }))
}

/// One response: events, progress, or the end of the watch.
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
