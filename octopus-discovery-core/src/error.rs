use std::time::Duration;

/// A boxed error from a backend's client library, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in Octopus.
///
/// Every variant that is about an input names the input and the rule it broke, so
/// that the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of a [`ServiceInstance`](crate::ServiceInstance) breaks a rule.
    #[error("invalid {field} {value:?}: {rule}")]
    InvalidInstance {
        /// The field, e.g. `service`, `port`, `metadata`.
        field: &'static str,
        /// The offending value, shortened when it is long.
        value: String,
        /// The rule it broke.
        rule: String,
    },
    /// An option (TTL, backoff, namespace…) is out of its range.
    #[error("invalid option {name} = {value}: {rule}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// The offending value.
        value: String,
        /// The rule it broke.
        rule: String,
    },
    /// A target such as `etcd:///user-service?version=v1` could not be parsed.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry URL such as `etcd://127.0.0.1:2379` could not be parsed.
    #[error("invalid registry url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme names a backend that this build does not include.
    #[error("registry url {url:?} needs the `{feature}` feature of octopus, which this build does not enable")]
    FeatureMissing {
        /// The URL as given.
        url: String,
        /// The cargo feature that would enable the backend.
        feature: &'static str,
    },
    /// No resolver or backend is known for this scheme.
    #[error("unknown scheme `{scheme}` (known: {known})")]
    UnknownScheme {
        /// The scheme as given.
        scheme: String,
        /// The schemes that are known, comma separated.
        known: String,
    },
    /// A value found in the registry does not decode as an instance.
    #[error("value at key {key:?} does not decode: {reason}")]
    Decode {
        /// The key, lossily converted to UTF-8.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The requested revision is older than the store's compaction point.
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: crate::Revision,
        /// The store's compaction revision.
        compacted: crate::Revision,
    },
    /// The lease does not exist (it expired or was revoked).
    #[error("lease {0:#x} not found: it expired or was revoked")]
    LeaseNotFound(crate::LeaseId),
    /// The instance's key is held by a lease that is not ours: another process
    /// registered the same service and id.
    #[error("key {key:?} is owned by lease {owner:#x}, not ours: another registration holds this service/id")]
    Conflict {
        /// The key.
        key: String,
        /// The lease that owns it ([`LeaseId::NONE`](crate::LeaseId::NONE): a key written without a lease).
        owner: crate::LeaseId,
    },
    /// An operation did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The limit that was reached.
        after: Duration,
    },
    /// The backend could not be reached or refused the request.
    #[error("registry backend failed during {op}: {source}")]
    Backend {
        /// The operation.
        op: &'static str,
        /// The client library's error.
        #[source]
        source: BoxError,
    },
    /// The registration or discovery this handle belonged to has stopped.
    #[error("{0} has stopped")]
    Closed(&'static str),
    /// A discovery cache file (see [`ColdCache`](crate::ColdCache)) cannot be read
    /// or written, does not parse, or was written for another registry.
    #[error("discovery cache file {path:?}: {reason}")]
    CacheFile {
        /// The file.
        path: String,
        /// What is wrong, and what to do.
        reason: String,
    },
}

impl Error {
    /// A backend error for operation `op`.
    pub fn backend(op: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            op,
            source: source.into(),
        }
    }

    pub(crate) fn instance(field: &'static str, value: impl AsRef<str>, rule: impl Into<String>) -> Self {
        Error::InvalidInstance {
            field,
            value: shorten(value.as_ref()),
            rule: rule.into(),
        }
    }

    pub(crate) fn option(name: &'static str, value: impl std::fmt::Debug, rule: impl Into<String>) -> Self {
        Error::InvalidOption {
            name,
            value: format!("{value:?}"),
            rule: rule.into(),
        }
    }

    /// True for errors that a retry may cure (the backend was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Backend { .. } | Error::Timeout { .. })
    }
}

/// Shortens long values so that an error message stays readable.
fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        return value.to_owned();
    }
    let head: String = value.chars().take(MAX).collect();
    format!("{head}… ({} bytes)", value.len())
}

/// `Result` with Octopus's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
