//! Octopus's deterministic simulator: the real etcd backend, registry, watch
//! cache and balancer against a simulated etcd (`octopus_devserver::MemEtcd` on
//! turmoil's network), under faults drawn from a seed.
mod callers;
pub mod check;
pub mod config;
pub mod edits;
pub mod hosts;
pub mod log;
pub mod net;
pub mod run;
pub mod schedule;
pub mod units;
