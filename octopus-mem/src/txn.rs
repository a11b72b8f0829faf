//! Transactions: what they compare, what they do, what they return, and the
//! limits etcd puts on them.

use std::collections::BTreeMap;

use octopus_discovery_core::{Header, KeyValue, LeaseId, Revision};

use crate::range::KeyRange;
use crate::Error;

/// What a transaction compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0: absent).
    Version(i64),
    /// The key's create revision (0: absent).
    Create(Revision),
    /// The key's mod revision (0: absent).
    Mod(Revision),
    /// The key's value.
    Value(Vec<u8>),
    /// The key's lease (0: none or absent).
    Lease(i64),
}

/// How a transaction compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One comparison of a transaction, on every key of `range` (etcd compares each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The keys compared.
    pub range: KeyRange,
    /// The operator.
    pub op: CompareOp,
    /// The field and the value to compare with.
    pub target: CompareTarget,
}

impl Compare {
    /// Whether the comparison holds over `kvs` (the store's keys now).
    pub(crate) fn holds(&self, kvs: &BTreeMap<Vec<u8>, KeyValue>) -> bool {
        let absent = KeyValue {
            key: self.range.key.clone(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: 0,
            version: 0,
            lease: LeaseId::NONE,
        };
        let kvs: Vec<&KeyValue> = if self.range.range_end.is_empty() {
            kvs.get(&self.range.key).into_iter().collect()
        } else {
            kvs.range::<[u8], _>(self.range.bounds()).map(|(_, v)| v).collect()
        };
        // etcd (applyCompare): no key in the range compares the zero key-value,
        // except a value compare, which fails: there is no value to compare.
        let kvs = match (kvs.is_empty(), &self.target) {
            (true, CompareTarget::Value(_)) => return false,
            (true, _) => vec![&absent],
            (false, _) => kvs,
        };
        kvs.into_iter().all(|kv| {
            let ord = match &self.target {
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Lease(v) => kv.lease.0.cmp(v),
                CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
            };
            match self.op {
                CompareOp::Equal => ord.is_eq(),
                CompareOp::NotEqual => ord.is_ne(),
                CompareOp::Less => ord.is_lt(),
                CompareOp::Greater => ord.is_gt(),
            }
        })
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read a range (at the transaction's revision).
    Range(KeyRange),
    /// Write `key = value`, attached to `lease` (0: none).
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease (0: none).
        lease: i64,
    },
    /// Delete a range.
    Delete(KeyRange),
    /// Read a range as it was at a past revision (a compacted or future one
    /// fails the whole transaction, as in etcd).
    RangeAt(KeyRange, Revision),
}

/// The result of one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// The keys read.
    Range(Vec<KeyValue>),
    /// The key before the put, if any.
    Put(Option<KeyValue>),
    /// The keys deleted, as they were.
    Delete(Vec<KeyValue>),
}

/// The result of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// The store's header after it.
    pub header: Header,
    /// Whether every comparison held (then `success` ran, else `failure`).
    pub succeeded: bool,
    /// One result per operation that ran.
    pub results: Vec<OpResult>,
}

/// etcd's default `--max-txn-ops`: compares, and operations in each branch.
pub const MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The checks etcd makes before applying a transaction (its `checkTxnRequest`,
/// `checkIntervals` and request size limit).
pub(crate) fn check_limits(compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<(), Error> {
    for count in [compare.len(), success.len(), failure.len()] {
        if count > MAX_TXN_OPS {
            return Err(Error::TooManyOps {
                count,
                max: MAX_TXN_OPS,
            });
        }
    }
    let key_bytes = |r: &KeyRange| r.key.len() + r.range_end.len();
    let bytes: usize = compare.iter().map(|c| key_bytes(&c.range)).sum::<usize>()
        + [success, failure]
            .iter()
            .flat_map(|ops| ops.iter())
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Range(r) | Op::Delete(r) | Op::RangeAt(r, _) => key_bytes(r),
            })
            .sum::<usize>();
    if bytes > MAX_REQUEST_BYTES {
        return Err(Error::RequestTooLarge {
            bytes,
            max: MAX_REQUEST_BYTES,
        });
    }
    for ops in [success, failure] {
        let mut puts: Vec<&[u8]> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, .. } => Some(key.as_slice()),
                _ => None,
            })
            .collect();
        puts.sort_unstable();
        let twice = puts.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]);
        let deleted = || {
            ops.iter().find_map(|op| match op {
                Op::Delete(range) => puts.iter().find(|k| range.contains(k)).copied(),
                _ => None,
            })
        };
        if let Some(key) = twice.or_else(deleted) {
            return Err(Error::DuplicateKey {
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
    }
    Ok(())
}
