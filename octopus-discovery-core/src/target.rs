//! Targets: `scheme://[authority]/service?version=v1&zone=a`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;

use crate::instance::validate_name;
use crate::{Error, Result, ServiceInstance};

/// A parsed target, as gRPC names them: `etcd:///user-service?version=v1&zone=a`.
///
/// The query selects instances: `version` matches [`ServiceInstance::version`],
/// every other key matches the metadata entry of that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    scheme: String,
    authority: String,
    service: String,
    filters: BTreeMap<String, String>,
}

impl Target {
    /// Parses a target.
    ///
    /// ```
    /// use octopus_discovery_core::Target;
    /// let t: Target = "etcd:///user-service?version=v1&zone=a".parse()?;
    /// assert_eq!(t.scheme(), "etcd");
    /// assert_eq!(t.service(), "user-service");
    /// assert_eq!(t.filters().get("zone").map(String::as_str), Some("a"));
    /// assert!("user-service".parse::<Target>().is_err());
    /// # Ok::<(), octopus_discovery_core::Error>(())
    /// ```
    pub fn parse(target: &str) -> Result<Self> {
        Self::parse_as(target, target)
    }

    /// Parses `target`; errors name `shown` (what the caller gave).
    fn parse_as(target: &str, shown: &str) -> Result<Self> {
        let err = |reason: &str| Error::invalid_target(shown, reason);
        let (scheme, rest) = target
            .split_once("://")
            .ok_or_else(|| err("expected scheme://[authority]/service, e.g. etcd:///user-service"))?;
        let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(err(
                "the scheme must be a letter followed by letters, digits, '+', '-' or '.'",
            ));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (authority, service) = path
            .split_once('/')
            .ok_or_else(|| err("missing '/service' after the authority, e.g. etcd:///user-service"))?;
        let service = decode(service).map_err(|_| err("the service name is not valid percent-encoded UTF-8"))?;
        validate_name("service", &service).map_err(|e| err(&e.to_string()))?;
        let mut filters = BTreeMap::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (
                decode(k).map_err(|_| err("a query key is not valid percent-encoded UTF-8"))?,
                decode(v).map_err(|_| err("a query value is not valid percent-encoded UTF-8"))?,
            );
            if k.is_empty() {
                return Err(err("a query parameter has an empty name"));
            }
            if filters.insert(k.clone(), v).is_some() {
                return Err(err(&format!("query parameter {k:?} is given twice")));
            }
        }
        Ok(Target {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_owned(),
            service,
            filters,
        })
    }

    /// A target for `service` with no scheme: the client it is given to resolves
    /// it with its own discovery. Add filters with [`with_filter`](Self::with_filter)
    /// and [`with_version`](Self::with_version).
    ///
    /// ```
    /// use octopus_discovery_core::Target;
    /// let t = Target::for_service("user-service")?.with_version("v1").with_filter("zone", "a");
    /// assert_eq!(t.scheme(), "");
    /// assert_eq!(t.to_string(), "/user-service?version=v1&zone=a");
    /// assert!(Target::for_service("bad/name").is_err());
    /// # Ok::<(), octopus_discovery_core::Error>(())
    /// ```
    pub fn for_service(service: &str) -> Result<Self> {
        validate_name("service", service)?;
        Ok(Target {
            scheme: String::new(),
            authority: String::new(),
            service: service.to_owned(),
            filters: BTreeMap::new(),
        })
    }

    /// Keeps only instances whose metadata entry `key` is `value` (`version`:
    /// whose version is `value`).
    pub fn with_filter(mut self, key: &str, value: &str) -> Self {
        self.filters.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Keeps only instances of `version`.
    pub fn with_version(self, version: &str) -> Self {
        self.with_filter("version", version)
    }

    /// The same target under `scheme` (lower-cased).
    pub fn with_scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_ascii_lowercase();
        self
    }

    /// The scheme, lower-cased (`etcd`, `mem`); empty for a target made with
    /// [`Target::for_service`], which the client it is given to resolves itself.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The authority (between `//` and the next `/`), usually empty.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The instance filters from the query.
    pub fn filters(&self) -> &BTreeMap<String, String> {
        &self.filters
    }

    /// True when `instance` passes every filter.
    pub fn matches(&self, instance: &ServiceInstance) -> bool {
        self.filters.iter().all(|(k, v)| match k.as_str() {
            "version" => instance.version == *v,
            _ => instance.metadata.get(k) == Some(v),
        })
    }
}

