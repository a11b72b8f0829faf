//! etcd's Watch service over the store: many watches per stream.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use etcd_client::proto::{PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use futures_util::StreamExt;
use octopus_discovery_core::{OwnedTask, WatchMessage};
use octopus_mem::StoreWatch;
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::follows::Following;
use super::{convert, MemEtcd};

type WatchResponses = Pin<Box<dyn futures_util::Stream<Item = Result<PbWatchResponse, Status>> + Send>>;
type Out = mpsc::UnboundedSender<Result<PbWatchResponse, Status>>;

/// One watch of a stream: its forwarding task (stopped when the watch is
/// cancelled or its stream ends) and the switch that asks it for progress.
struct Forwarder {
    _task: OwnedTask<()>,
    progress: mpsc::UnboundedSender<()>,
}

struct Settings {
    id: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
}

#[tonic::async_trait]
impl PbWatchService for MemEtcd {
    type WatchStream = WatchResponses;

    async fn watch(&self, request: Request<Streaming<PbWatchRequest>>) -> Result<Response<WatchResponses>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        let server = self.clone();
        // The response stream owns the task that serves the request stream: when
        // tonic drops it (the client went away), the task and its watches stop.
        let task = OwnedTask::spawn(serve_stream(server, request.into_inner(), tx));
        let responses = UnboundedReceiverStream::new(rx);
        Ok(Response::new(Box::pin(responses.map(move |r| {
            let _owner = &task;
            r
        }))))
    }
}

async fn serve_stream(server: MemEtcd, mut requests: Streaming<PbWatchRequest>, out: Out) {
    let mut watches: BTreeMap<i64, Forwarder> = BTreeMap::new();
    let mut next_id = 0;
    // The stream (and with it every watch) ends when the client's side ends.
    while let Some(Ok(req)) = requests.next().await {
        match req.request_union {
            Some(PbWatchRequestUnion::CreateRequest(create)) => {
                let id = if create.watch_id != 0 { create.watch_id } else { next_id };
                if watches.contains_key(&id) {
                    let _ = out.send(Ok(PbWatchResponse {
                        header: Some(server.header()),
                        watch_id: id,
                        created: true,
                        canceled: true,
                        cancel_reason: "etcdserver: duplicate watch ID".into(),
                        ..Default::default()
                    }));
                    continue;
                }
                while watches.contains_key(&next_id) || next_id == id {
                    next_id += 1;
                }
                let followed_range = (create.key.clone(), create.range_end.clone());
                let range = match convert::range(create.key, create.range_end) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = out.send(Err(e));
                        return;
                    }
                };
                let settings = Settings {
                    id,
                    prev_kv: create.prev_kv,
                    no_put: create.filters.contains(&0),
                    no_delete: create.filters.contains(&1),
                    progress_notify: create.progress_notify,
                };
                let created = PbWatchResponse {
                    header: Some(server.header()),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                match server.store().watch(range, create.start_revision, settings.prev_kv) {
                    Ok(watch) => {
                        let proxy = match server.options.coalesce_watches {
                            None => {
                                let _ = out.send(Ok(created));
                                None
                            }
                            Some(delay) => {
                                let (followed, following) = server.follows.join(followed_range);
                                if followed {
                                    // As the proxy: the header carries the revision asked for.
                                    let start = create.start_revision;
                                    let revision = if start > 0 {
                                        start
                                    } else {
                                        server.store().header().revision
                                    };
                                    let _ = out.send(Ok(PbWatchResponse {
                                        header: Some(server.header_at(revision)),
                                        ..created
                                    }));
                                    Some(Proxied {
                                        following,
                                        answer: None,
                                    })
                                } else {
                                    Some(Proxied {
                                        following,
                                        answer: Some((delay, created)),
                                    })
                                }
                            }
                        };
                        let (progress, asked) = mpsc::unbounded_channel();
                        let task =
                            OwnedTask::spawn(forward(server.clone(), watch, settings, asked, out.clone(), proxy));
                        watches.insert(id, Forwarder { _task: task, progress });
                    }
                    Err(octopus_mem::Error::Compacted { compacted, .. }) => {
                        // As etcd: the watch is created, then cancelled with the compact revision.
                        let _ = out.send(Ok(created));
                        let _ = out.send(Ok(PbWatchResponse {
                            header: Some(server.header()),
                            watch_id: id,
                            canceled: true,
                            compact_revision: compacted,
                            cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                            ..Default::default()
                        }));
                    }
                    Err(e) => {
                        let _ = out.send(Ok(PbWatchResponse {
                            header: Some(server.header()),
                            watch_id: id,
                            created: true,
                            canceled: true,
                            cancel_reason: e.to_string(),
                            ..Default::default()
                        }));
                    }
                }
            }
            Some(PbWatchRequestUnion::CancelRequest(cancel)) if watches.remove(&cancel.watch_id).is_some() => {
                let _ = out.send(Ok(PbWatchResponse {
                    header: Some(server.header()),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                }));
            }
            Some(PbWatchRequestUnion::CancelRequest(_)) => {} // not ours, or already gone
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                // Each watch answers with its own id once it has sent everything up to
                // the current revision (etcd answers once, with watch id -1).
                for w in watches.values() {
                    let _ = w.progress.send(());
                }
            }
            None => {}
        }
    }
}

