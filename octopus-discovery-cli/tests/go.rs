//! Clients nobody in this project wrote: etcd's Go client (clientv3, its naming
//! resolver and endpoints API, concurrency) and grpc-go, built offline in GOPATH
//! mode from Debian's packaged sources (golang-go, golang-etcd-server-dev 3.4,
//! golang-google-grpc-dev; `./scripts/test` installs them). The Go program is
//! interop/go/src/octopusinterop.

mod common;

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use octopus_testkit::etcd::EtcdServer;

/// The Go program, built once per run into the target directory.
fn go_program() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
            let out = target_dir().join("go").join("octopusinterop");
            let gopath = format!("{}:/usr/share/gocode", workspace().join("interop/go").display());
            let built = Command::new(&go)
                .args(["build", "-o"])
                .arg(&out)
                .arg("octopusinterop")
                .env("GO111MODULE", "off")
                .env("GOPATH", gopath)
                .env("GOFLAGS", "")
                .env("GOCACHE", target_dir().join("go").join("cache"))
                .output()
                .unwrap_or_else(|e| {
                    panic!("{go}: {e} (apt-get install golang-go golang-etcd-server-dev golang-google-grpc-dev; ./scripts/test installs them)")
                });
            assert!(
                built.status.success(),
                "go build octopusinterop:\n{}",
                String::from_utf8_lossy(&built.stderr)
            );
            out
        })
        .clone()
}

/// A Go process driven line by line: each command answers one line.
struct Go {
    child: Running,
    stdin: ChildStdin,
    stdout: Lines<BufReader<std::process::ChildStdout>>,
}

impl Go {
    fn start(args: &[&str]) -> Go {
        let mut child = Running(
            Command::new(go_program())
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdin = child.0.stdin.take().unwrap();
        let stdout = BufReader::new(child.0.stdout.take().unwrap()).lines();
        Go { child, stdin, stdout }
    }

    /// Sends `line`; the answer, or what the process said when it died.
    fn ask(&mut self, line: &str) -> String {
        let sent = writeln!(self.stdin, "{line}");
        match (sent, self.stdout.next()) {
            (Ok(()), Some(Ok(answer))) => answer,
            _ => format!("DIED: {}", self.died()),
        }
    }

    fn died(&mut self) -> String {
        let status = self.child.0.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let panic: Vec<&str> = err.lines().filter(|l| !l.starts_with('{')).take(3).collect();
        format!("{status}: {}", panic.join(" | "))
    }

    fn quit(mut self) {
        writeln!(self.stdin, "quit").unwrap();
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "the Go process ended with {status}");
    }
}

/// The instances in an `ok a=3,b=2 errors=0` answer, and its error count.
fn tally(answer: &str) -> (Vec<String>, usize) {
    let mut fields = answer.split_whitespace();
    assert_eq!(fields.next(), Some("ok"), "{answer}");
    let mut seen = Vec::new();
    let mut errors = usize::MAX;
    for f in fields {
        if let Some(n) = f.strip_prefix("errors=") {
            errors = n.parse().unwrap();
        } else if !f.starts_with("last=") && f.contains('=') {
            seen.extend(f.split(',').map(|p| p.split('=').next().unwrap().to_owned()));
        }
    }
    (seen, errors)
}

/// Asks for `n` calls until the answer reaches exactly `want` with no error (the
/// Go balancer catches up with etcd in its own time), at most 10 s.
fn calls_reach(go: &mut Go, n: usize, want: &[&str]) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        last = go.ask(&n.to_string());
        assert!(!last.starts_with("DIED"), "grpc-go died: {last}");
        let (seen, errors) = tally(&last);
        if errors == 0 && seen == want {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("calls never reached exactly {want:?}; last answer: {last}");
}

fn etcd() -> (tokio::runtime::Runtime, EtcdServer) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(EtcdServer::start());
    (runtime, server)
}

