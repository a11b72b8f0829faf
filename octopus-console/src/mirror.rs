//! The console's copy of the registry: every key of every service at the last
//! revision seen, a bounded timeline per service, and the last time left read
//! on each lease (which tells an expiry from a deregistration).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use octopus::core::Revision;
use octopus::{ChangeBatch, Entry, LeaseId};
use tokio::time::Instant;

use crate::model::{diff, lease_of, put_kind, ChangeKind, InstanceRow, ServiceSummary, TimelineEvent};

/// How many timeline entries a service keeps (the oldest go first).
pub(crate) const TIMELINE_LEN: usize = 200;

/// Ids a service remembers as gone (to tell a re-registration), at most: another
/// writer churning fresh ids must not grow the console for ever.
const GONE_KEPT: usize = 1024;

/// Services without instances the console keeps listing, at most (the ones that
/// changed longest ago go first): the same for churned service names.
const EMPTY_KEPT: usize = 256;

/// A delete counts as an expiry when it comes this close to (or after) the time
/// the lease was last seen to run out.
const EXPIRY_SLACK: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct ServiceState {
    /// By key.
    instances: BTreeMap<String, InstanceRow>,
    timeline: VecDeque<(TimelineEvent, Instant)>,
    last_revision: Revision,
    changed_at: Instant,
    /// Ids whose key went away: their next key is a re-registration.
    gone: BTreeSet<String>,
}

impl ServiceState {
    fn new(now: Instant) -> Self {
        ServiceState {
            instances: BTreeMap::new(),
            timeline: VecDeque::new(),
            last_revision: 0,
            changed_at: now,
            gone: BTreeSet::new(),
        }
    }
}

/// The last time-to-live read of a lease.
#[derive(Clone, Copy, Debug)]
struct LeaseRead {
    remaining: Duration,
    read_at: Instant,
}

