//! Draining from outside: an operator's mark (`octopus drain`, i.e.
//! `Inspector::set_draining`) reaches the registration, which keeps it through a
//! healed deletion; a layout without metadata refuses the mark by name.

use std::time::Duration;

use octopus::{BackoffPolicy, RegisterOptions, ServiceInstance};
use tokio::time::timeout;

fn options() -> RegisterOptions {
    RegisterOptions::default()
        .ttl(Duration::from_secs(2))
        .retry(BackoffPolicy::new(Duration::from_millis(20), Duration::from_millis(100)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_mark_is_adopted_and_kept() {
    let client = octopus::connect("mem://drain-adopted").await.unwrap();
    let instance = ServiceInstance::new("svc", "a", "127.0.0.1", 7001).unwrap();
    let reg = client.registry().register(instance, options()).await.unwrap();
    reg.registered().await.unwrap();
    let mut watch = client.watch("svc").await.unwrap();
    let mut draining = reg.draining();
    assert!(!*draining.borrow());

    let entry = client.inspector().set_draining("svc", "a", true).await.unwrap();
    assert!(entry.instance.as_ref().unwrap().is_draining());
    timeout(Duration::from_secs(5), draining.wait_for(|d| *d))
        .await
        .expect("the registration adopts the mark")
        .unwrap();

    // The key deleted under the live lease: put back, with the mark.
    assert!(client.inspector().remove("svc", "a").await.unwrap());
    // Wait for the key itself to be back: the watch below may still show the
    // view from before the deletion, which had the mark too.
    let restored = timeout(Duration::from_secs(5), async {
        loop {
            if let Some(entry) = client.inspector().entry("svc", "a").await.unwrap() {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the deleted key is put back");
    assert!(restored.instance.unwrap().is_draining(), "put back with the mark");
    let s = timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| s.get("a").is_some_and(ServiceInstance::is_draining)),
    )
    .await
    .expect("restored with the mark")
    .unwrap();
    assert_eq!(s.instances.len(), 1);

    // Undrained from outside: adopted too.
    client.inspector().set_draining("svc", "a", false).await.unwrap();
    timeout(Duration::from_secs(5), draining.wait_for(|d| !*d))
        .await
        .expect("the registration adopts the cleared mark")
        .unwrap();
    assert!(reg.current().is_registered());

    // Unknown instance: an error naming it.
    let err = client.inspector().set_draining("svc", "zz", true).await.unwrap_err();
    assert!(err.to_string().contains("svc/zz"), "{err}");
    reg.deregister().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_without_metadata_refuses_the_mark() {
    let client = octopus::connect("mem://drain-gozero?layout=go-zero").await.unwrap();
    let instance = ServiceInstance::new("svc", "a", "127.0.0.1", 7002).unwrap();
    let reg = client.registry().register(instance, options()).await.unwrap();
    reg.registered().await.unwrap();
    let err = reg.drain().await.unwrap_err().to_string();
    assert!(err.contains("draining mark"), "{err}");
    assert!(!*reg.draining().borrow());
    let err = client.inspector().set_draining("svc", "a", true).await;
    // go-zero's keys carry the lease, not the id: the instance may not be found
    // by id at all; either way nothing is marked and the error says why.
    assert!(err.is_err());
    assert!(reg.current().is_registered(), "a refused drain loses nothing");
    reg.deregister().await.unwrap();
}
