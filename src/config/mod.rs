//! [`OctopusConfig`]: a service's Octopus settings from a file and the environment
//! (feature `config`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use figment::providers::Env;
use figment::Figment;
use serde::Deserialize;

use crate::{parse_duration, BackoffPolicy, Error, RegisterOptions, Result, ServiceInstance};

mod read;
mod reference;
mod substitute;
use read::{config_err, figment_err, parse};
pub use substitute::substitute;
use substitute::Syntax;

/// Everything a service needs to register and discover with Octopus.
///
/// Loaded by [`OctopusConfig::load`] from a TOML, YAML or JSON file (by extension),
/// with `${VAR}` and `${VAR:-default}` substituted inside it, then overridden by
/// `OCTOPUS_*` environment variables (`OCTOPUS_REGISTRY`, `OCTOPUS_TTL`,
/// `OCTOPUS_SERVICE__PORT` — a double underscore descends into a table).
///
/// ```toml
/// registry = "etcd://${ETCD_HOST:-127.0.0.1}:2379?namespace=/prod"
/// ttl = "10s"
/// retry_interval = "1s"
/// retry_cap = "30s"
/// metrics_addr = "127.0.0.1:9100"
/// zone = "eu-1"          # this process's zone: its instance's `zone` metadata,
///                        # and the zone its channels prefer (zone_preference)
///
/// [service]
/// name = "user-service"
/// # id: default the host name and the port, unique per process
/// addr = "127.0.0.1"
/// port = 50051
/// version = "v1.0.0"
/// metadata = { zone = "a" }
///
/// # The service's own settings, typed by it: see OctopusConfig::app.
/// [app]
/// greeting = "hello"
/// ```
///
/// Its `Debug` shows the registry URL as [`redact_url`](crate::redact_url) does,
/// and of the `[app]` section its keys alone.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OctopusConfig {
    /// The registry URL (see [`connect`](crate::connect)); default `mem://`.
    #[serde(default = "default_registry")]
    pub registry: String,
    /// Lease TTL, like `10s` or `500ms`; default 10 s.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Re-registration backoff base; default 1 s.
    #[serde(default)]
    pub retry_interval: Option<String>,
    /// Re-registration backoff cap; default 30 s.
    #[serde(default)]
    pub retry_cap: Option<String>,
    /// Give up after this many consecutive failures (default: never).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`, if anywhere.
    #[serde(default)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The zone this process runs in (`OCTOPUS_ZONE`): the `zone` metadata of the
    /// instance it registers (unless `[service] metadata` names one), and the zone
    /// its balanced channels prefer through
    /// [`zone_preference`](OctopusConfig::zone_preference).
    #[serde(default)]
    pub zone: Option<String>,
    /// The instance this process registers, if it registers one.
    #[serde(default)]
    pub service: Option<ServiceConfig>,
    /// The `[app]` section: the service's own settings, read with
    /// [`OctopusConfig::app`] into a type of the service's.
    #[serde(default)]
    pub app: AppSection,
}

/// The `[app]` section of a configuration, kept as it was read (after `${VAR}`
/// substitution and `OCTOPUS_APP__*` overrides) until the service gives it a type
/// with [`OctopusConfig::app`].
///
/// Its `Debug` shows the keys alone (`{"db_password": ***}`): any value may be a secret.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct AppSection(figment::value::Dict);

impl fmt::Debug for AppSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hidden;
        impl fmt::Debug for Hidden {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }
        f.write_str("AppSection ")?;
        f.debug_map().entries(self.0.keys().map(|k| (k, Hidden))).finish()
    }
}

impl fmt::Debug for OctopusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field named, so that a new one is not shown by accident.
        let OctopusConfig {
            registry,
            ttl,
            retry_interval,
            retry_cap,
            max_retries,
            metrics_addr,
            zone,
            service,
            app,
        } = self;
        f.debug_struct("OctopusConfig")
            .field("registry", &crate::redact_url(registry))
            .field("ttl", ttl)
            .field("retry_interval", retry_interval)
            .field("retry_cap", retry_cap)
            .field("max_retries", max_retries)
            .field("metrics_addr", metrics_addr)
            .field("zone", zone)
            .field("service", service)
            .field("app", app)
            .finish()
    }
}