/// A key that changed, for the event stream.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Touched {
    pub(crate) service: String,
    pub(crate) key: String,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    pub(crate) revision: Revision,
    /// Whether the watch is live; false while the registry is unreachable.
    pub(crate) fresh: bool,
    /// Why the registry cannot be read, while it cannot.
    pub(crate) problem: Option<String>,
    services: BTreeMap<String, ServiceState>,
    /// Every lease a key holds, with its last read (if any).
    leases: BTreeMap<LeaseId, Option<LeaseRead>>,
    /// Timeline entries not yet sent on the event stream.
    new_events: Vec<TimelineEvent>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Mirror {
    /// Replaces the contents with `entries` at `revision`. Unless this is the
    /// first load, the differences become timeline entries (changes the watch
    /// missed while it was down). Returns the keys that changed.
    pub(crate) fn reset(&mut self, revision: Revision, entries: Vec<Entry>, now: Instant) -> Vec<Touched> {
        let first = self.revision == 0 && self.services.is_empty();
        let mut incoming: BTreeMap<(String, String), InstanceRow> = BTreeMap::new();
        for e in &entries {
            incoming.insert((e.service.clone(), e.key.clone()), InstanceRow::from_entry(e));
        }
        let mut current: BTreeMap<(String, String), InstanceRow> = BTreeMap::new();
        for (name, s) in &self.services {
            for (key, row) in &s.instances {
                current.insert((name.clone(), key.clone()), row.clone());
            }
        }
        let mut touched = Vec::new();
        let keys: BTreeSet<(String, String)> = incoming.keys().chain(current.keys()).cloned().collect();
        for (service, key) in keys {
            let before = current.get(&(service.clone(), key.clone()));
            let after = incoming.get(&(service.clone(), key.clone()));
            if before == after {
                continue;
            }
            let revision = after.map_or(revision, |a| a.mod_revision);
            self.set(&service, &key, before.cloned(), after.cloned(), revision, now, !first);
            touched.push(Touched { service, key });
        }
        self.revision = revision;
        touched
    }

    /// Applies a watch batch; returns the keys that changed.
    pub(crate) fn apply(&mut self, batch: ChangeBatch, now: Instant) -> Vec<Touched> {
        let mut touched = Vec::new();
        for change in batch.changes {
            let service = change.service().to_owned();
            let key = match (&change.entry, &change.prev) {
                (Some(e), _) | (None, Some(e)) => e.key.clone(),
                (None, None) => continue,
            };
            // The mirror's own copy is the truth for "before" (a watch event's
            // previous value may be missing).
            let before = self.services.get(&service).and_then(|s| s.instances.get(&key)).cloned();
            let after = change.entry.as_ref().map(InstanceRow::from_entry);
            if before.is_none() && after.is_none() {
                continue;
            }
            self.set(&service, &key, before, after, change.revision, now, true);
            touched.push(Touched { service, key });
        }
        self.revision = self.revision.max(batch.revision);
        touched
    }

    /// Puts `after` (or deletes, for `None`) at `key`, with a timeline entry
    /// when `record`.
    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        service: &str,
        key: &str,
        before: Option<InstanceRow>,
        after: Option<InstanceRow>,
        revision: Revision,
        now: Instant,
        record: bool,
    ) {
        let kind = match (&before, &after) {
            (_, Some(a)) => {
                let seen = self.services.get(service).is_some_and(|s| s.gone.contains(&a.id));
                put_kind(before.as_ref(), a, seen)
            }
            (Some(b), None) => self.delete_kind(lease_of(b), now),
            (None, None) => return,
        };
        let state = self
            .services
            .entry(service.to_owned())
            .or_insert_with(|| ServiceState::new(now));
        let id = after
            .as_ref()
            .or(before.as_ref())
            .map(|r| r.id.clone())
            .unwrap_or_default();
        if record {
            let event = TimelineEvent {
                service: service.to_owned(),
                id: id.clone(),
                revision,
                kind,
                diff: diff(before.as_ref(), after.as_ref()),
                seen_ms_ago: 0,
            };
            self.new_events.push(event.clone());
            state.timeline.push_back((event, now));
            while state.timeline.len() > TIMELINE_LEN {
                state.timeline.pop_front();
            }
        }
        state.last_revision = state.last_revision.max(revision);
        state.changed_at = now;
        match after {
            Some(row) => {
                state.gone.remove(&id);
                self.leases.entry(lease_of(&row)).or_insert(None);
                state.instances.insert(key.to_owned(), row);
            }
            None => {
                if state.gone.len() >= GONE_KEPT {
                    state.gone.pop_first();
                }
                state.gone.insert(id);
                state.instances.remove(key);
            }
        }
        let emptied = state.instances.is_empty();
        if emptied && !record {
            self.services.remove(service);
        }
        if let Some(b) = before {
            self.forget_lease_if_unused(lease_of(&b));
        }
        if emptied {
            self.forget_old_empty_services();
        }
    }

    /// Keeps at most [`EMPTY_KEPT`] services without instances (listed with
    /// their timeline): past that, the one that changed longest ago goes.
    fn forget_old_empty_services(&mut self) {
        loop {
            let empty = self.services.iter().filter(|(_, s)| s.instances.is_empty());
            if empty.clone().count() <= EMPTY_KEPT {
                return;
            }
            let Some(oldest) = empty.min_by_key(|(_, s)| s.changed_at).map(|(name, _)| name.clone()) else {
                return;
            };
            self.services.remove(&oldest);
        }
    }

    fn forget_lease_if_unused(&mut self, lease: LeaseId) {
        let used = self
            .services
            .values()
            .any(|s| s.instances.values().any(|r| lease_of(r) == lease));
        if !used {
            self.leases.remove(&lease);
        }
    }

    /// Expired when the lease's last read said it would be out by now.
    fn delete_kind(&self, lease: LeaseId, now: Instant) -> ChangeKind {
        match self.leases.get(&lease) {
            Some(Some(read)) if now + EXPIRY_SLACK >= read.read_at + read.remaining => ChangeKind::Expired,
            _ => ChangeKind::Deregistered,
        }
    }

    /// Up to `max` leases to read again: never read first, then the oldest
    /// reads, none read within `every`.
    pub(crate) fn leases_due(&self, now: Instant, every: Duration, max: usize) -> Vec<LeaseId> {
        let mut due: Vec<(Option<Instant>, LeaseId)> = self
            .leases
            .iter()
            .filter(|(id, _)| **id != LeaseId::NONE)
            .filter(|(_, read)| read.is_none_or(|r| now.duration_since(r.read_at) >= every))
            .map(|(id, read)| (read.map(|r| r.read_at), *id))
            .collect();
        due.sort();
        due.into_iter().take(max).map(|(_, id)| id).collect()
    }

    /// Records a lease's time left, read at `read_at`.
    pub(crate) fn lease_read(&mut self, lease: LeaseId, remaining: Duration, read_at: Instant) {
        if let Some(slot) = self.leases.get_mut(&lease) {
            *slot = Some(LeaseRead { remaining, read_at });
        }
    }

    fn ttl_ms(&self, row: &InstanceRow, now: Instant) -> Option<u64> {
        let read = (*self.leases.get(&lease_of(row))?)?;
        Some(ms(read.remaining.saturating_sub(now.duration_since(read.read_at))))
    }

    fn summary(&self, name: &str, s: &ServiceState, now: Instant) -> ServiceSummary {
        ServiceSummary::of(
            name,
            s.instances.values(),
            s.last_revision,
            ms(now.duration_since(s.changed_at)),
        )
    }

    /// Every service with at least one instance, by name.
    pub(crate) fn summaries(&self, now: Instant) -> Vec<ServiceSummary> {
        self.services
            .iter()
            .filter(|(_, s)| !s.instances.is_empty())
            .map(|(name, s)| self.summary(name, s, now))
            .collect()
    }

    /// One service's summary (`None`: no instance now, though it may have a timeline).
    pub(crate) fn service_summary(&self, name: &str, now: Instant) -> Option<ServiceSummary> {
        let s = self.services.get(name).filter(|s| !s.instances.is_empty())?;
        Some(self.summary(name, s, now))
    }

    /// One service's instances, by id; `None` when the console never saw it.
    pub(crate) fn rows(&self, name: &str, now: Instant) -> Option<Vec<InstanceRow>> {
        let s = self.services.get(name)?;
        let mut rows: Vec<InstanceRow> = s
            .instances
            .values()
            .map(|r| InstanceRow {
                ttl_ms: self.ttl_ms(r, now),
                ..r.clone()
            })
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.key.cmp(&b.key)));
        Some(rows)
    }

    /// One key's row now (`None`: deleted).
    pub(crate) fn row(&self, touched: &Touched, now: Instant) -> Option<InstanceRow> {
        let r = self.services.get(&touched.service)?.instances.get(&touched.key)?;
        Some(InstanceRow {
            ttl_ms: self.ttl_ms(r, now),
            ..r.clone()
        })
    }

    /// One service's timeline, newest first; `None` when the console never saw it.
    pub(crate) fn timeline(&self, name: &str, now: Instant) -> Option<Vec<TimelineEvent>> {
        let s = self.services.get(name)?;
        Some(
            s.timeline
                .iter()
                .rev()
                .map(|(e, at)| TimelineEvent {
                    seen_ms_ago: ms(now.duration_since(*at)),
                    ..e.clone()
                })
                .collect(),
        )
    }

    /// The timeline entries recorded since the last call, oldest first.
    pub(crate) fn take_new_events(&mut self) -> Vec<TimelineEvent> {
        std::mem::take(&mut self.new_events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str, id: &str, revision: Revision) -> InstanceRow {
        let entry = Entry {
            service: service.to_owned(),
            key: format!("/octopus/services/{service}/{id}"),
            lease: LeaseId::NONE,
            create_revision: revision,
            mod_revision: revision,
            instance: Ok(octopus::ServiceInstance::new(service, id, "127.0.0.1", 1).unwrap()),
        };
        InstanceRow::from_entry(&entry)
    }

    /// Another writer registering and removing fresh ids under fresh service
    /// names: what the console remembers stops growing at its bounds.
    #[test]
    fn churned_ids_and_services_are_remembered_up_to_a_bound() {
        let mut mirror = Mirror::default();
        let mut revision = 0;
        let start = Instant::now();
        for n in 0..2 * GONE_KEPT {
            let now = start + Duration::from_millis(n as u64);
            for (service, id) in [("churn".to_owned(), format!("i{n}")), (format!("s{n}"), "x".to_owned())] {
                let key = format!("/octopus/services/{service}/{id}");
                revision += 1;
                mirror.set(
                    &service,
                    &key,
                    None,
                    Some(row(&service, &id, revision)),
                    revision,
                    now,
                    true,
                );
                revision += 1;
                let before = Some(row(&service, &id, revision - 1));
                mirror.set(&service, &key, before, None, revision, now, true);
            }
        }
        assert_eq!(mirror.services.get("churn").map(|s| s.gone.len()), Some(GONE_KEPT));
        assert_eq!(mirror.services.len(), EMPTY_KEPT, "empty services, the newest kept");
        assert!(mirror.services.contains_key(&format!("s{}", 2 * GONE_KEPT - 1)));
    }
}
