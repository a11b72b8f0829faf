//! The console's two background loops: one watch on the whole registry that
//! keeps the [`Mirror`] and batches what changed onto the event stream, and a
//! rate-limited reader of lease times.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use octopus::{Inspector, LeaseTtl};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use crate::mirror::{Mirror, Touched};
use crate::model::{InstanceRow, ServiceSummary, TimelineEvent};
use crate::options::ConsoleOptions;

/// Changes seen within this window go out as one event (bursts are batched).
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// How many messages a slow page may fall behind before it is told to resync.
const STREAM_BUFFER: usize = 256;
/// A lease is read again at most this often…
const LEASE_EVERY: Duration = Duration::from_secs(1);
/// …and at most this many leases per tick of [`LEASE_TICK`].
const LEASE_BUDGET: usize = 50;
const LEASE_TICK: Duration = Duration::from_millis(250);

/// What the event stream carries.
#[derive(Debug)]
pub(crate) enum Message {
    /// Changes: the JSON of an [`Update`].
    Update(String),
    /// The console lost track (resync after the watch broke): reload everything.
    Reset,
    /// The registry's reachability changed: JSON `{fresh, problem}`.
    Status(String),
}

/// One batch of changes, as the `update` event's data.
#[derive(Debug, Serialize)]
pub(crate) struct Update {
    revision: i64,
    /// Each service touched, with its summary now (`null`: no instance left).
    services: Vec<ServiceChange>,
    /// Each key touched, with its row now (`null`: deleted).
    instances: Vec<InstanceChange>,
    /// The timeline entries of the batch, oldest first.
    timeline: Vec<TimelineEvent>,
}

#[derive(Debug, Serialize)]
struct ServiceChange {
    name: String,
    summary: Option<ServiceSummary>,
}

#[derive(Debug, Serialize)]
struct InstanceChange {
    service: String,
    key: String,
    row: Option<InstanceRow>,
}

/// What the loops and the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mirror: Mutex<Mirror>,
    pub(crate) events: broadcast::Sender<Arc<Message>>,
    pub(crate) inspector: Inspector,
    pub(crate) options: ConsoleOptions,
    /// The value of the session cookie a correct token buys.
    pub(crate) session: String,
    /// Set when the server shuts down: event streams end.
    pub(crate) stop: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The loops; dropping this stops them.
