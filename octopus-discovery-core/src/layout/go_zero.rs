//! go-zero's etcd publisher layout.

use super::common::{bare_prefix, bare_root, checked, decode_err, leaf, split_endpoint};
use super::validate_namespace;
use crate::{KeyLayout, LeaseId, Result, ServiceInstance, DEFAULT_WEIGHT};

/// go-zero's etcd publisher: `{key}/{leaseID in decimal}` → plain `host:port`.
///
/// The key holds the lease, not the instance id: a decoded instance's id is the
/// lease id in decimal, and version, metadata and weight do not travel.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GoZeroLayout {
    namespace: String,
}

impl GoZeroLayout {
    /// Keys under `namespace` (go-zero's default is none: the key is the service).
    pub fn new(namespace: &str) -> Result<Self> {
        Ok(GoZeroLayout {
            namespace: validate_namespace(namespace)?,
        })
    }
}

impl KeyLayout for GoZeroLayout {
    fn prefix(&self, service: &str) -> String {
        bare_prefix(&self.namespace, service)
    }

    fn root(&self) -> Option<String> {
        bare_root(&self.namespace)
    }

    fn key(&self, instance: &ServiceInstance, lease: LeaseId) -> String {
        format!("{}{}", self.prefix(&instance.service), lease.0)
    }

    fn encode(&self, instance: &ServiceInstance) -> Result<Vec<u8>> {
        instance.validate()?;
        Ok(instance.endpoint().into_bytes())
    }

    fn decode(&self, service: &str, key: &[u8], value: &[u8]) -> Result<ServiceInstance> {
        let id = leaf(key, &self.prefix(service))?;
        let value = std::str::from_utf8(value).map_err(|_| decode_err(key, "value is not UTF-8"))?;
        let (addr, port) =
            split_endpoint(value.trim()).ok_or_else(|| decode_err(key, format!("value {value:?} is not host:port")))?;
        checked(
            key,
            ServiceInstance {
                service: service.to_owned(),
                id: id.to_owned(),
                addr,
                port,
                version: String::new(),
                metadata: crate::Metadata::new(),
                weight: DEFAULT_WEIGHT,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::common::test_instance as inst;

    #[test]
    fn go_zero_round_trip() {
        let l = GoZeroLayout::default();
        let key = l.key(&inst(), LeaseId(7587862322351931146));
        assert_eq!(key, "users/7587862322351931146");
        assert_eq!(l.encode(&inst()).unwrap(), b"127.0.0.1:9000");
        let i = l.decode("users", key.as_bytes(), b"127.0.0.1:9000").unwrap();
        assert_eq!((i.id.as_str(), i.port), ("7587862322351931146", 9000));
        assert!(l.decode("users", b"users/1", b"nonsense").is_err());
    }
}
