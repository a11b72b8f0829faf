//! # Octopus
//!
//! Service registration and discovery for Rust. A service registers itself under a
//! lease that Octopus keeps alive and re-establishes by itself, forever, when it is
//! lost; clients discover and watch the live instances of a service. Backends are
//! pluggable behind one set of traits, chosen by a URL.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> octopus::Result<()> {
//! use octopus::ServiceInstance;
//!
//! let client = octopus::connect("mem://").await?;
//! let reg = client
//!     .register(ServiceInstance::new("user-service", "instance-001", "127.0.0.1", 50051)?.with_version("v1.0.0"))
//!     .await?;
//!
//! let mut watch = client.watch("user-service").await?;
//! let snapshot = watch.next().await.expect("initial state");
//! assert_eq!(snapshot.instances[0].endpoint(), "127.0.0.1:50051");
//!
//! reg.deregister().await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `mem` (default): the embedded in-memory backend, `mem://`. Needs no server and no protoc.
//! - `grpc` (default): [`Client::channel`], a balanced tonic channel to a service by
//!   name (`etcd:///user-service`) that follows discovery; [`grpc::RegisteredServer`], a tonic
//!   server that registers itself, reports health and drains on shutdown (the
//!   `octopus-grpc` crate, re-exported as [`grpc`]).
//! - `etcd`: the etcd backend, `etcd://host:port,host:port`. Needs protoc to build.
//! - `config`: [`OctopusConfig`], from TOML, YAML or JSON files with `${VAR}` and
//!   `${VAR:-default}` substitution, plus `OCTOPUS_*` environment variables.
//! - `metrics`: [`metrics`], Prometheus text at `/metrics` plus `/healthz` and
//!   `/readyz`, for the series Octopus records through the `metrics` facade.
#![forbid(unsafe_code)]

mod client;
#[cfg(feature = "config")]
mod config;
#[cfg(feature = "grpc")]
pub mod grpc;
mod inspect;
mod inspect_changes;
#[cfg(feature = "metrics")]
pub mod metrics;
mod params;
mod url;

pub use client::{connect, connect_lazy, Client};
#[cfg(feature = "config")]
pub use config::{substitute, AppSection, OctopusConfig, ServiceConfig};
pub use inspect::{Entry, Inspector};
pub use inspect_changes::{ChangeBatch, EntryChange, EntryChanges};
#[cfg(feature = "grpc")]
pub use octopus_grpc::shutdown_signal;
pub use url::{parse_duration, RegistryUrl, PASSWORD_ENV};

pub use octopus_discovery_core::{
    chain, redact_url, url_label, BackoffPolicy, Change, Diff, Discovery, Error, ErrorKind, Freshness, Instances,
    IntoTarget, LeaseId, LeaseTtl, Metadata, RegisterOptions, Registration, RegistrationStatus, Registry, Resolvers,
    Result, ServiceInstance, ServiceWatch, Snapshot, Target,
};

// What the facade's own code uses from core but a user does not call: users
// who need them (backend authors, tests) name them `octopus::core::…`.
pub(crate) use octopus_discovery_core::DiscoveryResolver;

/// The core crate, for backend authors: the [`KvBackend`](octopus_discovery_core::KvBackend)
/// trait, the shared lease and watch machinery, the key layouts (chosen in a URL
/// with `layout=`), the discovery cache file, and helpers such as `OwnedTask`
/// and `JitterRng`.
pub use octopus_discovery_core as core;

/// The etcd backend (feature `etcd`).
#[cfg(feature = "etcd")]
pub use octopus_etcd as etcd;

/// The in-memory backend (feature `mem`).
#[cfg(feature = "mem")]
pub use octopus_mem as mem;

#[cfg(feature = "mem")]
fn mem_store(name: &str) -> octopus_mem::Store {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    // Named stores live as long as the process: `mem://` is "this process's registry".
    static STORES: OnceLock<Mutex<BTreeMap<String, octopus_mem::Store>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    stores.entry(name.to_owned()).or_default().clone()
}

/// The README's examples compile as doc tests, so the front door stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
