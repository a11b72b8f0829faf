//! What the Go frameworks' layouts share: endpoints as `host:port`, ids made
//! of endpoints, keys one segment under a prefix, and decode errors naming the key.

use crate::{Error, Result, ServiceInstance};

pub(super) fn decode_err(key: &[u8], reason: impl Into<String>) -> Error {
    Error::decode(String::from_utf8_lossy(key), reason.into())
}

/// Splits `host:port` (IPv6 in brackets) into host and port.
pub(super) fn split_endpoint(endpoint: &str) -> Option<(String, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host.to_owned(), port.parse().ok()?))
}

/// An id made of an endpoint: `127.0.0.1:80` → `127.0.0.1_80` (ids allow no `:`).
pub(super) fn endpoint_id(endpoint: &str) -> String {
    endpoint
        .chars()
        .filter(|c| !matches!(c, '[' | ']'))
        .map(|c| if c == ':' { '_' } else { c })
        .collect()
}

/// `{namespace}/{service}/`, or `{service}/` without a namespace (Go frameworks use
/// the bare service name as the key's root).
pub(super) fn bare_prefix(namespace: &str, service: &str) -> String {
    if namespace.is_empty() {
        format!("{service}/")
    } else {
        format!("{namespace}/{service}/")
    }
}

/// The listable root of a layout whose keys sit right under the namespace:
/// none without a namespace (the services are then the top of the key space).
pub(super) fn bare_root(namespace: &str) -> Option<String> {
    (!namespace.is_empty()).then(|| format!("{namespace}/"))
}

pub(super) fn checked(key: &[u8], instance: ServiceInstance) -> Result<ServiceInstance> {
    instance.validate().map_err(|e| decode_err(key, e.to_string()))?;
    Ok(instance)
}

/// The last segment of `key` under `prefix`, if the key is directly under it.
pub(super) fn leaf<'a>(key: &'a [u8], prefix: &str) -> Result<&'a str> {
    let rest = key
        .strip_prefix(prefix.as_bytes())
        .ok_or_else(|| decode_err(key, format!("key is not under {prefix}")))?;
    let rest = std::str::from_utf8(rest).map_err(|_| decode_err(key, "key is not UTF-8"))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(decode_err(key, format!("expected one segment after {prefix}")));
    }
    Ok(rest)
}

/// The instance the layouts' tests encode.
#[cfg(test)]
pub(super) fn test_instance() -> ServiceInstance {
    ServiceInstance::new("users", "u1", "127.0.0.1", 9000)
        .unwrap()
        .with_version("v1")
        .with_metadata("zone", "a")
}
