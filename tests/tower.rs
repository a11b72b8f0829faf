//! The balanced channel under tower's layers (`Readiness::Reported`) and with a
//! zone preference, against real tonic servers on loopback ports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use octopus::grpc::{Policy, Readiness};
use octopus::{Registration, ServiceInstance};
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::HelloRequest;
use tokio::time::timeout;
use tower::{Service, ServiceBuilder};

/// A greeter answering as `id`, on a free loopback port, for the test's life.
async fn greeter(id: &str) -> u16 {
    octopus_greeter::serve_on_loopback(id).await.unwrap()
}

async fn register(client: &octopus::Client, id: &str, zone: &str) -> Registration {
    let port = greeter(id).await;
    let instance = ServiceInstance::new("greeter", id, "127.0.0.1", port)
        .unwrap()
        .with_metadata("zone", zone);
    let reg = client.register(instance).await.unwrap();
    reg.registered().await.unwrap();
    reg
}

fn hello() -> HelloRequest {
    HelloRequest { name: "tower".into() }
}

/// Passes calls through to `inner` and counts the times its readiness was
/// pending: once it has been, the calls queued in front of it are waiting.
#[derive(Clone)]
struct CountPending<S> {
    inner: S,
    pending: Arc<AtomicUsize>,
}

impl<S: Service<R>, R> Service<R> for CountPending<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let ready = self.inner.poll_ready(cx);
        if ready.is_pending() {
            self.pending.fetch_add(1, Ordering::SeqCst);
        }
        ready
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

/// Waits (at most 5 s) until `pending` counts more than `seen`.
async fn pending_beyond(pending: &AtomicUsize, seen: usize) {
    timeout(Duration::from_secs(5), async {
        while pending.load(Ordering::SeqCst) <= seen {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the channel reported not ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_readiness_makes_load_shed_fail_fast_and_a_buffer_wait_for_an_instance() {
    let client = octopus::connect("mem://tower-layers").await.unwrap();
    let channel = client
        .channel_to("greeter")
        .readiness(Readiness::Reported)
        .connect()
        .await
        .unwrap();

    // No instance registered: load_shed turns "not ready" into an error at once.
    let mut shed = GreeterClient::new(ServiceBuilder::new().load_shed().service(channel.clone()));
    let err = timeout(Duration::from_secs(2), shed.say_hello(hello()))
        .await
        .expect("shed at once, not waited for")
        .unwrap_err();
    // (tonic reports tower's `Overloaded` as RESOURCE_EXHAUSTED.)
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    // Behind a buffer and a concurrency limit, calls wait for an instance instead
    // of failing, and the buffer stays usable afterwards (a readiness error would
    // have failed it for good).
    let pending = Arc::new(AtomicUsize::new(0));
    let layered = ServiceBuilder::new()
        .buffer(64)
        .concurrency_limit(2)
        .service(CountPending {
            inner: channel.clone(),
            pending: pending.clone(),
        });
    // (Calls run on this task, joined: tonic's futures over a buffer are not
    // provably `Send` to the compiler, a known higher-ranked lifetime limit.)
    let done = AtomicUsize::new(0);
    let calls = futures_util::future::join_all((0..6).map(|_| {
        let mut g = GreeterClient::new(layered.clone());
        let done = &done;
        async move {
            let reply = g.say_hello(hello()).await;
            done.fetch_add(1, Ordering::SeqCst);
            reply
        }
    }));
    let arrive = async {
        // The channel said "not ready" to the calls queued in front of it, and
        // none has been answered: they wait for an instance.
        pending_beyond(&pending, 0).await;
        assert_eq!(done.load(Ordering::SeqCst), 0, "calls wait for an instance");
        register(&client, "a", "z1").await
    };
    let (replies, a) = timeout(Duration::from_secs(5), async { tokio::join!(calls, arrive) })
        .await
        .expect("answered once an instance registered");
    for reply in replies {
        assert_eq!(reply.unwrap().into_inner().instance, "a");
    }
    // The instance leaves: a call waits again; another registers: it is answered.
    a.deregister().await.unwrap();
    timeout(Duration::from_secs(2), async {
        while !channel.endpoints().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let mut g = GreeterClient::new(layered.clone());
    let seen = pending.load(Ordering::SeqCst);
    let late = async {
        pending_beyond(&pending, seen).await;
        register(&client, "b", "z1").await
    };
    let (reply, _b) = timeout(Duration::from_secs(5), async {
        tokio::join!(g.say_hello(hello()), late)
    })
    .await
    .expect("answered once another instance registered");
    assert_eq!(reply.unwrap().into_inner().instance, "b");
    // With load_shed now ready: answered.
    assert!(shed.say_hello(hello()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stay_in_the_callers_zone_and_spill_over_when_it_drains() {
    let client = octopus::connect("mem://tower-zones").await.unwrap();
    let a1 = register(&client, "a1", "eu-1").await;
    let _b1 = register(&client, "b1", "eu-2").await;
    let _b2 = register(&client, "b2", "eu-2").await;
    let channel = client
        .channel_to("greeter")
        .policy(Policy::RoundRobin)
        .zone("eu-1")
        .connect()
        .await
        .unwrap();
    assert!(channel.ready_endpoints(3, Duration::from_secs(2)).await);
    let mut g = GreeterClient::new(channel.clone());
    for _ in 0..20 {
        assert_eq!(g.say_hello(hello()).await.unwrap().into_inner().instance, "a1");
    }
    // The zone's only instance drains: calls spill over to the other zone.
    a1.drain().await.unwrap();
    timeout(Duration::from_secs(2), async {
        loop {
            let who = g.say_hello(hello()).await.unwrap().into_inner().instance;
            if who != "a1" {
                return;
            }
        }
    })
    .await
    .expect("spilled over");
    for _ in 0..20 {
        assert_ne!(g.say_hello(hello()).await.unwrap().into_inner().instance, "a1");
    }
    // Undrained: back home.
    a1.undrain().await.unwrap();
    timeout(Duration::from_secs(2), async {
        while g.say_hello(hello()).await.unwrap().into_inner().instance != "a1" {}
    })
    .await
    .expect("home again");
    for _ in 0..20 {
        assert_eq!(g.say_hello(hello()).await.unwrap().into_inner().instance, "a1");
    }
}
