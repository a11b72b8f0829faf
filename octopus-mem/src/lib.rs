//! Octopus's in-memory backend.
//!
//! [`Store`] is a small etcd in memory: a global revision, keys with create/mod
//! revisions and versions, leases that expire on `tokio::time`, prefix ranges,
//! watches from any revision with previous values, compaction, and transactions
//! with comparisons. The simulator serves this same store as a fake etcd, so its
//! semantics follow etcd's (and a property test holds it to a model).
//!
//! [`MemBackend`] puts the store behind [`octopus_discovery_core::KvBackend`]; the core's
//! [`LeaseRegistry`] and
//! [`WatchDiscovery`] do the rest.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> octopus_discovery_core::Result<()> {
//! use octopus_discovery_core::{Discovery, RegisterOptions, Registry, ServiceInstance};
//! use octopus_mem::{MemBackend, Store};
//!
//! let backend = MemBackend::new(Store::new());
//! let registry = backend.registry();
//! let discovery = backend.discovery();
//! let reg = registry
//!     .register(ServiceInstance::new("users", "u1", "127.0.0.1", 8080)?, RegisterOptions::default())
//!     .await?;
//! assert_eq!(discovery.instances("users").await?.len(), 1);
//! reg.deregister().await?;
//! assert!(discovery.instances("users").await?.is_empty());
//! # Ok(()) }
//! ```
//!
//! The store does no file I/O: [`Store::image`] and [`Store::from_image`] copy
//! its data out and back in, and the dev server (`octopus-devserver`) saves
//! that to a file for `octopus dev --data FILE`.
#![forbid(unsafe_code)]

mod backend;
mod error;
mod image;
mod lease;
mod range;
mod state;
mod store;
mod txn;
mod watch;

use std::sync::Arc;

use octopus_discovery_core::{JsonLayout, KeyLayout, LeaseRegistry, WatchDiscovery};

pub use backend::MemBackend;
pub use error::Error;
pub use image::StoreImage;
pub use lease::LeaseInfo;
pub use octopus_discovery_core::prefix_end;
pub use range::KeyRange;
pub use state::DEFAULT_HISTORY_LIMIT;
pub use store::{Store, StoreWatch};
pub use txn::{Compare, CompareOp, CompareTarget, Op, OpResult, TxnResult, MAX_REQUEST_BYTES, MAX_TXN_OPS};

/// The registry of the in-memory backend.
pub type MemRegistry = LeaseRegistry<MemBackend>;
/// The discovery of the in-memory backend.
pub type MemDiscovery = WatchDiscovery<MemBackend>;

impl MemBackend {
    /// A registry in the default layout (`/octopus/services/{service}/{id}`).
    pub fn registry(&self) -> MemRegistry {
        self.registry_with(Arc::new(JsonLayout::default()))
    }

    /// A registry in `layout`.
    pub fn registry_with(&self, layout: Arc<dyn KeyLayout>) -> MemRegistry {
        LeaseRegistry::new(Arc::new(self.clone()), layout)
    }

    /// A discovery in the default layout.
    pub fn discovery(&self) -> MemDiscovery {
        self.discovery_with(Arc::new(JsonLayout::default()))
    }

    /// A discovery in `layout`.
    pub fn discovery_with(&self, layout: Arc<dyn KeyLayout>) -> MemDiscovery {
        WatchDiscovery::new(Arc::new(self.clone()), layout)
    }
}
