//! The core conformance suite against a real etcd server, one per case, each client
//! behind a fault proxy so that a case can cut its own connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use octopus_discovery_core::{Discovery, Registry};
use octopus_testkit::conformance::Harness;
use octopus_testkit::etcd::{EtcdServer, ProxiedClients};
use tokio::sync::OnceCell;

#[derive(Default)]
struct Etcd {
    server: OnceCell<EtcdServer>,
    clients: ProxiedClients,
}

fn harness() -> Etcd {
    Etcd::default()
}

#[async_trait]
impl Harness for Etcd {
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>) {
        let server = self.server.get_or_init(EtcdServer::start).await;
        self.clients.open(server.addr(), namespace).await
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
