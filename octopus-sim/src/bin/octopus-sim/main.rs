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

// Defined before the modules, which use it.
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

mod args;
mod shrink;
mod sweep;

use std::process::ExitCode;

use args::parse;

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
                           fresh-before-watch, resync-uncounted, no-panic-threshold, positional-created
                           (the last in the proxy world)
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
    --world proxy, --proxy etcd answers watch creates as etcd's gRPC proxy does (a followed range at once,
                           a new one later: out of order), and each discoverer also watches a service of
                           its own, opened with the shared one
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
        octopus_discovery_core::hooks::enable(
            octopus_discovery_core::hooks::Bug::from_name(bug).expect("checked in parse"),
        );
    }
    match args.seed {
        Some(seed) if args.shrink => shrink::shrink(&args, seed),
        Some(seed) => sweep::one(&args, seed),
        None => sweep::many(&args),
    }
}
