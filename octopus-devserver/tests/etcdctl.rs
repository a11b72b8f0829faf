//! `etcdctl` (the real one, from the etcd packages) against `MemEtcd` on real TCP:
//! put/get/del, leases, watch, txn, compaction, status, member list.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use octopus_devserver::{MemEtcd, MemEtcdOptions};
use octopus_mem::Store;
use octopus_testkit::etcd::{etcdctl_at, etcdctl_binary};

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = MemEtcd::new(Store::new(), MemEtcdOptions::default());
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    addr
}

fn etcdctl(addr: SocketAddr, args: &[&str]) -> String {
    let out = etcdctl_at(&addr.to_string(), &[], args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn ctl(addr: SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdctl(addr, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_puts_gets_and_deletes_by_key_prefix_and_revision() {
    let addr = server().await;
    assert_eq!(ctl(addr, &["put", "/a/1", "one"]).await.trim(), "OK");
    ctl(addr, &["put", "/a/2", "two"]).await;
    ctl(addr, &["put", "/b/1", "other"]).await;
    assert_eq!(ctl(addr, &["get", "/a/1"]).await, "/a/1\none\n");
    assert_eq!(ctl(addr, &["get", "--prefix", "/a/"]).await, "/a/1\none\n/a/2\ntwo\n");
    assert_eq!(
        ctl(addr, &["get", "--prefix", "--keys-only", "/a/"]).await,
        "/a/1\n\n/a/2\n\n"
    );
    let count = ctl(addr, &["get", "--prefix", "--count-only", "-w", "fields", "/a/"]).await;
    assert!(count.contains("\"Count\" : 2"), "{count}");
    assert_eq!(
        ctl(addr, &["get", "--prefix", "--limit", "1", "/"]).await,
        "/a/1\none\n"
    );
    assert_eq!(
        ctl(addr, &["get", "--prefix", "--order", "DESCEND", "/a/"]).await,
        "/a/2\ntwo\n/a/1\none\n"
    );
    // The value at an older revision: /a/1 was written at revision 2.
    ctl(addr, &["put", "/a/1", "uno"]).await;
    assert_eq!(ctl(addr, &["get", "--rev", "2", "/a/1"]).await, "/a/1\none\n");
    assert_eq!(ctl(addr, &["del", "--prefix", "/a/"]).await.trim(), "2");
    assert_eq!(ctl(addr, &["get", "--prefix", "/a/"]).await, "");
    assert_eq!(ctl(addr, &["get", "/b/1"]).await, "/b/1\nother\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_leases_grant_attach_keep_alive_revoke_and_expire() {
    let addr = server().await;
    let granted = ctl(addr, &["lease", "grant", "60"]).await;
    // "lease 7e57000000000000 granted with TTL(60s)"
    let id = granted.split_whitespace().nth(1).unwrap().to_owned();
    assert!(granted.contains("granted with TTL(60s)"), "{granted}");
    ctl(addr, &["put", "--lease", &id, "/svc/x", "v"]).await;
    let ttl = ctl(addr, &["lease", "timetolive", "--keys", &id]).await;
    assert!(
        ttl.contains("granted with TTL(60s)") && ttl.contains("attached keys([/svc/x])"),
        "{ttl}"
    );
    let kept = ctl(addr, &["lease", "keep-alive", "--once", &id]).await;
    assert!(kept.contains(&format!("lease {id} keepalived with TTL(60)")), "{kept}");
    assert!(ctl(addr, &["lease", "list"]).await.contains(&id));
    assert!(ctl(addr, &["lease", "revoke", &id]).await.contains("revoked"));
    assert_eq!(
        ctl(addr, &["get", "/svc/x"]).await,
        "",
        "revoking deletes the lease's keys"
    );
    let gone = ctl(addr, &["lease", "timetolive", &id]).await;
    assert!(gone.contains("already expired"), "{gone}");

    // A short lease expires on its own, and takes its key with it.
    let granted = ctl(addr, &["lease", "grant", "1"]).await;
    let id = granted.split_whitespace().nth(1).unwrap().to_owned();
    ctl(addr, &["put", "--lease", &id, "/svc/y", "v"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = ctl(addr, &["get", "/svc/y"]).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key outlived its 1 s lease: {left}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_replays_from_a_revision_then_sees_changes_under_its_prefix() {
    let addr = server().await;
    ctl(addr, &["put", "/w/old", "0"]).await; // revision 2
    let mut child = Command::new(etcdctl_binary())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={addr}"))
        .args(["watch", "--prefix", "--prev-kv", "--rev", "2", "/w/"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(10)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    // The watch starts at revision 2, so whatever is written before etcdctl's
    // watch is in place is replayed to it all the same.
    ctl(addr, &["put", "/w/a", "1"]).await;
    ctl(addr, &["put", "/w/a", "2"]).await;
    ctl(addr, &["put", "/elsewhere", "x"]).await;
    ctl(addr, &["del", "/w/a"]).await;
    let lines = tokio::time::timeout(Duration::from_secs(10), lines)
        .await
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        lines,
        [
            "PUT", "/w/old", "0", // replayed from revision 2
            "PUT", "/w/a", "1", //
            "PUT", "/w/a", "1", "/w/a", // with the previous value…
        ],
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_txn_compaction_and_status_answer_as_from_etcd() {
    let addr = server().await;
    ctl(addr, &["put", "k", "v1"]).await;
    ctl(addr, &["put", "k", "v2"]).await; // revision 3
    let txn = move |input: &'static str| {
        let out = Command::new(etcdctl_binary())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={addr}"))
            .args(["txn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(input.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let ok = tokio::task::spawn_blocking(move || txn("value(\"k\") = \"v2\"\n\nput k v3\n\nput k nope\n\n"))
        .await
        .unwrap();
    assert!(ok.starts_with("SUCCESS"), "{ok}");
    let failed = tokio::task::spawn_blocking(move || txn("mod(\"k\") < \"2\"\n\nput k nope\n\nget k\n\n"))
        .await
        .unwrap();
    assert!(failed.starts_with("FAILURE") && failed.contains("v3"), "{failed}");
    assert!(ctl(addr, &["compaction", "3"]).await.contains("compacted revision 3"));
    let out = Command::new(etcdctl_binary())
        .arg(format!("--endpoints={addr}"))
        .args(["get", "--rev", "2", "k"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"));
    let status = ctl(addr, &["endpoint", "status", "-w", "json"]).await;
    assert!(status.contains("\"version\":\"3.5.0\""), "{status}");
    let members = ctl(addr, &["member", "list"]).await;
    assert!(members.contains("octopus"), "{members}");
}
