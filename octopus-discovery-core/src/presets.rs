//! Key layouts of other frameworks, so Rust services can join meshes that Go
//! services already run: read and write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layout::validate_namespace;
use crate::{Error, KeyLayout, LeaseId, Result, ServiceInstance, DEFAULT_WEIGHT};

fn decode_err(key: &[u8], reason: impl Into<String>) -> Error {
    Error::decode(String::from_utf8_lossy(key), reason.into())
}

/// Splits `host:port` (IPv6 in brackets) into host and port.
fn split_endpoint(endpoint: &str) -> Option<(String, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host.to_owned(), port.parse().ok()?))
}

/// An id made of an endpoint: `127.0.0.1:80` → `127.0.0.1_80` (ids allow no `:`).
fn endpoint_id(endpoint: &str) -> String {
    endpoint
        .chars()
        .filter(|c| !matches!(c, '[' | ']'))
        .map(|c| if c == ':' { '_' } else { c })
        .collect()
}

/// `{namespace}/{service}/`, or `{service}/` without a namespace (Go frameworks use
/// the bare service name as the key's root).
fn bare_prefix(namespace: &str, service: &str) -> String {
    if namespace.is_empty() {
        format!("{service}/")
    } else {
        format!("{namespace}/{service}/")
    }
}

fn checked(key: &[u8], instance: ServiceInstance) -> Result<ServiceInstance> {
    instance.validate().map_err(|e| decode_err(key, e.to_string()))?;
    Ok(instance)
}

/// The last segment of `key` under `prefix`, if the key is directly under it.
fn leaf<'a>(key: &'a [u8], prefix: &str) -> Result<&'a str> {
    let rest = key
        .strip_prefix(prefix.as_bytes())
        .ok_or_else(|| decode_err(key, format!("key is not under {prefix}")))?;
    let rest = std::str::from_utf8(rest).map_err(|_| decode_err(key, "key is not UTF-8"))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(decode_err(key, format!("expected one segment after {prefix}")));
    }
    Ok(rest)
}

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
        // Without a namespace the services are the top of the key space: not listable.
        (!self.namespace.is_empty()).then(|| format!("{}/", self.namespace))
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
        // Without a namespace the services are the top of the key space: not listable.
        (!self.namespace.is_empty()).then(|| format!("{}/", self.namespace))
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

    fn inst() -> ServiceInstance {
        ServiceInstance::new("users", "u1", "127.0.0.1", 9000)
            .unwrap()
            .with_version("v1")
            .with_metadata("zone", "a")
    }

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
