//! [`connect`]: one URL picks the backend.

use std::sync::Arc;

#[cfg(feature = "etcd")]
use crate::params::etcd_options;
use crate::params::{defaults, layout, COMMON, ETCD_ONLY};
use crate::url::RegistryUrl;
use crate::{
    Discovery, DiscoveryResolver, Error, RegisterOptions, Registration, Registry, Resolvers, Result, ServiceInstance,
    ServiceWatch,
};

/// A connection to a registry: its [`Registry`], its [`Discovery`], and the
/// registration defaults the URL set.
#[derive(Clone)]
pub struct Client {
    url: RegistryUrl,
    registry: Arc<dyn Registry>,
    discovery: Arc<dyn Discovery>,
    inspector: crate::Inspector,
    defaults: RegisterOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.redacted())
            .finish_non_exhaustive()
    }
}

/// Connects to the registry at `url`; the scheme picks the backend.
///
/// - `mem://` — the embedded in-memory registry of this process (feature `mem`).
///   `mem://NAME` names a separate one; clients of the same name share it.
/// - `etcd://host:port,host:port` — etcd (feature `etcd`).
///
/// Parameters: `namespace` (key prefix, default `/octopus`), `layout` (`octopus`,
/// or a Go framework's: `kratos`, `etcd-naming`, `go-zero`), `shared_lease=true` (one
/// lease for every registration of this client), `ttl` (default lease
/// TTL: `500ms`, `10s`, `10`), `retry_interval` and `retry_cap` (re-registration
/// backoff); for etcd also `connect_timeout`, `request_timeout`, `user` with its
/// password from `password_file` (recommended), `password`, or the
/// `OCTOPUS_ETCD_PASSWORD` environment variable,
/// and TLS: `ca_file`, `cert_file` + `key_file` (a client certificate), `tls_domain`.
/// A scheme whose backend is not compiled in is an error that names the feature.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> octopus::Result<()> {
/// let client = octopus::connect("mem://?namespace=/demo&ttl=5s").await?;
/// let reg = client.register(octopus::ServiceInstance::new("users", "u1", "127.0.0.1", 8080)?).await?;
/// assert_eq!(client.discovery().instances("users").await?.len(), 1);
/// reg.deregister().await?;
///
/// // Without the `etcd` feature this names the feature; with it, etcd is unreachable here.
/// let err = octopus::connect("etcd://127.0.0.1:1?connect_timeout=200ms&request_timeout=200ms").await.unwrap_err();
/// let err = err.to_string();
/// if cfg!(feature = "etcd") {
///     assert!(err.contains("127.0.0.1:1") && !err.contains("feature"), "{err}");
/// } else {
///     assert!(err.contains("`etcd` feature"), "{err}");
/// }
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Client> {
    open(url, true).await
}

/// Like [`connect`], but sends nothing to the registry: the URL is checked, the
/// client is made, and the first request connects (and authenticates, with a user).
///
/// This is what a service uses at start-up, so that a registry that is down
/// (etcd restarting with its services, a node rebooting) does not keep the service
/// from starting: [`Client::register`] returns a registration in
/// [`RegistrationStatus::Lost`](crate::RegistrationStatus::Lost) that retries with backoff, forever, and
/// turns `Registered` as soon as etcd answers; [`grpc::RegisteredServer`](crate::grpc::RegisteredServer)
/// reports `NOT_SERVING` and `/readyz` fails until then. For `mem://` it is
/// [`connect`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> octopus::Result<()> {
/// // Nothing listens on 127.0.0.1:1, and that is no error yet.
/// # #[cfg(feature = "etcd")] {
/// let client = octopus::connect_lazy("etcd://127.0.0.1:1?connect_timeout=100ms&request_timeout=100ms").await?;
/// let reg = client.register(octopus::ServiceInstance::new("users", "u1", "127.0.0.1", 8080)?).await?;
/// assert!(matches!(reg.status().borrow().clone(), octopus::RegistrationStatus::Lost { .. }));
/// reg.abandon().await;
/// # }
/// # Ok(()) }
/// ```
pub async fn connect_lazy(url: &str) -> Result<Client> {
    open(url, false).await
}

