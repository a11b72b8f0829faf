//! `Client::shutdown`: a clean exit leaves no key behind. In process over
//! `mem://`, and as a process of its own against a real etcd (the key checked
//! with etcdctl right after the process has exited).

use std::time::Duration;

use octopus::{RegistrationStatus, ServiceInstance};
use octopus_testkit::etcd::EtcdServer;

/// Set in the environment of the child process: the registry URL it uses.
const CHILD_URL: &str = "OCTOPUS_TEST_SHUTDOWN_CHILD_URL";

fn instance(id: &str) -> ServiceInstance {
    ServiceInstance::new("exit", id, "127.0.0.1", 7000).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_deregisters_held_and_dropped_registrations_and_closes_the_client() {
    let client = octopus::connect("mem://shutdown?ttl=30s").await.unwrap();
    let mut watch = client.watch("exit").await.unwrap();
    let held = client.register(instance("held")).await.unwrap();
    let dropped = client.register(instance("dropped")).await.unwrap();
    held.registered().await.unwrap();
    dropped.registered().await.unwrap();
    assert_eq!(client.inspector().services().await.unwrap().get("exit"), Some(&2));
    drop(dropped); // its deregistration is now a detached task
    let mut status = held.status();

    client.shutdown().await.unwrap();

    // Both keys are gone when shutdown returns (the TTL, 30 s, explains nothing).
    let services = client.inspector().services().await.unwrap();
    assert!(services.is_empty(), "keys left after shutdown: {services:?}");
    assert_eq!(*status.borrow_and_update(), RegistrationStatus::Deregistered);
    held.deregister()
        .await
        .expect("a handle after shutdown deregisters as a no-op");

    // The client is closed, clones included; watches made before have ended.
    let clone = client.clone();
    let err = clone.register(instance("late")).await.unwrap_err().to_string();
    assert!(err.contains("shut down"), "{err}");
    let err = client.watch("exit").await.unwrap_err().to_string();
    assert!(err.contains("shut down"), "{err}");
    let ended = tokio::time::timeout(Duration::from_secs(10), async { while watch.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "a watch made before shutdown ends");
    client.shutdown().await.expect("a second shutdown is harmless");
}

/// The child process of the test below: registers, drops its handle, shuts the
/// client down and returns, which ends the process. In a normal test run (no
/// [`CHILD_URL`]) it returns at once.
#[tokio::test(flavor = "current_thread")]
async fn child_registers_drops_its_handle_and_shuts_down() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let client = octopus::connect(&url).await.unwrap();
    let registration = client.register(instance("child")).await.unwrap();
    registration.registered().await.unwrap();
    println!("child: registered");
    drop(registration);
    client.shutdown().await.unwrap();
    println!("child: shut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_shuts_down_leaves_no_key_in_etcd() {
    let etcd = EtcdServer::start().await;
    // A TTL far longer than the test: only a deregistration removes the key.
    let url = format!("etcd://{}?ttl=60s", etcd.endpoint());
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_registers_drops_its_handle_and_shuts_down",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("child: registered") && stdout.contains("child: shut down"),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );

    // Right after the process has exited, an independent client sees no key.
    let keys = etcd.etcdctl(&["get", "--prefix", "/octopus/", "--keys-only"]);
    assert!(keys.status.success(), "{}", String::from_utf8_lossy(&keys.stderr));
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(keys.trim().is_empty(), "keys left after a clean exit: {keys}");
    // Its lease was revoked, not left to run out.
    let leases = etcd.etcdctl(&["lease", "list"]);
    let leases = String::from_utf8_lossy(&leases.stdout);
    assert!(leases.contains("found 0 leases"), "{leases}");
}
