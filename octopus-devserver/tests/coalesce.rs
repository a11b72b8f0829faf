//! `MemEtcdOptions::coalesce_watches`: watch creates answered as etcd's gRPC
//! proxy answers them (the simulator's proxy world), on real TCP through
//! etcd-client: a range already followed at once, a new range later, so the
//! answers on one stream come back in the other order than the creates.

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};
use octopus_devserver::{MemEtcd, MemEtcdOptions};
use octopus_mem::Store;
use tokio::time::timeout;

async fn start(coalesce: Option<Duration>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = MemEtcdOptions {
        coalesce_watches: coalesce,
        ..MemEtcdOptions::default()
    };
    let server = MemEtcd::new(Store::new(), options);
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    addr
}

async fn next(stream: &mut WatchStream) -> WatchResponse {
    timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an answer in time")
        .expect("the stream is fine")
        .expect("the stream is open")
}

/// On one stream, a create for a new range, then one for a range another
/// client follows: the ids of the `created` answers, in the order they come.
async fn created_order(addr: SocketAddr) -> (Vec<i64>, WatchStream) {
    let mut other = Client::connect([addr.to_string()], None).await.unwrap();
    let (_keep, mut followed) = other
        .watch("/a/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap()
        .split();
    let created = followed.message().await.unwrap().unwrap();
    assert!(created.created(), "{created:?}");

    let mut client = Client::connect([addr.to_string()], None).await.unwrap();
    let mut stream = client
        .watch("/b/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    stream
        .watch("/a/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut order = Vec::new();
    for _ in 0..2 {
        let answer = next(&mut stream).await;
        assert!(answer.created(), "{answer:?}");
        order.push(answer.watch_id());
    }
    (order, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_range_is_answered_before_a_new_one() {
    let addr = start(Some(Duration::from_millis(200))).await;
    let (order, mut stream) = created_order(addr).await;
    assert_eq!(order, [1, 0], "the followed range's create (id 1) first");
    // Events still reach the watch of their range.
    let mut client = Client::connect([addr.to_string()], None).await.unwrap();
    client.put("/b/x", "1", None).await.unwrap();
    let event = next(&mut stream).await;
    assert_eq!(
        (event.watch_id(), event.events()[0].kv().unwrap().key()),
        (0, &b"/b/x"[..])
    );
    client.put("/a/x", "1", None).await.unwrap();
    let event = next(&mut stream).await;
    assert_eq!(
        (event.watch_id(), event.events()[0].kv().unwrap().key()),
        (1, &b"/a/x"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_mode_answers_keep_the_order_of_the_creates() {
    let addr = start(None).await;
    assert_eq!(created_order(addr).await.0, [0, 1]);
}
