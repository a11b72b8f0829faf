//! Hot paths that need no server: the key/value codecs and snapshot diffs.
//!
//!     cargo bench --bench codec
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use octopus::core::{diff, EtcdNamingLayout, GoZeroLayout, JsonLayout, KeyLayout, KratosLayout, LeaseId};
use std::sync::Arc;

use octopus::{Instances, ServiceInstance};

fn instance(n: usize) -> ServiceInstance {
    ServiceInstance::new("user-service", format!("instance-{n:05}"), "127.0.0.7", 50051)
        .unwrap()
        .with_version("v1.2.3")
        .with_metadata("zone", "eu-west-1a")
        .with_metadata("protocol", "grpc")
        .with_metadata("build", "2026-11-25")
}

fn codecs(c: &mut Criterion) {
    let layouts: [(&str, Box<dyn KeyLayout>); 4] = [
        ("octopus", Box::new(JsonLayout::default())),
        ("kratos", Box::new(KratosLayout::default())),
        ("etcd-naming", Box::new(EtcdNamingLayout::new("").unwrap())),
        ("go-zero", Box::new(GoZeroLayout::default())),
    ];
    let i = instance(1);
    let mut group = c.benchmark_group("codec");
    for (name, layout) in &layouts {
        let key = layout.key(&i, LeaseId(7));
        let value = layout.encode(&i).unwrap();
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| layout.encode(&i).unwrap())
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| layout.decode("user-service", key.as_bytes(), &value).unwrap())
        });
    }
    group.finish();
}

fn diffs(c: &mut Criterion) {
    let mut group = c.benchmark_group("diff");
    for n in [100usize, 10_000] {
        let before: Vec<ServiceInstance> = (0..n).map(instance).collect();
        // One removed, one added, one updated: what one watch event changes.
        let mut after = before.clone();
        after.remove(n / 2);
        after.push(instance(n + 1));
        after[0] = after[0].clone().with_weight(7);
        group.bench_with_input(BenchmarkId::new("one change", n), &n, |b, _| {
            b.iter(|| diff(&before, &after))
        });
        // As two snapshots of one watch hold them: the unchanged instances are the
        // same `Arc`s, so they are matched by pointer, not compared field by field.
        let shared: Vec<Arc<ServiceInstance>> = before.iter().cloned().map(Arc::new).collect();
        let earlier: Instances = shared.iter().cloned().collect();
        let mut next = shared.clone();
        next.remove(n / 2);
        next.push(Arc::new(instance(n + 1)));
        next[0] = Arc::new((*next[0]).clone().with_weight(7));
        let later: Instances = next.into_iter().collect();
        group.bench_with_input(BenchmarkId::new("one change, shared instances", n), &n, |b, _| {
            b.iter(|| later.diff_from(&earlier))
        });
        // As a watch publishes them: the next snapshot shares every chunk but the
        // changed ones, which the diff skips without looking inside.
        let published = earlier
            .without(&instance(n / 2).id)
            .with(Arc::new(instance(n + 1)))
            .with(Arc::new(instance(0).with_weight(7)));
        assert_eq!(published.diff_from(&earlier), diff(&earlier[..], &published[..]));
        group.bench_with_input(BenchmarkId::new("one change, shared chunks", n), &n, |b, _| {
            b.iter(|| published.diff_from(&earlier))
        });
    }
    group.finish();
}

criterion_group!(benches, codecs, diffs);
criterion_main!(benches);
