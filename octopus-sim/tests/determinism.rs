//! The simulator is deterministic: the same seed gives the same event-log digest,
//! in separate processes (as the runner runs seeds); different seeds differ.

use std::process::Command;

fn digest(seed: u64) -> String {
    digest_with(seed, &[])
}

fn digest_with(seed: u64, flags: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_octopus-sim"))
        .args(["--child", "--seed", &seed.to_string(), "--duration", "20"])
        .args(flags)
        .output()
        .expect("octopus-sim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "seed {seed} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("a RESULT line");
    let digest = line
        .split(' ')
        .find_map(|f| f.strip_prefix("digest="))
        .expect("a digest");
    let events: usize = line
        .split(' ')
        .find_map(|f| f.strip_prefix("events="))
        .and_then(|n| n.parse().ok())
        .expect("an event count");
    assert!(events > 100, "seed {seed} logged only {events} events: {line}");
    digest.to_owned()
}

#[test]
fn same_seed_same_digest_different_seeds_differ() {
    let a = digest(7);
    let b = digest(7);
    assert_eq!(a, b, "seed 7 gave two different event logs");
    let c = digest(8);
    assert_ne!(a, c, "seeds 7 and 8 gave the same event log");
}

/// The harsher worlds too (a registry whose shared lease drew its jitter from the
/// machine's entropy once made them differ run to run).
#[test]
fn harsher_worlds_are_deterministic_too() {
    let flags = ["--flapping", "--shared-lease", "--restart-all", "--slow-minority"];
    assert_eq!(digest_with(3, &flags), digest_with(3, &flags));
    assert_ne!(digest_with(3, &flags), digest(3), "the flags change the run");
}

/// The proxy world (watch creates answered out of order, after simulated delays)
/// is deterministic too, and a different run from the default.
#[test]
fn the_proxy_world_is_deterministic_too() {
    assert_eq!(digest_with(9, &["--proxy"]), digest_with(9, &["--proxy"]));
    assert_ne!(
        digest_with(9, &["--proxy"]),
        digest(9),
        "the proxy world changes the run"
    );
}

/// The step size is part of a run: `--tick-ms 1` (how runs were made before the
/// default became 3 ms) is deterministic too, and a different run from the default.
#[test]
fn the_step_size_is_part_of_the_run() {
    assert_eq!(digest_with(5, &["--tick-ms", "1"]), digest_with(5, &["--tick-ms", "1"]));
    assert_ne!(
        digest_with(5, &["--tick-ms", "1"]),
        digest(5),
        "the step changes the run"
    );
    assert_eq!(digest_with(5, &["--tick-ms", "3"]), digest(5), "3 ms is the default");
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_octopus-sim"))
        .args(["--bug", "no-such-bug"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown bug \"no-such-bug\"") && err.contains("no-fencing"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_octopus-sim"))
        .args(["--seeds", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds must be a non-negative integer, not \"x\""));
}
