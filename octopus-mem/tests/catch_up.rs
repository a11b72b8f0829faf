//! A watch that breaks in the middle of catching up resumes after the last
//! event it delivered, not after its response's header revision. etcd heads a
//! catching-up watch's batches with the store's revision while older events
//! may still follow (more than 1,000 revisions behind, they come in several
//! batches); a cache that resumed past that revision would never see them.
//! The backend here plays that: its first watch delivers the first of two
//! changes under the second's revision, then breaks.

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use octopus_discovery_core::fencing::Created;
use octopus_discovery_core::{
    Discovery, Error, Event, JsonLayout, KeyLayout, KvBackend, LeaseId, Result, Revision, ServiceInstance,
    WatchDiscovery, WatchMessage, WatchStart, WatchStream,
};
use octopus_mem::{MemBackend, Store};
use support::{Hooked, WatchHook};

/// Doctors the first watch opened; the others pass.
#[derive(Default)]
struct FirstBatchOnly {
    doctored: AtomicBool,
}

/// Collects two events, delivers the first under the second's revision, then breaks.
struct Doctored {
    inner: WatchStream,
    seen: Vec<Event>,
    header: Revision,
    sent: bool,
}

impl Stream for Doctored {
    type Item = Result<WatchMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.sent {
            return Poll::Ready(Some(Err(Error::closed("watch stream (broken by the test)"))));
        }
        while self.seen.len() < 2 {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(WatchMessage::Events { revision, events }))) => {
                    self.header = self.header.max(revision);
                    self.seen.extend(events);
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(other) => return Poll::Ready(other),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.sent = true;
        let first = self.seen[0].clone();
        let header = self.header;
        Poll::Ready(Some(Ok(WatchMessage::Events {
            revision: header,
            events: vec![first],
        })))
    }
}

impl WatchHook for FirstBatchOnly {
    fn opened(self: Arc<Self>, opened: WatchStart) -> WatchStart {
        match opened {
            WatchStart::Stream(inner) if !self.doctored.swap(true, Ordering::SeqCst) => {
                WatchStart::Stream(Box::pin(Doctored {
                    inner,
                    seen: Vec::new(),
                    header: 0,
                    sent: false,
                }))
            }
            other => other,
        }
    }
}

#[tokio::test]
async fn a_watch_broken_while_catching_up_resumes_after_its_last_event() {
    let store = Store::new();
    let backend = Arc::new(Hooked {
        inner: MemBackend::new(store.clone()),
        hook: Arc::new(FirstBatchOnly::default()),
    });
    let layout = Arc::new(JsonLayout::default());
    let discovery = WatchDiscovery::new(backend.clone(), layout.clone());
    let mut watch = discovery.watch("svc").await.unwrap();
    let first = watch.next().await.expect("a first view");
    assert!(first.instances.is_empty());

    for id in ["a", "b"] {
        let instance = ServiceInstance::new("svc", id, "127.0.0.1", 1).unwrap();
        let key = layout.key(&instance, LeaseId::NONE);
        let created = backend
            .create(&key, layout.encode(&instance).unwrap(), LeaseId::NONE)
            .await
            .unwrap();
        assert!(matches!(created, Created::Written(_)), "{created:?}");
    }
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let snapshot = watch.next().await.expect("the watch goes on");
            if snapshot.instances.len() == 2 {
                return snapshot;
            }
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "the change after the delivered one was lost: the watch resumed past it"
    );
}
