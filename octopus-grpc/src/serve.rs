//! Serving a tonic service that registers itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::ServingStatus;

use octopus_discovery_core::readiness::Readiness;
use octopus_discovery_core::{
    Error, OwnedTask, RegisterOptions, RegistrationStatus, Registry, Result, ServiceInstance,
};

/// How [`RegisteredServer::serve`] shuts down, and what else follows its registration.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// On shutdown the instance is marked draining, deregistered this much later,
    /// and its listener closed this much later again: Octopus's balancers stop
    /// sending it calls at the mark, clients that follow only the keys (grpc-go's
    /// etcd resolver) at the deletion (default 1 s).
    pub drain_delay: Duration,
    /// Then wait at most this long for in-flight calls (default 10 s).
    pub grace: Duration,
    /// Makes a [`Readiness`] (what the facade's `/readyz` answers from, feature
    /// `metrics`) follow the registration: not ready until it is registered.
    pub readiness: Option<Readiness>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            drain_delay: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            readiness: None,
        }
    }
}

/// A tonic server that registers itself: what to register and how to stop, set
/// up as tonic's `Server` is; [`serve`](RegisteredServer::serve) runs it.
///
/// ```no_run
/// # use octopus_discovery_core::Registry;
/// # async fn demo(router: tonic::transport::server::Router, registry: &dyn Registry) -> octopus_discovery_core::Result<()> {
/// use octopus_grpc::RegisteredServer;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let port = listener.local_addr().unwrap().port();
/// let instance = octopus_discovery_core::ServiceInstance::new("greeter", "g1", "127.0.0.1", port)?;
/// RegisteredServer::new(registry, instance)
///     .grace(std::time::Duration::from_secs(5))
///     .serve(router, listener, octopus_grpc::shutdown_signal())
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `serve`"]
pub struct RegisteredServer<'r> {
    registry: &'r dyn Registry,
    instance: ServiceInstance,
    options: RegisterOptions,
    serve_options: ServeOptions,
}

impl std::fmt::Debug for RegisteredServer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredServer")
            .field("instance", &self.instance)
            .field("options", &self.options)
            .field("serve_options", &self.serve_options)
            .finish_non_exhaustive()
    }
}

impl<'r> RegisteredServer<'r> {
    /// A server that registers `instance` in `registry` (default register
    /// options and [`ServeOptions`]).
    pub fn new(registry: &'r dyn Registry, instance: ServiceInstance) -> Self {
        RegisteredServer {
            registry,
            instance,
            options: RegisterOptions::default(),
            serve_options: ServeOptions::default(),
        }
    }

    /// The registration's lease and retry settings.
    pub fn register_options(mut self, options: RegisterOptions) -> Self {
        self.options = options;
        self
    }

    /// Every shutdown setting at once (from configuration, say).
    pub fn serve_options(mut self, options: ServeOptions) -> Self {
        self.serve_options = options;
        self
    }

    /// Between the draining mark and deregistering, keep serving this long (default 1 s).
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.serve_options.drain_delay = delay;
        self
    }

    /// Then wait at most this long for in-flight calls (default 10 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.serve_options.grace = grace;
        self
    }

    /// Makes `readiness` (what the facade's `/readyz` answers from, feature
    /// `metrics`) follow the registration.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.serve_options.readiness = Some(readiness);
        self
    }

    /// Serves `router` on `listener`, registers the instance once it listens, and keeps
    /// the standard gRPC health service (added to the router, overall status `""`)
    /// in step with the registration: `SERVING` while registered, `NOT_SERVING` while
    /// the registration is lost, the instance is marked draining
    /// ([`Registration::drain`](octopus_discovery_core::Registration::drain), `octopus drain`) or the
    /// server shuts down.
    ///
    /// When `shutdown` completes it marks the instance draining, keeps serving for
    /// the drain delay, deregisters, keeps serving for the drain delay again, ends
    /// the health service's `Watch` streams
    /// (they have said `NOT_SERVING`), then stops accepting and waits for in-flight
    /// calls up to the grace period.
    ///
    /// It traps no signal: a binary passes [`shutdown_signal`](crate::shutdown_signal)
    /// (SIGINT or SIGTERM), a test or an embedding program a future of its own.
    pub async fn serve(
        self,
        router: Router,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let RegisteredServer {
            registry,
            instance,
            options,
            serve_options,
        } = self;
        serve(router, listener, registry, instance, options, serve_options, shutdown).await
    }
}

