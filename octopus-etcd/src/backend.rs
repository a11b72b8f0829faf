//! [`EtcdBackend`]: Octopus's [`KvBackend`] on etcd-client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions};
use octopus_discovery_core::fencing::Created;
use octopus_discovery_core::{
    Error, Header, KeyValue, KvBackend, Lease, LeaseId, LeaseKeeper, LeaseTtl, Result, Revision, SinkStart, WatchSink,
    WatchStart,
};
use tokio::time::timeout;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::call::bounded;
use crate::convert::etcd_err;
use crate::creates::Creates;
use crate::lease_mux::LeaseMux;
use crate::watch_mux::Spec;
use crate::watch_mux::WatchMux;
use crate::{kv, lease, maintenance, watch, EtcdOptions};

/// A [`KvBackend`] on an etcd cluster.
#[derive(Clone)]
pub struct EtcdBackend {
    client: Arc<LazyClient>,
    options: EtcdOptions,
}

/// etcd-client's `Client`, made on first use: with a user and password it
/// authenticates when made, which needs etcd to answer. A backend made lazily
/// (a service starting while etcd is down) makes it on its first request, and
/// tries again on the next request if that fails.
struct LazyClient {
    cell: tokio::sync::OnceCell<Client>,
    channel: Channel,
    connect: ConnectOptions,
    /// The client's one watch stream and one keepalive stream, started on first use.
    watches: std::sync::OnceLock<WatchMux>,
    keepalives: std::sync::OnceLock<LeaseMux>,
    /// Combines the creates of a burst of registrations, started on first use.
    creates: std::sync::OnceLock<Creates>,
}

/// The gRPC streams a backend holds open on etcd (see [`EtcdBackend::streams`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Watch streams opened so far: one per client, plus one per reconnection.
    pub watch_streams: u64,
    /// Watches live on the current watch stream.
    pub watches: usize,
    /// LeaseKeepAlive streams opened so far: one per client, plus one per reconnection.
    pub keepalive_streams: u64,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.options.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// Connects over real TCP, balancing over every endpoint, and checks that etcd
    /// answers within the connect and request timeouts: an unreachable etcd is an
    /// error naming the endpoints, not a client that hangs later.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        let backend = Self::connect_lazy(options)?;
        let limit = backend
            .options
            .connect_timeout
            .saturating_add(backend.options.request_timeout);
        match timeout(limit, KvBackend::header(&backend)).await {
            Ok(Ok(_)) => Ok(backend),
            Ok(Err(e)) => Err(e.context(format!(
                "etcd at {} did not answer",
                backend.options.endpoints.join(",")
            ))),
            Err(_) => Err(Error::timeout("connect", limit).context(format!(
                "etcd at {} did not answer within {limit:?}",
                backend.options.endpoints.join(",")
            ))),
        }
    }

    /// Like [`EtcdBackend::connect`], without the check and without any request:
    /// the first request connects (and authenticates, with a user). A process made
    /// this way starts while etcd is down; its registrations retry until etcd answers.
    pub fn connect_lazy(options: EtcdOptions) -> Result<Self> {
        let endpoints = options
            .endpoints
            .iter()
            .map(|e| Self::endpoint(e, &options))
            .collect::<Result<Vec<_>>>()?;
        let channel = if endpoints.len() == 1 {
            endpoints.into_iter().next().expect("one endpoint").connect_lazy()
        } else {
            Channel::balance_list(endpoints.into_iter())
        };
        Ok(Self::lazy(channel, options))
    }

    /// Builds on a channel made by the caller (the simulator brings one over its own
    /// network), authenticating now when the options carry a user. Apply
    /// [`EtcdBackend::endpoint`]'s settings to the channel's endpoint.
    pub async fn from_channel(channel: Channel, options: EtcdOptions) -> Result<Self> {
        let backend = Self::lazy(channel, options);
        backend.etcd().await?;
        Ok(backend)
    }

    fn lazy(channel: Channel, options: EtcdOptions) -> Self {
        let mut connect = ConnectOptions::new().with_require_leader(true);
        if let Some((user, password)) = &options.user {
            // Tokens expire (etcd's --auth-token-ttl): re-authenticate and retry then.
            connect = connect
                .with_user(user.clone(), password.expose())
                .with_auto_token_refresh(true);
        }
        let client = Arc::new(LazyClient {
            cell: tokio::sync::OnceCell::new(),
            channel,
            connect,
            watches: std::sync::OnceLock::new(),
            keepalives: std::sync::OnceLock::new(),
            creates: std::sync::OnceLock::new(),
        });
        EtcdBackend { client, options }
    }

    /// The etcd-client handle, made (and authenticated) on first use.
    async fn etcd(&self) -> Result<&Client> {
        if let Some(client) = self.client.cell.get() {
            return Ok(client);
        }
        let limit = self
            .options
            .connect_timeout
            .saturating_add(self.options.request_timeout);
        let lazy = &self.client;
        lazy.cell
            .get_or_try_init(|| async {
                let channel = etcd_client::Channel::Tonic(lazy.channel.clone());
                bounded(
                    limit,
                    "connect to etcd",
                    Client::from_channel(channel, Some(lazy.connect.clone())),
                )
                .await?
                .map_err(|e| etcd_err("connect", e))
            })
            .await
    }

    /// The client's watch multiplexer, started on first use.
    async fn watches(&self) -> Result<&WatchMux> {
        let client = self.etcd().await?;
        Ok(self.client.watches.get_or_init(|| WatchMux::spawn(client.clone())))
    }

    /// The client's keepalive multiplexer, started on first use.
    async fn keepalives(&self) -> Result<&LeaseMux> {
        let client = self.etcd().await?;
        let limit = self.limit();
        Ok(self
            .client
            .keepalives
            .get_or_init(|| LeaseMux::spawn(client.clone(), limit)))
    }

    /// The client's create combiner, started on first use.
    async fn creates(&self) -> Result<&Creates> {
        let client = self.etcd().await?;
        let limit = self.limit();
        Ok(self
            .client
            .creates
            .get_or_init(|| Creates::spawn(client.clone(), limit)))
    }

    /// A watch on the client's one watch stream.
    async fn open_watch(&self, spec: Spec) -> Result<WatchStart> {
        let watches = self.watches().await?;
        watch::open(self.etcd().await?, watches, spec, self.limit()).await
    }

    /// The gRPC streams this backend (and its clones) holds open on etcd: every
    /// watch rides on one watch stream, every lease's keepalives on one
    /// LeaseKeepAlive stream, as etcd's Go client does.
    pub fn streams(&self) -> StreamStats {
        let (watch_streams, watches) = self.client.watches.get().map(WatchMux::stats).unwrap_or_default();
        StreamStats {
            watch_streams,
            watches,
            keepalive_streams: self.client.keepalives.get().map_or(0, LeaseMux::streams),
        }
    }

    /// A tonic endpoint for `uri` with the options' timeouts, HTTP/2 keepalive and TLS.
    pub fn endpoint(uri: &str, options: &EtcdOptions) -> Result<Endpoint> {
        let bad = |e: tonic::transport::Error| {
            Error::invalid_option(
                "endpoint",
                uri,
                format!("must be a valid URI with valid TLS settings: {e}"),
            )
        };
        let ep = tune(Endpoint::from_shared(uri.to_owned()).map_err(bad)?, options);
        let Some(tls) = &options.tls else { return Ok(ep) };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key.expose()));
        }
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        ep.tls_config(config).map_err(bad)
    }

    /// The etcd-client handle, for what Octopus does not wrap (made on first use,
    /// see [`EtcdBackend::connect_lazy`]).
    pub async fn client(&self) -> Result<&Client> {
        self.etcd().await
    }

    fn limit(&self) -> Duration {
        self.options.request_timeout
    }
}

