//! Octopus's etcd backend.
//!
//! [`EtcdBackend`] implements [`octopus_discovery_core::KvBackend`] on the `etcd-client`
//! crate; the core's [`LeaseRegistry`] and
//! [`WatchDiscovery`] provide registration (leases,
//! keepalive, fencing, re-registration) and discovery (shared watch cache, resume,
//! resync). The connection is a tonic channel with HTTP/2 keepalive and timeouts
//! set on the endpoint, so a partitioned connection fails instead of hanging; a
//! caller may bring its own channel ([`EtcdBackend::from_channel`]).
//!
//! Like etcd's Go client, a backend (and its clones) holds one gRPC watch stream
//! for every watch it opens and one LeaseKeepAlive stream for every lease it
//! keeps alive ([`EtcdBackend::streams`]): what a client costs etcd does not
//! grow with the services it watches or the instances it registers.
#![forbid(unsafe_code)]

mod backend;
mod call;
mod convert;
mod creates;
mod kv;
mod lease;
mod lease_mux;
mod maintenance;
mod options;
mod watch;
mod watch_mux;

use std::sync::Arc;

use octopus_discovery_core::{JsonLayout, KeyLayout, LeaseRegistry, WatchDiscovery};

pub use backend::{EtcdBackend, StreamStats};
pub use convert::EtcdStatus;
pub use options::{EtcdOptions, TlsOptions};

/// The etcd registry.
pub type EtcdRegistry = LeaseRegistry<EtcdBackend>;
/// The etcd discovery.
pub type EtcdDiscovery = WatchDiscovery<EtcdBackend>;

impl EtcdBackend {
    /// A registry in the default layout.
    pub fn registry(&self) -> EtcdRegistry {
        self.registry_with(Arc::new(JsonLayout::default()))
    }

    /// A registry in `layout`.
    pub fn registry_with(&self, layout: Arc<dyn KeyLayout>) -> EtcdRegistry {
        LeaseRegistry::new(Arc::new(self.clone()), layout)
    }

    /// A discovery in the default layout.
    pub fn discovery(&self) -> EtcdDiscovery {
        self.discovery_with(Arc::new(JsonLayout::default()))
    }

    /// A discovery in `layout`.
    pub fn discovery_with(&self, layout: Arc<dyn KeyLayout>) -> EtcdDiscovery {
        WatchDiscovery::new(Arc::new(self.clone()), layout)
    }
}
