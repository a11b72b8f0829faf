//! Prometheus metrics and health endpoints (feature `metrics`).
//!
//! [`install`] makes every Octopus counter, gauge and histogram (and any other
//! `metrics` series of the application) render as Prometheus text;
//! [`serve`] answers `GET /metrics`, `GET /healthz` (the process is up) and
//! `GET /readyz` (every tracked registration is registered) on a small HTTP/1.1
//! listener.
//!
//! Series: `octopus_registrations{service,status}`, `octopus_reregistrations_total`,
//! `octopus_keepalive_failures_total`, `octopus_lease_losses_total`,
//! `octopus_watch_reconnects_total`, `octopus_resyncs_total`,
//! `octopus_decode_errors_total`, `octopus_instances{service}`,
//! `octopus_balancer_picks_total{service,endpoint}`,
//! `octopus_balancer_ejections_total{service,endpoint}`,
//! `octopus_balancer_protections_total{service}`,
//! `octopus_discovery_propagation_seconds{service}` (a histogram). Each has its
//! `# HELP` line; the text passes `promtool check metrics`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

use crate::{Error, Result};

pub use octopus_discovery_core::readiness::{Pending, Readiness};
pub use octopus_discovery_core::telemetry::*;
/// What [`serve`] returns: the listener's task, stopped when dropped.
pub use octopus_discovery_core::OwnedTask;

/// Installs the Prometheus recorder for this process (once; later calls return
/// the same handle).
pub fn install() -> Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    // Propagation is a histogram with buckets (aggregatable across instances),
    // from 1 ms to 10 s.
    let buckets = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(PROPAGATION.to_owned()), &buckets)
        .map_err(|e| Error::backend("metrics", format!("invalid histogram buckets: {e}")))?
        .install_recorder()
        .map_err(|e| Error::backend("metrics", format!("cannot install the Prometheus recorder: {e}")))?;
    octopus_discovery_core::telemetry::describe();
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the returned
/// owner is dropped: dropping it stops the server and its open connections.
///
/// The server outlives accept errors (too many open files, for one): it logs
/// them and keeps accepting, so the health endpoints stay up. A client gets 5 s
/// to send its request's head and read the answer, and at most 1,024 connections
/// are served at once.
pub fn serve(listener: TcpListener, handle: PrometheusHandle, readiness: Readiness) -> OwnedTask<()> {
    OwnedTask::spawn(accept_loop(listener, handle, readiness, Limits::default()))
}

/// How the server bounds its clients.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// How long a client may take to send its request's head, and then to
    /// read the answer.
    io_timeout: Duration,
    /// Connections served at once.
    max_connections: usize,
    /// The pause after a failed accept, before the next.
    accept_pause: Duration,
    /// At most one warning about failed accepts per this period.
    warn_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            io_timeout: Duration::from_secs(5),
            // Enough that idle connections must number in the thousands to hold
            // up a probe, each for at most `io_timeout`; few enough to keep the
            // process's file descriptors.
            max_connections: 1024,
            accept_pause: Duration::from_millis(100),
            warn_every: Duration::from_secs(10),
        }
    }
}

/// Where the server's connections come from: a TCP listener (tests inject
/// accept errors through another).
trait Accept: Send + 'static {
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Accept for TcpListener {
    type Conn = TcpStream;
    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(conn, _)| conn)
    }
}

/// Accepts and answers connections until dropped. The loop owns its
/// connections: stopping it stops them.
async fn accept_loop<A: Accept>(mut listener: A, handle: PrometheusHandle, readiness: Readiness, limits: Limits) {
    let mut connections = JoinSet::new();
    // The cap on connections served at once. When it is reached, the loop waits
    // for a slot before it accepts again, rather than accepting and closing at
    // once: a connection closed unanswered is a failed probe, while one left in
    // the listen backlog is answered as soon as a slot frees, which is soon,
    // since every connection ends within its timeouts (an idle one, which sends
    // nothing, after `io_timeout`). An honest probe sends its request at once
    // and is answered in a moment, so only clients that hold connections open
    // can fill the slots, and they cannot hold them for long.
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (mut failures, mut warned) = (0u64, None::<Instant>);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let mut conn = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // E.g. EMFILE (too many open files): transient. The server must
                // outlive it, or /healthz goes dark and the pod is restarted for
                // nothing. Pause (the error would repeat at once) and retry.
                failures += 1;
                if warned.is_none_or(|at| at.elapsed() >= limits.warn_every) {
                    tracing::warn!(
                        error = %e,
                        failures,
                        "metrics server: accepting a connection failed; retrying"
                    );
                    (failures, warned) = (0, Some(Instant::now()));
                }
                drop(slot);
                sleep(limits.accept_pause).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {} // forget finished ones
        let (handle, readiness) = (handle.clone(), readiness.clone());
        connections.spawn(async move {
            // The slot is freed when the connection ends.
            let _slot = slot;
            // Read until the end of the request's head (a request may arrive in
            // several segments), at most 4 KiB, within the timeout: a client
            // that sends nothing does not hold its connection for good.
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let head = async {
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
            };
            if timeout(limits.io_timeout, head).await.is_err() {
                return; // closed unanswered
            }
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, kind, body) = match (request.starts_with("GET "), path) {
                (true, "/metrics") => ("200 OK", "text/plain; version=0.0.4", handle.render()),
                (true, "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
                (true, "/readyz") if readiness.is_ready() => ("200 OK", "text/plain", "ready\n".to_owned()),
                (true, "/readyz") => ("503 Service Unavailable", "text/plain", "not ready\n".to_owned()),
                (true, _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                (false, _) => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned()),
            };
            let head = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            // A client that does not read its answer does not hold the connection either.
            let _ = timeout(limits.io_timeout, async {
                conn.write_all(head.as_bytes()).await?;
                conn.write_all(body.as_bytes()).await
            })
            .await;
        });
    }
}

