//! Octopus's etcd load harness (not published). The harness itself is the bench
//! `etcd_load`:
//!
//! ```text
//! cargo bench -p octopus-etcd-load --bench etcd_load                # every scenario
//! cargo bench -p octopus-etcd-load --bench etcd_load -- sync event  # some
//! ```
//!
//! It sits in a package of its own because it needs etcd-client, which needs
//! protoc to build: the facade's default examples must build without it.
#![forbid(unsafe_code)]
