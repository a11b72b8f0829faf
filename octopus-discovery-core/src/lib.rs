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
#![forbid(unsafe_code)]

mod backoff;
mod cache;
pub mod clock;
mod diff;
mod discovery;
mod error;
pub mod fencing;
#[cfg(feature = "sim-hooks")]
pub mod hooks;
#[cfg(not(feature = "sim-hooks"))]
#[doc(hidden)]
#[macro_export]
macro_rules! bug {
    ($bug:ident) => {
        false
    };
}
#[cfg(not(feature = "sim-hooks"))]
#[doc(hidden)]
#[macro_export]
macro_rules! observe {
    ($event:expr) => {};
}
mod ids;
mod instance;
mod instances;
mod keepalive;
mod kv;
mod layout;
mod lease;
mod mailbox;
mod metadata;
mod presets;
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

pub use backoff::{Backoff, BackoffPolicy, JitterRng};
pub use cache::{ColdCache, DiscoveryStats, WatchDiscovery};
pub use diff::{diff, Diff};
pub use discovery::{Change, Discovery, ServiceWatch};
pub use error::{chain, BoxError, Error, ErrorKind, Result};
pub use ids::{LeaseId, Revision};
pub use instance::{
    validate_name, ServiceInstance, DEFAULT_WEIGHT, DRAINING_KEY, MAX_ENCODED_LEN, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_LEN, MAX_NAME_LEN, MAX_WEIGHT,
};
pub use instances::Instances;
pub use kv::{
    prefix_end, Event, EventKind, Header, KeyValue, KvBackend, Lease, LeaseKeeper, LeaseTtl, PutOutcome, WatchMessage,
    WatchStart, WatchStream,
};
pub use layout::{encode_with_mark, validate_namespace, JsonLayout, KeyLayout, DEFAULT_NAMESPACE};
pub use lease::LeaseRegistry;
pub use metadata::Metadata;
pub use presets::{EtcdNamingLayout, GoZeroLayout, KratosLayout};
pub use registry::{RegisterOptions, Registration, RegistrationStatus, Registry};
pub use resolver::{DiscoveryResolver, Resolver, Resolvers};
pub use secret::{is_secret_param, redact_url, Secret, SECRET_PARAMS};
pub use snapshot::{Freshness, Snapshot};
pub use target::{IntoTarget, Target};
pub use task::OwnedTask;
