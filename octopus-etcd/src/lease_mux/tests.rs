//! The keepalive multiplexer against a fake stream: a writer that never
//! drains, callers whose keepalives time out.

use std::sync::Arc;

use etcd_client::proto::PbLeaseKeepAliveResponse;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::*;
use octopus_discovery_core::ErrorKind;

struct Opened {
    ops: mpsc::Receiver<LeaseId>,
    answers: mpsc::UnboundedSender<std::result::Result<LeaseKeepAliveResponse, etcd_client::Error>>,
}

struct Fake {
    opened: mpsc::UnboundedSender<Opened>,
    /// Room in the writer's queue.
    room: usize,
    /// Each open waits for a permit.
    gate: Arc<Semaphore>,
}

impl Connector for Fake {
    fn open(&self, _first: LeaseId, _limit: Duration) -> Opening {
        let (ops, ops_rx) = mpsc::channel(self.room);
        let (answers, mut answers_rx) = mpsc::unbounded_channel();
        let opened = self.opened.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.acquire().await.expect("gate open").forget();
            let _ = opened.send(Opened { ops: ops_rx, answers });
            Ok(Some(Link {
                ops,
                answers: Box::pin(futures_util::stream::poll_fn(move |cx| answers_rx.poll_recv(cx))),
                _writer: None,
            }))
        })
    }
}

const LIMIT: Duration = Duration::from_millis(100);

fn fake(room: usize, permits: usize) -> (LeaseMux, mpsc::UnboundedReceiver<Opened>, Arc<Semaphore>) {
    let (opened, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(permits));
    let mux = LeaseMux::with_connector(
        Fake {
            opened,
            room,
            gate: gate.clone(),
        },
        LIMIT,
    );
    (mux, rx, gate)
}

fn alive(id: i64) -> LeaseKeepAliveResponse {
    LeaseKeepAliveResponse(PbLeaseKeepAliveResponse {
        id,
        ttl: 5,
        ..Default::default()
    })
}

/// Every keepalive the writer's queue gives until the mux is idle (paused time:
/// the 1 ms timeout fires only when every task waits).
async fn drain(ops: &mut mpsc::Receiver<LeaseId>) -> Vec<i64> {
    let mut sent = Vec::new();
    while let Ok(Some(lease)) = timeout(Duration::from_millis(1), ops.recv()).await {
        sent.push(lease.0);
    }
    sent
}

#[tokio::test(start_paused = true)]
async fn a_stalled_writer_does_not_stop_the_answers() {
    // Room for one keepalive in the writer's queue, and a writer that never drains.
    let (mux, mut opened, _gate) = fake(1, 1);
    let mut a = mux.keeper(LeaseId(1), LIMIT);
    let (mut b, mut c) = (mux.keeper(LeaseId(2), LIMIT), mux.keeper(LeaseId(3), LIMIT));
    let answered = async {
        let o = opened.recv().await.expect("a stream opened");
        // B's and C's keepalives wait behind A's; A's answer still comes through.
        o.answers.send(Ok(alive(1))).unwrap();
        o
    };
    let (a, _b, _c, _o) = tokio::join!(a.keep_alive(), b.keep_alive(), c.keep_alive(), answered);
    assert_eq!(a.expect("answered"), Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn keepalives_whose_callers_gave_up_are_not_sent() {
    let (mux, mut opened, gate) = fake(16, 0);
    // The stream takes longer to open than the callers wait.
    let mut a = mux.keeper(LeaseId(1), LIMIT);
    let mut b = mux.keeper(LeaseId(2), LIMIT);
    let (ra, rb) = tokio::join!(a.keep_alive(), b.keep_alive());
    assert!(matches!(&ra, Err(e) if e.kind() == ErrorKind::Timeout), "{ra:?}");
    assert!(matches!(&rb, Err(e) if e.kind() == ErrorKind::Timeout), "{rb:?}");
    gate.add_permits(1);
    let mut o = opened.recv().await.expect("a stream opened");
    let mut c = mux.keeper(LeaseId(3), LIMIT);
    let (rc, sent) = tokio::join!(c.keep_alive(), async {
        let sent = drain(&mut o.ops).await;
        o.answers.send(Ok(alive(3))).unwrap();
        sent
    });
    assert_eq!(sent, [3], "only the keepalive someone waits for goes out");
    assert_eq!(rc.expect("answered"), Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn retries_against_a_stalled_writer_do_not_pile_up() {
    let (mux, mut opened, _gate) = fake(1, 1);
    let mut a = mux.keeper(LeaseId(1), LIMIT);
    for _ in 0..10 {
        assert!(a.keep_alive().await.is_err(), "nothing answers");
    }
    let mut b = mux.keeper(LeaseId(2), LIMIT);
    assert!(b.keep_alive().await.is_err(), "nothing answers");
    let mut o = opened.recv().await.expect("a stream opened");
    // One in the writer's queue, then at most one more per lease.
    assert_eq!(drain(&mut o.ops).await, [1, 1, 2]);
}
