//! etcd restored from a backup, as an operator does it: `etcdctl snapshot save`,
//! changes (a registration, a deregistration), then etcd stopped and started on
//! the snapshot restored into a new data directory (`etcdutl snapshot restore`;
//! etcd 3.4: `etcdctl snapshot restore`). The revision goes back, the key
//! deregistered since returns (with its lease, which nobody keeps alive), the key
//! registered since vanishes. Watchers and registrants converge to the truth
//! within the lease TTL plus the bound docs/DEPLOYMENT.md states.

use std::collections::BTreeSet;
use std::time::Duration;

use octopus_discovery_core::{
    Discovery, KvBackend, RegisterOptions, Registration, RegistrationStatus, Registry, ServiceInstance,
};
use octopus_etcd::EtcdBackend;
use octopus_testkit::etcd::EtcdServer;
use tokio::time::{sleep, Instant};

const TTL: Duration = Duration::from_secs(5);
/// How long after the TTL the restored cluster may take to converge (stated in
/// docs/DEPLOYMENT.md, "When etcd is restored from a backup, or wiped").
const BOUND: Duration = Duration::from_secs(10);
const PREFIX: &str = "/octopus/services/svc/";

async fn backend(etcd: &EtcdServer) -> EtcdBackend {
    EtcdBackend::connect(etcd.options().request_timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The ids under the service's prefix in etcd, and etcd's revision, as a client
/// of its own reads them.
async fn truth_in_etcd(etcd: &EtcdServer) -> Option<(BTreeSet<String>, i64)> {
    let witness = EtcdBackend::connect(etcd.options().connect_timeout(Duration::from_secs(1)))
        .await
        .ok()?;
    let (header, kvs) = witness.range_prefix(PREFIX).await.ok()?;
    let keys = kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key)[PREFIX.len()..].to_owned())
        .collect();
    Some((keys, header.revision))
}

async fn register(registry: &dyn Registry, id: &str, options: &RegisterOptions) -> Registration {
    let instance = ServiceInstance::new("svc", id, "127.0.0.1", 7000).unwrap();
    let registration = registry.register(instance, options.clone()).await.unwrap();
    registration.registered().await.unwrap();
    registration
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_etcd_converges_to_the_live_registrations() {
    let mut etcd = EtcdServer::start().await;
    let registrants = backend(&etcd).await;
    let registry = registrants.registry();
    let options = RegisterOptions::default().ttl(TTL);
    let old1 = register(&registry, "old1", &options).await;
    let old2 = register(&registry, "old2", &options).await;
    let discovery = backend(&etcd).await.discovery();
    let mut view = discovery.watch("svc").await.unwrap();
    let ids_of =
        |s: &octopus_discovery_core::Snapshot| s.instances.iter().map(|i| i.id.clone()).collect::<BTreeSet<_>>();
    view.wait_for(|s| ids_of(s) == ids(&["old1", "old2"])).await.unwrap();

    let backup = etcd.save_snapshot("backup.db");
    // After the backup: one more registration, one fewer, and short-lived ones
    // that take the revision well past the backup's (a watcher that resumed from
    // its old revision would miss every write of the restored cluster).
    let new1 = register(&registry, "new1", &options).await;
    old2.deregister().await.unwrap();
    for _ in 0..8 {
        register(&registry, "brief", &options).await.deregister().await.unwrap();
    }
    view.wait_for(|s| ids_of(s) == ids(&["old1", "new1"])).await.unwrap();
    let (_, revision_before) = truth_in_etcd(&etcd).await.unwrap();

    etcd.restore(&backup).await;
    let restored = Instant::now();
    let (keys, revision) = truth_in_etcd(&etcd).await.expect("the restored etcd answers");
    assert!(
        revision < revision_before,
        "the revision went back: {revision} after, {revision_before} before"
    );
    assert!(
        keys.contains("old2"),
        "the key deregistered since the backup returned: {keys:?}"
    );

    // The truth: old1 and new1 run, old2 has gone. Etcd (old2's restored lease
    // runs out, new1 re-registers), the watcher and the registrants get there.
    let want = ids(&["old1", "new1"]);
    let deadline = restored + TTL + BOUND;
    let mut last = None;
    loop {
        let in_etcd = truth_in_etcd(&etcd).await.map(|(keys, _)| keys);
        let seen = view.latest().filter(|s| s.is_fresh()).map(|s| ids_of(&s));
        let registered = [&old1, &new1]
            .iter()
            .all(|r| matches!(r.current(), RegistrationStatus::Registered { .. }));
        if in_etcd.as_ref() == Some(&want) && seen.as_ref() == Some(&want) && registered {
            break;
        }
        last = Some((in_etcd, seen, old1.current(), new1.current()));
        assert!(
            Instant::now() < deadline,
            "not converged within the TTL ({TTL:?}) plus {BOUND:?}: (etcd, view, old1, new1) = {last:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let took = restored.elapsed();
    let resyncs = view.latest().map_or(0, |s| s.resyncs);
    println!("restore: converged {took:?} after etcd restarted on the backup (TTL {TTL:?}); view resyncs {resyncs}; last miss {last:?}");
    assert!(
        resyncs >= 1,
        "the watcher noticed the revision going back and read again"
    );

    // And it follows the restored cluster's history from there.
    let late = register(&registry, "late", &options).await;
    let followed = tokio::time::timeout(BOUND, view.wait_for(|s| ids_of(s) == ids(&["old1", "new1", "late"]))).await;
    assert!(
        followed.is_ok(),
        "a registration after the restore never reached the watcher: {:?}",
        view.latest()
    );
    drop((old1, new1, late));
}
