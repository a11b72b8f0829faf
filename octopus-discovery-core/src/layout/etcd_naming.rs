//! grpc-go's etcd naming layout (the `etcd:///` resolver).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{bare_prefix, bare_root, checked, decode_err, endpoint_id, leaf, split_endpoint};
use super::validate_namespace;
use crate::{Error, KeyLayout, LeaseId, Result, ServiceInstance, DEFAULT_WEIGHT};

/// grpc-go's etcd naming (`go.etcd.io/etcd/client/v3/naming`, the `etcd:///` resolver):
/// `{target}/{host:port}` → `{"Op":0,"Addr":"host:port","Metadata":null,"Octopus":{…}}`.
///
/// **`Metadata` is written as `null`.** grpc-go's etcd resolver copies `Metadata`
/// into `resolver.Address.Metadata`, and grpc-go's `round_robin` keys a map by
/// the address: a JSON object there is a Go map, which is unhashable, and the
/// balancer panics (etcd-io/etcd#19700, grpc/grpc-go#8225). `null` is safe with
/// every grpc-go version and every balancer. The instance's id, version,
/// metadata and weight travel instead in an `Octopus` object beside the fields
/// grpc-go reads, which Go's JSON decoding ignores:
/// `"Octopus":{"id":"…","version":"…","metadata":{…},"weight":100}`.
///
/// Reading takes every form Go writes: `Metadata` as an object of strings (its
/// entries become metadata; other values are skipped), as a string, number or
/// boolean (kept as metadata `Metadata`), or null; the `Octopus` object, when
/// present, wins. Without it the id is the address with `:` as `_`
/// (`127.0.0.1_50051`), since ids allow no `:`.
///
/// What the layout cannot carry: two instances on one address (the key is the
/// address, so they are one entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdNamingLayout {
    namespace: String,
}

#[derive(Serialize, Deserialize)]
struct NamingValue {
    #[serde(rename = "Op", default)]
    op: u8,
    #[serde(rename = "Addr")]
    addr: String,
    #[serde(rename = "Metadata", default)]
    metadata: serde_json::Value,
    #[serde(rename = "Octopus", default, skip_serializing_if = "Option::is_none")]
    octopus: Option<NamingExtra>,
}

/// What grpc-go's naming value has no field for.
#[derive(Serialize, Deserialize)]
struct NamingExtra {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

impl EtcdNamingLayout {
    /// Targets under `namespace` (empty: the service name is the whole target).
    pub fn new(namespace: &str) -> Result<Self> {
        Ok(EtcdNamingLayout {
            namespace: validate_namespace(namespace)?,
        })
    }
}

impl KeyLayout for EtcdNamingLayout {
    fn prefix(&self, service: &str) -> String {
        bare_prefix(&self.namespace, service)
    }

    fn root(&self) -> Option<String> {
        bare_root(&self.namespace)
    }

    fn key(&self, instance: &ServiceInstance, _lease: LeaseId) -> String {
        format!("{}{}", self.prefix(&instance.service), instance.endpoint())
    }

    fn encode(&self, instance: &ServiceInstance) -> Result<Vec<u8>> {
        instance.validate()?;
        let value = NamingValue {
            op: 0,
            addr: instance.endpoint(),
            metadata: serde_json::Value::Null,
            octopus: Some(NamingExtra {
                id: Some(instance.id.clone()),
                version: instance.version.clone(),
                metadata: instance.metadata.clone().into(),
                weight: instance.weight,
            }),
        };
        serde_json::to_vec(&value).map_err(|e| Error::backend("encode", e))
    }

