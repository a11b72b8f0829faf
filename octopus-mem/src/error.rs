/// What the in-memory store refuses, in etcd's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lease does not exist (never granted, expired or revoked).
    #[error("lease {0:#x} not found")]
    LeaseNotFound(i64),
    /// A lease with this id exists already.
    #[error("lease {0:#x} already exists")]
    LeaseExists(i64),
    /// The requested revision is older than the compaction point.
    #[error("required revision {requested} has been compacted (compact revision {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compaction revision.
        compacted: i64,
    },
    /// The requested revision is newer than the store's.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's revision.
        current: i64,
    },
    /// A TTL or other argument is out of range.
    #[error("invalid argument {name}: {rule}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// The rule it broke.
        rule: &'static str,
    },
    /// A transaction names one key twice among its writes (a put twice, or a put
    /// inside a deleted range), as etcd refuses.
    #[error("duplicate key given in txn request: {key:?}")]
    DuplicateKey {
        /// The key, lossily as UTF-8.
        key: String,
    },
    /// A transaction has more compares or operations in a branch than etcd takes
    /// (`--max-txn-ops`, 128).
    #[error("too many operations in txn request: {count} (at most {max})")]
    TooManyOps {
        /// The count found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A request is larger than etcd takes (`--max-request-bytes`, 1.5 MiB).
    #[error("request is too large: {bytes} bytes (at most {max})")]
    RequestTooLarge {
        /// The request's size, keys and values.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The backend was made unreachable (fault injection in tests).
    #[error("in-memory registry is unreachable (fault injected)")]
    Unreachable,
}

impl From<Error> for octopus_discovery_core::Error {
    fn from(e: Error) -> Self {
        // The store's own refusals (a lease not found, a compacted revision…)
        // stay typed as the source; the trait's callers read protocol answers
        // (a compacted watch start, a lease gone) from typed outcomes instead.
        octopus_discovery_core::Error::backend("mem", e)
    }
}
