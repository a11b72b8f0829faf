//! The greeter service of Octopus's gRPC examples, tests and benchmarks:
//! `SayHello(HelloRequest) -> HelloReply`, whose reply names the instance that
//! answered so that balancing can be observed.
#![forbid(unsafe_code)]
#![allow(missing_docs)] // generated code

tonic::include_proto!("octopus.example");

/// A greeter that answers `hello, {name}` and names itself in every reply, so
/// that a client can see which instance served it.
#[derive(Clone, Debug)]
pub struct NamedGreeter(pub String);

#[tonic::async_trait]
impl greeter_server::Greeter for NamedGreeter {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        Ok(tonic::Response::new(HelloReply {
            message: format!("hello, {}", request.into_inner().name),
            instance: self.0.clone(),
        }))
    }
}

/// A greeter that answers as [`NamedGreeter`] does after `delay` (an instance
/// that is up but slow, for latency-aware balancing's tests).
#[derive(Clone, Debug)]
pub struct SlowGreeter(pub String, pub std::time::Duration);

#[tonic::async_trait]
impl greeter_server::Greeter for SlowGreeter {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        tokio::time::sleep(self.1).await;
        Ok(tonic::Response::new(HelloReply {
            message: format!("hello, {}", request.into_inner().name),
            instance: self.0.clone(),
        }))
    }
}

impl SlowGreeter {
    /// The tonic service for this greeter.
    pub fn service(name: impl Into<String>, delay: std::time::Duration) -> greeter_server::GreeterServer<Self> {
        greeter_server::GreeterServer::new(SlowGreeter(name.into(), delay))
    }
}

/// A greeter that fails every call with `status` (an instance that is up but
/// broken, for outlier detection's tests).
#[derive(Clone, Debug)]
pub struct FailingGreeter(pub tonic::Code);

#[tonic::async_trait]
impl greeter_server::Greeter for FailingGreeter {
    async fn say_hello(
        &self,
        _request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        Err(tonic::Status::new(self.0, "this instance is broken"))
    }
}

impl FailingGreeter {
    /// The tonic service for this greeter.
    pub fn service(code: tonic::Code) -> greeter_server::GreeterServer<Self> {
        greeter_server::GreeterServer::new(FailingGreeter(code))
    }
}

impl NamedGreeter {
    /// The tonic service for this greeter.
    pub fn service(name: impl Into<String>) -> greeter_server::GreeterServer<Self> {
        greeter_server::GreeterServer::new(NamedGreeter(name.into()))
    }
}

/// Serves a [`NamedGreeter`] answering as `name` on a free loopback port, in a
/// task of the current runtime (for tests and benches); the port.
pub async fn serve_on_loopback(name: &str) -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NamedGreeter::service(name.to_owned()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(port)
}
