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

use std::net::SocketAddr;
use std::sync::Mutex;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

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
pub fn serve(listener: TcpListener, handle: PrometheusHandle, readiness: Readiness) -> OwnedTask<()> {
    OwnedTask::spawn(async move {
        // The accept loop owns its connections: stopping it stops them.
        let mut connections = JoinSet::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {} // forget finished ones
            let (handle, readiness) = (handle.clone(), readiness.clone());
            connections.spawn(async move {
                // Read until the end of the request's head (a request may arrive in
                // several segments), at most 4 KiB.
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
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
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    })
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
