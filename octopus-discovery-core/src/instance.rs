use crate::Metadata;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest service name or instance id, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Most metadata entries an instance may carry.
pub const MAX_METADATA_ENTRIES: usize = 256;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 256;
/// Largest encoded instance, in bytes: far below etcd's default request limit (1.5 MiB),
/// so a registration never fails on the wire for its size.
pub const MAX_ENCODED_LEN: usize = 64 * 1024;

/// The most that encoding a decoded instance can add to the value it came from:
/// the fields a value may leave out, written back with their longest values
/// (`,"version":""`, `,"metadata":{}`, `,"weight":4294967295`: 47 bytes).
const OMITTED_MAX: usize = 64;
/// Largest weight; keeps the sum of many weights far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Weight of an instance that does not say.
pub const DEFAULT_WEIGHT: u32 = 100;
/// The metadata entry that marks an instance as draining (value `true`): still
/// registered and listed, but balancers send it no new calls (see
/// [`ServiceInstance::is_draining`]). Metadata, so that every layout that carries
/// metadata carries the mark, and a foreign reader sees it as a label.
pub const DRAINING_KEY: &str = "octopus.draining";

/// One running instance of a service: where it listens and what it says about itself.
///
/// Build one with [`ServiceInstance::new`], which validates, and the `with_*` methods.
/// The fields are public for reading and for serde; a registry validates again
/// before it writes, so a hand-built invalid instance is an error, never a bad key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// Service name: 1..=128 characters of `[A-Za-z0-9._-]`.
    pub service: String,
    /// Instance id, unique within the service: same rule as the name.
    pub id: String,
    /// Host name or IP address the instance listens on.
    pub addr: String,
    /// Port, 1..=65535.
    pub port: u16,
    /// Free-form version, matched by `?version=` in targets.
    #[serde(default)]
    pub version: String,
    /// Free-form labels (zone, protocol…), matched by other target filters.
    #[serde(default)]
    pub metadata: Metadata,
    /// Relative weight for the `weighted` balancer policy; 0 takes no traffic.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

pub(crate) fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

impl ServiceInstance {
    /// A validated instance of `service` with id `id` listening on `addr:port`.
    ///
    /// ```
    /// use octopus_discovery_core::ServiceInstance;
    /// let i = ServiceInstance::new("user-service", "instance-001", "127.0.0.1", 50051)?
    ///     .with_version("v1.0.0")
    ///     .with_metadata("zone", "a");
    /// assert_eq!(i.endpoint(), "127.0.0.1:50051");
    /// assert!(ServiceInstance::new("user/service", "x", "127.0.0.1", 1).is_err());
    /// # Ok::<(), octopus_discovery_core::Error>(())
    /// ```
    pub fn new(service: impl Into<String>, id: impl Into<String>, addr: impl Into<String>, port: u16) -> Result<Self> {
        let instance = ServiceInstance {
            service: service.into(),
            id: id.into(),
            addr: addr.into(),
            port,
            version: String::new(),
            metadata: Metadata::new(),
            weight: DEFAULT_WEIGHT,
        };
        instance.validate()?;
        Ok(instance)
    }

    /// Sets the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Marks the instance draining (or serving again): see [`DRAINING_KEY`].
    pub fn with_draining(mut self, draining: bool) -> Self {
        if draining {
            self.metadata.insert(DRAINING_KEY, "true");
        } else {
            self.metadata.remove(DRAINING_KEY);
        }
        self
    }

    /// Whether the instance is marked draining: balancers send it no new calls
    /// while another instance can take them, and its server's gRPC health says
    /// `NOT_SERVING`. Operators mark it with `octopus drain SERVICE/ID`, a process
    /// with [`Registration::drain`](crate::Registration::drain).
    pub fn is_draining(&self) -> bool {
        self.metadata.get(DRAINING_KEY) == Some("true")
    }

