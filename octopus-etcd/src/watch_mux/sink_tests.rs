//! The multiplexer's pushed watches, against the fake stream of `tests`: a
//! sink is fed by the routing task itself, ends alone when it refuses a
//! message, and goes with its handle.

use std::time::Duration;

use tokio::time::timeout;

use super::tests::{created, fake, keys, next_op, put};
use super::*;

/// A sink that records what the routing task hands it, and refuses messages
/// once it holds `room`.
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ended: Option<oneshot::Sender<Error>>,
    room: usize,
}

impl WatchSink for Recorder {
    fn message(&mut self, message: WatchMessage) -> bool {
        let mut seen = self.seen.lock().unwrap();
        if seen.len() == self.room {
            return false;
        }
        seen.extend(keys(&message));
        true
    }

    fn end(mut self: Box<Self>, error: Error) {
        let _ = self.ended.take().unwrap().send(error);
    }
}

#[tokio::test(start_paused = true)]
async fn a_pushed_watch_gets_its_messages_from_the_routing_task_and_ends_alone_when_full() {
    let (mux, mut opened) = fake(16);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (ended, mut ended_rx) = oneshot::channel();
    let sink = Recorder {
        seen: seen.clone(),
        ended: Some(ended),
        room: 2,
    };
    let (pushed, o) = tokio::join!(mux.open(Spec::new("/a", false, 1), Some(Box::new(sink))), async {
        let o = opened.recv().await.unwrap();
        o.answers.send(Ok(created(7))).unwrap();
        o
    });
    let Opened::Pushed(handle, _) = pushed.expect("created") else {
        panic!("a watch opened with a sink is pushed")
    };
    let mut o = o;
    // Nobody polls anything of this watch: the routing task calls the sink.
    for revision in [2, 3] {
        o.answers.send(Ok(put(7, "/a", revision))).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(*seen.lock().unwrap(), ["/a", "/a"]);
    assert!(ended_rx.try_recv().is_err(), "the watch ended while it had room");
    // A third message finds the sink full: that watch ends and is cancelled on etcd.
    o.answers.send(Ok(put(7, "/a", 4))).unwrap();
    let error = timeout(Duration::from_secs(5), ended_rx).await.unwrap().unwrap();
    assert!(error.to_string().contains("fell behind"), "{error}");
    assert_eq!(next_op(&mut o.ops).await, Op::Cancel(7));
    // Its handle's drop finds it gone: no second cancel.
    drop(handle);
    let more = timeout(Duration::from_millis(50), o.ops.recv()).await;
    assert!(more.is_err(), "a second request after the cancel: {more:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_pushed_watch_cancels_it_and_drops_its_sink() {
    let (mux, mut opened) = fake(16);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (ended, _ended_rx) = oneshot::channel();
    let sink = Recorder {
        seen: seen.clone(),
        ended: Some(ended),
        room: 8,
    };
    let (pushed, mut o) = tokio::join!(mux.open(Spec::new("/a", false, 1), Some(Box::new(sink))), async {
        let o = opened.recv().await.unwrap();
        o.answers.send(Ok(created(3))).unwrap();
        o
    });
    drop(pushed.expect("created"));
    assert_eq!(next_op(&mut o.ops).await, Op::Cancel(3));
    // Events still in flight for it reach nobody.
    o.answers.send(Ok(put(3, "/a", 5))).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(std::sync::Arc::strong_count(&seen), 1, "the sink outlived its watch");
}