#[derive(Debug)]
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The session cookie's value: derived from the token, so that a page keeps
/// its session when the console restarts with the same token, and the cookie
/// does not reveal the token. Random (and useless) without a token.
fn session_secret(options: &ConsoleOptions) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"octopus-console session v1\0");
    match &options.token {
        Some(token) => hash.update(token.as_bytes()),
        None => {
            use rand::{RngCore, SeedableRng};
            let mut bytes = [0u8; 32];
            rand::rngs::StdRng::from_os_rng().fill_bytes(&mut bytes);
            hash.update(bytes);
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn start(inspector: Inspector, options: ConsoleOptions) -> (Arc<Shared>, Tasks) {
    let (events, _) = broadcast::channel(STREAM_BUFFER);
    let session = session_secret(&options);
    let shared = Arc::new(Shared {
        mirror: Mutex::new(Mirror::default()),
        events,
        inspector,
        options,
        session,
        stop: watch::Sender::new(false),
    });
    let tasks = Tasks(vec![
        tokio::spawn(follow(Arc::downgrade(&shared))),
        tokio::spawn(read_leases(Arc::downgrade(&shared))),
    ]);
    (shared, tasks)
}

fn status(shared: &Shared, fresh: bool, problem: Option<String>) {
    let changed = {
        let mut m = shared.mirror();
        let changed = m.fresh != fresh || m.problem != problem;
        m.fresh = fresh;
        m.problem.clone_from(&problem);
        changed
    };
    if changed {
        let json = serde_json::json!({ "fresh": fresh, "problem": problem }).to_string();
        let _ = shared.events.send(Arc::new(Message::Status(json)));
    }
}

/// Sends what changed in `touched`, as the mirror has it now.
fn flush(shared: &Shared, touched: &BTreeSet<Touched>) {
    let now = Instant::now();
    let update = {
        let mut m = shared.mirror();
        let names: BTreeSet<&str> = touched.iter().map(|t| t.service.as_str()).collect();
        Update {
            revision: m.revision,
            services: names
                .into_iter()
                .map(|n| ServiceChange {
                    name: n.to_owned(),
                    summary: m.service_summary(n, now),
                })
                .collect(),
            instances: touched
                .iter()
                .map(|t| InstanceChange {
                    service: t.service.clone(),
                    key: t.key.clone(),
                    row: m.row(t, now),
                })
                .collect(),
            timeline: m.take_new_events(),
        }
    };
    match serde_json::to_string(&update) {
        Ok(json) => {
            let _ = shared.events.send(Arc::new(Message::Update(json)));
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a console update"),
    }
}

/// Reads everything, then follows every change; on any failure, waits (backing
/// off to 5 s) and starts over, telling the pages to reload.
async fn follow(shared: std::sync::Weak<Shared>) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    let mut warned = false;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let Err(problem) = run_watch(&s, &mut first, &mut backoff).await;
        // Once per outage, not once per retry.
        let was_fresh = s.mirror().fresh;
        if was_fresh || !warned {
            warned = true;
            tracing::warn!(%problem, "the console lost the registry; reading it again until it answers");
        } else {
            tracing::debug!(%problem, "the registry still does not answer");
        }
        status(&s, false, Some(problem));
        drop(s);
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One load and watch, until the watch fails (`Err`: why). The console's
/// [`Tasks`] guard ends it.
async fn run_watch(
    s: &Arc<Shared>,
    first: &mut bool,
    backoff: &mut Duration,
) -> Result<std::convert::Infallible, String> {
    let (revision, entries) = s
        .inspector
        .all_entries()
        .await
        .map_err(|e| format!("cannot read the registry: {}", e.chain()))?;
    let mut changes = s
        .inspector
        .changes(revision + 1)
        .await
        .map_err(|e| format!("cannot watch the registry: {}", e.chain()))?;
    {
        let mut m = s.mirror();
        m.reset(revision, entries, Instant::now());
        // A reload's differences are in the timeline; the pages fetch them anew.
        let _ = m.take_new_events();
    }
    if !std::mem::take(first) {
        let _ = s.events.send(Arc::new(Message::Reset));
    }
    status(s, true, None);
    *backoff = Duration::from_millis(100);
    let mut touched: BTreeSet<Touched> = BTreeSet::new();
    let mut deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            item = changes.next() => match item {
                Some(Ok(batch)) => {
                    let t = s.mirror().apply(batch, Instant::now());
                    if !t.is_empty() {
                        touched.extend(t);
                        deadline.get_or_insert_with(|| Instant::now() + BATCH_WINDOW);
                    }
                }
                Some(Err(e)) => {
                    flush(s, &touched);
                    return Err(format!("the registry watch failed: {}", e.chain()));
                }
                None => {
                    flush(s, &touched);
                    return Err("the registry watch ended".into());
                }
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                flush(s, &std::mem::take(&mut touched));
                deadline = None;
            }
        }
    }
}

/// Reads the time left on every lease a key holds, each at most once a
/// second, within a budget per tick.
async fn read_leases(shared: std::sync::Weak<Shared>) {
    loop {
        sleep(LEASE_TICK).await;
        let Some(s) = shared.upgrade() else { return };
        let due = s.mirror().leases_due(Instant::now(), LEASE_EVERY, LEASE_BUDGET);
        let reads = futures_util::future::join_all(due.into_iter().map(|lease| {
            let s = &s;
            async move {
                let sent = Instant::now();
                (lease, s.inspector.lease_ttl(lease).await, sent)
            }
        }))
        .await;
        let mut m = s.mirror();
        for (lease, ttl, sent) in reads {
            match ttl {
                Ok(LeaseTtl::Remaining(left)) => m.lease_read(lease, left, sent),
                Ok(LeaseTtl::Gone) => m.lease_read(lease, Duration::ZERO, sent),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read a lease's time left"),
            }
        }
    }
}