    /// The instance's zone: its `zone` metadata entry, if any (zone-aware
    /// balancing prefers instances in the caller's zone).
    pub fn zone(&self) -> Option<&str> {
        self.metadata.get("zone")
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// `addr:port`, with an IPv6 address in brackets: what a client dials.
    pub fn endpoint(&self) -> String {
        match self.addr.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.addr, self.port),
            _ => format!("{}:{}", self.addr, self.port),
        }
    }

    /// Checks every field against its rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<()> {
        self.validate_fields()?;
        self.validate_metadata(true)
    }

    /// [`validate`](Self::validate) for an instance decoded from `encoded` bytes
    /// of JSON (Octopus's own layout). The size rule is then checked on the
    /// value's length, without walking every string: re-encoded, each string
    /// takes at most the bytes it took in the value (serde_json escapes only
    /// what JSON requires, and as short as it can), each number the same, and
    /// the fields a value may leave out (version, metadata, weight) at most
    /// [`OMITTED_MAX`] more. Only a value longer than that margin allows is
    /// measured as `validate` measures it.
    pub(crate) fn validate_decoded(&self, encoded: usize) -> Result<()> {
        self.validate_fields()?;
        self.validate_metadata(encoded + OMITTED_MAX > MAX_ENCODED_LEN)
    }

    /// Every rule but the metadata's.
    fn validate_fields(&self) -> Result<()> {
        validate_name("service", &self.service)?;
        validate_name("id", &self.id)?;
        validate_addr(&self.addr)?;
        if self.port == 0 {
            return Err(Error::invalid_instance("port", "0", "must be in 1..=65535"));
        }
        if self.version.chars().count() > MAX_NAME_LEN || self.version.chars().any(char::is_control) {
            return Err(Error::invalid_instance(
                "version",
                &self.version,
                format!("must be at most {MAX_NAME_LEN} characters without control characters"),
            ));
        }
        if self.weight > MAX_WEIGHT {
            return Err(Error::invalid_instance(
                "weight",
                self.weight.to_string(),
                format!("must be at most {MAX_WEIGHT}"),
            ));
        }
        Ok(())
    }

    /// The metadata's rules, and the size rule when `measure` says that it
    /// must be measured.
    fn validate_metadata(&self, measure: bool) -> Result<()> {
        if self.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(Error::invalid_instance(
                "metadata",
                format!("{} entries", self.metadata.len()),
                format!("must have at most {MAX_METADATA_ENTRIES} entries"),
            ));
        }
        for key in self.metadata.keys() {
            if key.is_empty() || key.len() > MAX_METADATA_KEY_LEN || key.chars().any(char::is_control) {
                return Err(Error::invalid_instance(
                    "metadata key",
                    key,
                    format!("must be 1..={MAX_METADATA_KEY_LEN} bytes without control characters"),
                ));
            }
        }
        if !measure {
            return Ok(());
        }
        let size = self.json_len();
        if size > MAX_ENCODED_LEN {
            return Err(Error::invalid_instance(
                "metadata",
                format!("{size} bytes encoded"),
                format!("the encoded instance must be at most {MAX_ENCODED_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

impl ServiceInstance {
    /// The length of `serde_json::to_vec(self)`, computed without serializing, so
    /// that validating before every write does not encode twice.
    pub(crate) fn json_len(&self) -> usize {
        fn string(s: &str) -> usize {
            2 + s
                .chars()
                .map(|c| match c {
                    '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
                    c if (c as u32) < 0x20 => 6,
                    c => c.len_utf8(),
                })
                .sum::<usize>()
        }
        fn digits(mut n: u64) -> usize {
            let mut d = 1;
            while n >= 10 {
                n /= 10;
                d += 1;
            }
            d
        }
        let metadata: usize = self
            .metadata
            .iter()
            .map(|(k, v)| string(k) + 1 + string(v))
            .sum::<usize>()
            + self.metadata.len().saturating_sub(1); // commas
                                                     // {"service":…,"id":…,"addr":…,"port":…,"version":…,"metadata":{…},"weight":…}
        let keys = r#"{"service":,"id":,"addr":,"port":,"version":,"metadata":{},"weight":}"#.len();
        keys + string(&self.service)
            + string(&self.id)
            + string(&self.addr)
            + digits(u64::from(self.port))
            + string(&self.version)
            + metadata
            + digits(u64::from(self.weight))
    }
}

/// Checks a service name or instance id: 1..=128 characters of `[A-Za-z0-9._-]`.
///
/// `/` is refused because it would escape the key layout (`foo/bar` would read as
/// an instance of `foo`).
pub fn validate_name(field: &'static str, value: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.is_empty() || value.len() > MAX_NAME_LEN || !value.chars().all(ok_char) {
        return Err(Error::invalid_instance(
            field,
            value,
            format!("must be 1..={MAX_NAME_LEN} characters of [A-Za-z0-9._-]"),
        ));
    }
    Ok(())
}

fn validate_addr(addr: &str) -> Result<()> {
    if addr.parse::<IpAddr>().is_ok() || is_hostname(addr) {
        return Ok(());
    }
    Err(Error::invalid_instance(
        "addr",
        addr,
        "must be an IP address or a host name (labels of 1..=63 [A-Za-z0-9-], not starting or ending with '-', 253 characters at most)",
    ))
}

fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ServiceInstance {
        ServiceInstance::new("svc", "id-1", "127.0.0.1", 80).unwrap()
    }

    #[test]
    fn accepts_good_input() {
        for addr in ["127.0.0.1", "::1", "localhost", "a-b.example.com", "host."] {
            ServiceInstance::new("a.b_c-D9", "x", addr, 1).unwrap();
        }
        ServiceInstance::new("s".repeat(128), "x", "h", 65535).unwrap();
    }

    #[test]
    fn errors_name_field_and_rule() {
        let cases: Vec<(ServiceInstance, &str)> = vec![
            (
                ServiceInstance {
                    service: "a/b".into(),
                    ..ok()
                },
                "invalid service \"a/b\": must be 1..=128 characters",
            ),
            (
                ServiceInstance {
                    service: String::new(),
                    ..ok()
                },
                "invalid service",
            ),
            (
                ServiceInstance {
                    service: "s".repeat(129),
                    ..ok()
                },
                "invalid service",
            ),
            (
                ServiceInstance {
                    id: "é".into(), ..ok()
                },
                "invalid id",
            ),
            (
                ServiceInstance {
                    addr: "-bad-.com".into(),
                    ..ok()
                },
                "invalid addr \"-bad-.com\"",
            ),
            (
                ServiceInstance {
                    addr: "".into(),
                    ..ok()
                },
                "invalid addr",
            ),
            (
                ServiceInstance {
                    addr: "1.2.3.4:80".into(),
                    ..ok()
                },
                "invalid addr",
            ),
            (
                ServiceInstance { port: 0, ..ok() },
                "invalid port \"0\": must be in 1..=65535",
            ),
            (
                ServiceInstance {
                    weight: MAX_WEIGHT + 1,
                    ..ok()
                },
                "invalid weight",
            ),
            (ok().with_metadata("", "v"), "invalid metadata key"),
            (
                ok().with_metadata("k", "x".repeat(MAX_ENCODED_LEN)),
                "invalid metadata \"",
            ),
            (ok().with_version("v\n1"), "invalid version"),
        ];
        for (instance, want) in cases {
            let err = instance.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let err = ServiceInstance {
            id: "x".repeat(10_000),
            ..ok()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.len() < 300, "{err}");
        assert!(err.contains("10000 bytes"));
    }

    #[test]
    fn endpoint_brackets_ipv6() {
        let i = ServiceInstance::new("s", "i", "::1", 9).unwrap();
        assert_eq!(i.endpoint(), "[::1]:9");
    }

    proptest::proptest! {
        #[test]
        fn json_len_matches_serde(
            service in "[a-z]{1,8}",
            version in "\\PC{0,12}",
            port in 1u16..,
            weight in 0u32..=MAX_WEIGHT,
            metadata in proptest::collection::btree_map("\\PC{1,6}|[\"\\\\\u{1}\n]{1,3}", "\\PC{0,6}|[\"\\\\\u{7}\u{1f}\t]{0,3}", 0..5),
        ) {
            let i = ServiceInstance { service, id: "i".into(), addr: "h".into(), port, version, metadata: metadata.into(), weight };
            proptest::prop_assert_eq!(i.json_len(), serde_json::to_vec(&i).unwrap().len());
        }

        /// The margin `validate_decoded` relies on: an instance encodes to at
        /// most `OMITTED_MAX` bytes more than the shortest value it decodes
        /// from (its own encoding without the fields that hold their defaults).
        #[test]
        fn an_instance_encodes_within_the_margin_of_its_shortest_value(
            version in "|\\PC{0,12}",
            weight in proptest::sample::select(vec![DEFAULT_WEIGHT, 0, MAX_WEIGHT, 7]),
            metadata in proptest::collection::btree_map("\\PC{1,6}|[\"\\\\\u{1}\n]{1,3}", "\\PC{0,6}|[\"\\\\\u{7}\u{1f}\t]{0,3}", 0..3),
        ) {
            let i = ServiceInstance { service: "s".into(), id: "i".into(), addr: "h".into(), port: 1, version, metadata: metadata.into(), weight };
            let mut value = serde_json::to_value(&i).unwrap();
            let fields = value.as_object_mut().unwrap();
            fields.retain(|name, v| match name.as_str() {
                "version" => v != "",
                "metadata" => v.as_object().is_some_and(|m| !m.is_empty()),
                "weight" => *v != DEFAULT_WEIGHT,
                _ => true,
            });
            let shortest = serde_json::to_vec(&value).unwrap();
            proptest::prop_assert_eq!(&serde_json::from_slice::<ServiceInstance>(&shortest).unwrap(), &i);
            proptest::prop_assert!(i.json_len() <= shortest.len() + OMITTED_MAX);
        }
    }

    #[test]
    fn a_decoded_instance_near_the_size_limit_is_measured() {
        let big = |n: usize| ok().with_metadata("k", "x".repeat(n));
        let len = |i: &ServiceInstance| serde_json::to_vec(i).unwrap().len();
        // Too big: refused whatever the value's length says.
        let over = big(MAX_ENCODED_LEN);
        assert!(over.validate_decoded(len(&over)).is_err());
        // Just within the limit, from a value within the margin of it: measured, and accepted.
        let at = big(MAX_ENCODED_LEN - len(&big(0)));
        assert_eq!(len(&at), MAX_ENCODED_LEN);
        at.validate_decoded(len(&at)).unwrap();
        at.validate_decoded(MAX_ENCODED_LEN - 10).unwrap();
    }

    #[test]
    fn json_without_weight_or_metadata_gets_the_defaults() {
        let i: ServiceInstance = serde_json::from_str(r#"{"service":"s","id":"i","addr":"h","port":1}"#).unwrap();
        assert_eq!(i.weight, DEFAULT_WEIGHT);
        assert!(i.metadata.is_empty());
    }
}
