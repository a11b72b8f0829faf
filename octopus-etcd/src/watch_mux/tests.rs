//! The multiplexer against a fake stream whose answers the tests order: as
//! etcd's gRPC proxy does (a followed range answered at once, a new one later),
//! ids nobody owns, callers that give up, a writer that never drains.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::proto::{PbEvent, PbKeyValue, PbResponseHeader, PbWatchResponse};
use futures_util::StreamExt;
use tokio::time::timeout;

use super::*;

/// What the mux opened: the create it opened with, its requests, and where the
/// test writes etcd's answers.
pub(super) struct Opened {
    pub(super) first: Spec,
    pub(super) ops: mpsc::Receiver<Op>,
    pub(super) answers: mpsc::UnboundedSender<std::result::Result<WatchResponse, etcd_client::Error>>,
}

struct Fake {
    opened: mpsc::UnboundedSender<Opened>,
    /// Room in the writer's queue.
    room: usize,
}

impl Connector for Fake {
    fn open(&self, first: Spec) -> Pin<Box<dyn Future<Output = Result<Link>> + Send>> {
        let (ops, ops_rx) = mpsc::channel(self.room);
        let (answers, mut answers_rx) = mpsc::unbounded_channel();
        let _ = self.opened.send(Opened {
            first,
            ops: ops_rx,
            answers,
        });
        Box::pin(async move {
            Ok(Link {
                ops,
                answers: Box::pin(futures_util::stream::poll_fn(move |cx| answers_rx.poll_recv(cx))),
                _writer: None,
            })
        })
    }
}

pub(super) fn fake(room: usize) -> (WatchMux, mpsc::UnboundedReceiver<Opened>) {
    let (opened, rx) = mpsc::unbounded_channel();
    (WatchMux::with_connector(Fake { opened, room }), rx)
}

fn response(id: i64, revision: i64) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(PbResponseHeader {
            revision,
            ..Default::default()
        }),
        watch_id: id,
        ..Default::default()
    }
}

pub(super) fn created(id: i64) -> WatchResponse {
    WatchResponse(PbWatchResponse {
        created: true,
        ..response(id, 1)
    })
}

/// A put of `key` at `revision`, for watch `id`.
pub(super) fn put(id: i64, key: &str, revision: i64) -> WatchResponse {
    let kv = PbKeyValue {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        create_revision: revision,
        mod_revision: revision,
        version: 1,
        lease: 0,
    };
    WatchResponse(PbWatchResponse {
        events: vec![PbEvent {
            r#type: 0,
            kv: Some(kv),
            prev_kv: None,
        }],
        ..response(id, revision)
    })
}

pub(super) fn keys(message: &WatchMessage) -> Vec<String> {
    match message {
        WatchMessage::Events { events, .. } => events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.kv.key).into_owned())
            .collect(),
        WatchMessage::Progress { .. } | WatchMessage::Compacted { .. } => Vec::new(),
    }
}

pub(super) async fn next_op(ops: &mut mpsc::Receiver<Op>) -> Op {
    timeout(Duration::from_secs(5), ops.recv())
        .await
        .expect("a request in time")
        .expect("the stream is open")
}

