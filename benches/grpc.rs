//! A unary loopback call through Octopus's balancer vs a plain tonic `Channel`, in
//! the same run against the same server; and the cost of one pick per policy.
//!
//!     cargo bench --bench grpc
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use octopus::core::JitterRng;
use octopus::grpc::{BalancedChannel, Connector, OutlierDetection, PanicThreshold, Policy, TcpConnector};
use octopus::ServiceInstance;
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::HelloRequest;

mod common;
use common::{loopback, runtime};

fn unary(c: &mut Criterion) {
    let rt = runtime();
    let lb = rt.block_on(loopback("bench-grpc"));
    let mut group = c.benchmark_group("grpc/unary loopback call");
    for (name, channel) in [
        ("plain tonic Channel", &lb.plain),
        ("plain tonic Channel, Octopus's connection settings", &lb.settings),
    ] {
        group.bench_function(name, |b| {
            let client = GreeterClient::new(channel.clone());
            b.to_async(&rt).iter(|| {
                let mut client = client.clone();
                async move { client.say_hello(HelloRequest { name: "x".into() }).await.unwrap() }
            });
        });
    }
    group.bench_function("octopus BalancedChannel", |b| {
        let client = GreeterClient::new(lb.balanced.clone());
        b.to_async(&rt).iter(|| {
            let mut client = client.clone();
            async move { client.say_hello(HelloRequest { name: "x".into() }).await.unwrap() }
        });
    });
    group.finish();
}

fn picks(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("grpc/pick among 10 instances");
    let all_on = |b: octopus::grpc::ChannelBuilder| {
        b.panic_threshold(PanicThreshold {
            share: 0.5,
            hold: Duration::from_secs(30),
        })
        .slow_start(Duration::from_secs(30))
        .outlier_detection(OutlierDetection::default())
        .zone("z0")
    };
    let cases = [
        Policy::RoundRobin,
        Policy::PickFirst,
        Policy::P2c,
        Policy::P2cEwma,
        Policy::Weighted,
    ]
    .into_iter()
    .map(|p| (p, false))
    .chain([(Policy::RoundRobin, true), (Policy::P2c, true)]);
    for (policy, every_option) in cases {
        let (channel, _regs) = rt.block_on(async {
            let client = octopus::connect(&format!("mem://bench-pick-{policy}")).await.unwrap();
            let mut regs = Vec::new();
            for n in 0..10u16 {
                // Two zones, one instance draining: every tier of a pick is in play
                // when the zone preference is on.
                let inst = ServiceInstance::new("svc", format!("i{n}"), "127.0.0.1", 20_000 + n)
                    .unwrap()
                    .with_metadata("zone", format!("z{}", n % 2))
                    .with_draining(n == 0);
                regs.push(client.register(inst).await.unwrap());
            }
            let tcp: Arc<dyn Connector> = Arc::new(TcpConnector::default());
            let builder = client
                .channel_to("svc")
                .policy(policy)
                .connector(tcp)
                .rng(JitterRng::seeded(1));
            let builder = if every_option { all_on(builder) } else { builder };
            let channel: BalancedChannel = builder.connect().await.unwrap();
            assert!(channel.ready_endpoints(10, Duration::from_secs(2)).await);
            (channel, regs)
        });
        let name = if every_option {
            format!("{policy}, panic threshold + slow start + outlier detection + zone, one draining")
        } else {
            policy.to_string()
        };
        group.bench_with_input(BenchmarkId::from_parameter(name), &channel, |b, ch| {
            b.iter(|| ch.pick().unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, unary, picks);
criterion_main!(benches);
