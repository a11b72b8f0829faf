//! Registry URLs: `scheme://host:port,host:port/?namespace=/prod&ttl=10s`.

use std::collections::BTreeMap;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::{Error, Result};

/// The environment variable that holds the etcd password when the URL names a
/// user but neither `password_file=` nor `password=`.
pub const PASSWORD_ENV: &str = "OCTOPUS_ETCD_PASSWORD";

/// A parsed registry URL. Its `Debug` and every error about it show it
/// redacted ([`RegistryUrl::redacted`]): secrets such as `password=` print as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    /// The scheme, lower-cased.
    pub scheme: String,
    /// The comma-separated authority, split (`host:port` each; may be empty).
    pub hosts: Vec<String>,
    /// The query parameters.
    pub params: BTreeMap<String, String>,
    raw: String,
}

impl RegistryUrl {
    /// Parses `url`; the error names the URL and the rule it broke.
    pub fn parse(url: &str) -> Result<Self> {
        let err = |reason: String| Error::invalid_url(url, reason);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err("expected scheme://hosts, e.g. mem:// or etcd://127.0.0.1:2379".into()))?;
        if !octopus_discovery_core::plausible_scheme(scheme) {
            return Err(err(format!("scheme {scheme:?} must be letters and digits")));
        }
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(err(format!(
                "credentials before the host (user:password@) are not read: give user= and \
                 password_file= (or the {PASSWORD_ENV} environment variable) instead"
            )));
        }
        let authority = authority.trim_end_matches('/');
        if authority.contains('/') {
            return Err(err(
                "a registry URL has no path; put the namespace in ?namespace=/prod".into()
            ));
        }
        let hosts: Vec<String> = authority
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(n) = hosts.iter().position(|h| !octopus_discovery_core::plausible_host(h)) {
            // Not echoed: text that is no host may be a password that split
            // the URL where it should not.
            return Err(err(format!(
                "host {} is not a host name or address with an optional :port (not shown)",
                n + 1
            )));
        }
        let mut params = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(err(
                    "a parameter without =value (not shown: it may be a secret's tail); \
                     a & inside a value must be written %26"
                        .into(),
                ));
            };
            if !octopus_discovery_core::lower_name(k) {
                return Err(err(
                    "a parameter name that is not lower-case letters, digits and _ (not shown: it \
                     may be a secret's tail); a & inside a value must be written %26"
                        .into(),
                ));
            }
            let v = percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| err(format!("parameter {k:?} is not valid percent-encoded UTF-8")))?;
            if params.insert(k.to_owned(), v.into_owned()).is_some() {
                return Err(err(format!("parameter {k:?} is given twice")));
            }
        }
        Ok(RegistryUrl {
            scheme: scheme.to_ascii_lowercase(),
            hosts,
            params,
            raw: url.to_owned(),
        })
    }

    /// The URL as given, secrets included: for the code that connects, never
    /// for a log line or a message (use [`RegistryUrl::redacted`]).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The URL with every secret replaced by `***` (`password=***`): the form
    /// for logs, errors and headers.
    pub fn redacted(&self) -> String {
        octopus_discovery_core::redact_url(&self.raw)
    }

    /// An error of kind [`ErrorKind::InvalidUrl`](crate::ErrorKind::InvalidUrl) about this URL.
    pub fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::invalid_url(&self.raw, reason)
    }

    /// Refuses parameters other than `known`, naming the first unknown one,
    /// unless a parameter whose value prints hidden comes before it: then it
    /// may be that value's tail, cut off by a stray `&` (`password=Xy7&abc=def`),
    /// and it is not named.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        let query = self.raw.split_once('?').map_or("", |(_, q)| q);
        let mut after_hidden = false;
        for name in query.split('&').filter_map(|p| p.split_once('=')).map(|(k, _)| k) {
            if !known.contains(&name) {
                let known = known.join(", ");
                return Err(self.error(match after_hidden {
                    false => format!("unknown parameter {name:?} (known: {known})"),
                    true => format!(
                        "an unknown parameter after a hidden value (not named: it may be the value's tail; \
                         a & inside a value must be written %26; known: {known})"
                    ),
                }));
            }
            after_hidden |= !octopus_discovery_core::is_shown_param(name);
        }
        Ok(())
    }

    /// A duration parameter: `500ms`, `10s`, `2m`, or bare seconds (`10`).
    pub fn duration(&self, name: &str) -> Result<Option<Duration>> {
        let Some(v) = self.params.get(name) else {
            return Ok(None);
        };
        parse_duration(v).map(Some).ok_or_else(|| {
            self.error(format!(
                "parameter {name}={v:?} is not a duration like 500ms, 10s, 2m or 10"
            ))
        })
    }
}

