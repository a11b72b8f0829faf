//! The task that follows discovery for a balanced channel: it applies each change
//! discovery reports (added, removed, updated) to the endpoints, reusing the
//! connection of every instance that stays, and guards against a mass
//! disappearance (see [`PanicThreshold`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::time::{sleep_until, Instant};

use super::endpoints::{Backend, Endpoints, PanicThreshold};
use super::Connector;
use octopus_discovery_core::{Change, Instances, ServiceInstance, ServiceWatch};

/// A protection in force: the instances in use before the view dropped, and
/// until when the vanished ones are kept.
struct Protection {
    known: usize,
    until: Instant,
}

/// Follows discovery until it stops or the channel is gone. The first snapshot,
/// fresh or stale, marks the channel resolved. A stale snapshot keeps the
/// endpoints in use (its instances are the last known ones).
///
/// Both lists are sorted by id, so an instance's old backend is found by binary
/// search: a change costs O(n log n), never O(n²).
pub(super) async fn follow(endpoints: Weak<Endpoints>, mut watch: ServiceWatch, connector: Arc<dyn Connector>) {
    // Discovery stopped: calls no longer wait for an answer that will not come.
    let _resolved_at_end = ResolveOnDrop(endpoints.clone());
    let mut protection: Option<Protection> = None;
    // The instances of the latest view, applied or not.
    let mut view = Instances::default();
    loop {
        let expired = async {
            match &protection {
                Some(p) => sleep_until(p.until).await,
                None => std::future::pending().await,
            }
        };
        let change = tokio::select! {
            biased;
            change = watch.next_change() => change,
            () = expired => {
                // The hold is over: the view is what it is.
                let Some(e) = endpoints.upgrade() else { return };
                protection = None;
                let set = e.snapshot();
                let old = &set.all;
                let diff = view.diff_from(&in_use(old));
                apply(&e, old, &view, &diff, &*connector);
                tracing::info!(service = %e.service, endpoints = view.len(), "protection hold over: following discovery again");
                continue;
            }
        };
        let Some(Change { snapshot, diff }) = change else {
            return;
        };
        let Some(e) = endpoints.upgrade() else { return };
        view = snapshot.instances.clone();
        let resolved = *e.resolved.borrow();
        let fresh = snapshot.is_fresh();
        'view: {
            if resolved && !fresh {
                break 'view;
            }
            let set = e.snapshot();
            let old = &set.all;
            let threshold: PanicThreshold = e.panic;
            let known = protection.as_ref().map_or(old.len(), |p| p.known);
            if resolved && threshold.distrusts(snapshot.instances.len(), known) {
                if protection.is_none() {
                    e.protecting(snapshot.instances.len(), known, threshold.hold);
                    protection = Some(Protection {
                        known,
                        until: Instant::now() + threshold.hold,
                    });
                }
                // Keep what vanished; take what the view adds or updates.
                let kept: Vec<Arc<ServiceInstance>> = old
                    .iter()
                    .filter(|b| snapshot.instances.get(&b.instance.id).is_none())
                    .map(|b| b.instance.clone())
                    .collect();
                let union: Instances = snapshot.instances.iter().cloned().chain(kept).collect();
                let diff = union.diff_from(&in_use(old));
                apply(&e, old, &union, &diff, &*connector);
                break 'view;
            }
            if protection.take().is_some() {
                tracing::info!(service = %e.service, endpoints = snapshot.instances.len(), "discovery recovered: protection over");
                let diff = snapshot.instances.diff_from(&in_use(old));
                apply(&e, old, &snapshot.instances, &diff, &*connector);
                break 'view;
            }
            if resolved && diff.is_empty() {
                break 'view;
            }
            apply(&e, old, &snapshot.instances, &diff, &*connector);
        }
        // Recorded once the view is dealt with: a reader that sees it sees the
        // endpoints that follow from it.
        e.stale.store(!fresh, Ordering::Release);
    }
}

/// The instances of the backends in use.
fn in_use(old: &[Arc<Backend>]) -> Instances {
    old.iter().map(|b| b.instance.clone()).collect()
}

/// Makes `instances` the endpoints: unchanged instances keep their backend
/// (connection, counters, ejection); an updated or returning one keeps its
/// connection when its endpoint is the same; a new one gets a connection.
fn apply(
    e: &Endpoints,
    old: &[Arc<Backend>],
    instances: &Instances,
    diff: &octopus_discovery_core::Diff,
    connector: &dyn Connector,
) {
    let listed = |list: &[Arc<ServiceInstance>], id: &str| list.binary_search_by(|i| i.id.as_str().cmp(id)).is_ok();
    let updated = |id: &str| diff.updated.binary_search_by(|(b, _)| b.id.as_str().cmp(id)).is_ok();
    let warming = *e.resolved.borrow();
    let mut next = Vec::with_capacity(instances.len());
    for instance in instances.iter() {
        let before = old
            .binary_search_by(|b| b.instance.id.cmp(&instance.id))
            .ok()
            .map(|at| &old[at]);
        let unchanged = !listed(&diff.added, &instance.id) && !updated(&instance.id);
        let channel = match before {
            Some(b) if unchanged => {
                next.push(b.clone());
                continue;
            }
            Some(b) if b.instance.addr == instance.addr && b.instance.port == instance.port => b.channel.clone(),
            _ => match connector.connect(instance) {
                Ok(ch) => ch,
                Err(err) => {
                    tracing::warn!(service = %e.service, error = %err, "cannot make a channel; skipping the instance");
                    continue;
                }
            },
        };
        // The first answer's instances start warm; later ones in slow start.
        next.push(e.backend(instance, channel, warming));
    }
    tracing::debug!(service = %e.service, endpoints = next.len(), "balancer endpoints changed");
    e.replace(next);
    e.resolved.send_replace(true);
}

struct ResolveOnDrop(Weak<Endpoints>);

impl Drop for ResolveOnDrop {
    fn drop(&mut self) {
        if let Some(e) = self.0.upgrade() {
            e.resolved.send_replace(true);
        }
    }
}