fn decode(s: &str) -> std::result::Result<String, std::str::Utf8Error> {
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned())
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme.is_empty() {
            write!(f, "/{}", self.service)?;
        } else {
            write!(f, "{}://{}/{}", self.scheme, self.authority, self.service)?;
        }
        let mut sep = '?';
        for (k, v) in &self.filters {
            write!(f, "{sep}{k}={v}")?;
            sep = '&';
        }
        Ok(())
    }
}

/// What a client accepts as a target: a [`Target`], or text — a full target
/// (`etcd:///user-service?version=v1`), or a service name with an optional query
/// (`user-service?version=v1`) that the client resolves with its own discovery.
pub trait IntoTarget {
    /// The target, or an error naming the text and the rule.
    fn into_target(self) -> Result<Target>;
}

impl IntoTarget for Target {
    fn into_target(self) -> Result<Target> {
        Ok(self)
    }
}

impl IntoTarget for &Target {
    fn into_target(self) -> Result<Target> {
        Ok(self.clone())
    }
}

impl IntoTarget for &str {
    fn into_target(self) -> Result<Target> {
        if self.contains("://") {
            return Target::parse(self);
        }
        // A bare service name: parsed as a target of a placeholder scheme, so that
        // the name and the query follow the same rules, then the scheme dropped.
        let t = Target::parse_as(&format!("own:///{self}"), self)?;
        Ok(Target {
            scheme: String::new(),
            ..t
        })
    }
}

impl IntoTarget for String {
    fn into_target(self) -> Result<Target> {
        self.as_str().into_target()
    }
}

impl IntoTarget for &String {
    fn into_target(self) -> Result<Target> {
        self.as_str().into_target()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_values_or_text_with_or_without_a_scheme() {
        let bare = "users?version=v1".into_target().unwrap();
        assert_eq!((bare.scheme(), bare.service()), ("", "users"));
        assert_eq!(bare, Target::for_service("users").unwrap().with_version("v1"));
        let full = "etcd:///users".into_target().unwrap();
        assert_eq!(full.scheme(), "etcd");
        let err = "bad/name".into_target().unwrap_err().to_string();
        assert!(err.contains("bad/name"), "{err}");
        assert!("users?=x".into_target().is_err());
    }

    #[test]
    fn parses_and_filters() {
        let t = Target::parse("ETCD://auth/svc?version=v1&zone=a%20b&").unwrap();
        assert_eq!((t.scheme(), t.authority(), t.service()), ("etcd", "auth", "svc"));
        let i = ServiceInstance::new("svc", "1", "h", 1)
            .unwrap()
            .with_version("v1")
            .with_metadata("zone", "a b");
        assert!(t.matches(&i));
        assert!(!t.matches(&i.clone().with_version("v2")));
        assert!(!t.matches(&ServiceInstance {
            metadata: Default::default(),
            ..i
        }));
        assert_eq!(t.to_string(), "etcd://auth/svc?version=v1&zone=a b");
    }

    #[test]
    fn bad_targets_say_why() {
        for (target, why) in [
            ("svc", "expected scheme://"),
            ("1x:///svc", "the scheme must"),
            ("etcd://svc", "missing '/service'"),
            ("etcd:///", "invalid service"),
            ("etcd:///a/b", "invalid service"),
            ("etcd:///svc?a=1&a=2", "given twice"),
            ("etcd:///svc?=1", "empty name"),
            ("etcd:///svc?a=%ff", "percent-encoded"),
        ] {
            let err = Target::parse(target).unwrap_err().to_string();
            assert!(err.contains(target) && err.contains(why), "{target}: {err}");
        }
    }
}
