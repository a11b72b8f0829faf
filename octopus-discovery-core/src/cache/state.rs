//! What a service's cache knows, shared by its task (reads, resyncs, losses)
//! and its watch's sink (live changes, in the task that reads the watch).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::stats::DiscoveryStats;
use crate::latest;
use crate::view::View;
use crate::{
    Error, EventKind, Freshness, Header, KeyLayout, KeyValue, Revision, ServiceInstance, Snapshot, WatchMessage,
};

/// Keys whose decode errors a cache remembers having logged, at most.
const LOGGED_MAX: usize = 1024;

/// How a watch ended, as its sink tells the task.
pub(super) enum Ended {
    /// Its start revision was compacted under it: read everything again.
    Compacted,
    /// It was lost: resume from the view's revision.
    Lost(Error),
}

pub(super) struct CacheState {
    pub(super) layout: Arc<dyn KeyLayout>,
    pub(super) stats: Arc<DiscoveryStats>,
    pub(super) service: String,
    pub(super) prefix: String,
    pub(super) tx: latest::Publisher<Option<Snapshot>>,
    pub(super) view: View,
    pub(super) revision: Revision,
    pub(super) cluster: Option<u64>,
    pub(super) resyncs: u64,
    pub(super) stale_since: Option<Instant>,
    /// Keys whose decode error was logged already: log once, count always.
    pub(super) logged: BTreeSet<Vec<u8>>,
    /// Where fresh views are saved, and read from at a cold start.
    pub(super) cold: Option<Arc<crate::cache_file::ColdCache>>,
    /// Its metrics' handles.
    pub(super) series: crate::telemetry::CacheSeries,
    /// While the task waits to learn whether its new watch started (its start
    /// may be compacted), the messages the watch already sent.
    pub(super) held: Option<Vec<WatchMessage>>,
    /// Tells the task that the current watch ended; `None` when no watch is
    /// being followed (messages then change nothing).
    pub(super) done: Option<oneshot::Sender<Ended>>,
    /// Counts the watches opened: a sink of an earlier one (its cancel still
    /// on the way) is told apart by it, and changes nothing.
    pub(super) generation: u64,
}

impl CacheState {
    /// The state of `service`'s cache before its first read: no view, no
    /// revision, nothing followed; it publishes through `tx`.
    pub(super) fn new(
        layout: Arc<dyn KeyLayout>,
        stats: Arc<DiscoveryStats>,
        service: &str,
        prefix: String,
        tx: latest::Publisher<Option<Snapshot>>,
        cold: Option<Arc<crate::cache_file::ColdCache>>,
    ) -> Self {
        CacheState {
            layout,
            stats,
            service: service.to_owned(),
            prefix,
            tx,
            view: View::default(),
            revision: 0,
            cluster: None,
            resyncs: 0,
            stale_since: None,
            logged: BTreeSet::new(),
            cold,
            series: crate::telemetry::CacheSeries::new(service),
            held: None,
            done: None,
            generation: 0,
        }
    }

    /// A new watch is being opened: hold its messages until it is known to have started.
    /// Its generation, for the new watch's sink.
    pub(super) fn arm(&mut self, done: oneshot::Sender<Ended>) -> u64 {
        self.held = Some(Vec::new());
        self.done = Some(done);
        self.generation += 1;
        self.generation
    }

    /// The watch started: the view is fresh again, and what it sent meanwhile applies.
    pub(super) fn started(&mut self) {
        if self.stale_since.take().is_some() {
            self.publish();
        }
        for message in self.held.take().unwrap_or_default() {
            self.apply(message);
        }
    }

    /// No watch is followed any more: whatever the last one still sends changes nothing.
    pub(super) fn disarm(&mut self) {
        self.held = None;
        self.done = None;
    }

    /// Tells the task how the watch ended (once).
    pub(super) fn finish(&mut self, ended: Ended) {
        if let Some(done) = self.done.take() {
            let _ = done.send(ended);
        }
    }

    /// One watch message, applied and published.
    pub(super) fn apply(&mut self, message: WatchMessage) {
        if self.done.is_none() {
            return;
        }
        match message {
            WatchMessage::Events { revision, events } => {
                for ev in &events {
                    match ev.kind {
                        EventKind::Put => self.apply_put(&ev.kv),
                        EventKind::Delete => {
                            self.view.remove(relative(&self.prefix, &ev.kv.key));
                        }
                    }
                    self.revision = self.revision.max(ev.kv.mod_revision);
                }
                // The header's revision says how far the watch has come only
                // when there are no events: a watch catching up gets its events
                // in batches, each headed with the store's revision while older
                // events may follow, and resuming past them would lose them
                // (etcd's clientv3 resumes after the last event too).
                if events.is_empty() {
                    self.revision = self.revision.max(revision);
                }
                self.publish();
            }
            WatchMessage::Progress { revision } => self.revision = self.revision.max(revision),
            WatchMessage::Compacted { .. } => self.finish(Ended::Compacted),
        }
    }

    /// A live change: applied, and how long it took to get here measured.
    fn apply_put(&mut self, kv: &KeyValue) {
        match self.layout.decode_stamped(&self.service, &kv.key, &kv.value) {
            Ok((instance, written)) => {
                if let Some(written) = written {
                    self.series.propagated(&self.service, written);
                }
                self.view
                    .put(relative(&self.prefix, &kv.key), kv.mod_revision, instance)
            }
            Err(e) => {
                self.decode_failed(kv, &e);
                // A key that no longer decodes no longer counts as an instance.
                self.view.remove(relative(&self.prefix, &kv.key))
            }
        }
    }

