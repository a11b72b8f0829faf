//! The store against a model: random sequences of operations give the same visible
//! state, the same reads at past revisions, and the same watch event streams.
//!
//! The model is deliberately naive: it keeps the whole key space at every revision
//! and derives events by diffing consecutive states, so it shares no logic with the
//! store's incremental bookkeeping.

use std::collections::BTreeMap;
use std::time::Duration;

use octopus_discovery_core::{Event, EventKind, KeyValue, LeaseId, WatchMessage};
use octopus_mem::{Compare, CompareOp, CompareTarget, Error, KeyRange, Op, Store, StoreWatch};
use proptest::prelude::*;

const KEYS: [&str; 5] = ["a", "ab", "b", "ba", "c"];
const PREFIXES: [&str; 4] = ["", "a", "ab", "b"];

#[derive(Clone, Debug)]
enum Action {
    Put {
        key: usize,
        value: u8,
        lease: Option<usize>,
    },
    GuardedPut {
        key: usize,
        value: u8,
        lease: usize,
    },
    Delete {
        key: usize,
        prefix: bool,
    },
    Grant {
        ttl_ms: u64,
    },
    Revoke {
        lease: usize,
    },
    KeepAlive {
        lease: usize,
    },
    Advance {
        ms: u64,
    },
    Compact {
        back: i64,
    },
    Watch {
        prefix: usize,
        back: i64,
    },
    RangeAt {
        back: i64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..KEYS.len(), any::<u8>(), proptest::option::of(0..6usize))
            .prop_map(|(key, value, lease)| Action::Put { key, value, lease }),
        2 => (0..KEYS.len(), any::<u8>(), 0..6usize).prop_map(|(key, value, lease)| Action::GuardedPut { key, value, lease }),
        2 => (0..KEYS.len(), any::<bool>()).prop_map(|(key, prefix)| Action::Delete { key, prefix }),
        2 => (100..3000u64).prop_map(|ttl_ms| Action::Grant { ttl_ms }),
        1 => (0..6usize).prop_map(|lease| Action::Revoke { lease }),
        2 => (0..6usize).prop_map(|lease| Action::KeepAlive { lease }),
        2 => (0..2500u64).prop_map(|ms| Action::Advance { ms }),
        1 => (0..6i64).prop_map(|back| Action::Compact { back }),
        2 => (0..PREFIXES.len(), 0..8i64).prop_map(|(prefix, back)| Action::Watch { prefix, back }),
        1 => (0..8i64).prop_map(|back| Action::RangeAt { back }),
    ]
}

type State = BTreeMap<Vec<u8>, KeyValue>;

struct Model {
    /// `states[r]` is the key space at revision r (index 0 unused).
    states: Vec<State>,
    compact: i64,
    /// Lease id → (ttl, deadline), in ms of model time.
    leases: BTreeMap<i64, (u64, u64)>,
    now: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            states: vec![State::new(), State::new()],
            compact: 0,
            leases: BTreeMap::new(),
            now: 0,
        }
    }

    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn current(&self) -> &State {
        self.states.last().unwrap()
    }

    /// Commits a new state if it differs from the current one.
    fn commit(&mut self, next: State) {
        if next != *self.current() {
            self.states.push(next);
        }
    }

    fn put(&self, state: &mut State, key: &[u8], value: &[u8], lease: i64) {
        let rev = self.rev() + 1;
        let prev = state.get(key);
        let kv = KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.map_or(1, |p| p.version + 1),
            lease: LeaseId(lease),
        };
        state.insert(key.to_vec(), kv);
    }

    fn expire(&mut self) {
        let mut due: Vec<(u64, i64)> = self
            .leases
            .iter()
            .filter(|(_, (_, d))| *d <= self.now)
            .map(|(id, (_, d))| (*d, *id))
            .collect();
        due.sort();
        for (_, id) in due {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, id: i64) {
        self.leases.remove(&id);
        let mut next = self.current().clone();
        next.retain(|_, kv| kv.lease.0 != id);
        self.commit(next);
    }

    /// The events of revision `r`, by diffing states r-1 and r.
    fn events(&self, r: i64, range: &KeyRange) -> Vec<Event> {
        let (before, after) = (&self.states[r as usize - 1], &self.states[r as usize]);
        let mut keys: Vec<&Vec<u8>> = before
            .keys()
            .chain(after.keys())
            .filter(|k| range.contains(k))
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| match (before.get(k), after.get(k)) {
                (prev, Some(kv)) if prev != Some(kv) => Some(Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: prev.cloned(),
                }),
                (Some(prev), None) => Some(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: k.clone(),
                        value: vec![],
                        create_revision: 0,
                        mod_revision: r,
                        version: 0,
                        lease: LeaseId::NONE,
                    },
                    prev: Some(prev.clone()),
                }),
                _ => None,
            })
            .collect()
    }
}

