//! `Client::shutdown`: a clean exit leaves no key behind, in process over
//! `mem://` (octopus-discovery-cli/tests/shutdown.rs: a process of its own
//! against a real etcd).

use std::time::Duration;

use octopus::{RegistrationStatus, ServiceInstance};

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
