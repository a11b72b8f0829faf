//! etcd's own gRPC proxy (`etcd grpc-proxy start`, from the same binary as the
//! test servers) on a free loopback port, in front of real etcd servers;
//! stopped when dropped.
//!
//! It is not a TCP relay: it keeps its own watches on etcd and shares them
//! among its clients, answering a watch create for a range it already follows
//! at once and one for a new range only once etcd has created it, so creates
//! on one stream can be answered out of order.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

use octopus_etcd::{EtcdBackend, EtcdOptions};

use crate::etcd::etcd_binary;
use crate::ports::free_port;

/// One `etcd grpc-proxy` process.
#[derive(Debug)]
pub struct GrpcProxy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl GrpcProxy {
    /// Starts a proxy in front of `endpoints` (`127.0.0.1:PORT` each) and waits
    /// until it answers.
    pub async fn start(endpoints: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("proxy log file");
        let child = Command::new(etcd_binary())
            .args(["grpc-proxy", "start"])
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!("--listen-addr={listen}"))
            .arg(format!("--advertise-client-url={listen}"))
            .arg("--data-dir")
            .arg(dir.path().join("proxy"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {:?} grpc-proxy (set OCTOPUS_ETCD_BIN or run ./scripts/test, which installs it): {e}",
                    etcd_binary()
                )
            });
        let proxy = GrpcProxy {
            child: Some(child),
            dir,
            port,
        };
        proxy.wait_ready().await;
        proxy
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let opts = self.options().connect_timeout(Duration::from_millis(500));
            let last = match EtcdBackend::connect(opts).await {
                Ok(_) => return, // connect checks that etcd answers, here through the proxy
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "the grpc-proxy did not start within 30 s; last error: {last}; log: {}",
                self.log()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Client options for the proxy.
    pub fn options(&self) -> EtcdOptions {
        EtcdOptions::new([self.endpoint()]).expect("loopback endpoint")
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What the proxy logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for GrpcProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
