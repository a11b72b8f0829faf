//! go-kratos's etcd registry layout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{checked, decode_err, leaf, split_endpoint};
use super::validate_namespace;
use crate::{Error, KeyLayout, LeaseId, Result, ServiceInstance, DEFAULT_WEIGHT};

/// go-kratos's etcd registry: `/microservices/{name}/{id}` →
/// `{"id","name","version","metadata","endpoints":["grpc://host:port"]}`.
///
/// kratos has no weight: Octopus writes a weight other than the default as
/// metadata `weight`, and reads it back from there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KratosLayout {
    namespace: String,
    scheme: String,
}

impl Default for KratosLayout {
    fn default() -> Self {
        KratosLayout {
            namespace: "/microservices".into(),
            scheme: "grpc".into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KratosValue {
    id: String,
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    endpoints: Vec<String>,
}

impl KratosLayout {
    /// Under `namespace` (kratos's default is `/microservices`), endpoints as `scheme://`.
    pub fn new(namespace: &str, scheme: &str) -> Result<Self> {
        Ok(KratosLayout {
            namespace: validate_namespace(namespace)?,
            scheme: scheme.to_owned(),
        })
    }
}

impl KeyLayout for KratosLayout {
    fn prefix(&self, service: &str) -> String {
        format!("{}/{service}/", self.namespace)
    }

    fn root(&self) -> Option<String> {
        Some(format!("{}/", self.namespace))
    }

    fn key(&self, instance: &ServiceInstance, _lease: LeaseId) -> String {
        format!("{}{}", self.prefix(&instance.service), instance.id)
    }

    fn encode(&self, instance: &ServiceInstance) -> Result<Vec<u8>> {
        instance.validate()?;
        let mut metadata = instance.metadata.clone();
        if instance.weight != DEFAULT_WEIGHT {
            metadata.insert("weight", instance.weight.to_string());
        }
        let value = KratosValue {
            id: instance.id.clone(),
            name: instance.service.clone(),
            version: instance.version.clone(),
            metadata: Some(metadata.into()),
            endpoints: vec![format!("{}://{}", self.scheme, instance.endpoint())],
        };
        serde_json::to_vec(&value).map_err(|e| Error::backend("encode", e))
    }

    fn decode(&self, service: &str, key: &[u8], value: &[u8]) -> Result<ServiceInstance> {
        let id = leaf(key, &self.prefix(service))?;
        let v: KratosValue =
            serde_json::from_slice(value).map_err(|e| decode_err(key, format!("not a kratos instance: {e}")))?;
        if v.name != service || v.id != id {
            return Err(decode_err(
                key,
                format!("value names {}/{}, the key says {service}/{id}", v.name, v.id),
            ));
        }
        let wanted = format!("{}://", self.scheme);
        let endpoint = v
            .endpoints
            .iter()
            .find_map(|e| e.strip_prefix(&wanted))
            .ok_or_else(|| decode_err(key, format!("no {wanted} endpoint in {:?}", v.endpoints)))?;
        let (addr, port) = split_endpoint(endpoint.trim_end_matches('/').split('?').next().unwrap_or(""))
            .ok_or_else(|| decode_err(key, format!("endpoint {endpoint:?} is not host:port")))?;
        let mut metadata = v.metadata.unwrap_or_default();
        let weight = match metadata.remove("weight") {
            Some(w) => w
                .parse()
                .map_err(|_| decode_err(key, format!("metadata weight {w:?} is not a number")))?,
            None => DEFAULT_WEIGHT,
        };
        checked(
            key,
            ServiceInstance {
                service: v.name,
                id: v.id,
                addr,
                port,
                version: v.version,
                metadata: metadata.into(),
                weight,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::common::test_instance as inst;

    #[test]
    fn kratos_round_trip_and_go_format() {
        let l = KratosLayout::default();
        let key = l.key(&inst(), LeaseId(1));
        assert_eq!(key, "/microservices/users/u1");
        let v = l.encode(&inst().with_weight(5)).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(json["endpoints"][0], "grpc://127.0.0.1:9000");
        assert_eq!(l.decode("users", key.as_bytes(), &v).unwrap(), inst().with_weight(5));
        let go = br#"{"id":"u2","name":"users","version":"v2","metadata":null,"endpoints":["http://h:1","grpc://127.0.0.7:9001"]}"#;
        let i = l.decode("users", b"/microservices/users/u2", go).unwrap();
        assert_eq!((i.addr.as_str(), i.port, i.version.as_str()), ("127.0.0.7", 9001, "v2"));
    }
}
