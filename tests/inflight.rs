//! The balancer's in-flight count against real tonic servers: a call cancelled
//! before its answer (a timeout, an aborted task) must not leave its instance
//! looking busy, or p2c would avoid that instance from then on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use octopus::grpc::{BalancedChannel, Policy};
use octopus::{Client, Registration, ServiceInstance};
use octopus_greeter as pb;
use pb::greeter_client::GreeterClient;
use pb::greeter_server::{Greeter, GreeterServer};
use pb::{HelloReply, HelloRequest};
use tokio::net::TcpListener;
use tokio::time::{sleep, timeout, Instant};

/// Answers at once, except a request named `hang`, which it never answers (a
/// stuck handler: only the caller giving up ends that call).
#[derive(Clone)]
struct Stuck(String, bool);

#[tonic::async_trait]
impl Greeter for Stuck {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        if self.1 && request.get_ref().name == "hang" {
            std::future::pending::<()>().await;
        }
        Ok(tonic::Response::new(HelloReply {
            message: format!("hello, {}", request.into_inner().name),
            instance: self.0.clone(),
        }))
    }
}

/// Serves a greeter named `id` on a free loopback port and registers it; `stuck`:
/// it never answers `hang`.
async fn serve(client: &Client, id: &str, stuck: bool) -> (tokio::task::JoinHandle<()>, Registration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = GreeterServer::new(Stuck(id.to_owned(), stuck));
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    let instance = ServiceInstance::new("greeter", id, "127.0.0.1", addr.port()).unwrap();
    (task, client.register(instance).await.unwrap())
}

fn idle(channel: &BalancedChannel) -> bool {
    channel.in_flight().values().all(|n| *n == 0)
}

/// Waits until a call is counted on instance `id` (the call went there) or
/// `call` has ended; true if it went to `id`.
async fn landed_on(channel: &BalancedChannel, id: &str, call: &tokio::task::JoinHandle<()>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if channel.in_flight().get(id).copied().unwrap_or(0) > 0 {
            return true;
        }
        if call.is_finished() {
            return false;
        }
        assert!(Instant::now() < deadline, "a call neither answered nor was counted");
        sleep(Duration::from_millis(2)).await;
    }
}

/// Cancels `n` calls stuck on instance `a`, half by a timeout that drops the call's
/// future, half by aborting the task that makes it; after each, no call is counted.
async fn cancel_stuck_calls(channel: &BalancedChannel, n: usize) {
    let hang = || HelloRequest { name: "hang".into() };
    let mut cancelled = 0;
    for _ in 0..400 {
        if cancelled == n {
            break;
        }
        if cancelled % 2 == 0 {
            // Answered by `b`, or dropped by the timeout while stuck on `a`.
            let mut greeter = GreeterClient::new(channel.clone());
            if timeout(Duration::from_millis(200), greeter.say_hello(hang()))
                .await
                .is_err()
            {
                cancelled += 1;
            }
        } else {
            let mut greeter = GreeterClient::new(channel.clone());
            let call = tokio::spawn(async move {
                let _ = greeter.say_hello(hang()).await;
            });
            if landed_on(channel, "a", &call).await {
                call.abort();
                assert!(call.await.unwrap_err().is_cancelled());
                cancelled += 1;
            } else {
                call.await.unwrap();
            }
        }
        assert!(
            idle(channel),
            "a cancelled call is still counted: {:?}",
            channel.in_flight()
        );
    }
    assert_eq!(cancelled, n, "the calls kept avoiding `a`: {:?}", channel.in_flight());
}

async fn tally(channel: &BalancedChannel, n: usize) -> BTreeMap<String, usize> {
    let mut greeter = GreeterClient::new(channel.clone());
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let reply = greeter.say_hello(HelloRequest { name: "quick".into() }).await.unwrap();
        *seen.entry(reply.into_inner().instance).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_load_and_p2c_spreads_again() {
    let client = octopus::connect("mem://inflight-p2c").await.unwrap();
    let (_a, _ra) = serve(&client, "a", true).await;
    let (_b, _rb) = serve(&client, "b", false).await;
    let channel = client.channel("mem:///greeter", Policy::P2c).await.unwrap();
    assert!(channel.ready_endpoints(2, Duration::from_secs(5)).await);

    cancel_stuck_calls(&channel, 6).await;

    // Equal loads: p2c's draws split the calls between the two. A count left
    // behind on `a` would send every one of them to `b`.
    let seen = tally(&channel, 200).await;
    assert!(seen.values().all(|n| *n >= 50) && seen.len() == 2, "{seen:?}");
    assert!(idle(&channel), "{:?}", channel.in_flight());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_load_with_p2c_ewma() {
    let client = octopus::connect("mem://inflight-ewma").await.unwrap();
    let (_a, _ra) = serve(&client, "a", true).await;
    let (_b, _rb) = serve(&client, "b", false).await;
    let channel = client.channel("mem:///greeter", Policy::P2cEwma).await.unwrap();
    assert!(channel.ready_endpoints(2, Duration::from_secs(5)).await);

    cancel_stuck_calls(&channel, 4).await;
    let seen = tally(&channel, 20).await;
    assert_eq!(seen.values().sum::<usize>(), 20, "{seen:?}");
    assert!(idle(&channel), "{:?}", channel.in_flight());
}
