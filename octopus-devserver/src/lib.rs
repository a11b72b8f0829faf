//! [`MemEtcd`]: the `octopus-mem` store served as an etcd v3 gRPC server.
//!
//! One implementation runs on turmoil's simulated TCP inside the simulator and on
//! real TCP for `octopus dev` and for `etcdctl`. It implements the part of etcd's
//! API that service discovery uses (see `docs/RELIABILITY.md`, "The simulated etcd"):
//!
//! - KV: range (revision, limit, sort, keys/count only, revision filters), put
//!   (prev_kv, ignore_value, ignore_lease), delete-range (prev_kv), txn (compares
//!   on version, create/mod revision, value, lease; no nested txn), compact;
//! - Lease: grant, revoke, keep-alive stream, time-to-live (with keys), leases;
//! - Watch: many watches per stream, start revision, prefix and ranges, prev_kv,
//!   NOPUT/NODELETE filters, progress notify and progress requests, cancel, a
//!   compacted start revision cancels the watch with the compact revision;
//! - Maintenance: status, alarm (never raised), defragment (nothing to do);
//!   Cluster: member list (one member).
//!
//! Everything else answers `Unimplemented` naming the method. It is a single
//! member: no raft, no leader changes, no auth, no TLS.
//!
//! With [`MemEtcdOptions::coalesce_watches`] it answers watch creates as etcd's
//! gRPC proxy does (a range already followed at once, a new one later), so
//! creates on one stream are answered out of order.
//!
//! [`persist`] saves a store's keys and leases to a file and loads them back
//! (`octopus dev --data FILE`).

mod convert;
mod follows;
mod kv;
mod lease;
mod maintenance;
pub mod persist;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbResponseHeader, PbWatchServer,
};
use octopus_mem::{MemBackend, Store};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::{Connected, Router};
use tonic::transport::Server;

/// Version reported by `Status` (the etcd API level it speaks).
pub const VERSION: &str = "3.5.0";

/// What a [`MemEtcd`] reports to its audit hook: every request that changes state,
/// with the client's address (the simulator's invariant checker reads these).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A lease was granted.
    Grant {
        /// The lease.
        lease: i64,
        /// Its TTL.
        ttl: Duration,
        /// Who asked.
        peer: Option<SocketAddr>,
    },
    /// A keepalive was answered: `ttl` 0 means the lease was unknown (expired).
    KeepAlive {
        /// The lease.
        lease: i64,
        /// The TTL answered, in seconds.
        ttl: i64,
        /// Who asked.
        peer: Option<SocketAddr>,
    },
    /// A lease was revoked, deleting its keys at `revision`.
    Revoke {
        /// The lease.
        lease: i64,
        /// The store's revision after it.
        revision: i64,
        /// Who asked.
        peer: Option<SocketAddr>,
    },
    /// A put, delete or txn wrote revision `revision`.
    Write {
        /// The revision written.
        revision: i64,
        /// Who asked.
        peer: Option<SocketAddr>,
    },
}

/// The audit hook: called synchronously, inside the request, before it answers.
pub type AuditHook = Arc<dyn Fn(AuditEvent) + Send + Sync>;

/// Settings of a [`MemEtcd`].
#[derive(Clone)]
pub struct MemEtcdOptions {
    /// How often a watch created with `progress_notify` gets a progress response
    /// when nothing else happens (etcd's `--experimental-watch-progress-notify-interval`,
    /// 10 minutes by default).
    pub progress_notify_interval: Duration,
    /// The member's name in `MemberList`.
    pub name: String,
    /// The client URLs advertised in `MemberList`.
    pub client_urls: Vec<String>,
    /// The raft term reported in headers (the simulator counts restarts with it).
    pub term: u64,
    /// Called for every request that changes state.
    pub audit: Option<AuditHook>,
    /// Answer watch creates as etcd's gRPC proxy (`etcd grpc-proxy start`) does:
    /// `Some(delay)` answers a create for a range some watch of this server
    /// already follows at once, and one for a new range after `delay` (the
    /// proxy creating its own watch on etcd), so that creates on one stream are
    /// answered out of order. `None` (the default): in order, as etcd does.
    pub coalesce_watches: Option<Duration>,
}

