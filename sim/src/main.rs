//! `octopus-sim`: runs seeds of the deterministic simulator.

fn main() {
    let seed: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = octopus_sim::config::SimConfig::new(seed);
    let started = std::time::Instant::now();
    let run = octopus_sim::run::run(&cfg, std::env::var_os("TRACE").is_some());
    if std::env::var_os("LOG").is_some() {
        for (at, ev) in &run.entries {
            println!("{} {ev:?}", octopus_sim::log::secs(*at));
        }
    }
    let report = octopus_sim::check::check(&cfg, &run);
    for v in &report.violations {
        println!(
            "VIOLATION {} at {}: {}",
            v.invariant,
            octopus_sim::log::secs(v.at),
            v.detail
        );
    }
    println!(
        "seed {seed} digest {:016x} events {} wall {:?} failure {:?} checks {:?}",
        run.digest,
        run.entries.len(),
        started.elapsed(),
        run.failure,
        report.checks
    );
}