/// A watch answered as etcd's gRPC proxy does: its share of the range, and its
/// `created` answer while it waits for the proxy's own watch on etcd.
struct Proxied {
    following: Following,
    answer: Option<(Duration, PbWatchResponse)>,
}

/// Sends one watch's events, and progress when asked or on the notify interval.
async fn forward(
    server: MemEtcd,
    mut watch: StoreWatch,
    settings: Settings,
    mut asked: mpsc::UnboundedReceiver<()>,
    out: Out,
    proxy: Option<Proxied>,
) {
    // Held until the watch ends: it leaves the range then.
    let _following = match proxy {
        Some(Proxied { following, answer }) => {
            if let Some((delay, created)) = answer {
                sleep(delay).await;
                following.created();
                let created = PbWatchResponse {
                    header: Some(server.header()),
                    ..created
                };
                if out.send(Ok(created)).is_err() {
                    return;
                }
            }
            Some(following)
        }
        None => None,
    };
    let period = server.options.progress_notify_interval;
    let mut tick = interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sent = 0; // the highest revision sent
    let mut quiet = true; // nothing sent since the last notify tick
    loop {
        let progress = tokio::select! {
            biased;
            msg = watch.rx.recv() => match msg {
                Some(msg) => {
                    if !send(&server, &settings, msg, &mut sent, &out) {
                        return;
                    }
                    quiet = false;
                    continue;
                }
                None => return,
            },
            Some(()) = asked.recv() => true,
            _ = tick.tick(), if settings.progress_notify => std::mem::replace(&mut quiet, true),
        };
        if !progress {
            continue;
        }
        // Read the revision first: everything up to it is already queued, so send the
        // queue before saying the watch has caught up to it.
        let revision = server.store().header().revision;
        while let Ok(msg) = watch.rx.try_recv() {
            if !send(&server, &settings, msg, &mut sent, &out) {
                return;
            }
        }
        let response = PbWatchResponse {
            header: Some(server.header_at(revision.max(sent))),
            watch_id: settings.id,
            ..Default::default()
        };
        if out.send(Ok(response)).is_err() {
            return;
        }
    }
}

/// Sends one store message; false when the client is gone.
fn send(server: &MemEtcd, settings: &Settings, msg: WatchMessage, sent: &mut i64, out: &Out) -> bool {
    let (revision, events) = match msg {
        WatchMessage::Events { revision, events } => (revision, events),
        WatchMessage::Progress { revision } => (revision, Vec::new()),
        // The store compacted under the watch: cancel it as etcd does, naming
        // the compaction revision, and end it.
        WatchMessage::Compacted { compacted } => {
            let _ = out.send(Ok(PbWatchResponse {
                header: Some(server.header_at(*sent)),
                watch_id: settings.id,
                canceled: true,
                compact_revision: compacted,
                cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                ..Default::default()
            }));
            return false;
        }
    };
    let events: Vec<_> = events
        .iter()
        .filter(|ev| match ev.kind {
            octopus_discovery_core::EventKind::Put => !settings.no_put,
            octopus_discovery_core::EventKind::Delete => !settings.no_delete,
        })
        .map(convert::event)
        .collect();
    *sent = (*sent).max(revision);
    if events.is_empty() {
        return true; // everything filtered out
    }
    out.send(Ok(PbWatchResponse {
        header: Some(server.header_at(revision)),
        watch_id: settings.id,
        events,
        ..Default::default()
    }))
    .is_ok()
}
