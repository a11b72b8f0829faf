//! `octopus-sim`: runs seeds of Octopus's deterministic simulator.
//!
//! ```text
//! octopus-sim --seeds 1000            # seeds 1..=1000, one process each, in parallel
//! octopus-sim --seed 42 --log         # replay one seed with its full event log
//! ```
//!
//! Exit codes: 0 every invariant held on every seed (or, with `--expect-violation`,
//! a violation was found); 1 a violation (or none found with `--expect-violation`);
//! 2 bad arguments; 141 its output was closed early (`| head`), as a shell
//! reports a process ended by SIGPIPE.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use octopus_sim::check::{self, INVARIANTS};

/// `println!` that ends the process quietly (exit 141) when stdout is closed,
/// instead of panicking: `octopus-sim --seed 3 --log | head` is a normal use.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}
use octopus_sim::config::{SimConfig, World};
use octopus_sim::edits::Edits;
use octopus_sim::log::{secs, Ev};
use octopus_sim::run;
use octopus_sim::schedule;
use octopus_sim::units;
use rand::rngs::StdRng;
use rand::SeedableRng;

const HELP: &str = "\
octopus-sim: the real Octopus etcd client against a simulated etcd, under faults drawn from a seed

USAGE:
    octopus-sim [--seeds N] [--first S] [OPTIONS]     run seeds S..S+N-1 (default 1..=100), one process each
    octopus-sim --seed N [--log] [--trace] [OPTIONS]  run one seed in this process and explain it

OPTIONS:
    --duration SECS        simulated seconds per run (default 60)
    --registrants N        hosts that register (default 5)
    --discoverers N        hosts that watch (default 3)
    --jobs J               seeds at a time (default: the machine's cores)
    --tick-ms MS           simulated milliseconds per step (default 3; 1 replays runs made before the
                           default changed, at 2.5x the wall time)
    --bug NAME             switch on a deliberate bug: keepalive-stops, watch-from-zero, no-jitter, no-fencing,
                           fresh-before-watch, resync-uncounted
    --expect-violation     succeed only if some seed breaks an invariant (to prove a bug is caught)
    --keep-going           run every seed even after one breaks an invariant, and list every failing seed
    --shrink               with --seed: shrink the failing seed's fault schedule (drop faults, shorten
                           them, move them later) while the same invariant still breaks; prints the
                           minimal schedule and the command that replays it
    --world big            20 registrants, 10 discoverers, and every harsher world below
    --flapping             one client's link to etcd flaps (cut 0.3-1 s every 1-3 s) for up to a minute
    --shared-lease         registrants keep their registration on their process's shared lease
    --restart-all          once, every client host crashes and restarts while etcd is down
    --slow-minority        a minority of the discoverers sits behind a slow link for the whole run
    --edits EDITS          change the seed's drawn schedule: UNIT:drop, UNIT:len=MSms, UNIT:at=MSms,
                           comma separated (what --shrink prints)
    --log                  print the event log (with --seed)
    --trace                print the library's tracing with simulated timestamps (with --seed)
    -h, --help             this text

EXIT CODES:
    0  every invariant held on every seed (with --expect-violation: a violation was found)
    1  an invariant was broken (with --expect-violation: none was)
    2  bad arguments";

/// The runner's own wall clock, to report simulation speed; never reaches the
/// simulated hosts (their time is turmoil's).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

