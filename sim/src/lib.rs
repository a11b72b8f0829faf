//! Octopus's deterministic simulator, and the in-memory etcd it runs against.
//!
//! - [`MemEtcd`]: the `octopus-mem` store served as an etcd v3 gRPC server, on
//!   turmoil's simulated TCP or on real TCP (`octopus dev`, `etcdctl`).

pub mod server;

pub use server::{MemEtcd, MemEtcdOptions};