#[cfg_attr(not(any(feature = "mem", feature = "etcd")), allow(unreachable_code))]
#[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
async fn open(url: &str, check: bool) -> Result<Client> {
    let url = RegistryUrl::parse(url)?;
    if url.scheme == "mem" {
        let etcd_only: Vec<&str> = ETCD_ONLY
            .iter()
            .copied()
            .filter(|p| url.params.contains_key(*p))
            .collect();
        if !etcd_only.is_empty() {
            return Err(url.error(format!(
                "{} only for etcd://; mem:// takes {}",
                if etcd_only.len() == 1 {
                    format!("parameter {} is", etcd_only[0])
                } else {
                    format!("parameters {} are", etcd_only.join(", "))
                },
                COMMON.join(", ")
            )));
        }
        url.only(COMMON)?;
    } else {
        url.only(&[COMMON, ETCD_ONLY].concat())?;
    }
    let layout = layout(&url)?;
    let defaults = defaults(&url)?;
    let cold = crate::params::cold_cache(&url, &layout)?;
    let shared = match url.params.get("shared_lease").map(String::as_str) {
        None | Some("false") => None,
        Some("true") => Some(defaults.clone()),
        Some(other) => return Err(url.error(format!("shared_lease={other:?} must be true or false"))),
    };
    let (registry, discovery, inspector) = match url.scheme.as_str() {
        #[cfg(feature = "mem")]
        "mem" => {
            let name = url.hosts.join(",");
            let backend = octopus_mem::MemBackend::new(crate::mem_store(&name));
            pair(backend, layout, shared, cold)
        }
        #[cfg(not(feature = "mem"))]
        "mem" => return Err(missing(&url, "mem")),
        #[cfg(feature = "etcd")]
        "etcd" => {
            let options = etcd_options(&url)?;
            let backend = if check {
                octopus_etcd::EtcdBackend::connect(options).await?
            } else {
                octopus_etcd::EtcdBackend::connect_lazy(options)?
            };
            pair(backend, layout, shared, cold)
        }
        #[cfg(not(feature = "etcd"))]
        "etcd" => return Err(missing(&url, "etcd")),
        other => return Err(Error::unknown_scheme(other, "mem, etcd")),
    };
    Ok(Client {
        url,
        registry,
        discovery,
        inspector,
        defaults,
    })
}

/// The registry, discovery and inspector of one backend; with `shared`, one lease
/// for every registration, kept alive with those options.
#[allow(dead_code)] // unused when no backend is compiled in
fn pair<B: crate::core::KvBackend>(
    backend: B,
    layout: Arc<dyn octopus_discovery_core::KeyLayout>,
    shared: Option<RegisterOptions>,
    cold: Option<Arc<octopus_discovery_core::cache_file::ColdCache>>,
) -> (Arc<dyn Registry>, Arc<dyn Discovery>, crate::Inspector) {
    let backend = Arc::new(backend);
    let mut registry = crate::core::LeaseRegistry::new(backend.clone(), layout.clone());
    let mut discovery = crate::core::WatchDiscovery::new(backend.clone(), layout.clone());
    if let Some(cold) = cold {
        discovery = discovery.with_cold_cache(cold);
    }
    if let Some(options) = shared {
        registry = registry.with_shared_lease(options);
    }
    (
        Arc::new(registry),
        Arc::new(discovery),
        crate::Inspector::new(backend, layout),
    )
}

#[allow(dead_code)] // unused when every backend is compiled in
fn missing(url: &RegistryUrl, feature: &'static str) -> Error {
    Error::feature_missing(url.as_str(), feature)
}

impl Client {
    /// The registry.
    pub fn registry(&self) -> Arc<dyn Registry> {
        self.registry.clone()
    }

    /// The discovery.
    pub fn discovery(&self) -> Arc<dyn Discovery> {
        self.discovery.clone()
    }

    /// Raw access for operators' tools: list services and keys (undecodable ones
    /// included), read one, delete one.
    pub fn inspector(&self) -> &crate::Inspector {
        &self.inspector
    }

    /// The registry URL this client was made from, redacted (`password=***`):
    /// safe to log.
    pub fn url(&self) -> String {
        self.url.redacted()
    }

    /// The registration defaults from the URL.
    pub fn register_options(&self) -> RegisterOptions {
        self.defaults.clone()
    }

    /// Registers `instance` with the URL's defaults.
    pub async fn register(&self, instance: ServiceInstance) -> Result<Registration> {
        self.registry.register(instance, self.defaults.clone()).await
    }

    /// Follows `service`.
    pub async fn watch(&self, service: &str) -> Result<ServiceWatch> {
        self.discovery.watch(service).await
    }

    /// A clean exit: deregisters every registration this client made — the ones
    /// whose handles are still held and the ones dropped earlier, whose
    /// deregistration runs in the background — and waits for them, at most the
    /// longest deregistration timeout among them
    /// ([`RegisterOptions::deregister_timeout`](crate::RegisterOptions::deregister_timeout),
    /// 5 s by default). Then it stops every watch (their [`ServiceWatch`]es end and
    /// the registry's streams close). Call it before `main` returns: a dropped
    /// handle alone deregisters in a task that the runtime's end would cut short,
    /// leaving the key to its lease's TTL.
    ///
    /// When it returns `Ok`, none of the client's keys is left in the registry.
    /// `Err(Timeout)` when some deregistration did not finish in time (the registry
    /// is unreachable): those keys expire with their leases. Afterwards every
    /// clone of this client is closed: `register`, `watch`, `channel` and the
    /// discovery fail with an error of kind [`ErrorKind::Closed`](crate::ErrorKind::Closed); held [`Registration`]s read
    /// [`Deregistered`](crate::RegistrationStatus::Deregistered), and their
    /// `deregister()` returns `Ok` at once. Calling it again is harmless.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> octopus::Result<()> {
    /// let client = octopus::connect("mem://shutdown-doc").await?;
    /// let reg = client.register(octopus::ServiceInstance::new("users", "u1", "127.0.0.1", 8080)?).await?;
    /// drop(reg); // deregisters in the background…
    /// client.shutdown().await?; // …and this waits for it
    /// assert!(client.inspector().services().await?.is_empty());
    /// assert!(client.watch("users").await.is_err(), "closed");
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> Result<()> {
        let result = self.registry.shutdown().await;
        self.discovery.close();
        result
    }

