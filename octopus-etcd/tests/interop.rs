//! Interop with Go meshes: keys written by etcdctl in the kratos, etcd-naming and
//! go-zero formats are discovered; instances registered with those layouts read
//! back with etcdctl in the exact format.

use std::sync::Arc;
use std::time::Duration;

use octopus_discovery_core::{
    Discovery, EtcdNamingLayout, GoZeroLayout, KeyLayout, KratosLayout, RegisterOptions, Registry, ServiceInstance,
};
use octopus_etcd::{EtcdBackend, EtcdOptions};
use octopus_testkit::etcd::EtcdServer;

async fn backend(server: &EtcdServer) -> EtcdBackend {
    EtcdBackend::connect(EtcdOptions::new([server.endpoint()]).unwrap())
        .await
        .unwrap()
}

fn out(o: std::process::Output) -> String {
    assert!(o.status.success(), "etcdctl: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Registers `instance` in `layout` and returns what etcdctl sees under the prefix
/// (key and value lines), and the registration.
async fn register_and_read(
    server: &EtcdServer,
    layout: Arc<dyn KeyLayout>,
    instance: ServiceInstance,
) -> (String, octopus_discovery_core::Registration) {
    let registry = backend(server).await.registry_with(layout.clone());
    let prefix = layout.prefix(&instance.service);
    let opts = RegisterOptions::default().ttl(Duration::from_secs(5));
    let reg = registry.register(instance, opts).await.unwrap();
    reg.registered().await.unwrap();
    (out(server.etcdctl(&["get", "--prefix", &prefix])), reg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kratos_layout_reads_go_kratos_values_and_writes_what_it_reads() {
    let server = EtcdServer::start().await;
    let layout: Arc<dyn KeyLayout> = Arc::new(KratosLayout::default());
    let go = r#"{"id":"go-1","name":"helloworld","version":"v1","metadata":{"zone":"a"},"endpoints":["http://127.0.0.1:8000","grpc://127.0.0.1:9000"]}"#;
    out(server.etcdctl(&["put", "/microservices/helloworld/go-1", go]));
    let discovery = backend(&server).await.discovery_with(layout.clone());
    let found = discovery.instances("helloworld").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].id.as_str(), found[0].port, &found[0].metadata["zone"]),
        ("go-1", 9000, "a")
    );

    let rust = ServiceInstance::new("helloworld", "rs-1", "127.0.0.1", 9001)
        .unwrap()
        .with_version("v2");
    let (seen, _reg) = register_and_read(&server, layout, rust).await;
    let lines: Vec<&str> = seen.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "/microservices/helloworld/rs-1")
        .expect("our key");
    let value: serde_json::Value = serde_json::from_str(lines[at + 1]).unwrap();
    assert_eq!(value["id"], "rs-1");
    assert_eq!(value["name"], "helloworld");
    assert_eq!(value["version"], "v2");
    assert_eq!(value["endpoints"], serde_json::json!(["grpc://127.0.0.1:9001"]));
    assert_eq!(discovery.instances("helloworld").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_naming_layout_keeps_grpc_go_metadata_null_and_rides_beside_it() {
    let server = EtcdServer::start().await;
    let layout: Arc<dyn KeyLayout> = Arc::new(EtcdNamingLayout::new("/services").unwrap());
    out(server.etcdctl(&[
        "put",
        "/services/greeter/127.0.0.1:7001",
        r#"{"Op":0,"Addr":"127.0.0.1:7001","Metadata":null}"#,
    ]));
    let discovery = backend(&server).await.discovery_with(layout.clone());
    let found = discovery.instances("greeter").await.unwrap();
    assert_eq!((found[0].addr.as_str(), found[0].port), ("127.0.0.1", 7001));

    let rust = ServiceInstance::new("greeter", "rs", "127.0.0.1", 7002)
        .unwrap()
        .with_version("v0.1.0")
        .with_metadata("zone", "local");
    let (seen, _reg) = register_and_read(&server, layout, rust).await;
    let lines: Vec<&str> = seen.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "/services/greeter/127.0.0.1:7002")
        .expect("our key");
    // Metadata stays null (grpc-go's round_robin hashes it); the rest rides beside it.
    assert_eq!(
        lines[at + 1],
        r#"{"Op":0,"Addr":"127.0.0.1:7002","Metadata":null,"Octopus":{"id":"rs","version":"v0.1.0","metadata":{"zone":"local"},"weight":100}}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_zero_layout_keys_carry_the_lease_id_in_decimal() {
    let server = EtcdServer::start().await;
    let layout: Arc<dyn KeyLayout> = Arc::new(GoZeroLayout::default());
    out(server.etcdctl(&["put", "user.rpc/7587862322351931146", "127.0.0.1:8080"]));
    let discovery = backend(&server).await.discovery_with(layout.clone());
    let found = discovery.instances("user.rpc").await.unwrap();
    assert_eq!((found[0].id.as_str(), found[0].port), ("7587862322351931146", 8080));

    let rust = ServiceInstance::new("user.rpc", "rs", "127.0.0.1", 8081).unwrap();
    let (seen, reg) = register_and_read(&server, layout, rust).await;
    let lease = reg.registered().await.unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    let key = format!("user.rpc/{}", lease.0);
    let at = lines
        .iter()
        .position(|l| *l == key)
        .expect("our key holds our lease id in decimal");
    assert_eq!(lines[at + 1], "127.0.0.1:8081");
    let leases = out(server.etcdctl(&["lease", "timetolive", &format!("{:x}", lease.0), "--keys"]));
    assert!(leases.contains(&key), "the key is attached to that lease: {leases}");
}
