//! Octopus's test kits, kept out of the published crates.
//!
//! - [`conformance`]: the backend conformance suite every backend's tests run
//!   ([`conformance_tests!`]).
//! - `etcd` and `proxy` (feature `etcd`): real etcd servers and clusters on free loopback
//!   ports with their own data directories, `etcdctl`, and a fault proxy.
//! - `postgres` (feature `postgres`): a real PostgreSQL server on a free loopback
//!   port with its own data directory, one database per test.
//! - `grpc_proxy` (feature `etcd`): etcd's own gRPC proxy in front of them.
//! - [`ports`]: loopback ports for those servers, outside the kernel's ephemeral range.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod docs;
pub mod ports;

#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod grpc_proxy;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "etcd")]
pub mod proxy;
