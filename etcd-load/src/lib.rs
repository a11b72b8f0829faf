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

use std::path::PathBuf;
use std::process::Command;

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
