//! The fenced write, written once for every backend: create the key if it is
//! absent; otherwise overwrite it only if it is ours (held by our lease or one of
//! our earlier ones), guarded by the mod revision we read. etcd's compares are
//! AND-only, hence two steps, each one transaction of the backend
//! ([`KvBackend::create`], [`KvBackend::put_if_unchanged`]).

pub use crate::kv::Created;
use crate::{Error, KvBackend, LeaseId, PutOutcome, Result};

/// How many times the two steps are tried when the key changes between them
/// (deleted, or written by someone else, in between) before giving up with an
/// error: a key that keeps changing under us is contended, and the registration
/// task's backoff is the right place to wait.
pub const FENCED_WRITE_TRIES: usize = 8;

/// Writes `key = value` under `lease` if the key is absent or held by `lease` or
/// by one of `previous`; otherwise reports the owner and leaves the key alone.
pub async fn put_owned<B: KvBackend + ?Sized>(
    backend: &B,
    key: &str,
    value: Vec<u8>,
    lease: LeaseId,
    previous: &[LeaseId],
) -> Result<PutOutcome> {
    for _ in 0..FENCED_WRITE_TRIES {
        let current = match backend.create(key, value.clone(), lease).await? {
            Created::Written(revision) => return Ok(PutOutcome::Written(revision)),
            Created::Present(Some(current)) => current,
            Created::Present(None) => continue, // deleted in between: try again
        };
        let ours = current.lease == lease || previous.contains(&current.lease);
        if !ours && !crate::bug!(NoFencing) {
            return Ok(PutOutcome::Conflict { owner: current.lease });
        }
        if let Some(revision) = backend
            .put_if_unchanged(key, value.clone(), lease, current.mod_revision)
            .await?
        {
            return Ok(PutOutcome::Written(revision));
        }
    }
    Err(Error::backend(
        "put",
        format!("key {key:?} kept changing under {FENCED_WRITE_TRIES} guarded writes"),
    ))
}
