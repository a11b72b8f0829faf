//! Scenario 2, `propagation`: from a put sent to the change seen by every
//! watcher, Octopus beside raw etcd-client (also decoding each value into an
//! instance, as a user who wants instances would, and also keeping them, as one
//! who wants the current instances would, on one client and a client each) and
//! etcd's Go clientv3.

mod round;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::helpers::{ms, percentile};
use round::{paired, propagation_round, Round, Watchers};

/// One side's propagation over the rounds.
#[derive(Default)]
struct SideStats {
    /// Every delay.
    pooled: Vec<Duration>,
    /// Each round's p99.
    p99s: Vec<Duration>,
    /// The watcher process's CPU per sighting (µs), each round.
    cpus: Vec<f64>,
}

pub(crate) async fn propagation(quick: bool) {
    let go = octopus_etcd_load::go_program("octopuswatch")
        .map_err(|why| println!("\n(Go peer skipped: {why})"))
        .ok();
    let ours = std::path::PathBuf::from(env!("CARGO_BIN_EXE_watch_client"));
    let (puts, rounds) = if quick { (50, 1) } else { (200, 5) };
    // PROPAGATION_ROUNDS=N and PROPAGATION_PUTS=N change the sizes.
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (puts, rounds) = (env("PROPAGATION_PUTS", puts), env("PROPAGATION_ROUNDS", rounds));
    println!(
        "\n## 2. Propagation: put sent → change seen by each watcher ({puts} puts per side and round, \
         {rounds} rounds on fresh etcds; every side a process of its own watching a service of its own for \
         the whole round, the puts taking turns between the sides' services, one every 5 ms; p50 / p99 / \
         max over every sighting, then the rounds' p99s min–max and the process's CPU per sighting)\n"
    );
    println!(
        "| watchers per side | raw etcd-client, one client | raw etcd-client + decode, one client | raw etcd-client + decode + keep, one client | Go clientv3, one client | Octopus, one client | raw etcd-client, a client each | raw etcd-client + decode, a client each | raw etcd-client + decode + keep, a client each | Octopus, a client each |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    // PROPAGATION_WATCHERS=1,20 measures those counts only.
    let counts: Vec<usize> = match std::env::var("PROPAGATION_WATCHERS") {
        Ok(list) => list.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => vec![1, 20, 100],
    };
    let pairs = [
        ("Octopus − Go", Watchers::Shared, Watchers::Go),
        ("Octopus − raw", Watchers::Shared, Watchers::RawShared),
        ("Go − raw", Watchers::Go, Watchers::RawShared),
        ("Octopus − raw, a client each", Watchers::Each, Watchers::RawEach),
        ("Octopus − raw + decode", Watchers::Shared, Watchers::RawDecode),
        ("raw + decode − raw", Watchers::RawDecode, Watchers::RawShared),
        ("Octopus − raw + decode + keep", Watchers::Shared, Watchers::RawKeep),
        ("raw + decode + keep − raw", Watchers::RawKeep, Watchers::RawShared),
        (
            "Octopus − raw + decode, a client each",
            Watchers::Each,
            Watchers::RawDecodeEach,
        ),
        (
            "raw + decode − raw, a client each",
            Watchers::RawDecodeEach,
            Watchers::RawEach,
        ),
        (
            "Octopus − raw + decode + keep, a client each",
            Watchers::Each,
            Watchers::RawKeepEach,
        ),
        (
            "raw + decode + keep − raw, a client each",
            Watchers::RawKeepEach,
            Watchers::RawEach,
        ),
    ];
    let mut differences = Vec::new();
    for w in counts {
        // Per side: every delay, each round's p99, and the process's CPU per sighting.
        let mut all: BTreeMap<Watchers, SideStats> = BTreeMap::new();
        let mut diffs: Vec<PairStats> = (0..pairs.len()).map(|_| PairStats::default()).collect();
        for _ in 0..rounds {
            let round = propagation_round(&ours, go.as_deref(), puts, w).await;
            for ((_, a, b), stats) in pairs.iter().zip(&mut diffs) {
                if let (Some(a), Some(b)) = (round.get(a), round.get(b)) {
                    let mut d = paired(a, b);
                    d.sort_by(f64::total_cmp);
                    if !d.is_empty() {
                        stats.medians.push(d[d.len() / 2]);
                    }
                    stats.pooled.extend(d);
                    let p99 = |r: &Round| percentile(&r.delays, 0.99).as_secs_f64() * 1e6;
                    stats.p99s.push(p99(a) - p99(b));
                }
            }
            for (side, Round { delays, cpu, .. }) in round {
                let SideStats { pooled, p99s, cpus } = all.entry(side).or_default();
                p99s.push(percentile(&delays, 0.99));
                if let (Some(cpu), false) = (cpu, delays.is_empty()) {
                    cpus.push(cpu.as_secs_f64() * 1e6 / delays.len() as f64);
                }
                pooled.extend(delays);
            }
        }
        for SideStats { pooled, p99s, cpus } in all.values_mut() {
            pooled.sort();
            p99s.sort();
            cpus.sort_by(f64::total_cmp);
        }
        let cell = |side: Watchers| {
            let Some(SideStats { pooled, p99s, cpus }) = all.get(&side) else {
                return "skipped".to_owned();
            };
            let cpu = match cpus.len() {
                0 => String::new(),
                n => format!("; process CPU {:.0} µs per sighting", cpus[n / 2]),
            };
            format!(
                "{} / {} / {} ({} seen; p99 {}–{}{cpu})",
                ms(percentile(pooled, 0.5)),
                ms(percentile(pooled, 0.99)),
                ms(pooled.last().copied().unwrap_or_default()),
                pooled.len(),
                ms(p99s[0]),
                ms(p99s[p99s.len() - 1]),
            )
        };
        println!(
            "| {w} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(Watchers::RawShared),
            cell(Watchers::RawDecode),
            cell(Watchers::RawKeep),
            cell(Watchers::Go),
            cell(Watchers::Shared),
            cell(Watchers::RawEach),
            cell(Watchers::RawDecodeEach),
            cell(Watchers::RawKeepEach),
            cell(Watchers::Each)
        );
        differences.push((w, diffs));
    }
    println!(
        "\nPaired (µs): put by put (each side's median over its watchers, one side's minus the other's), \
         the median difference over every put, its p10 and p90, and the rounds' medians min–max; then round \
         by round, one side's p99 minus the other's: the median over the rounds, min–max, and in how many \
         rounds the first side's p99 was the lower\n"
    );
    let header: Vec<&str> = pairs.iter().map(|(name, _, _)| *name).collect();
    println!(
        "| watchers per side | {} |\n|---|{}",
        header.join(" | "),
        "---|".repeat(pairs.len())
    );
    for (w, diffs) in differences {
        let cells: Vec<String> = diffs.into_iter().map(PairStats::cell).collect();
        println!("| {w} | {} |", cells.join(" | "));
    }
}

/// One pair of sides' differences over the rounds.
#[derive(Default)]
struct PairStats {
    /// Every put's difference.
    pooled: Vec<f64>,
    /// Each round's median put-by-put difference.
    medians: Vec<f64>,
    /// Each round's difference of p99s.
    p99s: Vec<f64>,
}

impl PairStats {
    /// The table cell: put by put, then round by round.
    fn cell(mut self) -> String {
        if self.pooled.is_empty() {
            return "skipped".to_owned();
        }
        for v in [&mut self.pooled, &mut self.medians, &mut self.p99s] {
            v.sort_by(f64::total_cmp);
        }
        let (pooled, medians, p99s) = (&self.pooled, &self.medians, &self.p99s);
        let at = |p: f64| pooled[((pooled.len() - 1) as f64 * p) as usize];
        format!(
            "{:+.0} ({:+.0} … {:+.0}; rounds {:+.0} … {:+.0}); p99 {:+.0} ({:+.0} … {:+.0}; lower in {} of {})",
            at(0.5),
            at(0.1),
            at(0.9),
            medians[0],
            medians[medians.len() - 1],
            p99s[p99s.len() / 2],
            p99s[0],
            p99s[p99s.len() - 1],
            p99s.iter().filter(|d| **d < 0.0).count(),
            p99s.len(),
        )
    }
}
