//! Octopus's error: one opaque type with a [`kind`](Error::kind) to match on, a
//! message that names the input and the rule, and a chain of real source errors.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::secret::redact_url;

/// A boxed error from a backend's client library, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for a caller to match on. New kinds may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A field of a [`ServiceInstance`](crate::ServiceInstance) breaks a rule.
    InvalidInstance,
    /// An option (TTL, backoff, namespace…) is out of its range.
    InvalidOption,
    /// A target such as `etcd:///user-service?version=v1` could not be parsed.
    InvalidTarget,
    /// A registry URL such as `etcd://127.0.0.1:2379` could not be parsed or
    /// names a parameter its backend does not take.
    InvalidUrl,
    /// The URL's scheme names a backend that this build does not include.
    FeatureMissing,
    /// No resolver or backend is known for this scheme.
    UnknownScheme,
    /// A value found in the registry does not decode as an instance.
    Decode,
    /// The instance's key is held by another lease: another process registered
    /// the same service and id.
    Conflict,
    /// An operation did not finish in time.
    Timeout,
    /// The registry backend could not be reached or refused the request.
    Backend,
    /// The registration, discovery or client this handle belonged to has stopped.
    Closed,
    /// A discovery cache file cannot be read or written, does not parse, or was
    /// written for another registry.
    CacheFile,
}

impl ErrorKind {
    /// Every kind, in declaration order (the documentation's table lists them all).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::InvalidInstance,
        ErrorKind::InvalidOption,
        ErrorKind::InvalidTarget,
        ErrorKind::InvalidUrl,
        ErrorKind::FeatureMissing,
        ErrorKind::UnknownScheme,
        ErrorKind::Decode,
        ErrorKind::Conflict,
        ErrorKind::Timeout,
        ErrorKind::Backend,
        ErrorKind::Closed,
        ErrorKind::CacheFile,
    ];
}

/// A new kind must join [`ErrorKind::ALL`]: this match stops compiling otherwise.
const _: fn(ErrorKind) = |k| match k {
    ErrorKind::InvalidInstance
    | ErrorKind::InvalidOption
    | ErrorKind::InvalidTarget
    | ErrorKind::InvalidUrl
    | ErrorKind::FeatureMissing
    | ErrorKind::UnknownScheme
    | ErrorKind::Decode
    | ErrorKind::Conflict
    | ErrorKind::Timeout
    | ErrorKind::Backend
    | ErrorKind::Closed
    | ErrorKind::CacheFile => {}
};