    /// A balanced channel to the instances `target` selects, that every
    /// tonic-generated client accepts. The target is a value
    /// ([`Target::for_service`](crate::Target::for_service)) or text: with a scheme
    /// (`etcd:///user-service?version=v1`, which must be this client's), or
    /// without (`user-service?version=v1`: this client's discovery). It follows
    /// discovery by itself. Connections are plain TCP; see [`Client::channel_to`]
    /// for another connector and more settings.
    ///
    /// A call made before discovery's first answer (right after this returns)
    /// waits for it, as gRPC waits for its resolver, up to the call's deadline
    /// (`grpc-timeout`, set by `tonic::Request::set_timeout`) or else
    /// [`ChannelBuilder::first_answer_timeout`](crate::grpc::ChannelBuilder::first_answer_timeout)
    /// (10 s by default); after that answer, a call with no instance to go to
    /// fails at once with `Unavailable`.
    #[cfg(feature = "grpc")]
    pub async fn channel(
        &self,
        target: impl crate::IntoTarget,
        policy: crate::grpc::Policy,
    ) -> Result<crate::grpc::BalancedChannel> {
        self.channel_to(target).policy(policy).connect().await
    }

    /// A channel to `target` with more settings: connector, random source, how
    /// long a first call waits for discovery (see [`ChannelBuilder`](crate::grpc::ChannelBuilder)).
    #[cfg(feature = "grpc")]
    pub fn channel_to(&self, target: impl crate::IntoTarget) -> crate::grpc::ChannelBuilder {
        crate::grpc::ChannelBuilder::new(self.resolvers(), self.scheme(), target)
    }

    /// The URL's scheme (`mem`, `etcd`): targets without a scheme resolve here.
    pub fn scheme(&self) -> &str {
        &self.url.scheme
    }

    /// A resolver table that maps this client's scheme to its discovery, so that
    /// targets like `mem:///users?version=v1` resolve.
    pub fn resolvers(&self) -> Resolvers {
        let mut r = Resolvers::default();
        r.insert(&self.url.scheme, DiscoveryResolver::new(self.discovery.clone()));
        r
    }
}

#[cfg(all(test, feature = "mem"))]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn layout_and_parameters_from_the_url() {
        let client = connect("mem://layouts?layout=kratos&ttl=3s").await.unwrap();
        assert_eq!(client.register_options().lease_ttl(), std::time::Duration::from_secs(3));
        let reg = client
            .register(ServiceInstance::new("hello", "h1", "127.0.0.1", 9000).unwrap())
            .await
            .unwrap();
        let store = crate::mem_store("layouts");
        let (_, kvs, _) = store
            .range(&octopus_mem::KeyRange::prefix("/microservices/hello/"), 0, 0)
            .unwrap();
        assert_eq!(kvs.len(), 1, "written in kratos's layout");
        reg.deregister().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_urls_name_the_problem() {
        for (url, why) in [
            ("mem://?layout=zookeeper", "unknown layout \"zookeeper\""),
            ("mem://?namespace=prod", "namespace"),
            ("mem://?ttl=1ms", "ttl"),
            ("mem://?retry_interval=5s&retry_cap=1s", "retry_cap"),
            ("mem://?colour=blue", "unknown parameter \"colour\""),
            ("mem://?ca_file=ca.pem", "parameter ca_file is only for etcd://"),
            (
                "mem://?user=u&password=p",
                "parameters user, password are only for etcd://",
            ),
            ("mem://?shared_lease=yes", "shared_lease=\"yes\" must be true or false"),
            ("zk://127.0.0.1:2181", "unknown scheme `zk`"),
            #[cfg(feature = "etcd")]
            (
                "etcd://127.0.0.1:2379?connect_timeout=18446744073709551615",
                "connect_timeout=\"18446744073709551615\" must be from 1ms to 1h",
            ),
            #[cfg(feature = "etcd")]
            (
                "etcd://127.0.0.1:2379?request_timeout=0",
                "request_timeout=\"0\" must be from 1ms to 1h",
            ),
            #[cfg(feature = "etcd")]
            (
                "etcd://127.0.0.1:2379?ca_file=/nonexistent/ca.pem",
                "ca_file: cannot read \"/nonexistent/ca.pem\"",
            ),
            #[cfg(feature = "etcd")]
            ("etcd://127.0.0.1:2379?cert_file=Cargo.toml", "TLS needs ca_file"),
            #[cfg(feature = "etcd")]
            (
                "etcd://127.0.0.1:2379?user=u",
                "user= needs a password: password_file=PATH",
            ),
            #[cfg(feature = "etcd")]
            ("etcd://127.0.0.1:2379?password=p", "a password needs user="),
            #[cfg(feature = "etcd")]
            ("etcd://", "at least one etcd endpoint"),
        ] {
            let err = connect(url).await.unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
