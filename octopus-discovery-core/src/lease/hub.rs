//! [`Hub`]: one backend watch shared by the registrations of one service in one
//! registry, so that a client holding many registrations costs etcd one watcher,
//! not one per registration (etcd's Go client needs one too).
//!
//! The hub routes each event to the member registered for its key. With one
//! member it watches that key alone (N processes with one registration each stay
//! O(N) on etcd); once a second key joins it watches the service's prefix while
//! it has members, and starts afresh on one key when a key joins a hub that has
//! none.
//!
//! The invariant that makes joining exact: `position` is a revision up to which
//! every event on the watched range has been routed. It advances only on events'
//! mod revisions and on progress notifications, never on a response header
//! (etcd's catch-up responses carry the store's current revision while older
//! events may still follow). Routing and joining both happen under one lock, so a
//! member that joins with its key's state known at `start - 1 >= position`
//! receives every later event on its key. A member whose `start - 1` is behind
//! `position` is told to read its key once ([`Membership::check`]): the events in
//! between may have been routed before it joined. Members drop events at or below
//! their own revision, so a reopen that replays older events is harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::sleep;

use crate::kv::next_message;
use crate::{Backoff, BackoffPolicy, Event, JitterRng, KvBackend, OwnedTask, Revision, WatchMessage, WatchStart};

/// Batches of events a member may have waiting (one per watch response that
/// touched its key); a member that falls this far behind is dropped and rejoins
/// through its lost-watch path (a read and a heal).
const MEMBER_QUEUE: usize = 64;

/// What the hub watches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Range {
    /// One key: the hub's only member's.
    Key(String),
    /// Every key under the service's prefix.
    Prefix,
}

#[derive(Debug)]
struct State {
    members: BTreeMap<Vec<u8>, mpsc::Sender<Vec<Event>>>,
    /// Every event on `range` with a mod revision at or below it has been routed.
    position: Option<Revision>,
    range: Option<Range>,
    /// Bumped whenever the watch must be reopened (new range, or an older start);
    /// the task drops a stream opened under an older epoch.
    epoch: u64,
}

impl State {
    fn covers(&self, key: &str, prefix: &str) -> bool {
        match &self.range {
            Some(Range::Key(k)) => k == key,
            Some(Range::Prefix) => key.starts_with(prefix),
            None => false,
        }
    }
}

/// The watch shared by one service's registrations. The last registration to
/// drop it stops its task (and with it the watch).
#[derive(Debug)]
pub(super) struct Hub {
    state: Arc<Mutex<State>>,
    prefix: String,
    /// Wakes the task when a join asks for the watch to be (re)opened.
    wake: Arc<Notify>,
    _task: OwnedTask<()>,
}

/// A member's place in its hub: the events on its key, until the hub drops it
/// (a compaction, or the member fell behind) or it is dropped.
#[derive(Debug)]
pub(super) struct Membership {
    key: Vec<u8>,
    state: Arc<Mutex<State>>,
    own: mpsc::WeakSender<Vec<Event>>,
    rx: mpsc::Receiver<Vec<Event>>,
    /// The member must read its key once: events on it may have been routed
    /// before it joined.
    pub(super) check: bool,
}

impl Membership {
    /// The next events on the member's key; `None` once the hub dropped it.
    pub(super) async fn next(&mut self) -> Option<Vec<Event>> {
        self.rx.recv().await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        let mine = match (state.members.get(&self.key), self.own.upgrade()) {
            (Some(entry), Some(own)) => entry.same_channel(&own),
            _ => false,
        };
        if mine {
            state.members.remove(&self.key);
        }
    }
}

