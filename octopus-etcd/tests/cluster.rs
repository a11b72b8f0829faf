//! A three-member cluster on loopback: kill the leader while services are
//! registered and watched.

use std::time::Duration;

use octopus_discovery_core::{BackoffPolicy, Discovery, RegisterOptions, Registry, ServiceInstance};
use octopus_etcd::{EtcdBackend, EtcdOptions};
use octopus_testkit::etcd::EtcdCluster;
use tokio::time::{timeout, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_keeps_registrations_and_discovery_going() {
    let mut cluster = EtcdCluster::start(3).await;
    let opts = || {
        EtcdOptions::new(cluster.endpoints())
            .unwrap()
            .request_timeout(Duration::from_secs(2))
            .http2_keepalive(Duration::from_millis(500), Duration::from_secs(1))
    };
    let registry = EtcdBackend::connect(opts()).await.unwrap().registry();
    let discovery = EtcdBackend::connect(opts()).await.unwrap().discovery();
    let reg_opts = RegisterOptions::default()
        .ttl(Duration::from_secs(3))
        .retry(BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap());
    let a = registry
        .register(
            ServiceInstance::new("svc", "a", "127.0.0.1", 1).unwrap(),
            reg_opts.clone(),
        )
        .await
        .unwrap();
    let mut w = discovery.watch("svc").await.unwrap();
    timeout(Duration::from_secs(5), w.wait_for(|s| s.instances.len() == 1))
        .await
        .unwrap()
        .unwrap();

    let leader = cluster.leader().await.expect("a leader");
    let killed = Instant::now();
    cluster.members[leader].kill();

    // A new registration during the election, and the watcher must see it.
    let b = registry
        .register(
            ServiceInstance::new("svc", "b", "127.0.0.1", 2).unwrap(),
            reg_opts.clone(),
        )
        .await
        .unwrap();
    timeout(Duration::from_secs(15), b.registered())
        .await
        .expect("b registered through the survivors")
        .unwrap();
    // Liveness, not speed (the time is printed): generous for a loaded 2-core machine.
    let seen = timeout(
        Duration::from_secs(30),
        w.wait_for(|s| s.is_fresh() && s.instances.len() == 2),
    )
    .await
    .expect("discovery keeps updating")
    .unwrap();
    let took = killed.elapsed();
    let new_leader = cluster.leader().await;
    println!(
        "leader m{} killed: discovery saw the new instance {took:?} later (new leader {:?})",
        leader + 1,
        new_leader.map(|i| i + 1)
    );
    assert_eq!(
        seen.instances.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    // The first registration kept its key (or re-registered) through the election.
    timeout(Duration::from_secs(10), a.registered())
        .await
        .expect("a still registered")
        .unwrap();
    assert_eq!(discovery.instances("svc").await.unwrap().len(), 2);
}
