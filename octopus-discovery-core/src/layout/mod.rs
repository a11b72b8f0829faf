//! Where an instance lives in the key space and how its value is encoded: the
//! [`KeyLayout`] trait, Octopus's own [`JsonLayout`], and one file per Go
//! framework's layout, so Rust services can join meshes that Go services
//! already run (read and write): [`KratosLayout`], [`EtcdNamingLayout`],
//! [`GoZeroLayout`].

use std::fmt;

mod common;
mod etcd_naming;
mod fast;
mod go_zero;
mod kratos;

pub use etcd_naming::EtcdNamingLayout;
pub use go_zero::GoZeroLayout;
pub use kratos::KratosLayout;

use crate::{Error, LeaseId, Result, ServiceInstance};

/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "/octopus";

/// Maps instances to keys and values and back.
///
/// A layout lets Octopus read and write the keys of other frameworks' meshes;
/// the default is [`JsonLayout`].
pub trait KeyLayout: Send + Sync + fmt::Debug + 'static {
    /// The prefix under which every instance of `service` lives. It ends in `/`,
    /// so that watching `foo` never sees `foobar`.
    fn prefix(&self, service: &str) -> String;

    /// The key of `instance` when held by `lease` (most layouts ignore the lease).
    fn key(&self, instance: &ServiceInstance, lease: LeaseId) -> String;

    /// Encodes the value stored at the instance's key.
    fn encode(&self, instance: &ServiceInstance) -> Result<Vec<u8>>;

    /// Decodes a key and value found under `prefix(service)`. The result is validated.
    fn decode(&self, service: &str, key: &[u8], value: &[u8]) -> Result<ServiceInstance>;

    /// When the value was written (since the Unix epoch), if the layout stamps
    /// it: discovery measures propagation from it. `None` by default.
    fn written_at(&self, value: &[u8]) -> Option<std::time::Duration> {
        let _ = value;
        None
    }

    /// [`decode`](Self::decode) and [`written_at`](Self::written_at) together, for
    /// a live change: a layout that can should read the value once (the default
    /// calls both).
    fn decode_stamped(
        &self,
        service: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(ServiceInstance, Option<std::time::Duration>)> {
        let instance = self.decode(service, key, value)?;
        Ok((instance, self.written_at(value)))
    }

    /// The prefix under which every service lives, when a service's name is the
    /// first path segment after it (so that services can be listed); `None` when
    /// the layout cannot tell (the default).
    fn root(&self) -> Option<String> {
        None
    }
}

/// Encodes `instance` for its key `key` in `layout`, refusing a draining mark
/// the layout cannot carry (go-zero's values are only the address): the mark
/// must decode back, or the write would silently drop it. The one check behind
/// [`Registration::drain`](crate::Registration::drain) and an operator's
/// `octopus drain`.
pub fn encode_with_mark(layout: &dyn KeyLayout, key: &[u8], instance: &ServiceInstance) -> Result<Vec<u8>> {
    let value = layout.encode(instance)?;
    if instance.is_draining() && !layout.decode(&instance.service, key, &value)?.is_draining() {
        return Err(Error::invalid_option(
            "layout",
            format!("{layout:?}"),
            "cannot carry the draining mark: its values hold no metadata",
        ));
    }
    Ok(value)
}

/// Octopus's own layout: `{namespace}/services/{service}/{id}` → JSON [`ServiceInstance`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonLayout {
    namespace: String,
}

impl Default for JsonLayout {
    fn default() -> Self {
        JsonLayout {
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }
}

impl JsonLayout {
    /// A layout under `namespace`, e.g. `/prod`. A trailing `/` is dropped;
    /// the namespace must be empty or start with `/`.
    ///
    /// ```
    /// use octopus_discovery_core::{JsonLayout, KeyLayout};
    /// let layout = JsonLayout::new("/prod/")?;
    /// assert_eq!(layout.prefix("users"), "/prod/services/users/");
    /// assert!(JsonLayout::new("prod").is_err());
    /// # Ok::<(), octopus_discovery_core::Error>(())
    /// ```
    pub fn new(namespace: impl Into<String>) -> Result<Self> {
        let namespace = validate_namespace(&namespace.into())?;
        Ok(JsonLayout { namespace })
    }

