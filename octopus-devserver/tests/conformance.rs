//! The core conformance suite, through the real etcd backend, against `MemEtcd` on
//! real TCP: the simulated etcd must satisfy what the real one does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use octopus_devserver::{MemEtcd, MemEtcdOptions};
use octopus_discovery_core::{Discovery, Registry};
use octopus_mem::Store;
use octopus_testkit::conformance::Harness;
use octopus_testkit::etcd::ProxiedClients;

#[derive(Default)]
struct Sim {
    /// One server per case (each case runs in its own runtime), by namespace.
    servers: Mutex<BTreeMap<String, SocketAddr>>,
    clients: ProxiedClients,
}

fn harness() -> Sim {
    Sim::default()
}

async fn start_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = MemEtcd::new(Store::new(), MemEtcdOptions::default());
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    addr
}

#[async_trait]
impl Harness for Sim {
    async fn open(&self, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>) {
        let existing = self.servers.lock().unwrap().get(namespace).copied();
        let addr = match existing {
            Some(addr) => addr,
            None => {
                let addr = start_server().await;
                self.servers.lock().unwrap().insert(namespace.to_owned(), addr);
                addr
            }
        };
        self.clients.open(addr, namespace).await
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(2)
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
