//! What a registry URL's parameters mean: which are allowed, the key layout,
//! registration defaults, and the etcd backend's options and TLS.

use std::sync::Arc;

use crate::url::RegistryUrl;
#[cfg(feature = "etcd")]
use crate::url::PASSWORD_ENV;
use crate::{Error, RegisterOptions, Result};

/// Parameters every backend takes.
pub(crate) const COMMON: &[&str] = &[
    "namespace",
    "layout",
    "shared_lease",
    "ttl",
    "retry_interval",
    "retry_cap",
    "cache_file",
];
/// Parameters only the etcd backend takes.
pub(crate) const ETCD_ONLY: &[&str] = &[
    "connect_timeout",
    "request_timeout",
    "user",
    "password",
    "password_file",
    "ca_file",
    "cert_file",
    "key_file",
    "tls_domain",
];

/// The parameters defined here are those a printed URL shows and those whose
/// values it hides ([`octopus_discovery_core::SHOWN_PARAMS`] and
/// [`HIDDEN_PARAMS`](octopus_discovery_core::HIDDEN_PARAMS)), no more, no fewer.
#[cfg(test)]
#[test]
fn printed_urls_know_every_parameter() {
    use std::collections::BTreeSet;
    let defined: BTreeSet<&str> = COMMON.iter().chain(ETCD_ONLY).copied().collect();
    let shown: BTreeSet<&str> = octopus_discovery_core::SHOWN_PARAMS.into_iter().collect();
    let hidden: BTreeSet<&str> = octopus_discovery_core::HIDDEN_PARAMS.into_iter().collect();
    assert!(shown.is_disjoint(&hidden), "{shown:?} and {hidden:?}");
    let known: BTreeSet<&str> = shown.union(&hidden).copied().collect();
    assert_eq!(
        defined, known,
        "the parameters defined here (left), and those a printed URL knows (right)"
    );
}

/// The key layout named by `layout=` (default `octopus`) under `namespace=`.
pub(crate) fn layout(url: &RegistryUrl) -> Result<Arc<dyn octopus_discovery_core::KeyLayout>> {
    let in_url = |e: Error| url.error(e);
    let namespace = url.params.get("namespace").map(String::as_str);
    let layout: Arc<dyn octopus_discovery_core::KeyLayout> =
        match url.params.get("layout").map_or("octopus", String::as_str) {
            "octopus" => Arc::new(
                octopus_discovery_core::JsonLayout::new(namespace.unwrap_or(octopus_discovery_core::DEFAULT_NAMESPACE))
                    .map_err(in_url)?,
            ),
            "kratos" => Arc::new(
                octopus_discovery_core::KratosLayout::new(namespace.unwrap_or("/microservices"), "grpc")
                    .map_err(in_url)?,
            ),
            "etcd-naming" => {
                Arc::new(octopus_discovery_core::EtcdNamingLayout::new(namespace.unwrap_or("")).map_err(in_url)?)
            }
            "go-zero" => Arc::new(octopus_discovery_core::GoZeroLayout::new(namespace.unwrap_or("")).map_err(in_url)?),
            other => {
                return Err(url.error(format!(
                    "unknown layout {other:?} (known: octopus, kratos, etcd-naming, go-zero)"
                )))
            }
        };
    Ok(layout)
}

#[cfg(feature = "etcd")]
pub(crate) fn etcd_options(url: &RegistryUrl) -> Result<octopus_etcd::EtcdOptions> {
    let in_url = |e: Error| url.error(e);
    let mut opts = octopus_etcd::EtcdOptions::new(&url.hosts).map_err(in_url)?;
    if let Some(d) = timeout(url, "connect_timeout")? {
        opts = opts.connect_timeout(d);
    }
    if let Some(d) = timeout(url, "request_timeout")? {
        opts = opts.request_timeout(d);
    }
    if let Some(tls) = tls_options(url)? {
        opts = opts.tls(tls);
    }
    if let Some(user) = url.params.get("user") {
        opts = opts.user(user, password(url)?);
    } else if url.params.contains_key("password") || url.params.contains_key("password_file") {
        return Err(url.error("a password needs user= (the etcd user it belongs to)"));
    }
    Ok(opts)
}

/// The bounds of `connect_timeout=` and `request_timeout=`: a zero timeout fails
/// every request at once, and one beyond an hour is no timeout at all.
#[cfg(feature = "etcd")]
const TIMEOUT_BOUNDS: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(1),
    std::time::Duration::from_secs(3600),
);

/// A timeout parameter, within [`TIMEOUT_BOUNDS`].
#[cfg(feature = "etcd")]
fn timeout(url: &RegistryUrl, name: &str) -> Result<Option<std::time::Duration>> {
    let (min, max) = TIMEOUT_BOUNDS;
    match url.duration(name)? {
        Some(d) if d < min || d > max => Err(url.error(format!(
            "parameter {name}={:?} must be from 1ms to 1h",
            url.params[name]
        ))),
        d => Ok(d),
    }
}

