//! Two hundred instances on one shared lease against real etcd: etcd sees one
//! lease and one keepalive stream, and every key is attached to that lease.

use std::sync::Arc;
use std::time::Duration;

use octopus_discovery_core::{JsonLayout, RegisterOptions, Registry, ServiceInstance};
use octopus_etcd::EtcdBackend;
use octopus_testkit::etcd::EtcdServer;
use tokio::time::sleep;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_instances_one_lease() {
    let server = EtcdServer::start().await;
    let backend = EtcdBackend::connect(server.options()).await.unwrap();
    let opts = RegisterOptions::default().ttl(Duration::from_secs(2));
    let registry = backend
        .registry_with(Arc::new(JsonLayout::default()))
        .with_shared_lease(opts.clone());
    let mut regs = Vec::new();
    for n in 0..200u16 {
        let inst = ServiceInstance::new(format!("svc{}", n % 10), format!("i{n}"), "127.0.0.1", 1000 + n).unwrap();
        regs.push(registry.register(inst, opts.clone()).await.unwrap());
    }
    sleep(Duration::from_secs(5)).await; // several TTLs: the one lease is kept alive
    let list = String::from_utf8(server.etcdctl(&["lease", "list"]).stdout).unwrap();
    let leases: Vec<&str> = list.lines().skip(1).map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(leases.len(), 1, "etcd holds one lease for 200 instances: {list}");
    let ttl = String::from_utf8(server.etcdctl(&["lease", "timetolive", leases[0], "--keys"]).stdout).unwrap();
    assert_eq!(
        ttl.matches("/octopus/services/").count(),
        200,
        "every key is on that lease"
    );
    println!("shared lease: 200 keys on lease {} after 5 s (TTL 2 s)", leases[0]);
    for r in regs {
        r.deregister().await.unwrap();
    }
}
