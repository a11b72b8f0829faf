//! gRPC by service name (feature `grpc`).
//!
//! ```no_run
//! # async fn demo() -> octopus::Result<()> {
//! use octopus::grpc::Policy;
//! let client = octopus::connect("mem://").await?;
//! let channel = client.channel("mem:///greeter?version=v1", Policy::RoundRobin).await?;
//! // let mut greeter = GreeterClient::new(channel);   // any tonic-generated client
//! # Ok(()) }
//! ```

pub use crate::channel::ChannelBuilder;
pub use crate::serve::{RegisteredServer, ServeOptions};
pub use octopus_discovery_core::balance::{
    BalancedChannel, Connector, OutlierDetection, PanicThreshold, Policy, Readiness, TcpConnector, ZonePreference,
};