impl std::fmt::Debug for MemEtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemEtcdOptions")
            .field("progress_notify_interval", &self.progress_notify_interval)
            .field("name", &self.name)
            .field("client_urls", &self.client_urls)
            .field("term", &self.term)
            .field("audit", &self.audit.is_some())
            .field("coalesce_watches", &self.coalesce_watches)
            .finish()
    }
}

impl Default for MemEtcdOptions {
    fn default() -> Self {
        MemEtcdOptions {
            progress_notify_interval: Duration::from_secs(600),
            name: "octopus".into(),
            client_urls: Vec::new(),
            term: 1,
            audit: None,
            coalesce_watches: None,
        }
    }
}

/// The mem store as an etcd v3 gRPC server. Cloning shares the store.
#[derive(Clone, Debug)]
pub struct MemEtcd {
    backend: MemBackend,
    options: MemEtcdOptions,
    /// The store's cluster id (fixed for a store's life), read once.
    cluster_id: u64,
    /// The ranges watched, with `coalesce_watches`.
    follows: follows::Follows,
}

impl MemEtcd {
    /// A server over `store`. Call inside a tokio runtime: it spawns the task that
    /// expires leases on time.
    pub fn new(store: Store, options: MemEtcdOptions) -> Self {
        MemEtcd {
            cluster_id: store.header().cluster_id,
            backend: MemBackend::new(store),
            options,
            follows: follows::Follows::default(),
        }
    }

    /// The store served.
    pub fn store(&self) -> &Store {
        self.backend.store()
    }

    /// The member id reported in headers (derived from the cluster id).
    pub fn member_id(&self) -> u64 {
        self.cluster_id.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
    }

    fn audit(&self, event: AuditEvent) {
        if let Some(hook) = &self.options.audit {
            hook(event);
        }
    }

    fn header(&self) -> PbResponseHeader {
        self.header_at(self.store().header().revision)
    }

    fn header_at(&self, revision: i64) -> PbResponseHeader {
        PbResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id(),
            revision,
            raft_term: self.options.term,
        }
    }

    /// A tonic router with every service this server implements.
    pub fn router(&self) -> Router {
        Server::builder()
            .add_service(PbKvServer::new(self.clone()))
            .add_service(PbLeaseServer::new(self.clone()))
            .add_service(PbWatchServer::new(self.clone()))
            .add_service(PbMaintenanceServer::new(self.clone()))
            .add_service(PbClusterServer::new(self.clone()))
    }

    /// Serves connections from `incoming` (turmoil's or tokio's listener) until
    /// `shutdown` completes.
    pub async fn serve_with_incoming<S, IO, E>(
        &self,
        incoming: S,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error>
    where
        S: futures_util::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.router().serve_with_incoming_shutdown(incoming, shutdown).await
    }

    /// Serves on a real TCP listener until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        self.serve_with_incoming(incoming, shutdown).await
    }
}

fn unimplemented(method: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!(
        "{method} is not implemented by Octopus's in-memory etcd (see docs/RELIABILITY.md)"
    ))
}

/// etcd's status for a store error (same codes and messages as etcd's server).
fn status(e: octopus_mem::Error) -> tonic::Status {
    use octopus_mem::Error as E;
    match e {
        E::LeaseNotFound(_) => tonic::Status::not_found("etcdserver: requested lease not found"),
        E::LeaseExists(_) => tonic::Status::failed_precondition("etcdserver: lease already exists"),
        E::Compacted { .. } => tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
        E::FutureRevision { .. } => {
            tonic::Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
        }
        E::InvalidArgument { name, rule } => tonic::Status::invalid_argument(format!("etcdserver: {name} {rule}")),
        E::DuplicateKey { .. } => tonic::Status::invalid_argument("etcdserver: duplicate key given in txn request"),
        E::TooManyOps { .. } => tonic::Status::invalid_argument("etcdserver: too many operations in txn request"),
        E::RequestTooLarge { .. } => tonic::Status::invalid_argument("etcdserver: request is too large"),
        other => tonic::Status::unavailable(other.to_string()),
    }
}