fn tune(ep: Endpoint, o: &EtcdOptions) -> Endpoint {
    ep.connect_timeout(o.connect_timeout)
        .timeout(o.request_timeout)
        .http2_keep_alive_interval(o.keepalive_interval)
        .keep_alive_timeout(o.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
}

#[async_trait]
impl KvBackend for EtcdBackend {
    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Created> {
        self.creates().await?.create(key, value, lease).await
    }

    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        mod_revision: Revision,
    ) -> Result<Option<Revision>> {
        kv::put_if_unchanged(self.etcd().await?, key, value, lease, mod_revision, self.limit()).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        kv::delete(self.etcd().await?, key, self.limit()).await
    }

    async fn delete_owned(&self, key: &str, lease: LeaseId) -> Result<bool> {
        kv::delete_owned(self.etcd().await?, key, lease, self.limit()).await
    }

    async fn range_prefix(&self, prefix: &str) -> Result<(Header, Vec<KeyValue>)> {
        let mut out = Vec::new();
        let header = self.range_prefix_pages(prefix, &mut |kvs| out.extend(kvs)).await?;
        Ok((header, out))
    }

    async fn range_prefix_pages(&self, prefix: &str, page: &mut (dyn FnMut(Vec<KeyValue>) + Send)) -> Result<Header> {
        kv::range_prefix_pages(self.etcd().await?, prefix, self.options.page_size, self.limit(), page).await
    }

    async fn get(&self, key: &str) -> Result<(Header, Option<KeyValue>)> {
        kv::get(self.etcd().await?, key, self.limit()).await
    }

    async fn header(&self) -> Result<Header> {
        maintenance::header(self.etcd().await?, self.limit()).await
    }

    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        lease::grant(self.etcd().await?, ttl, self.limit()).await
    }

    async fn keeper(&self, lease: LeaseId) -> Result<Box<dyn LeaseKeeper>> {
        Ok(self.keepalives().await?.keeper(lease, self.limit()))
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        lease::revoke(self.etcd().await?, lease, self.limit()).await
    }

    async fn time_to_live(&self, lease: LeaseId) -> Result<LeaseTtl> {
        lease::time_to_live(self.etcd().await?, lease, self.limit()).await
    }

    async fn watch(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart> {
        self.open_watch(Spec::new(key, prefix, start)).await
    }

    async fn watch_with_prev(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStart> {
        self.open_watch(Spec::new(key, prefix, start).with_prev()).await
    }

    async fn watch_into(
        &self,
        key: &str,
        prefix: bool,
        start: Revision,
        sink: Box<dyn WatchSink>,
    ) -> Result<SinkStart> {
        let watches = self.watches().await?;
        let spec = Spec::new(key, prefix, start);
        watch::open_into(self.etcd().await?, watches, spec, sink, self.limit()).await
    }
}
