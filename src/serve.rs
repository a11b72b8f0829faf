//! Serving a tonic service that registers itself (feature `grpc`).

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;

use crate::{Error, RegisterOptions, Registry, Result, ServiceInstance, Status};

/// How [`serve`] shuts down, and what else follows its registration.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// After deregistering, keep serving this long so that clients' discovery sees
    /// the instance go before its listener closes (default 1 s).
    pub drain_delay: Duration,
    /// Then wait at most this long for in-flight calls (default 10 s).
    pub grace: Duration,
    /// Makes `/readyz` follow the registration (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub readiness: Option<crate::metrics::Readiness>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            drain_delay: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            #[cfg(feature = "metrics")]
            readiness: None,
        }
    }
}

/// Serves `router` on `listener`, registers `instance` once it listens, and keeps
/// the standard gRPC health service (added to the router, overall status `""`)
/// in step with the registration: `SERVING` while registered, `NOT_SERVING` while
/// the registration is lost or the server drains.
///
/// When `shutdown` completes — or on SIGINT or SIGTERM — it deregisters first,
/// keeps serving for the drain delay, then stops accepting and waits for
/// in-flight calls up to the grace period.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    registry: &dyn Registry,
    instance: ServiceInstance,
    options: RegisterOptions,
    serve_options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        router
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );

    let registration = registry.register(instance.clone(), options).await?;
    #[cfg(feature = "metrics")]
    if let Some(readiness) = &serve_options.readiness {
        readiness.track(&registration);
    }
    let mut status = registration.status();
    let follower = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            loop {
                let serving = matches!(*status.borrow_and_update(), Status::Registered { .. });
                let s = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status("", s).await;
                if status.changed().await.is_err() {
                    return;
                }
            }
        })
    };

    tokio::select! {
        _ = shutdown => {}
        _ = signal() => {}
    }
    tracing::info!(service = %instance.service, id = %instance.id, "shutting down: deregistering first");
    follower.abort();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    let deregistered = registration.deregister().await;
    tokio::time::sleep(serve_options.drain_delay).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(serve_options.grace, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(Error::backend("serve", e)),
        Ok(Err(e)) => return Err(Error::backend("serve", e)),
        Err(_) => tracing::warn!(grace = ?serve_options.grace, "in-flight calls outlived the grace period"),
    }
    deregistered
}

/// SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
