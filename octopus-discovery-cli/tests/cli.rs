//! The `octopus` command end to end: scaffold a service, build it, run it against
//! `octopus dev`, call it through `etcd:///NAME`, inspect and deregister it; etcdctl
//! against `octopus dev`; bad input.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use octopus_testkit::etcd::etcdctl_binary;

#[test]
fn scaffold_build_run_call_inspect_deregister() {
    let Scaffold { project, binary, .. } = scaffold("demo");
    let (project, binary) = (project.clone(), binary.clone());
    // Day one of a team: the service starts while its registry is down (etcd
    // restarting with it, a node rebooting). It keeps running, serves, and says
    // it is not ready.
    let addr = free_addr();
    let registry = format!("etcd://{addr}");
    let start = |id: Option<&str>| {
        let mut cmd = Command::new(&binary);
        cmd.current_dir(&project)
            .env("REGISTRY", &registry)
            .env("PORT", "0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            // Retry every 200 ms..1 s, so the test need not wait out 30 s of backoff.
            .env("OCTOPUS_RETRY_INTERVAL", "200ms")
            .env("OCTOPUS_RETRY_CAP", "1s")
            .env_remove("OCTOPUS_SERVICE__ID")
            .stdout(Stdio::piped())
            // Its logs are not read: a pipe nobody reads would fill and block it.
            .stderr(Stdio::null());
        if let Some(id) = id {
            cmd.env("OCTOPUS_SERVICE__ID", id);
        }
        let mut child = Running(cmd.spawn().unwrap());
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let metrics = lines
            .find_map(|l| l.ok().filter(|l| l.starts_with("metrics on http://")))
            .expect("the service says where its metrics are");
        let metrics: SocketAddr = metrics["metrics on http://".len()..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let serving = lines
            .find_map(|l| l.ok().filter(|l| l.contains("serving on")))
            .expect("the service says where it serves");
        (child, metrics, serving)
    };
    let (mut a, a_metrics, serving) = start(None);
    let a_id = serving.split_whitespace().nth(1).unwrap().to_owned();
    let a_port: u16 = serving
        .split("serving on 127.0.0.1:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        serving.starts_with("demo ") && a_id.ends_with(&format!("-{a_port}")),
        "the id is the host name and the port: {serving}"
    );
    // Time passes on purpose: the service must keep running while its registry
    // stays down (several of its retries).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        a.0.try_wait().unwrap().is_none(),
        "the service exited while its registry was down"
    );
    assert_eq!(
        http_get(a_metrics, "/readyz").0,
        503,
        "not ready before it is registered"
    );
    assert_eq!(http_get(a_metrics, "/healthz").0, 200);

    // The registry comes up: the service registers by itself within its retry interval.
    let (_dev, _) = dev_at(addr, None);
    let up = tokio::time::Instant::now();
    let listed = (0..150).find_map(|_| {
        let ls = octopus(&["ls", "demo", "--registry", &registry]);
        if stdout(&ls).contains(&a_id) {
            return Some(up.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
        None
    });
    let listed = listed.expect("listed by `octopus ls` within 15 s of the registry starting");
    println!("registered {listed:?} after the registry started");
    until(|| http_get(a_metrics, "/readyz").0 == 200, "ready once registered");

    // A second replica with the same configuration gets an id of its own.
    let (mut b, _, serving) = start(None);
    let b_id = serving.split_whitespace().nth(1).unwrap().to_owned();
    assert_ne!(a_id, b_id);
    until(
        || {
            let ls = octopus(&["ls", "--registry", &registry]);
            stdout(&ls).lines().any(|l| l.split_whitespace().eq(["demo", "2"]))
        },
        "both replicas registered",
    );
    let ls = octopus(&["ls", "demo", "--registry", &registry, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&ls)).unwrap();
    assert_eq!(json["instances"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["instances"][0]["instance"]["version"], "v0.1.0");

    // `octopus get` and `octopus watch` show what a user reads.
    let get = octopus(&["get", &format!("demo/{a_id}"), "--registry", &registry]);
    assert!(get.status.success(), "{}", stderr(&get));
    let text = stdout(&get);
    for want in [
        format!("key:       /octopus/services/demo/{a_id}"),
        format!("id:        {a_id}"),
        format!("endpoint:  127.0.0.1:{a_port}"),
        "version:   v0.1.0".to_owned(),
        "metadata:  zone=local".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == want), "no line {want:?} in:\n{text}");
    }
    let get = octopus(&["get", &format!("demo/{a_id}"), "--registry", &registry, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&get)).unwrap();
    assert_eq!(json["instance"]["port"], a_port, "{json}");
    let mut watch = Running(
        Command::new(OCTOPUS)
            .args(["watch", "demo", "--registry", &registry])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut seen = BufReader::new(watch.0.stdout.take().unwrap()).lines();
    let first = seen.next().unwrap().unwrap();
    assert!(
        first.starts_with("revision ") && first.ends_with(": 2 instance(s)"),
        "{first}"
    );
    let mut added: Vec<String> = (0..2).map(|_| seen.next().unwrap().unwrap()).collect();
    added.sort();
    let mut want = vec![
        format!("  + {a_id} 127.0.0.1:{a_port}"),
        format!("  + {b_id} 127.0.0.1:"),
    ];
    want.sort();
    for (line, want) in added.iter().zip(&want) {
        assert!(line.starts_with(want.as_str()), "{line:?} is not {want:?}…");
    }

    // Another service calls it by name: the generated example client, through
    // etcd:///demo, its very first call on a new channel.
    let client = Command::new(target_dir().join("debug").join("examples").join("client"))
        .args(["etc/config.toml", "cli"])
        .current_dir(&project)
        .env("REGISTRY", &registry)
        .output()
        .unwrap();
    assert!(client.status.success(), "{}", stderr(&client));
    let reply = stdout(&client);
    assert!(
        reply.starts_with("hello, cli (from ") && (reply.contains(&a_id) || reply.contains(&b_id)),
        "{reply}"
    );

    // SIGTERM with a health Watch open (grpc-go's client-side health checking keeps
    // one on every server): deregistered, drained (1 s), stopped, without waiting
    // out the 10 s grace period for the stream.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut statuses = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{a_port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
            .watch(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .unwrap()
            .into_inner()
    });
    let first = runtime.block_on(statuses.message()).unwrap().unwrap();
    assert_eq!(
        first.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // An operator drains it: still listed, as draining; its health says
    // NOT_SERVING until it is undrained.
    let instance = format!("demo/{a_id}");
    let drained = octopus(&["drain", &instance, "--registry", &registry]);
    assert!(drained.status.success(), "{}", stderr(&drained));
    assert!(
        stdout(&drained).starts_with(&format!("draining {instance}")),
        "{}",
        stdout(&drained)
    );
    let next = |statuses: &mut tonic::Streaming<_>| {
        let next = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), statuses.message()).await });
        let next: tonic_health::pb::HealthCheckResponse = next.expect("a health change").unwrap().unwrap();
        next.status
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(next(&mut statuses), ServingStatus::NotServing as i32);
    let ls = stdout(&octopus(&["ls", "demo", "--registry", &registry]));
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&a_id) && l.split_whitespace().nth(2) == Some("draining")),
        "{ls}"
    );
    let undrained = octopus(&["undrain", &instance, "--registry", &registry]);
    assert!(undrained.status.success(), "{}", stderr(&undrained));
    assert_eq!(next(&mut statuses), ServingStatus::Serving as i32);
    let missing = octopus(&["drain", "demo/nobody", "--registry", &registry]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("demo/nobody"), "{}", stderr(&missing));

    let stopping = tokio::time::Instant::now();
    let _ = Command::new("kill").args(["-TERM", &a.0.id().to_string()]).status();
    let exited = (0..200).find_map(|_| {
        if a.0.try_wait().unwrap().is_some() {
            return Some(stopping.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
        None
    });
    let exited = exited.expect("exits within 10 s of SIGTERM");
    println!("exited {exited:?} after SIGTERM with a health Watch open (drain 1 s, grace 10 s)");
    assert!(
        exited < Duration::from_secs(6),
        "shutdown waited {exited:?}: held by the health Watch?"
    );
    drop(statuses);
    let ls = octopus(&["ls", "demo", "--registry", &registry]);
    assert!(!stdout(&ls).contains(&a_id), "deregistered on SIGTERM: {}", stdout(&ls));

    // The other dies without deregistering: its key outlives it until the TTL…
    let _ = b.0.kill();
    let _ = b.0.wait();
    let ls = octopus(&["ls", "demo", "--registry", &registry]);
    assert!(stdout(&ls).contains(&b_id), "{}", stdout(&ls));
    // …unless an operator removes it.
    let gone = octopus(&["deregister", &format!("demo/{b_id}"), "--registry", &registry]);
    assert!(gone.status.success(), "{}", stderr(&gone));
    assert!(
        stdout(&gone).starts_with(&format!("deregistered demo/{b_id}")),
        "{}",
        stdout(&gone)
    );
    let ls = octopus(&["ls", "demo", "--registry", &registry]);
    assert!(stdout(&ls).starts_with("no instances of demo"), "{}", stdout(&ls));
    let again = octopus(&["deregister", &format!("demo/{b_id}"), "--registry", &registry]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains(&format!("no instance {b_id} of demo")),
        "{}",
        stderr(&again)
    );
    drop(watch);
}

#[test]
fn dev_speaks_etcdctl_and_keeps_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dev.json");
    let (mut dev1, addr) = dev(Some(&data));
    assert_eq!(etcdctl(addr, &["put", "/app/greeting", "hello"]).trim(), "OK");
    assert_eq!(etcdctl(addr, &["get", "/app/greeting"]), "/app/greeting\nhello\n");
    let granted = etcdctl(addr, &["lease", "grant", "600"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_owned();
    etcdctl(addr, &["put", "--lease", &lease, "/app/leased", "x"]);

    // A watch sees a change made by another client: from the change's revision,
    // so that it does not matter how long the watcher takes to start.
    let put = etcdctl(addr, &["put", "/app/greeting", "bonjour", "-w", "json"]);
    let put: serde_json::Value = serde_json::from_str(&put).unwrap();
    let revision = put["header"]["revision"].as_i64().expect("the put's revision");
    let mut watch = Running(
        Command::new(etcdctl_binary())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={addr}"))
            .args(["watch", "--prefix", "/app/", "--rev", &revision.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let seen: Vec<String> = BufReader::new(watch.0.stdout.take().unwrap())
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(seen, ["PUT", "/app/greeting", "bonjour"]);
    drop(watch);

    // SIGTERM saves; the next start loads.
    sigterm(&mut dev1);
    assert!(data.is_file(), "no data file written");
    let (_dev2, addr2) = dev(Some(&data));
    assert_eq!(etcdctl(addr2, &["get", "/app/greeting"]), "/app/greeting\nbonjour\n");
    assert!(etcdctl(addr2, &["lease", "list"]).contains(&lease));
    assert_eq!(etcdctl(addr2, &["get", "/app/leased"]), "/app/leased\nx\n");
}

#[test]
fn bad_input_is_named() {
    let bad = octopus(&["new", "Bad Name"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("invalid service name \"Bad Name\""),
        "{}",
        stderr(&bad)
    );
    let bad = octopus(&["get", "no-slash", "--registry", "mem://"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("\"no-slash\" must be SERVICE/ID"),
        "{}",
        stderr(&bad)
    );
    let bad = octopus(&["ls", "--registry", "etcd://127.0.0.1:1?connect_timeout=300ms"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("127.0.0.1:1"), "{}", stderr(&bad));
    let bad = octopus(&["ls", "--registry", "zk://x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("zk"), "{}", stderr(&bad));
    let bad = octopus(&["dev", "--listen", "not-an-address"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = octopus(&["frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// docs/CLI.md shows every command's `--help` as it is.
#[test]
fn help_in_the_docs_is_current() {
    let doc = std::fs::read_to_string(workspace().join("docs/CLI.md")).unwrap();
    for cmd in [
        &[][..],
        &["new"],
        &["model"],
        &["ls"],
        &["get"],
        &["watch"],
        &["deregister"],
        &["drain"],
        &["undrain"],
        &["console"],
        &["dev"],
    ] {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let out = octopus(&args);
        assert!(out.status.success());
        let help = stdout(&out);
        assert!(
            doc.contains(help.trim_end()),
            "docs/CLI.md lacks the current output of `octopus {}`:\n{help}",
            args.join(" ")
        );
    }
}
