//! `Client::shutdown` in a process of its own against a real etcd: the process
//! registers, drops its handle, shuts its client down and returns from `main`;
//! right after it has exited, etcdctl finds no key; and shutdown ends every watch
//! the client holds on etcd (etcd's own watcher count). (In process over `mem://`:
//! the facade's tests/shutdown.rs.) The test kit needs protoc, which the
//! facade's own tests must not (its examples build on a machine without it).

use octopus::ServiceInstance;
use octopus_testkit::etcd::EtcdServer;

/// Set in the environment of the child process: the registry URL it uses.
const CHILD_URL: &str = "OCTOPUS_TEST_SHUTDOWN_CHILD_URL";

fn instance(id: &str) -> ServiceInstance {
    ServiceInstance::new("exit", id, "127.0.0.1", 7000).unwrap()
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

/// etcd's live watchers, from its own /metrics.
async fn watchers(etcd: &EtcdServer) -> f64 {
    octopus_testkit::etcd::metric(&etcd.metrics().await, "etcd_debugging_mvcc_watcher_total", &[])
}

/// Waits until etcd counts `want` watchers; what it counted last.
async fn until_watchers(etcd: &EtcdServer, want: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = watchers(etcd).await;
        if now == want || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_watch_the_client_holds_on_etcd() {
    let etcd = EtcdServer::start().await;
    let before = watchers(&etcd).await;
    // keepalive 300 ms: each registration joins its service's watch at its first
    // keepalive (both are of one service, so they share one watch).
    let client = octopus::connect(&format!("etcd://{}?ttl=60s", etcd.endpoint()))
        .await
        .unwrap();
    let options = client
        .register_options()
        .keepalive_interval(std::time::Duration::from_millis(300));
    let mut views = Vec::new();
    for service in ["a", "b", "c"] {
        views.push(client.watch(service).await.unwrap());
    }
    let held = client
        .registry()
        .register(instance("held"), options.clone())
        .await
        .unwrap();
    let dropped = client.registry().register(instance("dropped"), options).await.unwrap();
    held.registered().await.unwrap();
    dropped.registered().await.unwrap();
    let with_keys = until_watchers(&etcd, before + 4.0).await;
    assert_eq!(
        with_keys,
        before + 4.0,
        "3 services and the 2 registrations' keys (one watch) are watched"
    );
    drop(dropped);

    client.shutdown().await.unwrap();
    let after = until_watchers(&etcd, before).await;
    assert_eq!(after, before, "etcd still holds watches of the client after shutdown");
    for view in &mut views {
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while view.next().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "a watch made before shutdown ends");
    }
    let keys = etcd.etcdctl(&["get", "--prefix", "/octopus/", "--keys-only"]);
    assert!(String::from_utf8_lossy(&keys.stdout).trim().is_empty());
    drop(held);
}
