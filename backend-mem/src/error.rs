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
    /// The backend was made unreachable (fault injection in tests).
    #[error("in-memory registry is unreachable (fault injected)")]
    Unreachable,
}

impl From<Error> for octopus_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::LeaseNotFound(id) => octopus_core::Error::LeaseNotFound(id),
            Error::Compacted { requested, compacted } => octopus_core::Error::Compacted { requested, compacted },
            other => octopus_core::Error::backend("mem", other),
        }
    }
}