async fn serve(
    router: Router,
    listener: TcpListener,
    registry: &dyn Registry,
    instance: ServiceInstance,
    options: RegisterOptions,
    serve_options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let reporter = tonic_health::server::HealthReporter::new();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    let (drained_tx, drained) = tokio::sync::watch::channel(false);
    let health = HealthServer::new(DrainingHealth {
        inner: tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        drained,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut server = OwnedTask::spawn(
        router
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );

    // Not ready until registered, including while the first attempt is under way
    // (a registry that is down takes a request timeout to say so).
    let first_attempt = serve_options.readiness.as_ref().map(|r| r.pending());
    let registration = registry.register(instance.clone(), options).await?;
    if let Some(readiness) = &serve_options.readiness {
        readiness.track(&registration);
        drop(first_attempt);
    }
    let (mut status, mut draining) = (registration.status(), registration.draining());
    let follower = {
        let reporter = reporter.clone();
        OwnedTask::spawn(async move {
            loop {
                let registered = matches!(*status.borrow_and_update(), RegistrationStatus::Registered { .. });
                let serving = registered && !*draining.borrow_and_update();
                let s = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status("", s).await;
                let changed = tokio::select! {
                    r = status.changed() => r,
                    r = draining.changed() => r,
                };
                if changed.is_err() {
                    return;
                }
            }
        })
    };

    shutdown.await;
    drop(follower);
    reporter.set_service_status("", ServingStatus::NotServing).await;
    // Draining first: balancers stop sending new calls while the key still says
    // where the instance is; then it deregisters. If the mark cannot be written
    // (the registry is down, a layout without metadata), deregister first and
    // keep serving for the delay instead.
    match registration.drain().await {
        Ok(()) => {
            tracing::info!(service = %instance.service, id = %instance.id, delay = ?serve_options.drain_delay, "shutting down: draining, then deregistering");
            tokio::time::sleep(serve_options.drain_delay).await;
        }
        Err(e) => {
            tracing::info!(service = %instance.service, id = %instance.id, error = %e, "shutting down: cannot mark draining; deregistering first");
        }
    }
    let deregistered = registration.deregister().await;
    // Clients that follow only the keys (grpc-go's etcd resolver) learn of the
    // instance's end from its key's deletion: serve them meanwhile.
    tokio::time::sleep(serve_options.drain_delay).await;
    // Health Watch streams (grpc-go's client-side health checking keeps one open on
    // every server) have said NOT_SERVING by now: end them, or the graceful stop
    // below would wait the whole grace period for streams that never end.
    drained_tx.send_replace(true);
    let _ = stop_tx.send(());
    // Past the grace period, dropping `server` stops it and its last calls.
    match tokio::time::timeout(serve_options.grace, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(Error::backend("serve", e)),
        Ok(Err(e)) => return Err(Error::backend("serve", e)),
        Err(_) => tracing::warn!(grace = ?serve_options.grace, "in-flight calls outlived the grace period"),
    }
    deregistered
}

/// tonic-health's service, whose `Watch` streams end once the server has drained.
struct DrainingHealth {
    inner: tonic_health::server::HealthService,
    drained: tokio::sync::watch::Receiver<bool>,
}

type HealthStream = Pin<Box<dyn Stream<Item = std::result::Result<HealthCheckResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> std::result::Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> std::result::Result<tonic::Response<HealthStream>, tonic::Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        let mut drained = self.drained.clone();
        let drained = Box::pin(async move {
            let _ = drained.wait_for(|d| *d).await;
        });
        Ok(tonic::Response::new(Box::pin(UntilDrained {
            statuses,
            drained: Some(drained),
        })))
    }
}

/// A health status stream that ends when `drained` completes.
struct UntilDrained {
    statuses: tonic_health::server::WatchStream,
    drained: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Stream for UntilDrained {
    type Item = std::result::Result<HealthCheckResponse, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Statuses already sent (NOT_SERVING) go out before the stream ends.
        if let Poll::Ready(item) = Pin::new(&mut self.statuses).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.drained.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) | None => {
                self.drained = None;
                Poll::Ready(None)
            }
            Some(Poll::Pending) => Poll::Pending,
        }
    }
}
