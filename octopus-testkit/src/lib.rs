//! Octopus's test kits, kept out of the published crates.
//!
//! - [`conformance`]: the backend conformance suite every backend's tests run
//!   ([`conformance_tests!`]).
//! - `etcd` and `proxy` (feature `etcd`): real etcd servers and clusters on free loopback
//!   ports with their own data directories, `etcdctl`, and a fault proxy.
//! - `grpc_proxy` (feature `etcd`): etcd's own gRPC proxy in front of them.
#![forbid(unsafe_code)]

pub mod conformance;

#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod grpc_proxy;
#[cfg(feature = "etcd")]
pub mod proxy;
