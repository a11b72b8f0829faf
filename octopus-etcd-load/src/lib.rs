//! Octopus's etcd load harness (not published). The harness itself is the bench
//! `etcd_load`:
//!
//! ```text
//! cargo bench -p octopus-etcd-load --bench etcd_load                # every scenario
//! cargo bench -p octopus-etcd-load --bench etcd_load -- sync event  # some
//! ```
//!
//! It sits in a package of its own because it needs etcd-client, which needs
//! protoc to build: the facade's default examples must build without it.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Builds the Go program `name` (a package under interop/go/src) in GOPATH mode
/// from Debian's packaged sources (golang-go, golang-etcd-server-dev), into the
/// target directory: the Go peers the harness measures Octopus beside. `Err`
/// says why not (no Go toolchain, no sources), for the harness to print and
/// skip that peer.
pub fn go_program(name: &str) -> Result<PathBuf, String> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let out = target.join("go").join(name);
    let gopath = format!("{}:/usr/share/gocode", workspace.join("interop/go").display());
    let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
    let built = Command::new(&go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(name)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOFLAGS", "")
        .env("GOCACHE", target.join("go").join("cache"))
        .output()
        .map_err(|e| format!("no Go toolchain ({go}: {e}); apt-get install golang-go golang-etcd-server-dev"))?;
    if !built.status.success() {
        return Err(format!(
            "go build {name} failed: {}",
            String::from_utf8_lossy(&built.stderr).trim()
        ));
    }
    Ok(out)
}

/// Starts a peer of the harness (a Go peer, or one of this package's client
/// programs) with its stdin and stdout piped, and blocks until its first line,
/// which must be "ready": every peer says so once it has set up. The peer runs
/// until its stdin is closed. Returns it with the rest of its output, by line.
pub fn start_ready(program: &Path, args: &[String]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let ready = lines.next();
    assert!(
        matches!(&ready, Some(Ok(l)) if l == "ready"),
        "{} {args:?} did not get ready: {ready:?}",
        program.display()
    );
    (child, lines)
}

/// A watcher peer of the propagation scenario (`octopuswatch`, `watch_client`)
/// keeps its sightings in memory while the puts run, so that reporting them
/// costs the watchers no I/O: a line "report" on its stdin makes it write the
/// lines gathered since the last report, then "end". Returns those lines.
pub fn report(child: &mut Child, lines: &mut Lines<BufReader<ChildStdout>>) -> Vec<String> {
    use std::io::Write;
    let stdin = child.stdin.as_mut().expect("stdin is piped");
    if writeln!(stdin, "report").and_then(|()| stdin.flush()).is_err() {
        return Vec::new(); // the peer has exited; its stderr says why
    }
    lines.map_while(Result::ok).take_while(|l| l != "end").collect()
}

/// One line of a watcher peer's report, "seen ID NANOS": the instance id and
/// the wall-clock Unix time in nanoseconds when a watcher saw it. `None` for any
/// other line.
pub fn sighting(line: &str) -> Option<(&str, u128)> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("seen"), Some(id), Some(at), None) => Some((id, at.parse().ok()?)),
        _ => None,
    }
}
