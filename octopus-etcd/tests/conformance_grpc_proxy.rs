//! The core conformance suite through etcd's own gRPC proxy (`etcd grpc-proxy
//! start`): one etcd and one proxy in front of it; each client reaches the
//! proxy through a fault proxy of its own, so that a case can cut its own
//! connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use octopus_discovery_core::{Discovery, Registry};
use octopus_testkit::conformance::Harness;
use octopus_testkit::etcd::{EtcdServer, ProxiedClients};
use octopus_testkit::grpc_proxy::GrpcProxy;
use tokio::sync::OnceCell;

#[derive(Default)]
struct BehindGrpcProxy {
    servers: OnceCell<(EtcdServer, GrpcProxy)>,
    clients: ProxiedClients,
}

fn harness() -> BehindGrpcProxy {
    BehindGrpcProxy::default()
}

#[async_trait]
impl Harness for BehindGrpcProxy {
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>) {
        let (_, proxy) = self
            .servers
            .get_or_init(|| async {
                let etcd = EtcdServer::start().await;
                let proxy = GrpcProxy::start(&[etcd.endpoint()]).await;
                (etcd, proxy)
            })
            .await;
        self.clients.open(proxy.addr(), namespace).await
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(2) // etcd's minimum lease TTL with default timing
    }

    fn settle(&self) -> Duration {
        Duration::from_secs(3)
    }

    async fn cut(&self, namespace: &str, cut: bool) -> bool {
        self.clients.cut(namespace, cut);
        true
    }
}

octopus_testkit::conformance_tests!(real: harness());
