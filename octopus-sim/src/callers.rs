//! What a discoverer does with its balanced channels: calls the greeter through
//! each every call interval (logging each call), and logs the protected
//! channel's endpoint count as it changes; and the connector that dials
//! instances over turmoil's network.

use std::time::Duration;

use octopus_discovery_core::ServiceInstance;
use octopus_greeter::greeter_client::GreeterClient;
use octopus_greeter::HelloRequest;
use octopus_grpc::{BalancedChannel, Connector};
use tokio::time::sleep;
use tonic::transport::{Channel, Endpoint};

use crate::config::SimConfig;
use crate::log::{Ev, Log};
use crate::net;

/// The balancer's connector over turmoil's TCP, with the timeouts of the run.
pub(crate) struct SimConnector(pub(crate) Duration);

impl Connector for SimConnector {
    fn connect(&self, instance: &ServiceInstance) -> octopus_discovery_core::Result<Channel> {
        let endpoint = Endpoint::from_shared(format!("http://{}", instance.endpoint())).map_err(|e| {
            octopus_discovery_core::Error::invalid_instance(
                "addr",
                instance.endpoint(),
                format!("must form a valid URI: {e}"),
            )
        })?;
        Ok(endpoint
            .connect_timeout(self.0)
            .http2_keep_alive_interval(self.0 / 2)
            .keep_alive_timeout(self.0)
            .keep_alive_while_idle(true)
            .connect_with_connector_lazy(net::connector()))
    }
}

/// Starts `host`'s callers: one through `balanced` (logged as `host`), one through
/// `protected` (logged as `{host}/protected`), and the sampler of the protected
/// channel's endpoints.
pub(crate) fn spawn(cfg: &SimConfig, log: &Log, host: &str, balanced: BalancedChannel, protected: BalancedChannel) {
    let host = host.to_owned();
    {
        // The protected channel's endpoint count, as it changes: invariant 13 also
        // asks that it never drops to zero after a data loss (calls sample it
        // only every call interval).
        let (channel, log, name) = (protected.clone(), log.clone(), format!("{host}/protected"));
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let n = channel.endpoints().len();
                if last != Some(n) {
                    last = Some(n);
                    log.push(Ev::Endpoints {
                        host: name.clone(),
                        endpoints: n,
                    });
                }
                sleep(Duration::from_millis(10)).await;
            }
        });
    }
    for (channel, caller) in [(balanced, host.clone()), (protected, format!("{host}/protected"))] {
        let log = log.clone();
        let period = cfg.call_interval;
        let timeout = cfg.request_timeout;
        tokio::spawn(async move {
            let mut client = GreeterClient::new(channel);
            loop {
                sleep(period).await;
                let started = turmoil::sim_elapsed().unwrap_or_default();
                let request = HelloRequest { name: caller.clone() };
                let result = match tokio::time::timeout(timeout, client.say_hello(request)).await {
                    Ok(Ok(reply)) => Ok(reply.into_inner().instance),
                    Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                    Err(_) => Err("timeout".to_owned()),
                };
                log.push(Ev::Call {
                    host: caller.clone(),
                    started,
                    result,
                });
            }
        });
    }
}
