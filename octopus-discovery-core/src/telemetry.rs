//! Metrics through the `metrics` facade: free when no recorder is installed,
//! Prometheus series when the application installs one (the facade's `metrics`
//! feature does). Names follow Prometheus conventions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Gauge, Histogram, Unit,
};

use crate::RegistrationStatus;

/// Registrations by status (a gauge per service and status).
pub const REGISTRATIONS: &str = "octopus_registrations";
/// Re-registrations after a lost lease.
pub const REREGISTRATIONS: &str = "octopus_reregistrations_total";
/// Keepalive attempts that failed.
pub const KEEPALIVE_FAILURES: &str = "octopus_keepalive_failures_total";
/// Leases lost (expired, revoked, or unreachable for a whole TTL).
pub const LEASE_LOSSES: &str = "octopus_lease_losses_total";
/// Discovery watches re-opened after the connection was lost.
pub const WATCH_RECONNECTS: &str = "octopus_watch_reconnects_total";
/// Full resyncs after a compaction or a lost history.
pub const RESYNCS: &str = "octopus_resyncs_total";
/// Values skipped because they did not decode.
pub const DECODE_ERRORS: &str = "octopus_decode_errors_total";
/// Instances in a discovery view.
pub const INSTANCES: &str = "octopus_instances";
/// Seconds from a registration's write (its `written_at_ms`, by the writer's
/// wall clock) to a discovery watch receiving it (by the reader's): propagation,
/// including any clock difference between the two hosts.
pub const PROPAGATION: &str = "octopus_discovery_propagation_seconds";
/// Balancer picks per endpoint.
pub const BALANCER_PICKS: &str = "octopus_balancer_picks_total";
/// Balancer ejections per endpoint.
pub const BALANCER_EJECTIONS: &str = "octopus_balancer_ejections_total";
/// Counter: times a balancer distrusted a view that dropped below its panic
/// threshold and kept the vanished instances, by service.
pub const BALANCER_PROTECTIONS: &str = "octopus_balancer_protections_total";

/// Bumped by [`describe`]: series handles kept by running discovery caches are
/// registered again with the recorder installed since.
static RECORDER_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Gives every series above its help text and unit, for the recorder installed
/// now (Prometheus's `# HELP` lines; `promtool check metrics` wants one per family).
/// The facade's `metrics::install` calls it; call it after installing a recorder
/// of your own: discovery caches that started before it keep the handles of
/// their per-change series (rather than build them on every change), and
/// register them again with the new recorder when this is called.
pub fn describe() {
    RECORDER_GENERATION.fetch_add(1, Ordering::Relaxed);
    describe_gauge!(
        REGISTRATIONS,
        "Registrations of this process by service and status (registering, registered, lost, conflict)."
    );
    describe_counter!(
        REREGISTRATIONS,
        "Registrations written again under a new lease after the old one was lost."
    );
    describe_counter!(KEEPALIVE_FAILURES, "Lease keepalive attempts that failed.");
    describe_counter!(
        LEASE_LOSSES,
        "Leases lost: expired, revoked, or unreachable for a whole TTL."
    );
    describe_counter!(
        WATCH_RECONNECTS,
        "Discovery watches re-opened after their connection to the registry was lost."
    );
    describe_counter!(
        RESYNCS,
        "Full re-reads of a service after a compaction or a lost registry history."
    );
    describe_counter!(DECODE_ERRORS, "Registry values skipped because they did not decode.");
    describe_gauge!(INSTANCES, "Instances in this process's discovery view of a service.");
    describe_histogram!(
        PROPAGATION,
        Unit::Seconds,
        "Seconds from a registration's write (writer's clock) to a discovery watch receiving it (reader's clock)."
    );
    describe_counter!(BALANCER_PICKS, "Calls the balancer sent to an endpoint.");
    describe_counter!(
        BALANCER_EJECTIONS,
        "Times the balancer ejected an endpoint after a failed connection."
    );
    describe_counter!(
        BALANCER_PROTECTIONS,
        "Times a balancer kept instances that vanished from a view below its panic threshold."
    );
}

fn status_label(s: &RegistrationStatus) -> &'static str {
    match s {
        RegistrationStatus::Registering => "registering",
        RegistrationStatus::Registered { .. } => "registered",
        RegistrationStatus::Lost { .. } => "lost",
        RegistrationStatus::Conflict { .. } => "conflict",
        RegistrationStatus::Deregistered => "deregistered",
        RegistrationStatus::Failed { .. } => "failed",
    }
}

/// Moves one registration from `old` to `new` in the gauge; final states leave it.
pub(crate) fn status_changed(service: &str, old: Option<&RegistrationStatus>, new: &RegistrationStatus) {
    if let Some(old) = old.filter(|o| !o.is_final()) {
        gauge!(REGISTRATIONS, "service" => service.to_owned(), "status" => status_label(old)).decrement(1.0);
    }
    if !new.is_final() {
        gauge!(REGISTRATIONS, "service" => service.to_owned(), "status" => status_label(new)).increment(1.0);
    }
    if matches!(new, RegistrationStatus::Lost { .. }) {
        counter!(LEASE_LOSSES, "service" => service.to_owned()).increment(1);
    }
}

/// A discovery cache's per-change series, registered once (and again after a
/// [`describe`]) rather than on every change: building a series' key hashes its
/// name and labels and allocates the service label, work a change need not do.
pub(crate) struct CacheSeries {
    generation: u64,
    propagation: Histogram,
    instances: Gauge,
}

impl CacheSeries {
    pub(crate) fn new(service: &str) -> Self {
        let generation = RECORDER_GENERATION.load(Ordering::Relaxed);
        CacheSeries {
            generation,
            propagation: histogram!(PROPAGATION, "service" => service.to_owned()),
            instances: gauge!(INSTANCES, "service" => service.to_owned()),
        }
    }

    fn current(&mut self, service: &str) -> &Self {
        if self.generation != RECORDER_GENERATION.load(Ordering::Relaxed) {
            *self = CacheSeries::new(service);
        }
        self
    }

    /// A watch received a change written at `written` (since the Unix epoch).
    pub(crate) fn propagated(&mut self, service: &str, written: Duration) {
        let Some(now) = crate::clock::wall_now() else { return };
        // A reader whose clock is behind the writer's would see a negative delay: 0.
        let seconds = now.saturating_sub(written).as_secs_f64();
        self.current(service).propagation.record(seconds);
    }

    /// The view holds `n` instances.
    pub(crate) fn instances(&mut self, service: &str, n: usize) {
        self.current(service).instances.set(n as f64);
    }
}

pub(crate) fn reregistered(service: &str) {
    counter!(REREGISTRATIONS, "service" => service.to_owned()).increment(1);
}

pub(crate) fn keepalive_failed(service: &str) {
    counter!(KEEPALIVE_FAILURES, "service" => service.to_owned()).increment(1);
}

pub(crate) fn watch_reconnected(service: &str) {
    counter!(WATCH_RECONNECTS, "service" => service.to_owned()).increment(1);
}

pub(crate) fn resynced(service: &str) {
    counter!(RESYNCS, "service" => service.to_owned()).increment(1);
}

pub(crate) fn decode_error(service: &str) {
    counter!(DECODE_ERRORS, "service" => service.to_owned()).increment(1);
}