impl PartialEq for AppSection {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

// Values compare as figment compares them (a NaN read from a file is unequal to
// itself, as in any float comparison).
impl Eq for AppSection {}

impl AppSection {
    /// True when the file has no `[app]` section (or an empty one).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The instance a process registers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name.
    pub name: String,
    /// Instance id. Default: the host name and the port (`{host}-{port}`, with
    /// characters outside `[A-Za-z0-9._-]` replaced by `-`), unique per process on
    /// a host and across replicas (in Kubernetes, the host name is the pod's).
    /// Two processes with the same id do not both register: the second waits in
    /// `Conflict` while the first holds the key.
    #[serde(default)]
    pub id: Option<String>,
    /// Address to advertise.
    pub addr: String,
    /// Address to bind, when it is not `addr`: `0.0.0.0` (every interface) in a
    /// container that advertises its pod IP. Default: `addr`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Port to listen on and advertise; 0: any free port, the one bound is
    /// advertised (see [`OctopusConfig::instance_on`]).
    pub port: u16,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Weight.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The keys `OCTOPUS_*` variables may set; other `OCTOPUS_*` variables (a tool's
/// own, like `OCTOPUS_ETCD_BIN`) are not configuration and are left alone.
const ENV_KEYS: [&str; 9] = [
    "registry",
    "zone",
    "ttl",
    "retry_interval",
    "retry_cap",
    "max_retries",
    "metrics_addr",
    "service",
    "app",
];

fn env() -> Env {
    Env::prefixed("OCTOPUS_").split("__").filter(|key| {
        // The key is not lowercased yet, and may or may not be split into a dotted path.
        let first = key.as_str().split("__").next().unwrap_or_default();
        let first = first.split('.').next().unwrap_or_default().to_ascii_lowercase();
        ENV_KEYS.contains(&first.as_str())
    })
}

fn default_registry() -> String {
    "mem://".into()
}

fn default_weight() -> u32 {
    crate::core::DEFAULT_WEIGHT
}

impl OctopusConfig {
    /// Loads `path` (TOML, YAML or JSON by extension) with variable substitution,
    /// then the `OCTOPUS_*` environment. Errors name the file, the key and the problem.
    ///
    /// A variable's value that goes inside a quoted string (`"..."`, and YAML's
    /// `'...'`) is escaped for it: a quote or a backslash in a password stays in
    /// the string. Errors show no value read, and no line of the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| config_err(&file, format!("cannot read it: {e}")))?;
        let syntax = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Syntax::Toml,
            Some("yaml" | "yml") => Syntax::Yaml,
            Some("json") => Syntax::Json,
            other => {
                return Err(config_err(
                    &file,
                    format!("unknown format {other:?}: use .toml, .yaml, .yml or .json"),
                ))
            }
        };
        let figment = parse(&text, syntax, &file)?;
        Self::extract(figment.merge(env()), &file)
    }

    /// Only the `OCTOPUS_*` environment (no file).
    pub fn from_env() -> Result<Self> {
        Self::extract(Figment::from(env()), "environment")
    }

    fn extract(figment: Figment, file: &str) -> Result<Self> {
        let config: OctopusConfig = figment.extract().map_err(|e| figment_err(file, e, ""))?;
        config.register_options().map_err(|e| config_err(file, e))?;
        if let Some(s) = &config.service {
            config
                .instance_of(s, s.port.max(1))
                .map_err(|e| config_err(file, format!("key `service`: {e}")))?;
        }
        Ok(config)
    }

    /// Parses TOML text (no file, no environment; `${VAR}` substitution applies),
    /// e.g. for tests.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::extract(parse(text, Syntax::Toml, "(text)")?, "(text)")
    }

    /// The `[app]` section as the service's own type: its settings live in the
    /// same file, with the same `${VAR}` substitution and `OCTOPUS_APP__KEY`
    /// overrides. A missing `[app]` section reads as an empty one, so a type whose
    /// fields all have defaults still reads. Errors name the key and the problem.
    ///
    /// ```
    /// # fn main() -> octopus::Result<()> {
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Settings {
    ///     greeting: String,
    ///     #[serde(default)]
    ///     shout: bool,
    /// }
    /// let config = octopus::OctopusConfig::from_toml_str("[app]\ngreeting = \"hi\"")?;
    /// let settings: Settings = config.app()?;
    /// assert_eq!(settings.greeting, "hi");
    /// assert!(!settings.shout);
    ///
    /// let err = octopus::OctopusConfig::from_toml_str("[app]\ngreeting = 3")?.app::<Settings>().unwrap_err();
    /// assert!(err.to_string().contains("key `app.greeting`"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn app<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Figment::from(figment::providers::Serialized::defaults(&self.app.0))
            .extract()
            .map_err(|e| figment_err("the [app] section", e, "app."))
    }

