//! Scenario 6, `event`: the cost of one change at a large service, Octopus's
//! incremental watch beside re-reading everything.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions};
use octopus::core::{KeyLayout, WatchDiscovery};
use octopus::Discovery;

use crate::helpers::{backend, big_etcd, instance, layout, load, raw};
use crate::measure::cpu_time;

pub(crate) async fn event(quick: bool) {
    const ROUNDS: usize = 5;
    let n = if quick { 1_000 } else { 10_000 };
    let m = if quick { 50 } else { 500 };
    let per_round = m / ROUNDS;
    println!(
        "\n## 6. Cost per change at {n} instances ({m} changes each, one at a time, in {ROUNDS} interleaved rounds)\n"
    );
    let server = big_etcd().await;
    let mut writer = raw(&server).await;
    load(&mut writer, "ev", n).await;
    let layout = layout();
    let mut changes = 0usize;
    let mut change = || {
        changes += 1;
        ev_change(&layout, n, changes)
    };
    let mut event_bytes = 0usize;
    let (mut writer_cpu, mut ours_cpu, mut floor_cpu, mut reread_cpu) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut reread_bytes = 0usize;
    let prefix = layout.prefix("ev");
    let mut reader = raw(&server).await;
    // Each round measures the four one after the other, so that whatever else the
    // machine does falls on all of them alike; only the measured side's watch is
    // open while it is measured.
    for _ in 0..ROUNDS {
        // The writer alone: subtracted from the others.
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            writer.put(k, v, None).await.unwrap();
        }
        writer_cpu += cpu_time() - cpu0;

        // Octopus: one watch applies each event to its cache and publishes a snapshot.
        let discovery = WatchDiscovery::new(Arc::new(backend(&server).await), layout.clone());
        let mut watch = discovery.watch("ev").await.unwrap();
        let rev0 = watch.next().await.unwrap().revision;
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            event_bytes += 2 * (k.len() + v.len());
            let rev = writer.put(k, v, None).await.unwrap().header().unwrap().revision();
            watch.wait_for(|s| s.revision >= rev).await.unwrap();
        }
        ours_cpu += cpu_time() - cpu0;
        assert!(watch.latest().unwrap().revision >= rev0 + per_round as i64);
        drop(watch);
        drop(discovery);

        // The floor: a raw watch that receives each event and does nothing with it.
        let mut stream = reader
            .watch(prefix.clone(), Some(WatchOptions::new().with_prefix().with_prev_key()))
            .await
            .unwrap();
        let _created = stream.message().await.unwrap();
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            writer.put(k, v, None).await.unwrap();
            let _ = stream.message().await.unwrap();
        }
        floor_cpu += cpu_time() - cpu0;
        drop(stream);

        // Re-read everything on every event (what go-kratos's etcd registry does).
        let mut stream = reader
            .watch(prefix.clone(), Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        let _created = stream.message().await.unwrap();
        let cpu0 = cpu_time();
        for _ in 0..per_round {
            let (k, v) = change();
            writer.put(k, v, None).await.unwrap();
            let _ = stream.message().await.unwrap();
            let all = reader
                .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
                .await
                .unwrap();
            let mut decoded = Vec::with_capacity(all.kvs().len());
            for kv in all.kvs() {
                reread_bytes += kv.key().len() + kv.value().len();
                if let Ok(inst) = layout.decode("ev", kv.key(), kv.value()) {
                    decoded.push(inst);
                }
            }
            assert_eq!(decoded.len(), n);
        }
        reread_cpu += cpu_time() - cpu0;
        drop(stream);
    }
    let m = per_round * ROUNDS;
    let per = |d: Duration| d.saturating_sub(writer_cpu).as_secs_f64() * 1e6 / m as f64;
    let (ours, floor, reread) = (per(ours_cpu), per(floor_cpu), per(reread_cpu));
    println!(
        "| per change | Octopus (incremental watch) | re-read the prefix | ratio | raw watch receiving the event, nothing else (the floor) |\n|---|---|---|---|---|"
    );
    println!(
        "| CPU time (this process, writer's share removed) | {ours:.1} µs | {reread:.1} µs | {:.0}× | {floor:.1} µs |",
        reread / ours.max(1e-9)
    );
    let event_bytes = event_bytes as f64 / m as f64;
    println!(
        "| bytes read (keys + values, prev included) | {event_bytes:.0} B | {:.0} B | {:.0}× | {event_bytes:.0} B |",
        reread_bytes as f64 / m as f64,
        reread_bytes as f64 / m as f64 / event_bytes
    );
}

/// The `i`th change of the per-change scenario's service of `n` instances: one
/// instance (spread over all of them) gets a new label. Key and value.
fn ev_change(layout: &Arc<dyn KeyLayout>, n: usize, i: usize) -> (String, Vec<u8>) {
    let inst = instance("ev", (i * 7919) % n).with_metadata("change", i.to_string());
    (layout.key(&inst, octopus::LeaseId(0)), layout.encode(&inst).unwrap())
}

/// `changes` changes of a 10,000-instance service seen by one Octopus watch
/// (`ours`) or one raw watch that only receives them.
pub(crate) async fn changes_alone(ours: bool, changes: usize) {
    let n = 10_000;
    let server = big_etcd().await;
    let mut writer = raw(&server).await;
    load(&mut writer, "ev", n).await;
    let layout = layout();
    let change = |i: usize| ev_change(&layout, n, i);
    let cpu0 = cpu_time();
    if ours {
        let discovery = WatchDiscovery::new(Arc::new(backend(&server).await), layout.clone());
        let mut watch = discovery.watch("ev").await.unwrap();
        watch.next().await.unwrap();
        for i in 0..changes {
            let (k, v) = change(i);
            let rev = writer.put(k, v, None).await.unwrap().header().unwrap().revision();
            watch.wait_for(|s| s.revision >= rev).await.unwrap();
        }
    } else {
        let mut reader = raw(&server).await;
        let options = WatchOptions::new().with_prefix().with_prev_key();
        let mut stream = reader.watch(layout.prefix("ev"), Some(options)).await.unwrap();
        let _created = stream.message().await.unwrap();
        for i in 0..changes {
            let (k, v) = change(i);
            writer.put(k, v, None).await.unwrap();
            let _ = stream.message().await.unwrap();
        }
    }
    println!(
        "profile-event-{}={changes}: {:?} of CPU",
        if ours { "ours" } else { "raw" },
        cpu_time() - cpu0
    );
}
