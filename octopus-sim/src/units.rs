//! A schedule seen as units (a fault with its heal, a crash with its restart, a
//! single action), numbered in the order they start: what edits name and what
//! shrinking drops, shortens and moves.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::edits::Edits;
use crate::schedule::{Action, Schedule};

/// One fault of a schedule with its end: a link fault and its heal, a crash and
/// its restart, or a single action (a compaction, a deregistration). Units are
/// numbered in the order the schedule starts them; edits name them by number.
#[derive(Clone, Debug)]
pub struct Unit {
    /// When it starts.
    pub at: Duration,
    /// What starts it.
    pub start: Action,
    /// When and what ends it, if anything does.
    pub end: Option<(Duration, Action)>,
}

impl Unit {
    /// How long it lasts (zero for a single action).
    pub fn len(&self) -> Duration {
        self.end
            .as_ref()
            .map_or(Duration::ZERO, |(t, _)| t.saturating_sub(self.at))
    }

    /// Whether it has no duration (a single action).
    pub fn is_empty(&self) -> bool {
        self.end.is_none()
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.start {
            Action::Fault { kind, a, b, .. } => format!("{kind:?} {a} -> {b}"),
            Action::Crash { host, lose_data: true } => format!("crash {host}, losing its data"),
            Action::Crash { host, .. } => format!("crash {host}"),
            Action::Compact => "compact etcd".into(),
            Action::Deregister { host } => format!("deregister {host}"),
            other => format!("{other:?}"),
        };
        write!(f, "{:>9.3}s  {what}", self.at.as_secs_f64())?;
        if self.end.is_some() {
            write!(f, " for {:.3}s", self.len().as_secs_f64())?;
        }
        Ok(())
    }
}

/// The schedule's units, in the order they start.
pub fn units(schedule: &Schedule) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut open_faults: BTreeMap<u32, usize> = BTreeMap::new();
    let mut open_crashes: BTreeMap<String, usize> = BTreeMap::new();
    for (at, action) in &schedule.actions {
        let close = match action {
            Action::Heal { id, .. } => open_faults.remove(id),
            Action::Restart { host } => open_crashes.remove(host),
            _ => None,
        };
        if let Some(i) = close {
            units[i].end = Some((*at, action.clone()));
            continue;
        }
        match action {
            Action::Fault { id, .. } => {
                open_faults.insert(*id, units.len());
            }
            Action::Crash { host, .. } => {
                open_crashes.insert(host.clone(), units.len());
            }
            _ => {}
        }
        units.push(Unit {
            at: *at,
            start: action.clone(),
            end: None,
        });
    }
    units
}

/// `schedule` with `edits` applied.
pub fn apply(edits: &Edits, schedule: Schedule) -> Schedule {
    if edits.is_empty() {
        return schedule;
    }
    let twin_start = schedule.twin_start;
    let mut actions = Vec::new();
    for (i, unit) in units(&schedule).into_iter().enumerate() {
        if edits.drop.contains(&i) {
            continue;
        }
        let at = edits.at.get(&i).copied().unwrap_or(unit.at);
        let len = edits.len.get(&i).copied().unwrap_or(unit.len());
        actions.push((at, unit.start));
        if let Some((_, end)) = unit.end {
            actions.push((at + len, end));
        }
    }
    actions.sort_by_key(|(at, _)| *at);
    Schedule { actions, twin_start }
}