/// Binds `addr` and serves there until the returned owner is dropped; the
/// address actually bound is returned.
pub async fn bind(
    addr: SocketAddr,
    handle: PrometheusHandle,
    readiness: Readiness,
) -> Result<(SocketAddr, OwnedTask<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::backend("metrics", format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::backend("metrics", e))?;
    Ok((bound, serve(listener, handle, readiness)))
}

#[cfg(test)]
mod tests {
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;

    use super::*;

    /// The hang guard: no test waits longer for what must happen.
    const GUARD: Duration = Duration::from_secs(10);

    /// A handle of a recorder of its own (none installed for the process).
    fn handle() -> PrometheusHandle {
        PrometheusBuilder::new().build_recorder().handle()
    }

    async fn get(mut conn: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> String {
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn serve_with(limits: Limits) -> (SocketAddr, OwnedTask<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = OwnedTask::spawn(accept_loop(listener, handle(), Readiness::default(), limits));
        (addr, server)
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_timeout() {
        let limits = Limits {
            io_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, _server) = serve_with(limits).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let read = timeout(GUARD, idle.read(&mut buf))
            .await
            .expect("the server closes an idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn healthz_answers_while_idle_connections_fill_every_slot() {
        let limits = Limits {
            io_timeout: Duration::from_millis(300),
            max_connections: 4,
            ..Limits::default()
        };
        let (addr, _server) = serve_with(limits).await;
        let mut idle = Vec::new();
        for _ in 0..12 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let conn = TcpStream::connect(addr).await.unwrap();
        let answer = timeout(GUARD, get(conn, "/healthz"))
            .await
            .expect("/healthz answers despite the idle connections");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("ok\n"), "{answer}");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_slot() {
        // A timeout longer than the test: only the cap decides here.
        let limits = Limits {
            io_timeout: Duration::from_secs(600),
            max_connections: 2,
            ..Limits::default()
        };
        let (addr, _server) = serve_with(limits).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        // The third waits in the listen backlog while both slots are held…
        let probe = tokio::spawn(get(TcpStream::connect(addr).await.unwrap(), "/healthz"));
        sleep(Duration::from_millis(300)).await;
        assert!(!probe.is_finished(), "a third connection was served past the cap of 2");
        // …and is answered once one of them ends.
        drop(first);
        let answer = timeout(GUARD, probe)
            .await
            .expect("answered once a slot frees")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    /// Connections a test hands over, or accept errors.
    struct Scripted(mpsc::UnboundedReceiver<io::Result<DuplexStream>>);

    impl Accept for Scripted {
        type Conn = DuplexStream;
        async fn accept(&mut self) -> io::Result<DuplexStream> {
            match self.0.recv().await {
                Some(next) => next,
                None => std::future::pending().await,
            }
        }
    }

    #[tokio::test]
    async fn the_server_outlives_accept_errors() {
        let (tx, rx) = mpsc::unbounded_channel();
        let limits = Limits {
            accept_pause: Duration::from_millis(1),
            ..Limits::default()
        };
        let _server = OwnedTask::spawn(accept_loop(Scripted(rx), handle(), Readiness::default(), limits));
        for _ in 0..3 {
            // EMFILE: too many open files.
            tx.send(Err(io::Error::from_raw_os_error(24))).unwrap();
        }
        tx.send(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "aborted")))
            .unwrap();
        let (client, server_side) = tokio::io::duplex(64 * 1024);
        // Queued before the loop has run: whether it outlived the errors shows
        // in the answer below, not here.
        tx.send(Ok(server_side)).unwrap();
        let answer = timeout(GUARD, get(client, "/healthz"))
            .await
            .expect("/healthz answers after accept errors");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
}
