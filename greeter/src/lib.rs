//! The greeter service of Octopus's gRPC examples, tests and benchmarks:
//! `SayHello(HelloRequest) -> HelloReply`, whose reply names the instance that
//! answered so that balancing can be observed.
#![forbid(unsafe_code)]
#![allow(missing_docs)] // generated code

tonic::include_proto!("octopus.example");