    /// The namespace, without a trailing `/`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Checks a namespace (empty, or starting with `/`; printable) and drops trailing slashes.
pub fn validate_namespace(namespace: &str) -> Result<String> {
    let trimmed = namespace.trim_end_matches('/');
    if !(trimmed.is_empty() || trimmed.starts_with('/')) || trimmed.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::option(
            "namespace",
            namespace,
            "must be empty or start with '/', without spaces or control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An instance with the time it was written.
#[derive(serde::Serialize)]
struct Stamped<'a> {
    #[serde(flatten)]
    instance: &'a ServiceInstance,
    #[serde(skip_serializing_if = "Option::is_none")]
    written_at_ms: Option<u64>,
}

impl KeyLayout for JsonLayout {
    fn prefix(&self, service: &str) -> String {
        format!("{}/services/{service}/", self.namespace)
    }

    fn root(&self) -> Option<String> {
        Some(format!("{}/services/", self.namespace))
    }

    fn key(&self, instance: &ServiceInstance, _lease: LeaseId) -> String {
        format!("{}{}", self.prefix(&instance.service), instance.id)
    }

    /// The instance as JSON, plus `written_at_ms`: when it was written (readers
    /// that do not know the field ignore it).
    fn encode(&self, instance: &ServiceInstance) -> Result<Vec<u8>> {
        instance.validate()?;
        let stamped = Stamped {
            instance,
            written_at_ms: crate::clock::wall_now().map(|d| d.as_millis() as u64),
        };
        serde_json::to_vec(&stamped).map_err(|e| Error::invalid_instance("instance", &instance.id, e.to_string()))
    }

    fn written_at(&self, value: &[u8]) -> Option<std::time::Duration> {
        #[derive(serde::Deserialize)]
        struct Stamp {
            written_at_ms: Option<u64>,
        }
        let stamp: Stamp = serde_json::from_slice(value).ok()?;
        stamp.written_at_ms.map(std::time::Duration::from_millis)
    }

    fn decode(&self, service: &str, key: &[u8], value: &[u8]) -> Result<ServiceInstance> {
        self.decode_stamped(service, key, value).map(|(instance, _)| instance)
    }

    fn decode_stamped(
        &self,
        service: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(ServiceInstance, Option<std::time::Duration>)> {
        let decode_err = |reason: String| Error::decode(String::from_utf8_lossy(key), reason);
        // `{namespace}/services/{service}/{id}`, checked piece by piece (no allocation).
        let id = key
            .strip_prefix(self.namespace.as_bytes())
            .and_then(|k| k.strip_prefix(b"/services/"))
            .and_then(|k| k.strip_prefix(service.as_bytes()))
            .and_then(|k| k.strip_prefix(b"/"))
            .ok_or_else(|| decode_err(format!("key is not under {}", self.prefix(service))))?;
        let incoming: Incoming = match fast::decode(value) {
            Some(incoming) => incoming,
            None => serde_json::from_slice(value).map_err(|e| decode_err(format!("not an instance in JSON: {e}")))?,
        };
        let (instance, written_at) = incoming.split();
        if instance.service != service || instance.id.as_bytes() != id {
            return Err(decode_err(format!(
                "value names {}/{}, but the key says {service}/{}",
                instance.service,
                instance.id,
                String::from_utf8_lossy(id)
            )));
        }
        instance
            .validate_decoded(value.len())
            .map_err(|e| decode_err(e.to_string()))?;
        Ok((instance, written_at))
    }
}

/// A stored value: the instance's fields and the stamp, read in one pass. It
/// mirrors [`ServiceInstance`]'s fields and serde defaults (`#[serde(flatten)]`
/// would buffer the whole value first); a test holds the two decodings equal.
#[derive(serde::Deserialize)]
struct Incoming {
    service: String,
    id: String,
    addr: String,
    port: u16,
    #[serde(default)]
    version: String,
    #[serde(default)]
    metadata: crate::Metadata,
    #[serde(default = "crate::instance::default_weight")]
    weight: u32,
    #[serde(default)]
    written_at_ms: Option<u64>,
}

impl Incoming {
    fn split(self) -> (ServiceInstance, Option<std::time::Duration>) {
        let instance = ServiceInstance {
            service: self.service,
            id: self.id,
            addr: self.addr,
            port: self.port,
            version: self.version,
            metadata: self.metadata,
            weight: self.weight,
        };
        (instance, self.written_at_ms.map(std::time::Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_layout_keys_by_service_and_id_and_decodes_what_it_encodes() {
        let layout = JsonLayout::default();
        let i = ServiceInstance::new("users", "a1", "127.0.0.1", 8080)
            .unwrap()
            .with_metadata("zone", "a");
        let key = layout.key(&i, LeaseId(7));
        assert_eq!(key, "/octopus/services/users/a1");
        let value = layout.encode(&i).unwrap();
        assert_eq!(layout.decode("users", key.as_bytes(), &value).unwrap(), i);
    }

    #[test]
    fn one_pass_decode_agrees_with_the_instance_s_own_serde() {
        let layout = JsonLayout::default();
        for value in [
            r#"{"service":"users","id":"a1","addr":"127.0.0.1","port":80}"#,
            r#"{"service":"users","id":"a1","addr":"h","port":1,"version":"v2","metadata":{"z":"a"},"weight":7,"written_at_ms":5}"#,
        ] {
            let ours = layout
                .decode("users", b"/octopus/services/users/a1", value.as_bytes())
                .unwrap();
            let serde: ServiceInstance = serde_json::from_str(value).unwrap();
            assert_eq!(ours, serde);
        }
        let (_, stamp) = layout
            .decode_stamped(
                "users",
                b"/octopus/services/users/a1",
                br#"{"service":"users","id":"a1","addr":"h","port":1,"written_at_ms":5}"#,
            )
            .unwrap();
        assert_eq!(stamp, Some(std::time::Duration::from_millis(5)));
    }

    #[test]
    fn decode_rejects_mismatch_and_garbage() {
        let layout = JsonLayout::default();
        let i = ServiceInstance::new("users", "a1", "127.0.0.1", 8080).unwrap();
        let value = layout.encode(&i).unwrap();
        let err = layout
            .decode("users", b"/octopus/services/users/other", &value)
            .unwrap_err();
        assert!(err.to_string().contains("but the key says users/other"), "{err}");
        let err = layout
            .decode("users", b"/octopus/services/users/a1", b"{nope")
            .unwrap_err();
        assert!(err.to_string().contains("not an instance in JSON"), "{err}");
        let bad_port = br#"{"service":"users","id":"a1","addr":"h","port":0}"#;
        let err = layout
            .decode("users", b"/octopus/services/users/a1", bad_port)
            .unwrap_err();
        assert!(err.to_string().contains("invalid port"), "{err}");
    }

    #[test]
    fn namespace_rules() {
        assert_eq!(JsonLayout::new("").unwrap().prefix("s"), "/services/s/");
        assert_eq!(JsonLayout::new("/a/b//").unwrap().namespace(), "/a/b");
        let err = JsonLayout::new("a b").unwrap_err().to_string();
        assert!(err.contains("namespace") && err.contains("start with '/'"), "{err}");
    }
}
