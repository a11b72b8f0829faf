//! gRPC for Octopus: a tonic channel balanced over the instances discovery
//! finds, and a tonic server that registers itself.
//!
//! - [`BalancedChannel`]: a tower `Service` that every tonic-generated client
//!   accepts (`GreeterClient::new(channel)`). It follows a discovery watch in its
//!   own task, keeps one connection per instance, balances by a [`Policy`],
//!   ejects unreachable (and, with [`OutlierDetection`], failing) instances,
//!   and counts each call's load with a guard that is released however the call
//!   ends, cancellation included.
//! - [`ChannelBuilder`]: the one way to set a channel up; a built channel's
//!   settings are fixed (clones share its endpoints and load, never change its
//!   settings).
//! - [`RegisteredServer`]: serves a tonic router, registers the instance once it
//!   listens, keeps the standard gRPC health service in step with the
//!   registration, and drains on shutdown; [`shutdown_signal`] is the
//!   SIGINT/SIGTERM future a binary passes it.
//!
//! The facade crate (`octopus-discovery`, feature `grpc`) re-exports all of it
//! as `octopus::grpc`, and its `Client::channel` / `Client::channel_to` make
//! the builder for a target.
//!
//! ```no_run
//! # async fn demo(watch: octopus_discovery_core::ServiceWatch) -> octopus_discovery_core::Result<()> {
//! use octopus_grpc::{ChannelBuilder, Policy};
//! let channel = ChannelBuilder::from_watch("greeter", watch)
//!     .policy(Policy::P2c)
//!     .zone("eu-1")
//!     .connect()
//!     .await?;
//! // let mut greeter = GreeterClient::new(channel);   // any tonic-generated client
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod balance;
mod builder;
mod serve;
mod signal;

pub use balance::{
    BalancedChannel, Connector, OutlierDetection, PanicThreshold, Policy, Readiness, TcpConnector, ZonePreference,
};
pub use builder::ChannelBuilder;
pub use serve::{RegisteredServer, ServeOptions};
pub use signal::shutdown_signal;

/// The jitter source [`ChannelBuilder::rng`] takes (seed it for reproducible picks).
pub use octopus_discovery_core::JitterRng;