/// The etcd user's password: from `password_file=PATH` (recommended: the file's
/// first line), else `password=`, else the environment variable
/// [`PASSWORD_ENV`]. Errors name the source, never the password.
#[cfg(feature = "etcd")]
fn password(url: &RegistryUrl) -> Result<String> {
    match (url.params.get("password_file"), url.params.get("password")) {
        (Some(_), Some(_)) => Err(url.error("give password_file or password, not both")),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| url.error(format!("password_file: cannot read {path:?}: {e}")))?;
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                return Err(url.error(format!("password_file: {path:?} is empty")));
            }
            Ok(line.to_owned())
        }
        (None, Some(password)) => Ok(password.clone()),
        (None, None) => match std::env::var(PASSWORD_ENV) {
            Ok(p) if !p.is_empty() => Ok(p),
            _ => Err(url.error(format!(
                "user= needs a password: password_file=PATH (recommended), the {PASSWORD_ENV} environment variable, or password="
            ))),
        },
    }
}

/// TLS from `ca_file` (required for TLS), `cert_file` + `key_file`, `tls_domain`.
#[cfg(feature = "etcd")]
fn tls_options(url: &RegistryUrl) -> Result<Option<octopus_etcd::TlsOptions>> {
    let read = |param: &str| -> Result<Option<Vec<u8>>> {
        let Some(path) = url.params.get(param) else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|e| url.error(format!("{param}: cannot read {path:?}: {e}")))
    };
    let (ca, cert, key) = (read("ca_file")?, read("cert_file")?, read("key_file")?);
    let Some(ca) = ca else {
        if cert.is_some() || key.is_some() || url.params.contains_key("tls_domain") {
            return Err(url.error("TLS needs ca_file (the CA that signed etcd's certificate)"));
        }
        return Ok(None);
    };
    let mut tls = octopus_etcd::TlsOptions::new(ca);
    match (cert, key) {
        (Some(cert), Some(key)) => tls = tls.identity(cert, key),
        (None, None) => {}
        _ => return Err(url.error("cert_file and key_file go together")),
    }
    if let Some(domain) = url.params.get("tls_domain") {
        tls = tls.domain(domain);
    }
    Ok(Some(tls))
}

/// Registration defaults from `ttl=`, `retry_interval=` and `retry_cap=`.
pub(crate) fn defaults(url: &RegistryUrl) -> Result<RegisterOptions> {
    let in_url = |e: Error| url.error(e);
    let mut opts = RegisterOptions::default();
    if let Some(ttl) = url.duration("ttl")? {
        opts = opts.ttl(ttl);
    }
    let base = url.duration("retry_interval")?;
    let cap = url.duration("retry_cap")?;
    if base.is_some() || cap.is_some() {
        let d = crate::BackoffPolicy::default();
        let base = base.unwrap_or(d.base());
        let policy = crate::BackoffPolicy::new(base, cap.unwrap_or(d.cap().max(base))).map_err(in_url)?;
        opts = opts.retry(policy);
    }
    // A bad value is the URL's error now, not the first registration's.
    opts.validate().map_err(in_url)?;
    Ok(opts)
}

/// The discovery cache named by `cache_file=`, if any, for this URL's registry:
/// its scheme, endpoints and key layout tell registries apart.
pub(crate) fn cold_cache(
    url: &RegistryUrl,
    layout: &Arc<dyn octopus_discovery_core::KeyLayout>,
) -> Result<Option<Arc<octopus_discovery_core::cache_file::ColdCache>>> {
    let Some(path) = url.params.get("cache_file") else {
        return Ok(None);
    };
    if path.is_empty() {
        return Err(url.error("cache_file must name a file"));
    }
    let scope = format!("{}://{} {:?}", url.scheme, url.hosts.join(","), layout);
    octopus_discovery_core::cache_file::ColdCache::open(path, scope).map(Some)
}

/// The quick reference lists exactly the parameters, error kinds and balancing
/// policies the code defines: adding one without its doc line fails here.
#[cfg(test)]
mod docs {
    use std::collections::BTreeSet;

    const QUICK_REFERENCE: &str = include_str!("../docs/QUICK_REFERENCE.md");

    /// The first column's `code` names of the table under `heading`.
    fn first_column(heading: &str) -> BTreeSet<String> {
        let section = QUICK_REFERENCE
            .split("\n## ")
            .find(|s| s.starts_with(heading))
            .unwrap_or_else(|| panic!("QUICK_REFERENCE has a section {heading:?}"));
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| {
                let cell = l.split('|').nth(1).unwrap_or("");
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn url_parameters_are_documented() {
        let code: BTreeSet<String> = super::COMMON
            .iter()
            .chain(super::ETCD_ONLY)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            first_column("Registry URLs"),
            code,
            "docs/QUICK_REFERENCE.md's URL parameters"
        );
    }

    #[test]
    fn error_kinds_are_documented() {
        let code: BTreeSet<String> = crate::ErrorKind::ALL.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(first_column("Errors"), code, "docs/QUICK_REFERENCE.md's error kinds");
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn policies_are_documented() {
        use crate::grpc::Policy;
        let line = QUICK_REFERENCE
            .lines()
            .find(|l| l.starts_with("Policies:"))
            .expect("a Policies line");
        let documented: BTreeSet<String> = line.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        let code: BTreeSet<String> = Policy::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(documented, code);
        for name in &documented {
            assert!(name.parse::<Policy>().is_ok(), "{name} parses");
        }
    }
}
