//! Watches behind etcd's own gRPC proxy, in the pattern that once swapped them:
//! another client of the proxy follows half of the services first, so the proxy
//! answers those creates at once and the others only once etcd has; then one
//! client creates watches on every service at once. Each watch must show its
//! own service's instance, and see it go.

use std::sync::Arc;
use std::time::Duration;

use octopus_discovery_core::{
    BackoffPolicy, Discovery, JsonLayout, RegisterOptions, Registry, ServiceInstance, ServiceWatch, Snapshot,
};
use octopus_etcd::EtcdBackend;
use octopus_testkit::etcd::EtcdServer;
use octopus_testkit::grpc_proxy::GrpcProxy;
use tokio::time::timeout;

const SETTLE: Duration = Duration::from_secs(10);

async fn client(proxy: &GrpcProxy, namespace: &str) -> (Arc<dyn Registry>, Arc<dyn Discovery>) {
    let backend = EtcdBackend::connect(proxy.options().request_timeout(Duration::from_secs(5)))
        .await
        .expect("the proxy answers");
    let layout = Arc::new(JsonLayout::new(namespace).expect("a valid namespace"));
    (
        Arc::new(backend.registry_with(layout.clone())),
        Arc::new(backend.discovery_with(layout)),
    )
}

fn services(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("svc{i:02}")).collect()
}

/// Who `s` shows, as `service/id`.
fn shown(s: &Snapshot) -> Vec<String> {
    s.instances.iter().map(|i| format!("{}/{}", i.service, i.id)).collect()
}

async fn until(w: &mut ServiceWatch, service: &str, want: &[String], n: usize) {
    let seen = timeout(SETTLE, w.wait_for(|s| shown(s) == want)).await;
    match seen {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("{n} watches: the watch on {service} ended waiting for {want:?}: {e}"),
        Err(_) => panic!(
            "{n} watches: the watch on {service} never showed {want:?}; it shows {:?}",
            w.latest().as_ref().map(shown)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watches_created_at_once_behind_the_proxy_follow_their_own_services() {
    let etcd = EtcdServer::start().await;
    let proxy = GrpcProxy::start(&[etcd.endpoint()]).await;
    for n in [4, 8, 12, 24] {
        let namespace = format!("/grpc-proxy/{n}");
        let all = services(n);
        // Another client of the proxy follows every other service first.
        let (_, other) = client(&proxy, &namespace).await;
        let mut early = Vec::new();
        for service in all.iter().step_by(2) {
            let mut w = other.watch(service).await.expect("the other client's watch");
            timeout(SETTLE, w.next())
                .await
                .expect("its first snapshot in time")
                .expect("a first snapshot");
            early.push(w);
        }
        // Then one client creates a watch on every service at once.
        let (registry, discovery) = client(&proxy, &namespace).await;
        let opened = futures_util::future::join_all(all.iter().map(|s| discovery.watch(s))).await;
        let mut watches: Vec<ServiceWatch> = opened
            .into_iter()
            .map(|w| w.expect("a watch through the proxy"))
            .collect();
        let retry = BackoffPolicy::new(Duration::from_millis(50), Duration::from_secs(2)).expect("valid policy");
        let options = RegisterOptions::default().ttl(Duration::from_secs(5)).retry(retry);
        let mut registrations = Vec::new();
        for (i, service) in all.iter().enumerate() {
            let instance = ServiceInstance::new(service, format!("i{i:02}"), "127.0.0.1", 3000 + i as u16)
                .expect("valid instance");
            registrations.push(registry.register(instance, options.clone()).await.expect("registered"));
        }
        for (i, (service, w)) in all.iter().zip(&mut watches).enumerate() {
            until(w, service, &[format!("{service}/i{i:02}")], n).await;
        }
        for r in registrations {
            r.deregister().await.expect("deregistered");
        }
        for (service, w) in all.iter().zip(&mut watches) {
            until(w, service, &[], n).await;
        }
    }
}