    /// One page of a full read, decoded into `entries`.
    pub(super) fn decode_page(&mut self, kvs: Vec<KeyValue>, entries: &mut Vec<(Vec<u8>, Revision, ServiceInstance)>) {
        entries.reserve(kvs.len());
        for kv in kvs {
            if let Some(instance) = self.decode(&kv) {
                entries.push((relative(&self.prefix, &kv.key).to_vec(), kv.mod_revision, instance));
            }
        }
    }

    /// The view rebuilt from a full read at `header`; counted as a resync when
    /// it replaces a view whose history is gone (`reset`, or `header` shows it).
    pub(super) fn rebuilt(&mut self, entries: Vec<(Vec<u8>, Revision, ServiceInstance)>, header: Header, reset: bool) {
        let reset = reset || self.history_lost(header);
        if reset && !crate::bug!(ResyncUncounted) {
            self.resyncs += 1;
            self.stats.resynced();
            crate::telemetry::resynced(&self.service);
            tracing::info!(service = %self.service, revision = header.revision, "full resync");
        }
        self.view = View::build(entries);
        self.cluster = Some(header.cluster_id);
        self.revision = header.revision;
        self.stale_since = None;
        self.publish();
    }

    /// The instance at `kv`, or `None` (counted, and logged once per key) when it
    /// does not decode.
    fn decode(&mut self, kv: &KeyValue) -> Option<ServiceInstance> {
        match self.layout.decode(&self.service, &kv.key, &kv.value) {
            Ok(instance) => Some(instance),
            Err(e) => {
                self.decode_failed(kv, &e);
                None
            }
        }
    }

    /// Counts a value that does not decode, and logs it once per key (for the
    /// first [`LOGGED_MAX`] keys: another writer churning junk under fresh
    /// keys must not grow the set for ever; past that, the count alone).
    fn decode_failed(&mut self, kv: &KeyValue, e: &Error) {
        self.stats.decode_failed(&self.service);
        if self.logged.len() < LOGGED_MAX && self.logged.insert(kv.key.clone()) {
            tracing::warn!(service = %self.service, error = %e, "skipping a value that does not decode");
        }
    }

    /// Whether `h` shows that the store lost the history this view was read from.
    pub(super) fn history_lost(&self, h: Header) -> bool {
        self.cluster.is_some_and(|c| c != h.cluster_id) || h.revision < self.revision
    }

    /// The connection is lost: the last known instances, marked stale.
    pub(super) fn lost(&mut self, e: &Error) {
        tracing::debug!(service = %self.service, error = %e, "discovery lost its watch");
        if self.stale_since.is_some() {
            return;
        }
        let since = Instant::now();
        self.stale_since = Some(since);
        if self.cluster.is_some() {
            self.publish();
        } else if let Some(saved) = self.cold.as_ref().and_then(|c| c.get(&self.service)) {
            // Never read since the start: the view saved by an earlier run,
            // stale, rather than nothing. The first read replaces it.
            tracing::warn!(service = %self.service, revision = saved.revision, instances = saved.instances.len(), "registry unreachable at start: serving the saved view");
            self.tx.publish(Some(Snapshot {
                revision: saved.revision,
                instances: saved.instances,
                freshness: Freshness::Stale { since },
                resyncs: 0,
            }));
        }
    }

    pub(super) fn publish(&mut self) {
        let freshness = match self.stale_since {
            Some(since) => Freshness::Stale { since },
            None => Freshness::Fresh,
        };
        self.series.instances(&self.service, self.view.len());
        tracing::debug!(
            service = %self.service,
            revision = self.revision,
            instances = self.view.len(),
            fresh = self.stale_since.is_none(),
            "discovery view changed"
        );
        let snapshot = Snapshot {
            revision: self.revision,
            instances: self.view.instances(),
            freshness,
            resyncs: self.resyncs,
        };
        if let (Some(cold), true) = (&self.cold, snapshot.is_fresh()) {
            cold.save(&self.service, &snapshot);
        }
        self.tx.publish(Some(snapshot));
    }
}

/// A key as the view holds it: without the service's prefix, which every key of
/// a prefix watch shares (the view stores and compares only what differs).
fn relative<'k>(prefix: &str, key: &'k [u8]) -> &'k [u8] {
    key.strip_prefix(prefix.as_bytes()).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, JsonLayout, LeaseId};

    /// Another writer churning junk under ever new keys: every value is
    /// counted, the set of keys logged stops growing at [`LOGGED_MAX`].
    #[test]
    fn junk_under_new_keys_is_counted_and_remembered_up_to_a_bound() {
        let stats = Arc::new(DiscoveryStats::default());
        let (tx, _rx) = latest::channel(None);
        let layout = Arc::new(JsonLayout::new("/octopus").unwrap());
        let mut state = CacheState::new(layout, stats.clone(), "svc", "/octopus/services/svc/".into(), tx, None);
        let (done, _ended) = oneshot::channel();
        state.arm(done);
        state.started();
        let junk = 3 * LOGGED_MAX as i64;
        for n in 1..=junk {
            let kv = KeyValue {
                key: format!("/octopus/services/svc/junk-{n}").into_bytes(),
                value: b"not an instance".to_vec(),
                create_revision: n,
                mod_revision: n,
                version: 1,
                lease: LeaseId::NONE,
            };
            let events = vec![Event {
                kind: EventKind::Put,
                kv,
                prev: None,
            }];
            state.apply(WatchMessage::Events { revision: n, events });
        }
        assert_eq!(stats.decode_errors(), junk as u64, "every junk value counted");
        assert_eq!(state.logged.len(), LOGGED_MAX, "the keys logged, up to the bound");
    }
}
