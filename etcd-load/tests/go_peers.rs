//! The Go peers the harness measures Octopus beside build from Debian's packaged
//! sources (`./scripts/test` installs Go and them), so that a harness run never
//! finds them broken. The footprint peer also runs against a real etcd once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_go_peers_build() {
    for name in ["octopusfootprint", "octopusregload", "octopuswatch"] {
        if let Err(why) = octopus_etcd_load::go_program(name) {
            panic!("{name}: {why}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_footprint_peer_registers_and_watches() {
    let program = octopus_etcd_load::go_program("octopusfootprint").unwrap();
    let etcd = octopus_testkit::etcd::EtcdServer::start().await;
    let before = etcd.metric("etcd_debugging_mvcc_watcher_total", &[]).await;
    let mut child = Command::new(program)
        .args([&etcd.endpoint(), "t", "3", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next())
        .await
        .unwrap();
    assert!(matches!(ready, Some(Ok(ref l)) if l == "ready"), "{ready:?}");
    assert_eq!(
        etcd.metric("etcd_debugging_mvcc_watcher_total", &[]).await - before,
        3.0
    );
    let out = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/footprint/"]);
    let keys = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(keys, 2, "two instances registered");
    drop(child.stdin.take());
    let _ = child.wait();
}
