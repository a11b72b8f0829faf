//! Resolvers: from a target such as `etcd:///user-service?version=v1` to a watch of
//! its instances, with a scheme table like gRPC's resolver registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Discovery, Error, Result, ServiceWatch, Target};

/// Turns a target into a watch of the instances it selects.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// Follows the instances `target` selects.
    async fn resolve(&self, target: &Target) -> Result<ServiceWatch>;
}

/// Every [`Discovery`] is a resolver: it watches the target's service and applies
/// the target's filters.
#[derive(Clone)]
pub struct DiscoveryResolver(Arc<dyn Discovery>);

impl DiscoveryResolver {
    /// A resolver over `discovery`.
    pub fn new(discovery: Arc<dyn Discovery>) -> Self {
        DiscoveryResolver(discovery)
    }
}

#[async_trait]
impl Resolver for DiscoveryResolver {
    async fn resolve(&self, target: &Target) -> Result<ServiceWatch> {
        Ok(self.0.watch(target.service()).await?.filtered(target.clone()))
    }
}

/// A scheme → resolver table.
///
/// ```
/// # async fn demo(discovery: std::sync::Arc<dyn octopus_discovery_core::Discovery>) -> octopus_discovery_core::Result<()> {
/// use octopus_discovery_core::{DiscoveryResolver, Resolvers};
/// let mut resolvers = Resolvers::default();
/// resolvers.insert("etcd", DiscoveryResolver::new(discovery));
/// let mut watch = resolvers.resolve("etcd:///user-service?version=v1").await?;
/// let snapshot = watch.next().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Resolvers {
    table: BTreeMap<String, Arc<dyn Resolver>>,
}

impl std::fmt::Debug for Resolvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.table.keys()).finish()
    }
}

impl Resolvers {
    /// Routes targets of `scheme` to `resolver`, replacing any earlier one.
    pub fn insert(&mut self, scheme: &str, resolver: impl Resolver + 'static) -> &mut Self {
        self.table.insert(scheme.to_ascii_lowercase(), Arc::new(resolver));
        self
    }

    /// Parses `target` and resolves it with the resolver of its scheme.
    pub async fn resolve(&self, target: &str) -> Result<ServiceWatch> {
        self.resolve_target(&Target::parse(target)?).await
    }

    /// Resolves `target` with the resolver of its scheme.
    pub async fn resolve_target(&self, target: &Target) -> Result<ServiceWatch> {
        let resolver = self.table.get(target.scheme()).ok_or_else(|| {
            Error::unknown_scheme(
                target.scheme(),
                self.table.keys().cloned().collect::<Vec<_>>().join(", "),
            )
        })?;
        resolver.resolve(target).await
    }
}
