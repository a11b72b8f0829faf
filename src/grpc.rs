//! gRPC by service name (feature `grpc`): the `octopus-grpc` crate, re-exported.
//!
//! ```no_run
//! # async fn demo() -> octopus::Result<()> {
//! use octopus::grpc::Policy;
//! let client = octopus::connect("mem://").await?;
//! let channel = client.channel("mem:///greeter?version=v1", Policy::RoundRobin).await?;
//! // let mut greeter = GreeterClient::new(channel);   // any tonic-generated client
//! # Ok(()) }
//! ```

pub use octopus_grpc::{
    BalancedChannel, ChannelBuilder, Connector, JitterRng, OutlierDetection, PanicThreshold, Policy, Readiness,
    RegisteredServer, ServeOptions, TcpConnector, ZonePreference,
};
