//! The simulated hosts: etcd (the mem store behind `MemEtcd`), registrants running
//! the real `octopus-etcd` registry, discoverers running the real discovery.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus_discovery_core::{
    BackoffPolicy, Discovery, JitterRng, JsonLayout, KeyLayout, RegisterOptions, Registry, ServiceInstance,
};
use octopus_etcd::{EtcdBackend, EtcdOptions};
use octopus_mem::{KeyRange, Store};
use tokio::time::sleep;

use octopus_greeter::NamedGreeter;
use octopus_grpc::{ChannelBuilder, PanicThreshold, Policy};

use crate::config::SimConfig;
use crate::log::{Ev, Log};
use crate::net;
use octopus_devserver::{AuditEvent, AuditHook, MemEtcd, MemEtcdOptions};

/// The service every registrant registers.
pub const SERVICE: &str = "greeter";
/// The key namespace.
pub const NAMESPACE: &str = "/sim";
/// etcd's client port.
pub const ETCD_PORT: u16 = 2379;
/// The port each registrant registers (and serves the greeter on).
pub const SERVICE_PORT: u16 = 50051;

type HostResult = Result<(), Box<dyn std::error::Error>>;

/// A request from the driver to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// etcd: compact history up to the current revision.
    Compact,
    /// A registrant: deregister and stop.
    Deregister,
}

/// State the driver and the hosts share. Hosts are single-threaded inside turmoil;
/// the mutexes only satisfy the types.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// The etcd store as it was when etcd last ran (its "disk").
    store: Arc<Mutex<Option<Store>>>,
    /// Whether etcd's next start loses its data.
    lose_data: Arc<Mutex<bool>>,
    /// Starts per host, so that every incarnation draws its own jitter.
    starts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Pending commands, per host.
    commands: Arc<Mutex<BTreeMap<String, VecDeque<Command>>>>,
}