    fn decode(&self, service: &str, key: &[u8], value: &[u8]) -> Result<ServiceInstance> {
        let endpoint = leaf(key, &self.prefix(service))?;
        let v: NamingValue =
            serde_json::from_slice(value).map_err(|e| decode_err(key, format!("not an etcd naming endpoint: {e}")))?;
        if v.op != 0 {
            return Err(decode_err(key, format!("Op {} is not Add (0)", v.op)));
        }
        let (addr, port) =
            split_endpoint(&v.addr).ok_or_else(|| decode_err(key, format!("Addr {:?} is not host:port", v.addr)))?;
        let instance = match v.octopus {
            Some(extra) => ServiceInstance {
                service: service.to_owned(),
                id: extra.id.unwrap_or_else(|| endpoint_id(endpoint)),
                addr,
                port,
                version: extra.version,
                metadata: extra.metadata.into(),
                weight: extra.weight,
            },
            None => {
                // Written by Go (or by Octopus before the Octopus object).
                let metadata: BTreeMap<String, String> = match v.metadata {
                    serde_json::Value::Object(map) => map
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            serde_json::Value::String(s) => Some((k, s)),
                            _ => None,
                        })
                        .collect(),
                    serde_json::Value::Null => BTreeMap::new(),
                    serde_json::Value::String(s) => BTreeMap::from([("Metadata".to_owned(), s)]),
                    other @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                        BTreeMap::from([("Metadata".to_owned(), other.to_string())])
                    }
                    serde_json::Value::Array(_) => BTreeMap::new(),
                };
                ServiceInstance {
                    service: service.to_owned(),
                    id: endpoint_id(endpoint),
                    addr,
                    port,
                    version: metadata.get("version").cloned().unwrap_or_default(),
                    metadata: metadata.into(),
                    weight: DEFAULT_WEIGHT,
                }
            }
        };
        checked(key, instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::common::test_instance as inst;

    #[test]
    fn etcd_naming_round_trip() {
        let l = EtcdNamingLayout::new("").unwrap();
        let key = l.key(&inst(), LeaseId(1));
        assert_eq!(key, "users/127.0.0.1:9000");
        assert_eq!(EtcdNamingLayout::new("/ns").unwrap().prefix("users"), "/ns/users/");
        let v = l.encode(&inst()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(
            (json["Op"].as_u64(), json["Addr"].as_str()),
            (Some(0), Some("127.0.0.1:9000"))
        );
        // Metadata null: grpc-go's round_robin hashes it (a JSON object panics it).
        assert!(json["Metadata"].is_null(), "{json}");
        // Every field round-trips through the Octopus object.
        let full = inst().with_weight(7).with_metadata("region", "eu");
        let back = l.decode("users", key.as_bytes(), &l.encode(&full).unwrap()).unwrap();
        assert_eq!(back, full);
        assert_eq!(l.decode("users", key.as_bytes(), &v).unwrap(), inst());
        // What Go writes: Metadata as an object, a string, a number, or nothing.
        for (go, id, metadata) in [
            (
                &br#"{"Op":0,"Addr":"127.0.0.1:9000","Metadata":{"zone":"b","n":1}}"#[..],
                "127.0.0.1_9000",
                vec![("zone", "b")],
            ),
            (
                br#"{"Op":0,"Addr":"127.0.0.1:9000","Metadata":"blue"}"#,
                "127.0.0.1_9000",
                vec![("Metadata", "blue")],
            ),
            (
                br#"{"Op":0,"Addr":"127.0.0.1:9000","Metadata":3}"#,
                "127.0.0.1_9000",
                vec![("Metadata", "3")],
            ),
            (
                br#"{"Op":0,"Addr":"127.0.0.1:9000","Metadata":null}"#,
                "127.0.0.1_9000",
                vec![],
            ),
            (br#"{"Op":0,"Addr":"127.0.0.1:9000"}"#, "127.0.0.1_9000", vec![]),
        ] {
            let i = l.decode("users", key.as_bytes(), go).unwrap();
            assert_eq!(i.id, id);
            let got: Vec<(&str, &str)> = i.metadata.iter().collect();
            assert_eq!(got, metadata, "{}", String::from_utf8_lossy(go));
            assert_eq!(i.weight, DEFAULT_WEIGHT);
        }
        let v6 = l
            .decode("users", b"users/[::1]:80", br#"{"Op":0,"Addr":"[::1]:80"}"#)
            .unwrap();
        assert_eq!((v6.addr.as_str(), v6.id.as_str()), ("::1", "__1_80"));
        assert!(l.decode("users", b"users/h:1", br#"{"Op":1,"Addr":"h:1"}"#).is_err());
    }
}
