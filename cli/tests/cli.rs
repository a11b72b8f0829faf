//! The `octopus` command end to end: scaffold a service, build it, run it against
//! `octopus dev`, call it through `etcd:///NAME`, inspect and deregister it; etcdctl
//! against `octopus dev`; bad input.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use octopus_etcd::testing::{etcdctl_at, etcdctl_binary};

const OCTOPUS: &str = env!("CARGO_BIN_EXE_octopus");

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn octopus(args: &[&str]) -> Output {
    Command::new(OCTOPUS).args(args).output().expect("octopus runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `octopus dev` on a free port, once it accepts connections.
fn dev(data: Option<&Path>) -> (Running, SocketAddr) {
    let addr = free_addr();
    let listen = addr.to_string();
    let mut cmd = Command::new(OCTOPUS);
    cmd.args(["dev", "--listen", &listen]).stdout(Stdio::piped());
    if let Some(d) = data {
        cmd.arg("--data").arg(d);
    }
    let child = Running(cmd.spawn().unwrap());
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("octopus dev did not listen on {addr}");
}

fn sigterm(child: &mut Running) {
    let _ = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    let _ = child.0.wait();
}

fn etcdctl(addr: SocketAddr, args: &[&str]) -> String {
    let out = etcdctl_at(&addr.to_string(), &[], args);
    assert!(out.status.success(), "etcdctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The workspace's target directory (the binary is in `target/debug/`).
fn target_dir() -> PathBuf {
    Path::new(OCTOPUS)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

mod wire {
    //! The scaffold's messages, declared here the way any gRPC client could.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct HelloRequest {
        #[prost(string, tag = "1")]
        pub(crate) name: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct HelloReply {
        #[prost(string, tag = "1")]
        pub(crate) message: String,
        #[prost(string, tag = "2")]
        pub(crate) instance: String,
    }
}

#[test]
fn scaffold_build_run_call_inspect_deregister() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("demo");
    let repo = workspace();
    let out = octopus(&[
        "new",
        "demo",
        "--path",
        project.to_str().unwrap(),
        "--octopus-path",
        repo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "Cargo.toml",
        "proto/demo.proto",
        "build.rs",
        "src/main.rs",
        "src/lib.rs",
        "src/logic.rs",
        "etc/config.toml",
        "tests/discovery.rs",
        "README.md",
    ] {
        assert!(project.join(file).is_file(), "{file} was not generated");
    }
    // Never overwritten without --force.
    let again = octopus(&["new", "demo", "--path", project.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists and is not empty"), "{}", stderr(&again));

    // Build and test it with the workspace's lock file and target directory, so
    // that nothing is compiled twice.
    std::fs::copy(repo.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(&cargo)
        .args(["test", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "the generated project's tests failed:\n{}\n{}",
        stdout(&test),
        stderr(&test)
    );
    let binary = target_dir().join("debug").join("demo");
    assert!(binary.is_file(), "{} was not built", binary.display());

    // Run it against `octopus dev`.
    let (_dev, addr) = dev(None);
    let registry = format!("etcd://{addr}");
    let mut service = Running(
        Command::new(&binary)
            .current_dir(&project)
            .env("REGISTRY", &registry)
            .env("PORT", "0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("INSTANCE_ID", "demo-1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(service.0.stdout.take().unwrap()).lines();
    let serving = lines
        .find_map(|l| l.ok().filter(|l| l.contains("serving on")))
        .expect("the service says where it serves");
    assert!(serving.contains("demo demo-1 serving on 127.0.0.1:"), "{serving}");

    // A client calls it by name.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply = runtime.block_on(async {
        let client = octopus::connect(&registry).await.unwrap();
        let channel = client
            .channel("etcd:///demo", octopus::grpc::Policy::RoundRobin)
            .await
            .unwrap();
        assert!(channel.ready_endpoints(1, Duration::from_secs(10)).await);
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        grpc.unary(
            tonic::Request::new(wire::HelloRequest { name: "cli".into() }),
            http::uri::PathAndQuery::from_static("/demo.Demo/Hello"),
            tonic_prost::ProstCodec::<wire::HelloRequest, wire::HelloReply>::default(),
        )
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(reply.message, "hello, cli");
    assert_eq!(reply.instance, "demo-1");

    let ls = octopus(&["ls", "--registry", &registry]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert!(
        stdout(&ls).lines().any(|l| l.split_whitespace().eq(["demo", "1"])),
        "{}",
        stdout(&ls)
    );
    let ls = octopus(&["ls", "demo", "--registry", &registry, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&ls)).unwrap();
    assert_eq!(json["instances"][0]["id"], "demo-1");
    assert_eq!(json["instances"][0]["instance"]["version"], "v0.1.0");

    // The process dies without deregistering: its key outlives it until the TTL…
    let _ = service.0.kill();
    let _ = service.0.wait();
    let ls = octopus(&["ls", "demo", "--registry", &registry]);
    assert!(stdout(&ls).contains("demo-1"), "{}", stdout(&ls));
    // …unless an operator removes it.
    let gone = octopus(&["deregister", "demo/demo-1", "--registry", &registry]);
    assert!(gone.status.success(), "{}", stderr(&gone));
    assert!(
        stdout(&gone).starts_with("deregistered demo/demo-1"),
        "{}",
        stdout(&gone)
    );
    let ls = octopus(&["ls", "demo", "--registry", &registry]);
    assert!(stdout(&ls).starts_with("no instances of demo"), "{}", stdout(&ls));
    let again = octopus(&["deregister", "demo/demo-1", "--registry", &registry]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("no instance demo-1 of demo"),
        "{}",
        stderr(&again)
    );
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

    // A watch sees a change made by another client.
    let mut watch = Running(
        Command::new(etcdctl_binary())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={addr}"))
            .args(["watch", "--prefix", "/app/"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    etcdctl(addr, &["put", "/app/greeting", "bonjour"]);
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
        &["ls"],
        &["get"],
        &["watch"],
        &["deregister"],
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
