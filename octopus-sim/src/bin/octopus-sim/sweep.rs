//! Running seeds: one in this process (`--seed`), or many, each in a child process
//! of this executable, in parallel.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use octopus_sim::check::{self, INVARIANTS};
use octopus_sim::log::{secs, Ev};
use octopus_sim::run;

use crate::args::{config, replay_command, shape_flags, Args};
use crate::wall_clock;

/// Runs one seed here; as a child, prints machine-readable lines for the parent.
pub(crate) fn one(a: &Args, seed: u64) -> ExitCode {
    let cfg = config(a, seed);
    let wall = wall_clock();
    let run = run::run(&cfg, a.trace);
    let wall = wall.elapsed();
    let report = check::check(&cfg, &run);
    if a.child {
        let checks: Vec<String> = report
            .checks
            .iter()
            .map(|(k, v)| format!("{}={v}", k.split(' ').next().unwrap_or(k)))
            .collect();
        out!(
            "RESULT seed={seed} digest={:016x} events={} sim_ms={} wall_us={} checks={}",
            run.digest,
            run.entries.len(),
            cfg.duration.as_millis(),
            wall.as_micros(),
            checks.join(",")
        );
        for v in &report.violations {
            out!("VIOLATION {} | {} | {}", v.invariant, secs(v.at), v.detail);
        }
        return if report.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    if a.log {
        for (at, ev) in &run.entries {
            out!("{} {ev:?}", secs(*at));
        }
    }
    let faults = run
        .entries
        .iter()
        .filter(|(_, e)| matches!(e, Ev::FaultStart { .. } | Ev::HostDown { .. }))
        .count();
    out!(
        "seed {seed}: {} events, {faults} faults, digest {:016x}, {:.1} simulated s in {:.3} s ({:.0}x)",
        run.entries.len(),
        run.digest,
        cfg.duration.as_secs_f64(),
        wall.as_secs_f64(),
        cfg.duration.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    );
    for inv in INVARIANTS {
        out!(
            "  {inv:<24} checked {:>5}",
            report.checks.get(inv).copied().unwrap_or(0)
        );
    }
    if report.violations.is_empty() {
        out!("every invariant held");
        return ExitCode::SUCCESS;
    }
    for v in &report.violations {
        out!("VIOLATION of invariant {} at {}: {}", v.invariant, secs(v.at), v.detail);
    }
    out!("replay: {}", replay_command(a, seed));
    ExitCode::from(1)
}

pub(crate) struct ChildResult {
    pub(crate) seed: u64,
    pub(crate) ok: bool,
    pub(crate) digest: String,
    pub(crate) wall: Duration,
    pub(crate) sim: Duration,
    pub(crate) checks: BTreeMap<String, u64>,
    pub(crate) violations: Vec<String>,
    pub(crate) failure: Option<String>,
}

pub(crate) fn run_child(a: &Args, seed: u64) -> ChildResult {
    let exe = std::env::current_exe().expect("the running binary");
    let mut r = ChildResult {
        seed,
        ok: false,
        digest: String::new(),
        wall: Duration::ZERO,
        sim: Duration::ZERO,
        checks: BTreeMap::new(),
        violations: Vec::new(),
        failure: None,
    };
    let child = Command::new(exe)
        .args(["--child", "--seed", &seed.to_string()])
        .args(shape_flags(a))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            r.failure = Some(format!("could not start a child: {e}"));
            return r;
        }
    };
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            for field in rest.split(' ') {
                let Some((k, v)) = field.split_once('=') else { continue };
                match k {
                    "digest" => r.digest = v.to_owned(),
                    "wall_us" => r.wall = Duration::from_micros(v.parse().unwrap_or(0)),
                    "sim_ms" => r.sim = Duration::from_millis(v.parse().unwrap_or(0)),
                    "checks" => {
                        for c in v.split(',').filter(|c| !c.is_empty()) {
                            if let Some((name, n)) = c.split_once('=') {
                                r.checks.insert(name.to_owned(), n.parse().unwrap_or(0));
                            }
                        }
                    }
                    _ => {}
                }
            }
        } else if let Some(v) = line.strip_prefix("VIOLATION ") {
            r.violations.push(v.to_owned());
        }
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    match child.wait() {
        Ok(status) if status.success() => r.ok = true,
        Ok(status) if r.violations.is_empty() => {
            r.failure = Some(format!("the child exited with {status}: {}", stderr.trim()));
        }
        Ok(_) => {}
        Err(e) => r.failure = Some(format!("waiting for the child failed: {e}")),
    }
    r
}

/// Runs seeds in child processes (a process per seed: tokio's task ids are
/// process-wide, so only a fresh process replays a seed exactly).
pub(crate) fn many(a: &Args) -> ExitCode {
    let started = wall_clock();
    let next = Arc::new(AtomicU64::new(a.first));
    let stop = Arc::new(AtomicBool::new(false));
    let last = a.first + a.seeds;
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (0..a.jobs.min(a.seeds.max(1) as usize))
        .map(|_| {
            let (next, stop, tx, a) = (next.clone(), stop.clone(), tx.clone(), a.clone());
            std::thread::spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= last {
                    return;
                }
                if tx.send(run_child(&a, seed)).is_err() {
                    return;
                }
            })
        })
        .collect();
    drop(tx);

    let mut done = 0u64;
    let mut sim = Duration::ZERO;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures: Vec<ChildResult> = Vec::new();
    for r in rx {
        done += 1;
        sim += r.sim;
        for (k, v) in &r.checks {
            *totals.entry(k.clone()).or_default() += v;
        }
        if !r.ok {
            if !a.keep_going {
                stop.store(true, Ordering::Relaxed);
            } else {
                eprintln!("  seed {} broke an invariant: {}", r.seed, replay_command(a, r.seed));
            }
            failures.push(r);
        } else if done % 50 == 0 {
            eprintln!("  {done} seeds, {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let wall = started.elapsed().as_secs_f64();
    out!(
        "{done} seeds in {wall:.1} s: {:.1} seeds/s, {:.0} simulated s per wall s ({} jobs){}",
        done as f64 / wall,
        sim.as_secs_f64() / wall,
        a.jobs,
        a.bug.as_ref().map_or(String::new(), |b| format!(", bug {b} on"))
    );
    for inv in INVARIANTS {
        let short = inv.split(' ').next().unwrap_or(inv);
        out!("  {inv:<24} checked {:>8}", totals.get(short).copied().unwrap_or(0));
    }
    failures.sort_by_key(|r| r.seed);
    if failures.len() > 1 {
        out!("{} seeds broke an invariant:", failures.len());
        for r in &failures[1..] {
            out!(
                "  seed {}: {}",
                r.seed,
                r.violations.first().or(r.failure.as_ref()).map_or("", |v| v.as_str())
            );
        }
    }
    match (failures.into_iter().next(), a.expect_violation) {
        (None, false) => {
            out!("every invariant held on every seed");
            ExitCode::SUCCESS
        }
        (None, true) => {
            out!("no seed broke an invariant, but a violation was expected");
            ExitCode::from(1)
        }
        (Some(r), expect) => {
            out!("seed {} (digest {}):", r.seed, r.digest);
            if let Some(f) = &r.failure {
                out!("  failed: {f}");
            }
            for v in &r.violations {
                out!("  VIOLATION {v}");
            }
            out!("replay: {}", replay_command(a, r.seed));
            if expect && r.failure.is_none() {
                out!("caught, as expected, after {done} seeds");
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
