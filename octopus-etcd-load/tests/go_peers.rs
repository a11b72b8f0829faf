//! The Go peers the harness measures Octopus beside build from Debian's packaged
//! sources (`./scripts/test` installs Go and them), so that a harness run never
//! finds them broken. The footprint peer also runs against a real etcd once.

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
    let args = [etcd.endpoint(), "t".into(), "3".into(), "2".into()];
    let (mut child, _) = tokio::task::block_in_place(|| octopus_etcd_load::start_ready(&program, &args));
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

/// The propagation scenario's watcher processes speak one protocol: "ready",
/// then, at each "report" on their stdin, "seen ID NANOS" for each put seen since
/// the last report (NANOS the wall-clock time of the sight), then "end".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_watch_peers_report_each_put_they_see() {
    let etcd = octopus_testkit::etcd::EtcdServer::start().await;
    let go = octopus_etcd_load::go_program("octopuswatch").unwrap();
    let ours = std::path::PathBuf::from(env!("CARGO_BIN_EXE_watch_client"));
    let endpoint = etcd.endpoint();
    let peers = [
        (go, vec![endpoint.clone(), "/octopus/services/prop/".into(), "2".into()]),
        (
            ours.clone(),
            vec![endpoint.clone(), "prop".into(), "2".into(), "shared".into()],
        ),
        (
            ours.clone(),
            vec![endpoint.clone(), "prop".into(), "2".into(), "each".into()],
        ),
        (
            ours.clone(),
            vec![endpoint.clone(), "prop".into(), "2".into(), "raw-shared".into()],
        ),
        (ours, vec![endpoint, "prop".into(), "2".into(), "raw-each".into()]),
    ];
    let mut running = Vec::new();
    for (program, args) in peers {
        let (child, lines) = tokio::task::block_in_place(|| octopus_etcd_load::start_ready(&program, &args));
        running.push((args, child, lines));
    }
    #[allow(clippy::disallowed_methods)] // the peers report wall-clock times
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let value = r#"{"service":"prop","id":"i-1","addr":"127.0.0.1","port":9}"#;
    let out = etcd.etcdctl(&["put", "/octopus/services/prop/i-1", value]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (args, mut child, mut lines) in running {
        // Two watchers each: two sightings of the one put, reported when asked.
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen.extend(tokio::task::block_in_place(|| {
                octopus_etcd_load::report(&mut child, &mut lines)
            }));
            if seen.len() >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(seen.len(), 2, "{args:?}: {seen:?}");
        for line in seen {
            let (id, at) = octopus_etcd_load::sighting(&line).unwrap_or_else(|| panic!("{args:?}: {line}"));
            assert_eq!(id, "i-1", "{args:?}: {line}");
            assert!(at >= before, "{args:?}: seen at {at}, before the put ({before})");
        }
        // Asked again: nothing new.
        let again = tokio::task::block_in_place(|| octopus_etcd_load::report(&mut child, &mut lines));
        assert!(again.is_empty(), "{args:?}: reported twice: {again:?}");
        drop(child.stdin.take());
        let _ = child.wait();
    }
}
