//! Octopus's deterministic simulator, and the in-memory etcd it runs against.
//!
//! - [`MemEtcd`]: the `octopus-mem` store served as an etcd v3 gRPC server, on
//!   turmoil's simulated TCP or on real TCP (`octopus dev`, `etcdctl`).

pub mod server;

pub use server::{AuditEvent, AuditHook, MemEtcd, MemEtcdOptions};
pub mod check;
pub mod config;
pub mod hosts;
pub mod log;
pub mod net;
pub mod run;
pub mod schedule;
