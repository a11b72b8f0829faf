//! The conformance suite every backend runs.
//!
//! One function per clause of the registry and discovery contract, grouped by
//! concern: a registration's lifecycle, what watchers see, and robustness under
//! bad input and contention; and the macro that makes each a test.
//!
//! A backend provides a [`Harness`]; [`conformance_tests!`](crate::conformance_tests)
//! expands to one `#[tokio::test]` per case. Each case uses a namespace of its own,
//! so cases can share one server.
//!
//! ```text
//! fn harness() -> MyHarness { MyHarness::default() }
//! octopus_testkit::conformance_tests!(paused: harness());   // in-process backends
//! octopus_testkit::conformance_tests!(real: harness());     // backends with a real server
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::timeout;

use octopus_discovery_core::{
    BackoffPolicy, Discovery, RegisterOptions, Registry, ServiceInstance, ServiceWatch, Snapshot,
};

/// What a backend gives the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A registry and a discovery that use `namespace` (fresh for every case).
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>);

    /// The lease TTL the cases use: short, but at least the backend's minimum.
    fn ttl(&self) -> Duration;

    /// How long a change may take to reach a watcher; waits fail after it.
    fn settle(&self) -> Duration;

    /// Cuts (`true`) or restores (`false`) the connection of what `open(namespace)`
    /// returned. Returns false when the backend cannot, and the case is skipped.
    async fn cut(&self, namespace: &str, cut: bool) -> bool {
        let _ = (namespace, cut);
        false
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn namespace(case: &str) -> String {
    format!("/conformance/{case}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn instance(service: &str, id: &str, port: u16) -> ServiceInstance {
    ServiceInstance::new(service, id, "127.0.0.1", port).expect("valid test instance")
}

fn options(h: &impl Harness) -> RegisterOptions {
    let retry = BackoffPolicy::new(Duration::from_millis(50), h.ttl()).expect("valid policy");
    RegisterOptions::default().ttl(h.ttl()).retry(retry)
}

fn ids(s: &Snapshot) -> Vec<&str> {
    s.instances.iter().map(|i| i.id.as_str()).collect()
}

/// Waits (bounded by the harness's settle time, plus `extra`) for a snapshot that satisfies `pred`.
async fn until(
    h: &impl Harness,
    w: &mut ServiceWatch,
    extra: Duration,
    what: &str,
    pred: impl FnMut(&Snapshot) -> bool,
) -> Snapshot {
    match timeout(h.settle() + extra, w.wait_for(pred)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("watch ended while waiting for {what}: {e}"),
        Err(_) => panic!("timed out waiting for {what}; last snapshot: {:?}", w.latest()),
    }
}

mod backend;
mod lifecycle;
mod robustness;
mod watches;

pub use backend::previous_values_only_when_asked;
pub use lifecycle::{
    abandoned_expires_after_ttl, deregister_removes, drain_marks_without_deregistering, drop_deregisters,
    keepalive_outlives_ttl, register_then_visible, update_reaches_watchers,
};
pub use robustness::{invalid_input_rejected, many_concurrent, same_id_conflict};
pub use watches::{cut_keeps_last_known, services_isolated, watch_coalesces, watchers_agree};

/// Expands to one `#[tokio::test]` per conformance case.
///
/// `paused:` runs each case on a current-thread runtime with paused time (for
/// in-process backends); `real:` on a multi-threaded runtime with real time.
#[macro_export]
macro_rules! conformance_tests {
    (paused: $harness:expr) => {
        $crate::conformance_tests!(@cases (flavor = "current_thread", start_paused = true) $harness);
    };
    (real: $harness:expr) => {
        $crate::conformance_tests!(@cases (flavor = "multi_thread", worker_threads = 2) $harness);
    };
    (@cases $cfg:tt $harness:expr) => {
        $crate::conformance_tests!(@each $cfg $harness;
            register_then_visible, deregister_removes, drop_deregisters, abandoned_expires_after_ttl,
            keepalive_outlives_ttl, update_reaches_watchers, drain_marks_without_deregistering, watch_coalesces, services_isolated,
            invalid_input_rejected, same_id_conflict, many_concurrent, watchers_agree, cut_keeps_last_known);
    };
    (@each $cfg:tt $harness:expr; $($case:ident),*) => {
        $(
            #[::tokio::test $cfg]
            async fn $case() {
                $crate::conformance::$case(&$harness).await
            }
        )*
    };
}
