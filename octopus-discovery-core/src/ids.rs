//! Identifiers of the store: revisions and lease ids.

use std::fmt;

/// A store revision: etcd's global, monotonically increasing modification counter.
pub type Revision = i64;

/// A lease identifier. `LeaseId(0)` (also [`LeaseId::NONE`]) means "no lease".
/// Shown in hex, as etcdctl shows lease ids; stored as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub i64);

impl LeaseId {
    /// No lease.
    pub const NONE: LeaseId = LeaseId(0);

    /// Whether this is no lease.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
