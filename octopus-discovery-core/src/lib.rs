//! Octopus core: the service model, the [`Registry`] and [`Discovery`] traits, and
//! the machinery every backend shares.
//!
//! A backend implements the small etcd-shaped [`KvBackend`] trait; [`LeaseRegistry`]
//! and [`WatchDiscovery`] turn it into a registry that keeps leases alive and
//! re-registers forever, and a discovery whose shared watch cache resumes after
//! disconnects and resyncs after compaction or a lost history.
//!
//! ```
//! use octopus_discovery_core::{ServiceInstance, Target};
//! let instance = ServiceInstance::new("user-service", "instance-001", "127.0.0.1", 50051)?
//!     .with_version("v1.0.0");
//! let target: Target = "etcd:///user-service?version=v1.0.0".parse()?;
//! assert!(target.matches(&instance));
//! # Ok::<(), octopus_discovery_core::Error>(())
//! ```
//!
//! The gRPC balancer that follows this discovery is the `octopus-grpc` crate.
//!
//! # Feature flags
//!
//! - `sim-hooks`: the simulator's hooks (the `hooks` module: deliberate bugs, an
//!   event observer, a replaceable wall clock). Only `octopus-sim` turns it on;
//!   never for production builds.
#![forbid(unsafe_code)]

// The simulator's hooks (feature `sim-hooks`). Both macros are private to this
// crate, so they are no part of its API with or without the feature; another
// crate that needs a deliberate bug calls `hooks::enabled` behind its own
// `sim-hooks` feature (octopus-etcd does).

/// `bug!(Name)`: whether the simulator's deliberate bug `Name` is switched on
/// (always `false` without the feature, where the `hooks` module does not exist).
#[cfg(feature = "sim-hooks")]
macro_rules! bug {
    ($bug:ident) => {
        $crate::hooks::enabled($crate::hooks::Bug::$bug)
    };
}
#[cfg(not(feature = "sim-hooks"))]
macro_rules! bug {
    ($bug:ident) => {
        false
    };
}
pub(crate) use bug;

/// `observe!(expr)`: hands the `hooks::Observed` event `expr` to the simulator's
/// observer (nothing, and `expr` not evaluated, without the feature).
#[cfg(feature = "sim-hooks")]
macro_rules! observe {
    ($event:expr) => {
        $crate::hooks::observe(|| $event)
    };
}
#[cfg(not(feature = "sim-hooks"))]
macro_rules! observe {
    ($event:expr) => {};
}
pub(crate) use observe;

mod backoff;
mod cache;
pub mod cache_file;
mod clock;
mod diff;
mod discovery;
mod error;
pub mod fencing;
#[cfg(feature = "sim-hooks")]
pub mod hooks;
mod ids;
mod instance;
mod instances;
mod keepalive;
mod kv;
pub mod latest;
mod layout;
mod lease;
mod mailbox;
mod metadata;
pub mod readiness;
mod registry;
mod resolver;
mod secret;
mod shared;
mod snapshot;
mod target;
mod task;
pub mod telemetry;
mod view;

// The model: what a service is, and what discovery reports.
pub use diff::{diff, Diff};
pub use error::{chain, BoxError, Error, ErrorKind, Result};
pub use ids::{LeaseId, Revision};
pub use instance::{
    validate_name, ServiceInstance, DEFAULT_WEIGHT, DRAINING_KEY, MAX_ENCODED_LEN, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_LEN, MAX_NAME_LEN, MAX_WEIGHT,
};
pub use instances::Instances;
pub use metadata::Metadata;
pub use snapshot::{Freshness, Snapshot};
pub use target::{IntoTarget, Target};

// The traits a user calls, and their handles.
pub use discovery::{Change, Discovery, ServiceWatch};
pub use registry::{RegisterOptions, Registration, RegistrationStatus, Registry, MAX_LEASE_TTL};
pub use resolver::{DiscoveryResolver, Resolver, Resolvers};

// The engine a backend plugs into: the `KvBackend` seam, the lease registry
// and the watch cache on it, and where keys live.
pub use cache::{DiscoveryStats, WatchDiscovery};
pub use kv::{
    prefix_end, Event, EventKind, Header, KeyValue, KvBackend, Lease, LeaseKeeper, LeaseTtl, PutOutcome, SinkStart,
    WatchGuard, WatchMessage, WatchSink, WatchStart, WatchStream,
};
pub use layout::{
    encode_with_mark, validate_namespace, EtcdNamingLayout, GoZeroLayout, JsonLayout, KeyLayout, KratosLayout,
    DEFAULT_NAMESPACE,
};
pub use lease::LeaseRegistry;

// Helpers the backends and the facade share.
pub use backoff::{Backoff, BackoffPolicy, JitterRng};
pub use secret::{
    is_shown_param, lower_name, plausible_host, plausible_scheme, redact_url, url_label, Secret, HIDDEN_PARAMS,
    SHOWN_PARAMS,
};
pub use task::OwnedTask;
