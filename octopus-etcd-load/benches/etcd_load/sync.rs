//! Scenario 3, `sync`: the initial sync of one large service, its time and the
//! heap the cached view holds.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::GetOptions;
use octopus::core::WatchDiscovery;
use octopus::etcd::EtcdBackend;
use octopus::Discovery;
use tokio::time::{sleep, Instant};

use crate::helpers::{backend, big_etcd, layout, load, ms, raw};
use crate::measure::{live, PeakSampler};

pub(crate) async fn sync(quick: bool) {
    let n = if quick { 10_000 } else { 100_000 };
    println!("\n## 3. Initial sync of one service with {n} instances (pages of 1,000)\n");
    let server = big_etcd().await;
    let mut client = raw(&server).await;
    load(&mut client, "big", n).await;
    let layout = layout();
    let prefix = layout.prefix("big");

    // Raw: the same paginated read, values left undecoded.
    let started = Instant::now();
    let mut count = 0;
    let mut bytes = 0;
    let mut start = prefix.clone().into_bytes();
    let end = octopus::core::prefix_end(prefix.as_bytes());
    let mut rev = 0;
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(1000);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let resp = client.get(start.clone(), Some(opts)).await.unwrap();
        rev = resp.header().unwrap().revision();
        count += resp.kvs().len();
        bytes += resp
            .kvs()
            .iter()
            .map(|kv| kv.key().len() + kv.value().len())
            .sum::<usize>();
        if !resp.more() {
            break;
        }
        start = resp.kvs().last().unwrap().key().to_vec();
        start.push(0);
    }
    let raw_time = started.elapsed();
    assert_eq!(count, n);

    // Octopus: a cold watch's first snapshot, decoded and cached.
    let backend = Arc::new(backend(&server).await);
    let discovery = WatchDiscovery::new(backend.clone() as Arc<EtcdBackend>, layout.clone());
    let before = live();
    let sampler = PeakSampler::start();
    let started = Instant::now();
    let mut watch = discovery.watch("big").await.unwrap();
    let snapshot = watch.next().await.unwrap();
    let ours_time = started.elapsed();
    assert_eq!(snapshot.instances.len(), n);
    sleep(Duration::from_millis(200)).await; // let the read buffers go
    let held = live().saturating_sub(before);
    let peak = sampler.finish().saturating_sub(before);
    let strings: usize = snapshot
        .instances
        .iter()
        .map(|i| {
            i.service.len()
                + i.id.len()
                + i.addr.len()
                + i.version.len()
                + i.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        })
        .sum();
    println!("| | raw range | Octopus watch (decoded, cached) |\n|---|---|---|");
    println!("| time | {} | {} |", ms(raw_time), ms(ours_time));
    println!("| bytes read (keys + values) | {:.1} MB | same |", bytes as f64 / 1e6);
    println!(
        "| heap held for the view | — | {:.1} MB = {:.0} B per instance, of which strings {:.0} B, overhead {:.0} B |",
        held as f64 / 1e6,
        held as f64 / n as f64,
        strings as f64 / n as f64,
        (held.saturating_sub(strings)) as f64 / n as f64
    );
    println!(
        "| peak heap during the sync (sampled every 200 µs) | — | {:.1} MB |",
        peak as f64 / 1e6
    );
    drop(watch);
}
