//! Key ranges in etcd's terms.

use octopus_discovery_core::prefix_end;

/// A key range in etcd's terms: `range_end` empty is the single key `key`;
/// `range_end == [0]` is every key from `key` on; otherwise `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// First key.
    pub key: Vec<u8>,
    /// End (exclusive), see the type's docs.
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// The single key `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Every key that starts with `prefix` (every key, for an empty prefix).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        KeyRange { key, range_end }
    }

    /// True if `k` is in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => k == self.key.as_slice(),
            [0] => k >= self.key.as_slice(),
            end => k >= self.key.as_slice() && k < end,
        }
    }

    /// The range as `BTreeMap` bounds.
    pub(crate) fn bounds(&self) -> (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) {
        use std::ops::Bound::*;
        match self.range_end.as_slice() {
            [] => (Included(self.key.as_slice()), Included(self.key.as_slice())),
            [0] => (Included(self.key.as_slice()), Unbounded),
            end if end <= self.key.as_slice() => (Included(self.key.as_slice()), Excluded(self.key.as_slice())),
            end => (Included(self.key.as_slice()), Excluded(end)),
        }
    }
}