#[derive(Clone, Debug)]
struct Args {
    seeds: u64,
    first: u64,
    seed: Option<u64>,
    duration: Option<u64>,
    registrants: Option<usize>,
    discoverers: Option<usize>,
    tick_ms: Option<u64>,
    jobs: usize,
    bug: Option<String>,
    expect_violation: bool,
    keep_going: bool,
    edits: Option<String>,
    shrink: bool,
    world: World,
    log: bool,
    trace: bool,
    child: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        first: 1,
        seed: None,
        duration: None,
        registrants: None,
        discoverers: None,
        tick_ms: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        bug: None,
        expect_violation: false,
        keep_going: false,
        edits: None,
        shrink: false,
        world: World::default(),
        log: false,
        trace: false,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name} must be a non-negative integer, not {v:?}"))
        }
        match flag.as_str() {
            "--seeds" => a.seeds = num("--seeds", value("--seeds")?)?,
            "--first" => a.first = num("--first", value("--first")?)?,
            "--seed" => a.seed = Some(num("--seed", value("--seed")?)?),
            "--duration" => a.duration = Some(num("--duration", value("--duration")?)?),
            "--registrants" => a.registrants = Some(num("--registrants", value("--registrants")?)?),
            "--discoverers" => a.discoverers = Some(num("--discoverers", value("--discoverers")?)?),
            "--hosts" => {
                // --hosts R,D
                let v = value("--hosts")?;
                let (r, d) = v.split_once(',').ok_or("--hosts takes REGISTRANTS,DISCOVERERS")?;
                a.registrants = Some(num("--hosts", r.to_owned())?);
                a.discoverers = Some(num("--hosts", d.to_owned())?);
            }
            "--tick-ms" => a.tick_ms = Some(num("--tick-ms", value("--tick-ms")?)?),
            "--jobs" => a.jobs = num::<usize>("--jobs", value("--jobs")?)?.max(1),
            "--bug" => {
                let v = value("--bug")?;
                if octopus_core::hooks::Bug::from_name(&v).is_none() {
                    let names: Vec<&str> = octopus_core::hooks::Bug::ALL.iter().map(|(_, n)| *n).collect();
                    return Err(format!("unknown bug {v:?}: one of {}", names.join(", ")));
                }
                a.bug = Some(v);
            }
            "--expect-violation" => a.expect_violation = true,
            "--keep-going" => a.keep_going = true,
            "--edits" => {
                let v = value("--edits")?;
                Edits::parse(&v)?;
                a.edits = Some(v);
            }
            "--shrink" => a.shrink = true,
            "--flapping" => a.world.flapping = true,
            "--shared-lease" => a.world.shared_lease = true,
            "--restart-all" => a.world.restart_all = true,
            "--slow-minority" => a.world.slow_minority = true,
            "--world" => match value("--world")?.as_str() {
                "default" => {}
                "big" => {
                    a.registrants = Some(20);
                    a.discoverers = Some(10);
                    a.world = World {
                        flapping: true,
                        shared_lease: true,
                        restart_all: true,
                        slow_minority: true,
                    };
                }
                other => return Err(format!("unknown world {other:?}: default or big")),
            },
            "--log" => a.log = true,
            "--trace" => a.trace = true,
            "--child" => a.child = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.duration == Some(0) {
        return Err("--duration must be at least 1 second".into());
    }
    if a.tick_ms == Some(0) {
        return Err("--tick-ms must be at least 1 millisecond".into());
    }
    Ok(a)
}

fn config(a: &Args, seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(seed);
    if let Some(d) = a.duration {
        cfg.duration = Duration::from_secs(d);
    }
    if let Some(r) = a.registrants {
        cfg.registrants = r;
    }
    if let Some(d) = a.discoverers {
        cfg.discoverers = d;
    }
    if let Some(t) = a.tick_ms {
        cfg.tick = Duration::from_millis(t);
    }
    if let Some(e) = &a.edits {
        cfg.edits = Edits::parse(e).expect("checked in parse");
    }
    cfg.world = a.world.clone();
    cfg
}

/// The flags that shape a run, to pass to a child or print in a replay command.
fn shape_flags(a: &Args) -> Vec<String> {
    let mut f = Vec::new();
    if let Some(d) = a.duration {
        f.extend(["--duration".into(), d.to_string()]);
    }
    if let Some(r) = a.registrants {
        f.extend(["--registrants".into(), r.to_string()]);
    }
    if let Some(d) = a.discoverers {
        f.extend(["--discoverers".into(), d.to_string()]);
    }
    if let Some(t) = a.tick_ms {
        f.extend(["--tick-ms".into(), t.to_string()]);
    }
    if let Some(b) = &a.bug {
        f.extend(["--bug".into(), b.clone()]);
    }
    for (on, flag) in [
        (a.world.flapping, "--flapping"),
        (a.world.shared_lease, "--shared-lease"),
        (a.world.restart_all, "--restart-all"),
        (a.world.slow_minority, "--slow-minority"),
    ] {
        if on {
            f.push(flag.into());
        }
    }
    if let Some(e) = a.edits.as_ref().filter(|e| !e.is_empty()) {
        f.extend(["--edits".into(), e.clone()]);
    }
    f
}

