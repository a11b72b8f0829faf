//! The watch hub: a registry's registrations of one service share one backend
//! watch on the in-memory store, and a deleted key is still put back, including
//! one deleted before its registration joined the hub.

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use octopus_discovery_core::{
    BackoffPolicy, JsonLayout, LeaseId, LeaseRegistry, RegisterOptions, Registration, Registry, Result,
    ServiceInstance, WatchMessage, WatchStart, WatchStream,
};
use octopus_mem::{KeyRange, MemBackend, Store};
use support::{Hooked, WatchHook};
use tokio::time::sleep;

/// What the in-memory backend's watches did: those opened, those live, and the
/// keys of the events they delivered.
#[derive(Default)]
struct Counted {
    live: AtomicUsize,
    opened: Mutex<Vec<(String, bool)>>,
    delivered: Mutex<Vec<Vec<u8>>>,
}

struct CountedStream {
    inner: WatchStream,
    counted: Arc<Counted>,
}

impl Stream for CountedStream {
    type Item = Result<WatchMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(WatchMessage::Events { events, .. }))) = &polled {
            let mut delivered = self.counted.delivered.lock().unwrap();
            delivered.extend(events.iter().map(|e| e.kv.key.clone()));
        }
        polled
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.counted.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchHook for Counted {
    fn opening(&self, key: &str, prefix: bool) {
        self.opened.lock().unwrap().push((key.to_owned(), prefix));
    }

    fn opened(self: Arc<Self>, opened: WatchStart) -> WatchStart {
        match opened {
            WatchStart::Stream(inner) => {
                self.live.fetch_add(1, Ordering::SeqCst);
                WatchStart::Stream(Box::pin(CountedStream { inner, counted: self }))
            }
            compacted => compacted,
        }
    }
}

fn counting(store: &Store) -> (LeaseRegistry<Hooked<Counted>>, Arc<Counted>) {
    let counted = Arc::new(Counted::default());
    let backend = Hooked {
        inner: MemBackend::new(store.clone()),
        hook: counted.clone(),
    };
    (
        LeaseRegistry::new(Arc::new(backend), Arc::new(JsonLayout::default())),
        counted,
    )
}

fn opts() -> RegisterOptions {
    RegisterOptions::default()
        .ttl(Duration::from_secs(3))
        .retry(BackoffPolicy::new(Duration::from_millis(50), Duration::from_millis(500)).unwrap())
}

fn key(id: &str) -> String {
    format!("/octopus/services/svc/{id}")
}

async fn register(registry: &impl Registry, id: &str) -> Registration {
    let instance = ServiceInstance::new("svc", id, "127.0.0.1", 1).unwrap();
    registry.register(instance, opts()).await.unwrap()
}

/// Our key's lease in the store, if the key is there.
fn holder(store: &Store, id: &str) -> Option<LeaseId> {
    let (_, kvs, _) = store.range(&KeyRange::key(key(id)), 0, 0).unwrap();
    kvs.first().map(|kv| kv.lease)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hundred_registrations_share_one_watch_and_each_key_is_put_back() {
    let store = Store::new();
    let (registry, counted) = counting(&store);
    let mut regs = Vec::new();
    for i in 0..100 {
        regs.push(register(&registry, &format!("i{i}")).await);
    }
    // Past every registration's first keepalive (TTL/3, on a 500 ms tick): all joined.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        counted.live.load(Ordering::SeqCst),
        1,
        "one live watch for 100 registrations"
    );
    let opened = counted.opened.lock().unwrap().clone();
    assert!(opened.len() <= 3, "watches opened: {opened:?}");
    assert_eq!(opened.last(), Some(&("/octopus/services/svc/".to_owned(), true)));

    for i in [0, 41, 99] {
        let id = format!("i{i}");
        let lease = regs[i].registered().await.unwrap();
        store.delete(&KeyRange::key(key(&id))).unwrap();
        sleep(Duration::from_millis(100)).await;
        assert_eq!(holder(&store, &id), Some(lease), "{id} put back under its lease");
    }
    assert_eq!(counted.live.load(Ordering::SeqCst), 1);
    assert!(regs.iter().all(|r| r.current().is_registered()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_one_registration_the_hub_watches_its_key_alone() {
    let store = Store::new();
    let (registry, counted) = counting(&store);
    let a = register(&registry, "a").await;
    // Another process's instance of the same service, and its updates.
    let other = MemBackend::new(store.clone()).registry();
    let b = register(&other, "b").await;
    sleep(Duration::from_secs(2)).await;
    for port in 2..5 {
        b.update(ServiceInstance::new("svc", "b", "127.0.0.1", port).unwrap())
            .await
            .unwrap();
    }
    store.delete(&KeyRange::key(key("a"))).unwrap();
    sleep(Duration::from_secs(2)).await;
    assert_eq!(holder(&store, "a"), Some(a.registered().await.unwrap()), "a put back");
    assert_eq!(
        *counted.opened.lock().unwrap(),
        [(key("a"), false)],
        "one watch, on a's key"
    );
    let delivered = counted.delivered.lock().unwrap().clone();
    assert!(!delivered.is_empty(), "a's own events are delivered");
    assert!(
        delivered.iter().all(|k| *k == key("a").into_bytes()),
        "only a's key: {delivered:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_key_deleted_between_its_write_and_its_join_is_put_back() {
    let store = Store::new();
    let (registry, counted) = counting(&store);
    let _a1 = register(&registry, "a1").await;
    let _a2 = register(&registry, "a2").await;
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        counted.live.load(Ordering::SeqCst),
        1,
        "a1 and a2 share the prefix watch"
    );
    // b writes its key; it is deleted before b's first keepalive, when b joins.
    // The hub routes that deletion to nobody, and b joins behind the hub's position.
    let b = register(&registry, "b").await;
    store.delete(&KeyRange::key(key("b"))).unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(holder(&store, "b"), None, "not yet joined, so not yet healed");
    sleep(Duration::from_secs(2)).await;
    assert_eq!(holder(&store, "b"), Some(b.registered().await.unwrap()), "b put back");
    assert_eq!(counted.live.load(Ordering::SeqCst), 1);
}