impl Shared {
    /// Queues `command` for `host`.
    pub fn send(&self, host: &str, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_owned())
            .or_default()
            .push_back(command);
    }

    fn take(&self, host: &str) -> Option<Command> {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(host)
            .and_then(VecDeque::pop_front)
    }

    /// Makes etcd's next start lose its data.
    pub fn lose_etcd_data(&self) {
        *self.lose_data.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    fn start(&self, host: &str) -> u64 {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        let n = starts.entry(host.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// The etcd store, if etcd ever started.
    pub fn store(&self) -> Option<Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Everything a host needs.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The run's settings.
    pub cfg: SimConfig,
    /// The event log.
    pub log: Log,
    /// Shared state.
    pub shared: Shared,
}

impl Ctx {
    /// A seed for `host`'s `incarnation`-th start, drawn from the run's seed.
    fn seed(&self, host: &str, incarnation: u64) -> u64 {
        crate::log::fnv1a(
            self.cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
            host.bytes().chain(incarnation.to_le_bytes()),
        )
    }

    fn host_name(&self, peer: Option<SocketAddr>) -> String {
        peer.and_then(|p| turmoil::reverse_lookup(p.ip()))
            .unwrap_or_else(|| "?".into())
    }
}

/// The etcd host: restores its store from the last one (every lease restarts with
/// its full TTL, as etcd's lessor does) or starts empty after data loss, records
/// every change, and serves.
pub async fn etcd(ctx: Ctx) -> HostResult {
    let incarnation = ctx.shared.start("etcd");
    let lose = std::mem::take(&mut *ctx.shared.lose_data.lock().unwrap_or_else(|p| p.into_inner()));
    let previous = ctx.shared.store();
    let store = match previous {
        Some(old) if !lose => Store::from_image(old.image()),
        _ => Store::with_cluster_id(ctx.seed("etcd-cluster", incarnation)),
    };
    *ctx.shared.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store.clone());
    let revision = store.header().revision;
    ctx.log.push(Ev::EtcdUp {
        lost_data: lose,
        revision,
    });

    // etcd's own view of every change, in revision order.
    let mut all = store.watch(KeyRange::prefix(Vec::new()), 0, true)?;
    let log = ctx.log.clone();
    tokio::spawn(async move {
        while let Some(msg) = all.rx.recv().await {
            let octopus_discovery_core::WatchMessage::Events { events, .. } = msg else {
                continue;
            };
            for ev in events {
                let key = String::from_utf8_lossy(&ev.kv.key).into_owned();
                log.push(match ev.kind {
                    octopus_discovery_core::EventKind::Put => Ev::Put {
                        key,
                        revision: ev.kv.mod_revision,
                        lease: ev.kv.lease.0,
                        prev_lease: ev.prev.as_ref().map(|p| p.lease.0),
                        value: String::from_utf8_lossy(&ev.kv.value).into_owned(),
                    },
                    octopus_discovery_core::EventKind::Delete => Ev::Delete {
                        key,
                        revision: ev.kv.mod_revision,
                        prev_lease: ev.prev.as_ref().map_or(0, |p| p.lease.0),
                    },
                });
            }
        }
    });

    let audit_ctx = ctx.clone();
    let audit: AuditHook = Arc::new(move |e: AuditEvent| {
        let ev = match e {
            AuditEvent::Grant { lease, ttl, peer } => Ev::Grant {
                lease,
                ttl,
                host: audit_ctx.host_name(peer),
            },
            AuditEvent::KeepAlive { lease, ttl, .. } => Ev::KeepAlive { lease, alive: ttl > 0 },
            AuditEvent::Revoke { lease, revision, peer } => Ev::Revoke {
                lease,
                revision,
                host: audit_ctx.host_name(peer),
            },
            AuditEvent::Write { revision, peer } => Ev::Write {
                revision,
                host: audit_ctx.host_name(peer),
            },
            // An event a newer server reports and the checker does not read.
            _ => return,
        };
        audit_ctx.log.push(ev);
    });
    let server = MemEtcd::new(
        store.clone(),
        MemEtcdOptions {
            term: incarnation,
            audit: Some(audit),
            coalesce_watches: ctx.cfg.world.proxy.then_some(crate::config::PROXY_CREATE_DELAY),
            ..MemEtcdOptions::default()
        },
    );

    // The driver's commands (compaction).
    let control = ctx.clone();
    tokio::spawn(async move {
        loop {
            while let Some(cmd) = control.shared.take("etcd") {
                if cmd == Command::Compact {
                    let revision = store.header().revision;
                    if store.compact(revision).is_ok() {
                        control.log.push(Ev::Compact { revision });
                    }
                }
            }
            sleep(Duration::from_millis(10)).await;
        }
    });

    server
        .serve_with_incoming(net::incoming(ETCD_PORT), std::future::pending())
        .await?;
    Ok(())
}

/// An etcd backend over turmoil's TCP with the run's timeouts and HTTP/2 keepalive.
async fn backend(cfg: &SimConfig) -> octopus_discovery_core::Result<EtcdBackend> {
    let options = EtcdOptions::new([format!("etcd:{ETCD_PORT}")])?
        .request_timeout(cfg.request_timeout)
        .connect_timeout(cfg.request_timeout)
        .http2_keepalive(cfg.h2_keepalive.0, cfg.h2_keepalive.1);
    let endpoint = EtcdBackend::endpoint(&options.endpoints()[0], &options)?;
    let channel = endpoint.connect_with_connector_lazy(net::connector());
    EtcdBackend::from_channel(channel, options).await
}

fn layout() -> Arc<dyn KeyLayout> {
    Arc::new(JsonLayout::new(NAMESPACE).expect("static namespace"))
}

/// A registrant: registers `id` at this host's address and reports every status
/// change; deregisters when told to. `start_after` delays the start (the twin).
pub async fn registrant(ctx: Ctx, host: String, id: String, start_after: Duration) -> HostResult {
    let incarnation = ctx.shared.start(&host);
    let started = turmoil::sim_elapsed().unwrap_or_default();
    if started < start_after {
        sleep(start_after - started).await;
    }
    ctx.log.push(Ev::HostUp { host: host.clone() });
    let cfg = &ctx.cfg;
    // The greeter it registers, answering with `id@endpoint` as the views show it.
    let ip = turmoil::lookup(host.as_str());
    let name = format!("{id}@{ip}:{SERVICE_PORT}");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NamedGreeter::service(name))
            .serve_with_incoming(net::incoming(SERVICE_PORT)),
    );
    let backend = backend(cfg).await?;
    let rng = JitterRng::seeded(ctx.seed(&host, incarnation));
    let instance = ServiceInstance::new(SERVICE, id, ip.to_string(), SERVICE_PORT)?;
    let options = RegisterOptions::default()
        .ttl(cfg.ttl)
        .retry(BackoffPolicy::new(cfg.retry_base, cfg.retry_cap)?)
        .jitter_rng(rng);
    // The registry's own randomness (the shared lease's backoff) from the seed too.
    let mut registry = backend
        .registry_with(layout())
        .with_rng(JitterRng::seeded(ctx.seed(&format!("{host}/registry"), incarnation)));
    if cfg.world.shared_lease {
        registry = registry.with_shared_lease(options.clone());
    }
    let mut registration = Some(registry.register(instance, options).await?);
    let mut status = registration.as_ref().expect("just registered").status();
    ctx.log.push(Ev::Status {
        host: host.clone(),
        status: status.borrow_and_update().to_string(),
    });
    loop {
        tokio::select! {
            biased;
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                ctx.log.push(Ev::Status { host: host.clone(), status: status.borrow_and_update().to_string() });
            }
            _ = sleep(Duration::from_millis(20)) => {
                if ctx.shared.take(&host) == Some(Command::Deregister) {
                    let Some(registration) = registration.take() else { continue };
                    let ok = registration.deregister().await.is_ok();
                    ctx.log.push(Ev::Deregistered { host: host.clone(), ok });
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    Ok(())
}

/// A discoverer: watches the service, logs every view, and calls the greeter
/// through the balancer (round robin) every `call_interval`.
pub async fn discoverer(ctx: Ctx, host: String) -> HostResult {
    let incarnation = ctx.shared.start(&host);
    ctx.log.push(Ev::HostUp { host: host.clone() });
    let cfg = &ctx.cfg;
    let backend = backend(cfg).await?;
    let discovery = backend
        .discovery_with(layout())
        .with_retry(BackoffPolicy::new(cfg.retry_base, cfg.discovery_retry_cap)?)
        .with_rng(JitterRng::seeded(ctx.seed(&host, incarnation)));
    // The proxy world: a service only this incarnation watches (a new range for
    // the proxy), its watch created together with the shared one, and first.
    // Both are kept for the host's life.
    let own = format!("{host}-{incarnation}");
    let _watches_together = if cfg.world.proxy {
        Some(loop {
            match tokio::join!(discovery.watch(&own), discovery.watch(SERVICE)) {
                (Ok(o), Ok(w)) => break (o, w),
                _ => sleep(cfg.retry_base).await,
            }
        })
    } else {
        None
    };
    let (mut watch, for_balancer) = loop {
        match (discovery.watch(SERVICE).await, discovery.watch(SERVICE).await) {
            (Ok(w), Ok(b)) => break (w, b),
            _ => sleep(cfg.retry_base).await,
        }
    };
    let balanced = ChannelBuilder::from_watch(SERVICE, for_balancer)
        .policy(Policy::RoundRobin)
        .connector(Arc::new(crate::callers::SimConnector(cfg.request_timeout)))
        .rng(JitterRng::seeded(ctx.seed(&format!("{host}-balancer"), incarnation)))
        .connect()
        .await
        .expect("a channel over a watch is made without resolving");
    // A second channel, with the mass-disappearance protection on: its calls are
    // logged as `{host}/protected` and checked by invariant 13.
    let protected_watch = loop {
        match discovery.watch(SERVICE).await {
            Ok(w) => break w,
            Err(_) => sleep(cfg.retry_base).await,
        }
    };
    let protected = ChannelBuilder::from_watch(SERVICE, protected_watch)
        .policy(Policy::RoundRobin)
        .connector(Arc::new(crate::callers::SimConnector(cfg.request_timeout)))
        .rng(JitterRng::seeded(ctx.seed(&format!("{host}-protected"), incarnation)))
        .panic_threshold(PanicThreshold {
            share: 0.5,
            hold: cfg.panic_hold(),
        })
        .connect()
        .await
        .expect("a channel over a watch is made without resolving");
    crate::callers::spawn(cfg, &ctx.log, &host, balanced, protected);
    while let Some(snapshot) = watch.next().await {
        let mut instances: Vec<String> = snapshot
            .instances
            .iter()
            .map(|i| format!("{}@{}", i.id, i.endpoint()))
            .collect();
        instances.sort();
        ctx.log.push(Ev::View {
            host: host.clone(),
            revision: snapshot.revision,
            resyncs: snapshot.resyncs,
            fresh: snapshot.is_fresh(),
            instances,
        });
    }
    Ok(())
}