/// Plays etcd's gRPC proxy on one stream: a create for a key already followed
/// (`followed`) is answered at once, a new one only once the mux has nothing
/// more to send (with paused time, the 1 ms timeout fires only when every task
/// is idle), newest first. Each create gets the next id; then each watch gets
/// a put of its own key. Returns the key each id was created for.
async fn proxy(mut opened: Opened, followed: &BTreeSet<String>, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut held = Vec::new();
    let mut spec = Some(opened.first.clone());
    while ids.len() < n {
        if let Some(spec) = spec.take() {
            let id = ids.len() as i64;
            ids.push(spec.key.clone());
            if followed.contains(&spec.key) {
                opened.answers.send(Ok(created(id))).unwrap();
            } else {
                held.push(id);
            }
        }
        match timeout(Duration::from_millis(1), opened.ops.recv()).await {
            Ok(Some(Op::Create(s))) => spec = Some(s),
            Ok(Some(Op::Cancel(id))) => panic!("cancel of {id} while creating"),
            Ok(None) => panic!("the mux closed the stream"),
            Err(_) => {
                for id in held.drain(..).rev() {
                    opened.answers.send(Ok(created(id))).unwrap();
                }
            }
        }
    }
    for id in held.drain(..).rev() {
        opened.answers.send(Ok(created(id))).unwrap();
    }
    for (id, key) in ids.iter().enumerate() {
        opened.answers.send(Ok(put(id as i64, key, 10 + id as i64))).unwrap();
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn created_answers_out_of_order_reach_their_own_watches() {
    for n in [4, 8, 12, 24] {
        let (mux, mut opened) = fake(16);
        let keys_: Vec<String> = (0..n).map(|i| format!("/svc/s{i}/")).collect();
        // Half of them already followed by another client of the proxy.
        let followed: BTreeSet<String> = keys_.iter().step_by(2).cloned().collect();
        let watches = futures_util::future::join_all(keys_.iter().map(|k| mux.watch(Spec::new(k, true, 5))));
        let playing = async {
            let first = opened.recv().await.expect("a stream opened");
            proxy(first, &followed, n).await
        };
        let (watches, _) = tokio::join!(watches, playing);
        for (key, w) in keys_.iter().zip(watches) {
            let (mut w, _) = w.expect("created").into_watch();
            let message = w.next().await.expect("a message").expect("events");
            assert_eq!(
                keys(&message),
                std::slice::from_ref(key),
                "the watch on {key} (of {n}) saw another's events"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn one_create_in_flight_at_a_time() {
    let (mux, mut opened) = fake(16);
    let (a, b, _o) = tokio::join!(
        mux.watch(Spec::new("/a", false, 1)),
        mux.watch(Spec::new("/b", false, 1)),
        async {
            let mut o = opened.recv().await.unwrap();
            // Nothing more leaves until the first create is answered.
            let early = timeout(Duration::from_millis(50), o.ops.recv()).await;
            assert!(
                early.is_err(),
                "a second create before the first was answered: {early:?}"
            );
            o.answers.send(Ok(created(0))).unwrap();
            let op = next_op(&mut o.ops).await;
            assert!(matches!(op, Op::Create(Spec { ref key, .. }) if key == "/b"), "{op:?}");
            o.answers.send(Ok(created(1))).unwrap();
            o
        }
    );
    let (a, b) = (a.unwrap().into_watch(), b.unwrap().into_watch());
    assert_eq!((a.1, b.1), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn ids_nobody_owns_are_cancelled_once() {
    let (mux, mut opened) = fake(16);
    let (a, mut o) = tokio::join!(mux.watch(Spec::new("/a", false, 1)), async {
        let o = opened.recv().await.unwrap();
        o.answers.send(Ok(created(0))).unwrap();
        o
    });
    let (mut a, _) = a.unwrap().into_watch();
    // A created answer nobody asked for, then events for an id nobody owns, twice.
    o.answers.send(Ok(created(7))).unwrap();
    o.answers.send(Ok(put(9, "/x", 3))).unwrap();
    o.answers.send(Ok(put(9, "/x", 4))).unwrap();
    o.answers.send(Ok(put(0, "/a", 5))).unwrap();
    assert_eq!(keys(&a.next().await.unwrap().unwrap()), ["/a"]);
    assert_eq!(next_op(&mut o.ops).await, Op::Cancel(7));
    assert_eq!(next_op(&mut o.ops).await, Op::Cancel(9));
    // No second cancel of 9: the next request is the next create.
    let (_b, op) = tokio::join!(mux.watch(Spec::new("/b", false, 1)), async {
        let op = next_op(&mut o.ops).await;
        o.answers.send(Ok(created(1))).unwrap();
        op
    });
    assert!(matches!(op, Op::Create(_)), "{op:?}");
}

#[tokio::test(start_paused = true)]
async fn callers_that_gave_up_are_skipped_or_cancelled() {
    let (mux, mut opened) = fake(16);
    let mux = Arc::new(mux);
    // A's create opens the stream and stays unanswered; B queues behind it and
    // gives up; A's caller gives up too.
    let a = tokio::spawn({
        let mux = mux.clone();
        async move { mux.watch(Spec::new("/a", false, 1)).await.map(|_| ()) }
    });
    let mut o = opened.recv().await.unwrap();
    let b = tokio::spawn({
        let mux = mux.clone();
        async move { mux.watch(Spec::new("/b", false, 1)).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    b.abort();
    a.abort();
    let _ = (a.await, b.await);
    // A's answer comes: its watch is cancelled on etcd; B's create is never sent.
    o.answers.send(Ok(created(0))).unwrap();
    assert_eq!(next_op(&mut o.ops).await, Op::Cancel(0));
    let (_c, op) = tokio::join!(mux.watch(Spec::new("/c", false, 1)), async {
        let op = next_op(&mut o.ops).await;
        o.answers.send(Ok(created(1))).unwrap();
        op
    });
    assert!(matches!(op, Op::Create(Spec { ref key, .. }) if key == "/c"), "{op:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_writer_does_not_stop_the_routing() {
    // Room for one request in the writer's queue, and a writer that stops draining.
    let (mux, mut opened) = fake(1);
    let (a, mut o) = tokio::join!(mux.watch(Spec::new("/a", false, 1)), async {
        let o = opened.recv().await.unwrap();
        o.answers.send(Ok(created(0))).unwrap();
        o
    });
    let (mut a, _) = a.unwrap().into_watch();
    let mut others = Vec::new();
    for (i, key) in ["/b", "/c", "/d"].into_iter().enumerate() {
        let (w, _) = tokio::join!(mux.watch(Spec::new(key, false, 1)), async {
            next_op(&mut o.ops).await;
            o.answers.send(Ok(created(i as i64 + 1))).unwrap();
        });
        others.push(w.unwrap());
    }
    // Three cancels for a queue with room for one: two wait in the outbox.
    drop(others);
    while o.ops.is_empty() {
        tokio::task::yield_now().await; // until the writer's queue is full
    }
    o.answers.send(Ok(put(0, "/a", 7))).unwrap();
    let message = timeout(Duration::from_secs(5), a.next())
        .await
        .expect("routed while the writer is stuck");
    assert_eq!(keys(&message.unwrap().unwrap()), ["/a"]);
    // Once the writer drains, every cancel goes out.
    let mut cancels = BTreeSet::new();
    for _ in 0..3 {
        if let Op::Cancel(id) = next_op(&mut o.ops).await {
            cancels.insert(id);
        }
    }
    assert_eq!(cancels, BTreeSet::from([1, 2, 3]));
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_falls_behind_ends_alone() {
    let (mux, mut opened) = fake(16);
    let (slow, mut o) = tokio::join!(mux.watch(Spec::new("/slow", false, 1)), async {
        let o = opened.recv().await.unwrap();
        o.answers.send(Ok(created(0))).unwrap();
        o
    });
    let (mut slow, _) = slow.unwrap().into_watch();
    let (quick, _) = tokio::join!(mux.watch(Spec::new("/quick", false, 1)), async {
        next_op(&mut o.ops).await;
        o.answers.send(Ok(created(1))).unwrap();
    });
    let (mut quick, _) = quick.unwrap().into_watch();
    for r in 0..=WATCH_BUFFER as i64 {
        o.answers.send(Ok(put(0, "/slow", 10 + r))).unwrap();
    }
    o.answers.send(Ok(put(1, "/quick", 5000))).unwrap();
    assert_eq!(keys(&quick.next().await.unwrap().unwrap()), ["/quick"]);
    assert_eq!(next_op(&mut o.ops).await, Op::Cancel(0));
    let mut read = 0;
    while let Some(m) = slow.next().await {
        match m {
            Ok(_) => read += 1,
            Err(e) => {
                assert!(e.to_string().contains("fell behind"), "{e}");
                break;
            }
        }
    }
    assert_eq!(read, WATCH_BUFFER, "what was buffered is delivered before the end");
}