impl std::fmt::Debug for RegistryUrl {
    /// The scheme and the URL redacted: hosts and parameters only where
    /// [`redact_url`](crate::redact_url) shows them (a host may be a password's
    /// head that a `?` in it cut off: `root:123?b=c@h:2379`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryUrl")
            .field("scheme", &self.scheme)
            .field("url", &self.redacted())
            .finish_non_exhaustive()
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h` or bare seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact_url;

    #[test]
    fn parses_hosts_and_params() {
        let u = RegistryUrl::parse("ETCD://h1:2379,h2:2379/?namespace=%2Fprod&ttl=10").unwrap();
        assert_eq!(u.scheme, "etcd");
        assert_eq!(u.hosts, ["h1:2379", "h2:2379"]);
        assert_eq!(u.params["namespace"], "/prod");
        assert_eq!(u.duration("ttl").unwrap(), Some(Duration::from_secs(10)));
        assert!(RegistryUrl::parse("mem://").unwrap().hosts.is_empty());
    }

    #[test]
    fn errors_name_the_url_and_rule() {
        for (url, why) in [
            ("127.0.0.1:2379", "expected scheme://"),
            ("etcd://h/prod", "no path"),
            ("mem://?a=1&a=2", "given twice"),
        ] {
            let e = RegistryUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(&redact_url(url)) && e.contains(why), "{e}");
        }
        let u = RegistryUrl::parse("mem://?ttl=ten&bogus=1").unwrap();
        assert!(u.duration("ttl").unwrap_err().to_string().contains("ttl=\"ten\""));
        assert!(u
            .only(&["ttl"])
            .unwrap_err()
            .to_string()
            .contains("unknown parameter \"bogus\""));
    }

    /// A misspelt password parameter is refused as unknown, and the error,
    /// which names the URL, does not print its value.
    #[test]
    fn errors_about_unknown_parameters_keep_their_secrets() {
        for param in [
            "passwd",
            "pwd",
            "pass",
            "api_key",
            "auth",
            "credentials",
            "pasword",
            "pw",
        ] {
            let u = RegistryUrl::parse(&format!("etcd://127.0.0.1:2379?{param}=hunter2")).unwrap();
            let e = u.only(&["password"]).unwrap_err().to_string();
            assert!(e.contains(&format!("unknown parameter {param:?}")), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
            assert!(!format!("{u:?} {}", u.redacted()).contains("hunter2"));
        }
    }

    /// A lower-case parameter after a password may be the password's tail: it
    /// is refused without its name.
    #[test]
    fn a_parameter_after_a_password_is_not_named() {
        let u = RegistryUrl::parse("etcd://127.0.0.1:2379?user=root&password=Xy7&planted=ok").unwrap();
        let e = u.only(&["user", "password"]).unwrap_err();
        let text = format!("{e} {e:?} {u:?}");
        assert!(text.contains("%26") && !text.contains("planted"), "{text}");
        // Before any hidden value, a typo is named.
        let u = RegistryUrl::parse("etcd://127.0.0.1:2379?namespce=/p&password=x").unwrap();
        let e = u.only(&["namespace", "password"]).unwrap_err().to_string();
        assert!(e.contains("unknown parameter \"namespce\""), "{e}");
        // A `?` in a password before the host: the part before its `@` is hidden.
        let u = RegistryUrl::parse("etcd://root:123?b=Pla@127.0.0.1:2379").unwrap();
        let e = u.only(&["user", "password"]).unwrap_err();
        let text = format!("{e} {e:?} {u:?}");
        assert!(!text.contains("Pla") && !text.contains("123"), "{text}");
    }

    /// A secret where the URL's grammar does not expect it (before the host,
    /// or split off by a `&`, `?`, `,` or `/` it holds) is refused, and neither
    /// the error nor anything else shows it.
    #[test]
    fn secrets_out_of_place_are_refused_unseen() {
        for (url, why) in [
            ("etcd://root:Planted@127.0.0.1:2379", "user:password@"),
            ("etcd://root:Pla,nted@127.0.0.1:2379", "user:password@"),
            ("etcd://root:Pla/nted@127.0.0.1:2379", "user:password@"),
            ("etcd://root:Pla?nted@127.0.0.1:2379", "host 1 is not"),
            ("etcd://127.0.0.1:2379?Pla@nted", "without =value"),
            ("etcd://root:Pla?n=ted@127.0.0.1:2379", "host 1 is not"),
            ("etcd://127.0.0.1:2379?user=root&password=Xy7&Planted", "%26"),
            ("etcd://127.0.0.1:2379?user=root&password=Xy7&Plan=ted", "%26"),
            ("etcd://127.0.0.1:2379?Token=Planted", "not lower-case"),
        ] {
            let e = RegistryUrl::parse(url).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains(why), "{url}: {text}");
            for part in ["Planted", "Pla", "nted"] {
                assert!(!text.contains(part), "{url}: {text}");
            }
        }
    }

    #[test]
    fn durations_need_a_number_and_a_known_unit() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5d"), None);
    }
}
