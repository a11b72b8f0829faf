//! Helpers shared by the CLI's test binaries: the `octopus` binary, `octopus
//! dev`, child processes, and a scaffolded service built once per test binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use octopus_testkit::etcd::etcdctl_at;

pub(crate) const OCTOPUS: &str = env!("CARGO_BIN_EXE_octopus");

/// A free loopback address for a child process to listen on, outside the
/// kernel's ephemeral range (see `octopus_testkit::ports`).
pub(crate) fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], octopus_testkit::ports::free_port()))
}

pub(crate) fn octopus(args: &[&str]) -> Output {
    Command::new(OCTOPUS).args(args).output().expect("octopus runs")
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A child process killed when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `octopus dev` on a free port, once it accepts connections.
pub(crate) fn dev(data: Option<&Path>) -> (Running, SocketAddr) {
    dev_at(free_addr(), data)
}

/// `octopus dev` on `addr`, once it accepts connections.
pub(crate) fn dev_at(addr: SocketAddr, data: Option<&Path>) -> (Running, SocketAddr) {
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

pub(crate) fn sigterm(child: &mut Running) {
    let _ = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    let _ = child.0.wait();
}

pub(crate) fn etcdctl(addr: SocketAddr, args: &[&str]) -> String {
    let out = etcdctl_at(&addr.to_string(), &[], args);
    assert!(out.status.success(), "etcdctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The workspace's target directory (the binary is in `target/debug/`).
pub(crate) fn target_dir() -> PathBuf {
    Path::new(OCTOPUS)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Polls `ok` every 100 ms for up to 15 s.
pub(crate) fn until(mut ok: impl FnMut() -> bool, what: &str) {
    for _ in 0..150 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within 15 s: {what}");
}

/// A plain HTTP GET: the status code and the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

/// A project made by `octopus new`, built (and its own tests run) with the
/// workspace's lock file and target directory, so that only it compiles.
pub(crate) struct Scaffold {
    _dir: tempfile::TempDir,
    /// The project's directory.
    pub(crate) project: PathBuf,
    /// Its service binary.
    pub(crate) binary: PathBuf,
}

/// The scaffolded project `name`, made and built once per test binary.
pub(crate) fn scaffold(name: &'static str) -> &'static Scaffold {
    static BUILT: OnceLock<Scaffold> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join(name);
        let repo = workspace();
        // No --octopus-path: a CLI built from this checkout points the project at it.
        let out = octopus(&["new", name, "--path", project.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        let checkout = repo.canonicalize().unwrap();
        assert!(
            manifest.contains(&format!("octopus-discovery = {{ path = \"{}\"", checkout.display())),
            "the project depends on this checkout, under our package's name:\n{manifest}"
        );
        for file in [
            "Cargo.toml",
            &format!("proto/{name}.proto"),
            "build.rs",
            "src/main.rs",
            "src/lib.rs",
            "src/logic.rs",
            "etc/config.toml",
            "tests/discovery.rs",
            "examples/client.rs",
            "Dockerfile",
            ".dockerignore",
            "README.md",
        ] {
            assert!(project.join(file).is_file(), "{file} was not generated");
        }
        // Never overwritten without --force.
        let again = octopus(&["new", name, "--path", project.to_str().unwrap()]);
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
        let binary = target_dir().join("debug").join(name);
        assert!(binary.is_file(), "{} was not built", binary.display());

        Scaffold {
            _dir: tmp,
            project,
            binary,
        }
    });
    assert!(built.project.ends_with(name), "one scaffold per test binary");
    built
}
