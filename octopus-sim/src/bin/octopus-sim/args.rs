//! The command line: flags, the run settings they make, and the replay command that
//! gives them back.

use std::time::Duration;

use octopus_sim::config::{SimConfig, World};
use octopus_sim::edits::Edits;

#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) seeds: u64,
    pub(crate) first: u64,
    pub(crate) seed: Option<u64>,
    pub(crate) duration: Option<u64>,
    pub(crate) registrants: Option<usize>,
    pub(crate) discoverers: Option<usize>,
    pub(crate) tick_ms: Option<u64>,
    pub(crate) jobs: usize,
    pub(crate) bug: Option<String>,
    pub(crate) expect_violation: bool,
    pub(crate) keep_going: bool,
    pub(crate) edits: Option<String>,
    pub(crate) shrink: bool,
    pub(crate) world: World,
    pub(crate) log: bool,
    pub(crate) trace: bool,
    pub(crate) child: bool,
}

pub(crate) fn parse() -> Result<Args, String> {
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
                if octopus_discovery_core::hooks::Bug::from_name(&v).is_none() {
                    let names: Vec<&str> = octopus_discovery_core::hooks::Bug::ALL
                        .iter()
                        .map(|(_, n)| *n)
                        .collect();
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
            "--proxy" => a.world.proxy = true,
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
                        proxy: false,
                    };
                }
                "proxy" => a.world.proxy = true,
                other => return Err(format!("unknown world {other:?}: default, big or proxy")),
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

pub(crate) fn config(a: &Args, seed: u64) -> SimConfig {
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
pub(crate) fn shape_flags(a: &Args) -> Vec<String> {
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
        (a.world.proxy, "--proxy"),
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

pub(crate) fn replay_command(a: &Args, seed: u64) -> String {
    let mut cmd = format!("cargo run -p octopus-sim --release -- --seed {seed}");
    for f in shape_flags(a) {
        cmd.push(' ');
        cmd.push_str(&f);
    }
    cmd.push_str(" --log");
    cmd
}
