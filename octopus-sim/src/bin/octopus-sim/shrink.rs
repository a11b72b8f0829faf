//! `--shrink`: a failing seed's schedule made minimal.

use std::process::ExitCode;
use std::time::Duration;

use octopus_sim::edits::Edits;
use octopus_sim::schedule;
use octopus_sim::units;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::args::{config, replay_command, Args};
use crate::sweep::run_child;

/// Shrinks a failing seed's schedule, as proptest shrinks a failing case: drops
/// each fault that the failure does not need, then shortens and delays the rest,
/// keeping every change under which the same invariant still breaks. Each try is
/// a run of its own in a child process.
pub(crate) fn shrink(a: &Args, seed: u64) -> ExitCode {
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
