use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use octopus_discovery_core::{Error, Result, ServiceInstance};

/// Makes the tonic `Channel` to one instance. The simulator brings one over its
/// own network; [`TcpConnector`] dials real TCP.
pub trait Connector: Send + Sync + 'static {
    /// A channel to `instance` (lazily connected: this must not block).
    fn connect(&self, instance: &ServiceInstance) -> Result<Channel>;
}

/// Plain-text HTTP/2 over TCP, with a connect timeout and HTTP/2 keepalive so that
/// a dead instance is noticed without a request.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    connect_timeout: Duration,
    keepalive: Duration,
}

impl Default for TcpConnector {
    /// 2 s connect timeout, HTTP/2 keepalive every 10 s.
    fn default() -> Self {
        TcpConnector {
            connect_timeout: Duration::from_secs(2),
            keepalive: Duration::from_secs(10),
        }
    }
}

impl TcpConnector {
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
}

impl Connector for TcpConnector {
    fn connect(&self, instance: &ServiceInstance) -> Result<Channel> {
        let uri = format!("http://{}", instance.endpoint());
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::invalid_instance("addr", instance.endpoint(), format!("must form a valid URI: {e}")))?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(self.keepalive)
            .keep_alive_timeout(self.keepalive)
            .tcp_nodelay(true)
            .connect_lazy())
    }
}
