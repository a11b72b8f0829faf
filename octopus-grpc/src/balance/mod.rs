//! A gRPC balancer that follows discovery.
//!
//! [`BalancedChannel`] is a tower `Service` that every tonic-generated client
//! accepts (`GreeterClient::new(channel)`). It holds one tonic `Channel` per
//! instance, made by an injectable [`Connector`] (real TCP by default), and
//! follows a discovery [`ServiceWatch`](octopus_discovery_core::ServiceWatch) in its own task, so new instances
//! get traffic and removed ones stop getting it even when no request is in
//! flight. An instance whose connection fails is ejected for a backoff period;
//! when every instance is down a call fails at once with `Unavailable` naming the
//! service. A stale discovery result keeps the last known endpoints.

mod channel;
mod connector;
mod endpoints;
mod follow;
mod outlier;
mod pick;
mod policy;
mod ready;

pub use channel::BalancedChannel;
pub(crate) use channel::Settings;
pub use connector::{Connector, TcpConnector};
pub use endpoints::{OutlierDetection, PanicThreshold, ZonePreference};
pub use policy::{Policy, Readiness};

#[cfg(test)]
mod tests;