/// A scaffolded instance `id` registered in `registry`.
fn service(registry: &str, id: &str) -> (Running, u16) {
    let scaffold = scaffold("demo");
    let mut child = Running(
        Command::new(&scaffold.binary)
            .current_dir(&scaffold.project)
            .env("REGISTRY", registry)
            .env("PORT", "0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("TTL", "5s")
            .env("OCTOPUS_SERVICE__ID", id)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let serving = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .find_map(|l| l.ok().filter(|l| l.contains("serving on")))
        .expect("the service says where it serves");
    let port = serving
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    (child, port.parse().unwrap())
}

fn ls_json(registry: &str, service: &str) -> serde_json::Value {
    let out = octopus(&["ls", service, "--registry", registry, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn ids(json: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn grpc_go_calls_instances_octopus_registered_in_the_etcd_naming_layout() {
    let (_rt, server) = etcd();
    let registry = format!("etcd://{}?layout=etcd-naming", server.addr());
    // Three instances of the scaffold, each with metadata (zone) and a version.
    let mut a = service(&registry, "a");
    let mut b = service(&registry, "b");
    let _c = service(&registry, "c");
    until(
        || ids(&ls_json(&registry, "demo")).len() == 3,
        "three instances registered",
    );
    let etcd = server.addr().to_string();
    let hello = ["-etcd", &etcd, "-target", "demo", "-method", "/demo.Demo/Hello"];

    // grpc-go's etcd resolver with round_robin (the balancer that panicked on a
    // JSON object in Metadata) and pick_first.
    let mut rr = Go::start(&[&["call", "-policy", "round_robin"][..], &hello].concat());
    assert_eq!(rr.stdout.next().unwrap().unwrap(), "ready");
    calls_reach(&mut rr, 30, &["a", "b", "c"]);
    let mut first = Go::start(&[&["call", "-policy", "pick_first"][..], &hello].concat());
    assert_eq!(first.stdout.next().unwrap().unwrap(), "ready");
    let (seen, errors) = tally(&first.ask("10"));
    assert_eq!((seen.len(), errors), (1, 0), "pick_first sticks to one instance");

    // a is deregistered (SIGTERM): grpc-go stops sending it calls.
    sigterm(&mut a.0);
    calls_reach(&mut rr, 30, &["b", "c"]);
    // b dies (SIGKILL): its key lingers until its TTL, its connection fails.
    let _ = b.0 .0.kill();
    let _ = b.0 .0.wait();
    calls_reach(&mut rr, 30, &["c"]);
    let (seen, errors) = tally(&first.ask("10"));
    assert_eq!((seen, errors), (vec!["c".to_owned()], 0), "pick_first moved on");
    rr.quit();
    first.quit();

    // Why the etcd-naming layout keeps Metadata null: a JSON object there makes
    // grpc-go's round_robin panic (etcd-io/etcd#19700), as this part shows.
    let old = r#"{"Op":0,"Addr":"127.0.0.1:9","Metadata":{"zone":"local"}}"#;
    let put = server.etcdctl(&["put", "demo/127.0.0.1:9", old]);
    assert!(put.status.success());
    let mut crashed = Go::start(&[&["call", "-policy", "round_robin"][..], &hello].concat());
    let answer = match crashed.stdout.next() {
        Some(Ok(ready)) if ready == "ready" => crashed.ask("5"),
        other => format!("DIED: {other:?} {}", crashed.died()),
    };
    assert!(
        answer.starts_with("DIED") && answer.contains("unhashable"),
        "the old value should crash grpc-go's round_robin: {answer}"
    );
}

#[test]
fn endpoints_published_from_go_are_discovered_followed_and_called() {
    let (_rt, server) = etcd();
    let registry = format!("etcd://{}?layout=etcd-naming", server.addr());
    // Two servers that do not register themselves (an in-process registry of their
    // own): Go publishes their endpoints with etcd's naming endpoints API.
    let (_s1, p1) = service("mem://", "s1");
    let (_s2, p2) = service("mem://", "s2");
    let etcd = server.addr().to_string();
    let mut publish = Go::start(&["publish", "-etcd", &etcd, "-target", "demo"]);
    let (e1, e2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    assert_eq!(
        publish.ask(&format!(r#"add {e1} 10 {{"zone":"a","version":"v2"}}"#)),
        "ok"
    );
    assert_eq!(publish.ask(&format!("add {e2} 10 blue")), "ok");

    let json = ls_json(&registry, "demo");
    let want_ids = {
        let mut v = vec![e1.replace(':', "_"), e2.replace(':', "_")];
        v.sort();
        v
    };
    assert_eq!(ids(&json), want_ids, "{json}");
    let by_id = |json: &serde_json::Value, id: &str| {
        json["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {json}"))
    };
    let first = by_id(&json, &e1.replace(':', "_"));
    assert_eq!(first["instance"]["metadata"]["zone"], "a", "{first}");
    assert_eq!(first["instance"]["version"], "v2", "{first}");
    let second = by_id(&json, &e2.replace(':', "_"));
    assert_eq!(second["instance"]["metadata"]["Metadata"], "blue", "{second}");

    // Called through Client::channel (the scaffold's example client: etcd:///demo).
    let call = || {
        let scaffold = scaffold("demo");
        let out = Command::new(target_dir().join("debug").join("examples").join("client"))
            .args(["etc/config.toml", "go"])
            .current_dir(&scaffold.project)
            .env("REGISTRY", &registry)
            .output()
            .unwrap();
        (out.status.success(), stdout(&out) + &stderr(&out))
    };
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (ok, said) = call();
        assert!(ok, "{said}");
        seen.insert(
            said.split("(from ")
                .nth(1)
                .unwrap()
                .trim_end()
                .trim_end_matches(')')
                .to_owned(),
        );
    }
    assert!(seen.contains("s1") || seen.contains("s2"), "{seen:?}");

    // Followed: an update of the metadata, a delete, a revoked lease.
    assert_eq!(publish.ask(&format!(r#"update {e1} {{"zone":"b"}}"#)), "ok");
    until(
        || by_id(&ls_json(&registry, "demo"), &e1.replace(':', "_"))["instance"]["metadata"]["zone"] == "b",
        "the metadata update seen",
    );
    assert_eq!(publish.ask(&format!("delete {e2}")), "ok");
    until(
        || ids(&ls_json(&registry, "demo")).len() == 1,
        "the deleted endpoint gone",
    );
    for _ in 0..5 {
        let (ok, said) = call();
        assert!(ok && said.contains("(from s1)"), "{said}");
    }
    assert_eq!(publish.ask(&format!("revoke {e1}")), "ok");
    until(
        || ids(&ls_json(&registry, "demo")).is_empty(),
        "the revoked endpoint gone",
    );
    let (ok, said) = call();
    assert!(
        !ok && said.contains("Unavailable") && said.contains("no instance"),
        "{said}"
    );
    publish.quit();
}

#[test]
fn clientv3_runs_the_same_script_on_octopus_dev_and_on_etcd() {
    let (_rt, server) = etcd();
    let (_dev, dev_addr) = dev(None);
    let script = |endpoint: &str| {
        let out = Command::new(go_program())
            .args(["script", "-etcd", endpoint])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let on_etcd = script(&server.addr().to_string());
    let on_dev = script(&dev_addr.to_string());
    // The script checks itself against etcd first: every step answered.
    assert!(on_etcd.lines().count() >= 40, "{on_etcd}");
    assert!(
        on_etcd.contains("txn value absent = \"\": succeeded=false"),
        "{on_etcd}"
    );
    assert!(on_etcd.contains("leader: two"), "{on_etcd}");
    let differences: Vec<String> = on_etcd
        .lines()
        .zip(on_dev.lines())
        .filter(|(e, d)| e != d)
        .map(|(e, d)| format!("etcd:         {e}\noctopus dev:  {d}"))
        .collect();
    assert!(
        differences.is_empty() && on_etcd.lines().count() == on_dev.lines().count(),
        "octopus dev answers clientv3 differently from etcd:\n{}",
        differences.join("\n")
    );
}
