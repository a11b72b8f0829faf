//! Cases on a [`KvBackend`] itself, below the registry: what every backend
//! must give the callers that read its watches directly.

use std::time::Duration;

use futures_util::StreamExt;
use octopus_discovery_core::fencing::Created;
use octopus_discovery_core::{Event, EventKind, KvBackend, LeaseId, WatchMessage, WatchStart};

/// The first `n` events of a watch, in order.
async fn events(start: WatchStart, n: usize) -> Vec<Event> {
    let WatchStart::Stream(mut stream) = start else {
        panic!("the watch's start was compacted")
    };
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the watch sends its events")
            .expect("the watch stays open")
            .expect("no watch error");
        if let WatchMessage::Events { events, .. } = message {
            out.extend(events);
        }
    }
    out
}

/// `watch` carries no previous values; `watch_with_prev` carries the value a
/// put replaced and the one a delete removed (none for a key's creation).
pub async fn previous_values_only_when_asked(backend: &dyn KvBackend) {
    let start = backend.header().await.expect("header").revision + 1;
    let Created::Written(first) = backend
        .create("/prev/a", b"1".to_vec(), LeaseId::NONE)
        .await
        .expect("create")
    else {
        panic!("/prev/a existed before the test")
    };
    backend
        .put_if_unchanged("/prev/a", b"2".to_vec(), LeaseId::NONE, first)
        .await
        .expect("put")
        .expect("unchanged since the create");
    assert!(backend.delete("/prev/a").await.expect("delete"));

    let plain = events(backend.watch("/prev/", true, start).await.expect("watch"), 3).await;
    let kinds: Vec<EventKind> = plain.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Put, EventKind::Put, EventKind::Delete]);
    assert!(
        plain.iter().all(|e| e.prev.is_none()),
        "watch asked for no previous values: {plain:?}"
    );

    let with = events(
        backend
            .watch_with_prev("/prev/", true, start)
            .await
            .expect("watch_with_prev"),
        3,
    )
    .await;
    let prev: Vec<Option<&[u8]>> = with
        .iter()
        .map(|e| e.prev.as_ref().map(|p| p.value.as_slice()))
        .collect();
    assert_eq!(prev, [None, Some(&b"1"[..]), Some(&b"2"[..])], "{with:?}");
}