struct OpenWatch {
    range: KeyRange,
    start: i64,
    watch: StoreWatch,
}

fn lease_at(granted: &[i64], idx: usize) -> i64 {
    granted.get(idx).copied().unwrap_or(0x0dead)
}

fn check(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::with_cluster_id(1);
        let mut model = Model::new();
        let mut granted: Vec<i64> = Vec::new();
        let mut watches: Vec<OpenWatch> = Vec::new();
        for action in actions {
            model.expire();
            match action {
                Action::Put { key, value, lease } => {
                    let lease = lease.map_or(0, |l| lease_at(&granted, l));
                    let got = store.put(KEYS[key].as_bytes(), &[value], lease);
                    if lease != 0 && !model.leases.contains_key(&lease) {
                        prop_assert_eq!(got.unwrap_err(), Error::LeaseNotFound(lease));
                    } else {
                        let (_, prev) = got.unwrap();
                        prop_assert_eq!(prev.as_ref(), model.current().get(KEYS[key].as_bytes()));
                        let mut next = model.current().clone();
                        model.put(&mut next, KEYS[key].as_bytes(), &[value], lease);
                        model.states.push(next); // a put always takes a revision
                    }
                }
                Action::GuardedPut { key, value, lease } => {
                    let lease = lease_at(&granted, lease);
                    let k = KEYS[key].as_bytes();
                    let guard = Compare {
                        range: KeyRange::key(k),
                        op: CompareOp::Equal,
                        target: CompareTarget::Lease(lease),
                    };
                    let put = Op::Put {
                        key: k.to_vec(),
                        value: vec![value],
                        lease,
                    };
                    let got = store.txn(&[guard], &[put], &[]);
                    let holds = model.current().get(k).is_some_and(|kv| kv.lease.0 == lease);
                    if holds && !model.leases.contains_key(&lease) {
                        prop_assert_eq!(got.unwrap_err(), Error::LeaseNotFound(lease));
                    } else {
                        prop_assert_eq!(got.unwrap().succeeded, holds);
                        if holds {
                            let mut next = model.current().clone();
                            model.put(&mut next, k, &[value], lease);
                            model.states.push(next);
                        }
                    }
                }
                Action::Delete { key, prefix } => {
                    let range = if prefix {
                        KeyRange::prefix(KEYS[key])
                    } else {
                        KeyRange::key(KEYS[key])
                    };
                    let (_, deleted) = store.delete(&range).unwrap();
                    let mut next = model.current().clone();
                    let want: Vec<KeyValue> = next.values().filter(|kv| range.contains(&kv.key)).cloned().collect();
                    prop_assert_eq!(deleted, want);
                    next.retain(|k, _| !range.contains(k));
                    model.commit(next);
                }
                Action::Grant { ttl_ms } => {
                    let (_, id, ttl) = store.grant(0, Duration::from_millis(ttl_ms)).unwrap();
                    prop_assert_eq!(ttl, Duration::from_millis(ttl_ms));
                    granted.push(id);
                    model.leases.insert(id, (ttl_ms, model.now + ttl_ms));
                }
                Action::Revoke { lease } => {
                    let id = lease_at(&granted, lease);
                    let got = store.revoke(id);
                    if model.leases.contains_key(&id) {
                        got.unwrap();
                        model.revoke(id);
                    } else {
                        prop_assert_eq!(got.unwrap_err(), Error::LeaseNotFound(id));
                    }
                }
                Action::KeepAlive { lease } => {
                    let id = lease_at(&granted, lease);
                    let got = store.keep_alive(id);
                    match model.leases.get_mut(&id) {
                        Some((ttl, deadline)) => {
                            prop_assert_eq!(got.unwrap(), Duration::from_millis(*ttl));
                            *deadline = model.now + *ttl;
                        }
                        None => prop_assert_eq!(got.unwrap_err(), Error::LeaseNotFound(id)),
                    }
                }
                Action::Advance { ms } => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += ms;
                }
                Action::Compact { back } => {
                    let at = (model.rev() - back).max(1);
                    let got = store.compact(at);
                    if at <= model.compact {
                        prop_assert!(matches!(got, Err(Error::Compacted { .. })), "{:?}", got);
                    } else {
                        got.unwrap();
                        model.compact = at;
                    }
                }
                Action::Watch { prefix, back } => {
                    let start = (model.rev() + 1 - back).max(1);
                    let range = KeyRange::prefix(PREFIXES[prefix]);
                    match store.watch(range.clone(), start, true) {
                        Ok(watch) => {
                            prop_assert!(
                                start >= model.compact,
                                "watch from {} below compaction {}",
                                start,
                                model.compact
                            );
                            watches.push(OpenWatch { range, start, watch });
                        }
                        Err(e) => {
                            prop_assert!(start < model.compact, "unexpected {:?}", e);
                            prop_assert_eq!(
                                e,
                                Error::Compacted {
                                    requested: start,
                                    compacted: model.compact
                                }
                            );
                        }
                    }
                }
                Action::RangeAt { back } => {
                    let at = (model.rev() - back).max(1);
                    let got = store.range(&KeyRange::prefix(""), at, 0);
                    if at < model.compact {
                        prop_assert!(matches!(got, Err(Error::Compacted { .. })), "{:?}", got);
                    } else {
                        let (_, kvs, _) = got.unwrap();
                        prop_assert_eq!(kvs, model.states[at as usize].values().cloned().collect::<Vec<_>>());
                    }
                }
            }
            // Visible state and revision agree after every step (the store expires
            // due leases first, so the model does as well).
            model.expire();
            let (header, kvs, _) = store.range(&KeyRange::prefix(""), 0, 0).unwrap();
            prop_assert_eq!(header.revision, model.rev());
            prop_assert_eq!(kvs, model.current().values().cloned().collect::<Vec<_>>());
        }
        for mut w in watches {
            let mut got = Vec::new();
            while let Ok(msg) = w.watch.rx.try_recv() {
                match msg {
                    WatchMessage::Events { revision, events } => {
                        for ev in events {
                            prop_assert_eq!(ev.kv.mod_revision, revision);
                            got.push(ev);
                        }
                    }
                    WatchMessage::Progress { .. } => {}
                    WatchMessage::Compacted { compacted } => {
                        prop_assert!(false, "the store compacted under a live watch at {}", compacted)
                    }
                }
            }
            let want: Vec<Event> = (w.start..=model.rev())
                .flat_map(|r| model.events(r, &w.range))
                .collect();
            prop_assert_eq!(got, want, "watch on {:?} from {}", w.range, w.start);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(actions in proptest::collection::vec(action(), 1..60)) {
        check(actions)?;
    }
}

#[test]
fn prefix_end_matches_etcd() {
    assert_eq!(octopus_mem::prefix_end(b"a"), b"b");
    assert_eq!(octopus_mem::prefix_end(b"a\xff"), b"b");
    assert_eq!(octopus_mem::prefix_end(b"\xff"), vec![0]);
    assert_eq!(octopus_mem::prefix_end(b""), vec![0]);
}

#[test]
fn history_is_bounded_by_auto_compaction() {
    let store = Store::with_cluster_id(1).with_history_limit(100);
    for n in 0..1_000u32 {
        store.put(b"k", &n.to_be_bytes(), 0).unwrap();
    }
    let compacted = store.compact_revision();
    assert!(compacted > 900 - 100, "old revisions are compacted: {compacted}");
    assert!(matches!(
        store.watch(KeyRange::key("k"), 2, true),
        Err(Error::Compacted { .. })
    ));
    let w = store.watch(KeyRange::key("k"), compacted, true).unwrap();
    let mut rx = w;
    let mut n = 0;
    while rx.rx.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(
        n as i64,
        store.header().revision - compacted + 1,
        "every kept revision replays"
    );
}