fn replay_command(a: &Args, seed: u64) -> String {
    let mut cmd = format!("cargo run -p octopus-sim --release -- --seed {seed}");
    for f in shape_flags(a) {
        cmd.push(' ');
        cmd.push_str(&f);
    }
    cmd.push_str(" --log");
    cmd
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            out!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("octopus-sim: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    if let Some(bug) = &args.bug {
        octopus_core::hooks::enable(octopus_core::hooks::Bug::from_name(bug).expect("checked in parse"));
    }
    match args.seed {
        Some(seed) if args.shrink => shrink(&args, seed),
        Some(seed) => one(&args, seed),
        None => many(&args),
    }
}

/// Shrinks a failing seed's schedule, as proptest shrinks a failing case: drops
/// each fault that the failure does not need, then shortens and delays the rest,
/// keeping every change under which the same invariant still breaks. Each try is
/// a run of its own in a child process.
fn shrink(a: &Args, seed: u64) -> ExitCode {
    let cfg = config(a, seed);
    let drawn = schedule::draw(&cfg, &mut StdRng::seed_from_u64(seed));
    let units = units::units(&drawn);
    let first = run_child(a, seed);
    let Some(target) = first
        .violations
        .first()
        .map(|v| v.split(" | ").next().unwrap_or(v).to_owned())
    else {
        out!("seed {seed} breaks no invariant: nothing to shrink");
        return ExitCode::from(1);
    };
    out!(
        "seed {seed} breaks invariant {target}; shrinking its {} faults",
        units.len()
    );
    let mut runs = 1;
    let mut fails = |edits: &Edits| {
        runs += 1;
        let mut b = a.clone();
        b.edits = Some(edits.to_string());
        let r = run_child(&b, seed);
        r.violations.iter().any(|v| v.starts_with(&format!("{target} |")))
    };
    let mut edits = cfg.edits.clone();
    for i in (0..units.len()).rev() {
        if edits.drop.contains(&i) {
            continue;
        }
        let mut e = edits.clone();
        e.drop.insert(i);
        if fails(&e) {
            edits = e;
        }
    }
    let kept: Vec<usize> = (0..units.len()).filter(|i| !edits.drop.contains(i)).collect();
    for &i in &kept {
        if units[i].is_empty() {
            continue;
        }
        for _ in 0..4 {
            let now = edits.len.get(&i).copied().unwrap_or(units[i].len());
            if now < Duration::from_millis(100) {
                break;
            }
            let mut e = edits.clone();
            e.len.insert(i, now / 2);
            if !fails(&e) {
                break;
            }
            edits = e;
        }
    }
    let heal = cfg.heal_at();
    for &i in &kept {
        let at = edits.at.get(&i).copied().unwrap_or(units[i].at);
        let len = edits.len.get(&i).copied().unwrap_or(units[i].len());
        let later = at + heal.saturating_sub(at + len) / 2;
        if later <= at + Duration::from_millis(100) {
            continue;
        }
        let mut e = edits.clone();
        e.at.insert(i, later);
        if fails(&e) {
            edits = e;
        }
    }
    let shrunk = units::apply(&edits, drawn);
    let left = units::units(&shrunk);
    out!(
        "shrunk to {} of {} faults in {runs} runs; invariant {target} still breaks:",
        left.len(),
        units.len()
    );
    for u in &left {
        out!("  {u}");
    }
    let mut b = a.clone();
    b.edits = Some(edits.to_string());
    out!("replay: {}", replay_command(&b, seed));
    ExitCode::SUCCESS
}

/// Runs one seed here; as a child, prints machine-readable lines for the parent.
fn one(a: &Args, seed: u64) -> ExitCode {
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

struct ChildResult {
    seed: u64,
    ok: bool,
    digest: String,
    wall: Duration,
    sim: Duration,
    checks: BTreeMap<String, u64>,
    violations: Vec<String>,
    failure: Option<String>,
}

fn run_child(a: &Args, seed: u64) -> ChildResult {
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
fn many(a: &Args) -> ExitCode {
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