/// The next events of an optional membership; pending forever when there is none.
pub(super) async fn next_events(member: &mut Option<Box<Membership>>) -> Option<Vec<Event>> {
    match member {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// A hub for the keys under `prefix`; its watch opens at the first join.
    pub(super) fn start<B: KvBackend>(backend: Arc<B>, prefix: String, rng: JitterRng) -> Arc<Hub> {
        let state = Arc::new(Mutex::new(State {
            members: BTreeMap::new(),
            position: None,
            range: None,
            epoch: 0,
        }));
        let wake = Arc::new(Notify::new());
        let policy = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(3)).expect("valid policy");
        let task = OwnedTask::spawn(run(
            backend,
            state.clone(),
            wake.clone(),
            prefix.clone(),
            Backoff::new(policy, rng),
        ));
        Arc::new(Hub {
            state,
            prefix,
            wake,
            _task: task,
        })
    }

    /// Joins `key`, whose state the member knows at revision `start - 1` (it wrote
    /// or read it there). When the membership's `check` is set, the member must
    /// read its key again and treat any difference as events.
    pub(super) fn join(&self, key: &str, start: Revision) -> Membership {
        let (tx, rx) = mpsc::channel(MEMBER_QUEUE);
        let own = tx.downgrade();
        let known = start - 1;
        let mut state = lock(&self.state);
        if state.members.is_empty() {
            // Nobody else to serve: start afresh on this key alone (a process
            // whose one registration re-registers under a key of its new lease
            // keeps watching one key, not the service).
            state.position = None;
            state.range = None;
        }
        let mut check = false;
        match state.position {
            Some(position) if state.covers(key, &self.prefix) => check = known < position,
            Some(position) => {
                // Another key than the one watched: the prefix from now on, from early
                // enough for both (the earlier member drops what it has seen).
                state.range = Some(Range::Prefix);
                state.position = Some(position.min(known));
                self.reopen(&mut state);
            }
            None => {
                if state.range != Some(Range::Prefix) {
                    state.range = Some(Range::Key(key.to_owned()));
                }
                state.position = Some(known);
                self.reopen(&mut state);
            }
        }
        state.members.insert(key.as_bytes().to_vec(), tx);
        Membership {
            key: key.as_bytes().to_vec(),
            state: self.state.clone(),
            own,
            rx,
            check,
        }
    }

    fn reopen(&self, state: &mut State) {
        state.epoch += 1;
        self.wake.notify_one();
    }
}

/// The hub's task: keeps one watch open on the range from `position + 1`,
/// resuming after a broken stream without the members knowing.
async fn run<B: KvBackend>(
    backend: Arc<B>,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    prefix: String,
    mut backoff: Backoff,
) {
    loop {
        let target = {
            let s = lock(&state);
            s.range
                .clone()
                .zip(s.position)
                .map(|(range, position)| (range, position, s.epoch))
        };
        let Some((range, position, epoch)) = target else {
            wake.notified().await;
            continue;
        };
        let (key, is_prefix) = match &range {
            Range::Key(k) => (k.as_str(), false),
            Range::Prefix => (prefix.as_str(), true),
        };
        let mut stream = match backend.watch(key, is_prefix, position + 1).await {
            Ok(WatchStart::Stream(stream)) => Some(stream),
            Ok(WatchStart::Compacted { .. }) => {
                compacted(&state, epoch);
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, key, "hub watch failed to open; retrying");
                pause(&mut backoff).await;
                continue;
            }
        };
        backoff.reset();
        loop {
            tokio::select! {
                // A fixed order, as in the registration loop: no branch is drawn at random.
                biased;
                () = wake.notified() => {
                    if lock(&state).epoch != epoch {
                        break;
                    }
                }
                msg = next_message(&mut stream) => match msg {
                    Some(Ok(WatchMessage::Events { events, .. })) => {
                        if !route(&state, epoch, events) {
                            break;
                        }
                    }
                    Some(Ok(WatchMessage::Progress { revision })) => {
                        let mut s = lock(&state);
                        if s.epoch != epoch {
                            break;
                        }
                        s.position = s.position.map(|p| p.max(revision));
                    }
                    Some(Ok(WatchMessage::Compacted { .. })) => {
                        compacted(&state, epoch);
                        break;
                    }
                    Some(Err(_)) | None => {
                        pause(&mut backoff).await;
                        break;
                    }
                },
            }
        }
    }
}

async fn pause(backoff: &mut Backoff) {
    sleep(backoff.next_delay().unwrap_or(Duration::from_secs(3))).await;
}

/// Hands each event to the member of its key and advances the position; false
/// when the stream belongs to an older epoch (nothing routed).
fn route(state: &Mutex<State>, epoch: u64, events: Vec<Event>) -> bool {
    let mut s = lock(state);
    if s.epoch != epoch {
        return false;
    }
    let mut last = s.position.unwrap_or(0);
    let mut batches: BTreeMap<Vec<u8>, Vec<Event>> = BTreeMap::new();
    for ev in events {
        last = last.max(ev.kv.mod_revision);
        if s.members.contains_key(&ev.kv.key) {
            batches.entry(ev.kv.key.clone()).or_default().push(ev);
        }
    }
    for (key, batch) in batches {
        let sent = s.members.get(&key).is_some_and(|tx| tx.try_send(batch).is_ok());
        if !sent {
            // Full or gone: its stream ends and it rejoins with a read.
            s.members.remove(&key);
        }
    }
    s.position = Some(last);
    true
}

/// The history the watch needed is gone: every member's stream ends (each reads
/// its key and rejoins), and the next join sets the position afresh.
fn compacted(state: &Mutex<State>, epoch: u64) {
    let mut s = lock(state);
    if s.epoch != epoch {
        return;
    }
    s.members.clear();
    s.position = None;
    if s.range != Some(Range::Prefix) {
        s.range = None;
    }
}