    /// The registration options these settings describe.
    pub fn register_options(&self) -> Result<RegisterOptions> {
        let duration = |key: &'static str, v: &Option<String>| -> Result<Option<std::time::Duration>> {
            v.as_deref()
                .map(|s| {
                    parse_duration(s).ok_or_else(|| {
                        Error::invalid_option(key, format!("{s:?}"), "must be a duration like 500ms, 10s, 2m or 10")
                    })
                })
                .transpose()
        };
        let mut opts = RegisterOptions::default();
        if let Some(ttl) = duration("ttl", &self.ttl)? {
            opts = opts.ttl(ttl);
        }
        let defaults = BackoffPolicy::default();
        let base = duration("retry_interval", &self.retry_interval)?.unwrap_or(defaults.base());
        let cap = duration("retry_cap", &self.retry_cap)?.unwrap_or(defaults.cap().max(base));
        let mut policy = BackoffPolicy::new(base, cap)?;
        if let Some(n) = self.max_retries {
            policy = policy.with_max_retries(n);
        }
        let opts = opts.retry(policy);
        // A bad value is the configuration's error, not the first registration's.
        opts.validate()?;
        Ok(opts)
    }

    /// The instance of the `[service]` section, validated (port 0 is an error
    /// here: bind first, then use [`OctopusConfig::instance_on`]).
    pub fn instance(&self) -> Result<Option<ServiceInstance>> {
        self.service.as_ref().map(|s| self.instance_of(s, s.port)).transpose()
    }

    /// The instance of the `[service]` section advertising `port`, the port the
    /// server actually bound (for `port = 0`).
    pub fn instance_on(&self, port: u16) -> Result<Option<ServiceInstance>> {
        self.service.as_ref().map(|s| self.instance_of(s, port)).transpose()
    }

    fn instance_of(&self, s: &ServiceConfig, port: u16) -> Result<ServiceInstance> {
        let id = match &s.id {
            Some(id) => id.clone(),
            None => default_id(port),
        };
        let mut i = ServiceInstance::new(&s.name, id, &s.addr, port)?
            .with_version(&s.version)
            .with_weight(s.weight);
        i.metadata = s.metadata.clone().into();
        if let (Some(zone), None) = (&self.zone, i.zone()) {
            i = i.with_metadata("zone", zone);
        }
        i.validate()?;
        Ok(i)
    }

    /// The zone preference for this process's balanced channels, when `zone` is
    /// set (`client.channel_to(t).zone(p)`; see
    /// [`ZonePreference`](crate::grpc::ZonePreference) for the spill-over rule).
    #[cfg(feature = "grpc")]
    pub fn zone_preference(&self) -> Option<crate::grpc::ZonePreference> {
        self.zone.as_deref().map(crate::grpc::ZonePreference::new)
    }
}

/// The default instance id: `{host}-{port}`, the host name from `HOSTNAME` or the
/// kernel, made a valid id.
fn default_id(port: u16) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("{host}-{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        match var {
            "HOST" => Some("127.0.0.7".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_substitution_defaults_escapes_and_names_what_is_missing() {
        assert_eq!(substitute("a=${HOST}:${PORT:-2379}", env).unwrap(), "a=127.0.0.7:2379");
        assert_eq!(substitute("${EMPTY:-x} $${HOST}", env).unwrap(), "x ${HOST}");
        assert!(substitute("${NOPE}", env).unwrap_err().contains("NOPE is not set"));
        assert!(substitute("${A B}", env)
            .unwrap_err()
            .contains("does not name a variable"));
        assert!(substitute("${HOST", env).unwrap_err().contains("unclosed"));
        assert_eq!(
            substitute("# ${NOPE}\nx=${HOST}", env).unwrap(),
            "# ${NOPE}\nx=127.0.0.7"
        );
        assert!(substitute("a\nb=${NOPE}", env).unwrap_err().starts_with("line 2:"));
    }
}

#[cfg(test)]
mod secret_tests;