/// Everything that can go wrong in Octopus.
///
/// Its message is one sentence about this cause: it names the input and the rule
/// it broke, or the operation that failed. The error that caused it, if any, is
/// its [`source`](std::error::Error::source), kept as the error value (a gRPC
/// status keeps its code), never folded into the message: print the chain with
/// [`Error::chain`]. Secrets (passwords, tokens, private keys) never appear in it.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
    /// For [`ErrorKind::Conflict`]: the lease that holds the key.
    owner: Option<crate::LeaseId>,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: None,
                owner: None,
            }),
        }
    }

    /// This error with `source` as its cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// What went wrong, to match on.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// True for errors that a retry may cure (the backend was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Backend | ErrorKind::Timeout)
    }

    /// This error and its causes as one line, `a: b: c`, each cause once (a cause
    /// whose text the previous one already holds is left out).
    pub fn chain(&self) -> String {
        chain(self)
    }

    /// The same error with `message` in place of its own, its kind and cause kept:
    /// for a caller that knows better what the failure means (a failed first
    /// request of `connect` is "etcd at … did not answer").
    pub fn context(mut self, message: impl Into<String>) -> Self {
        self.inner.message = Cow::Owned(message.into());
        self
    }

    /// A field of an instance breaks a rule; long values are shortened.
    pub fn invalid_instance(field: &'static str, value: impl AsRef<str>, rule: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::InvalidInstance,
            format!("invalid {field} {:?}: {rule}", shorten(value.as_ref())),
        )
    }

    /// An option is out of its range.
    pub fn invalid_option(name: &str, value: impl fmt::Display, rule: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::InvalidOption,
            format!("invalid option {name} = {value}: {rule}"),
        )
    }

    /// An option out of range, its value shown as `Debug` (`10ms`, `"x"`).
    pub(crate) fn option(name: &str, value: impl fmt::Debug, rule: impl fmt::Display) -> Self {
        Self::invalid_option(name, format!("{value:?}"), rule)
    }

    /// A target does not parse.
    pub fn invalid_target(target: impl AsRef<str>, reason: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::InvalidTarget,
            format!("invalid target {:?}: {reason}", target.as_ref()),
        )
    }

    /// A registry URL does not parse or is refused; the URL is shown redacted.
    pub fn invalid_url(url: &str, reason: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::InvalidUrl,
            format!("invalid registry url {:?}: {reason}", redact_url(url)),
        )
    }

    /// The URL's backend needs a cargo feature this build lacks.
    pub fn feature_missing(url: &str, feature: &str) -> Self {
        Self::new(
            ErrorKind::FeatureMissing,
            format!(
                "registry url {:?} needs the `{feature}` feature of octopus-discovery, which this build does not enable",
                redact_url(url)
            ),
        )
    }

    /// No resolver or backend for `scheme`.
    pub fn unknown_scheme(scheme: impl fmt::Display, known: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::UnknownScheme,
            format!("unknown scheme `{scheme}` (known: {known})"),
        )
    }

    /// The value at `key` does not decode.
    pub fn decode(key: impl AsRef<str>, reason: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::Decode,
            format!("value at key {:?} does not decode: {reason}", key.as_ref()),
        )
    }

    /// `key` is held by lease `owner`, not ours.
    pub fn conflict(key: impl AsRef<str>, owner: crate::LeaseId) -> Self {
        let key = key.as_ref();
        let mut e = Self::new(
            ErrorKind::Conflict,
            format!("key {key:?} is owned by lease {owner:#x}, not ours: another registration holds this service/id"),
        );
        e.inner.owner = Some(owner);
        e
    }

    /// For a [`Conflict`](ErrorKind::Conflict): the lease that holds the key
    /// ([`LeaseId::NONE`](crate::LeaseId::NONE): a key written without a lease).
    pub fn conflict_owner(&self) -> Option<crate::LeaseId> {
        self.inner.owner
    }

    /// `op` did not finish within `after`.
    pub fn timeout(op: &str, after: Duration) -> Self {
        Self::new(ErrorKind::Timeout, format!("{op} timed out after {after:?}"))
    }

    /// The backend failed during `op`; `source` is the client library's error.
    pub fn backend(op: &str, source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Backend, format!("registry backend failed during {op}")).with_source(source)
    }

    /// The backend failed, in the caller's words, with no error value beneath.
    pub fn backend_message(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message.into())
    }

    /// `what` has stopped.
    pub fn closed(what: &'static str) -> Self {
        Self::new(ErrorKind::Closed, format!("{what} has stopped"))
    }

    /// The discovery cache file at `path` is unusable.
    pub fn cache_file(path: impl AsRef<str>, reason: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::CacheFile,
            format!("discovery cache file {:?}: {reason}", path.as_ref()),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind).field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `e` and its causes as `a: b: c`, leaving out a cause whose text is already
/// there (a gRPC status repeats its transport error's text).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Leaf(&'static str, Option<Box<Leaf>>);
    impl fmt::Display for Leaf {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Leaf {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn chain_prints_each_cause_once_and_keeps_the_source_value() {
        let cause = Leaf(
            "etcd answered Unavailable: tcp connect error",
            Some(Box::new(Leaf(
                "tcp connect error",
                Some(Box::new(Leaf("connection refused", None))),
            ))),
        );
        let e = Error::backend("connect", cause).context("etcd at 127.0.0.1:1 did not answer");
        assert_eq!(e.to_string(), "etcd at 127.0.0.1:1 did not answer");
        assert_eq!(
            e.chain(),
            "etcd at 127.0.0.1:1 did not answer: etcd answered Unavailable: tcp connect error: connection refused"
        );
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.is_transient());
        let source = std::error::Error::source(&e).unwrap();
        assert!(
            source.downcast_ref::<Leaf>().is_some(),
            "the source is the error value, not its text"
        );
    }

    #[test]
    fn messages_name_the_input_and_hide_secrets() {
        let e = Error::invalid_url("etcd://h:2379?user=root&password=hunter2", "unknown parameter \"x\"");
        assert_eq!(e.kind(), ErrorKind::InvalidUrl);
        let all = format!("{e} {e:?} {}", e.chain());
        assert!(!all.contains("hunter2"), "{all}");
        assert!(
            all.contains("password=***") && all.contains("unknown parameter"),
            "{all}"
        );
        let e = Error::invalid_instance("port", "0", "must be 1..=65535");
        assert_eq!(e.to_string(), "invalid port \"0\": must be 1..=65535");
        assert!(!Error::closed("registration").is_transient());
        assert_eq!(ErrorKind::ALL.len(), 12);
    }
}
