//! Benchmarks of the in-memory backend and the shared watch cache.
//!
//!     cargo bench --bench mem
//!
//! - register + deregister of one instance (lease grant, guarded put, delete, revoke);
//! - `instances()` of a watched service with 10 and 1,000 instances (a cache read);
//! - one change fanned out to 1,000 watchers (from the write to the last watcher awake).
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use octopus::mem::{MemBackend, Store};
use octopus::{Discovery, RegisterOptions, Registry, ServiceInstance};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::time::Instant;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn instance(service: &str, n: usize) -> ServiceInstance {
    ServiceInstance::new(service, format!("i{n:05}"), "127.0.0.1", 10_000 + (n % 50_000) as u16).unwrap()
}

fn register_deregister(c: &mut Criterion) {
    let rt = runtime();
    let registry = rt.block_on(async { MemBackend::new(Store::new()).registry() });
    c.bench_function("mem/register+deregister", |b| {
        b.to_async(&rt).iter(|| async {
            let r = registry
                .register(instance("svc", 1), RegisterOptions::default())
                .await
                .unwrap();
            r.deregister().await.unwrap();
        })
    });
}

fn instances_read(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("mem/instances");
    for n in [10usize, 1_000] {
        let (discovery, _regs, _watch) = rt.block_on(async {
            let backend = MemBackend::new(Store::new());
            let registry = backend.registry();
            let discovery = backend.discovery();
            let mut regs = Vec::new();
            for i in 0..n {
                regs.push(
                    registry
                        .register(instance("svc", i), RegisterOptions::default())
                        .await
                        .unwrap(),
                );
            }
            let mut watch = discovery.watch("svc").await.unwrap();
            watch.wait_for(|s| s.instances.len() == n).await.unwrap();
            (discovery, regs, watch)
        });
        group.bench_with_input(BenchmarkId::new("cached", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| async {
                let list = discovery.instances("svc").await.unwrap();
                assert_eq!(list.len(), n);
            })
        });
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    const WATCHERS: usize = 1_000;
    let rt = runtime();
    let (reg, counter, done) = rt.block_on(async {
        let backend = MemBackend::new(Store::new());
        let registry = backend.registry();
        let discovery = Arc::new(backend.discovery());
        let reg = registry
            .register(instance("svc", 0), RegisterOptions::default())
            .await
            .unwrap();
        let counter = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Notify::new());
        for _ in 0..WATCHERS {
            let mut w = discovery.watch("svc").await.unwrap();
            w.next().await.unwrap();
            let (counter, done) = (counter.clone(), done.clone());
            tokio::spawn(async move {
                while w.next().await.is_some() {
                    if counter.fetch_add(1, Ordering::AcqRel) + 1 == WATCHERS {
                        done.notify_one();
                    }
                }
            });
        }
        (reg, counter, done)
    });
    c.bench_function("mem/fan-out 1 change to 1000 watchers", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (reg, counter, done) = (&reg, counter.clone(), done.clone());
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    counter.store(0, Ordering::Release);
                    let w = (i % 2) as u32 + 1; // every put is a change watchers see
                    let start = Instant::now();
                    reg.update(instance("svc", 0).with_weight(w)).await.unwrap();
                    done.notified().await;
                    total += start.elapsed();
                }
                total
            }
        })
    });
}

criterion_group!(benches, register_deregister, instances_read, fan_out);
criterion_main!(benches);
