//! etcd's KV service: the fenced write's second transaction (its first is in
//! `creates`), deletes, reads, and prefix reads page by page from one revision.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use octopus_discovery_core::{prefix_end, Error, Header, KeyValue, LeaseId, OwnedTask, Result, Revision};

use crate::call::within;
use crate::convert::{convert_kv, header, into_kv};

async fn txn(client: &Client, txn: Txn, limit: Duration) -> Result<etcd_client::TxnResponse> {
    within(limit, "txn", client.kv_client().txn(txn)).await
}

/// Writes `key` under `lease` if its mod revision is still `mod_revision`.
pub(crate) async fn put_if_unchanged(
    client: &Client,
    key: &str,
    value: Vec<u8>,
    lease: LeaseId,
    mod_revision: Revision,
    limit: Duration,
) -> Result<Option<Revision>> {
    let t = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
        .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease.0)))]);
    let resp = txn(client, t, limit).await?;
    Ok(resp.succeeded().then(|| header(resp.header()).revision))
}

/// Deletes `key`; whether it was there.
pub(crate) async fn delete(client: &Client, key: &str, limit: Duration) -> Result<bool> {
    let resp = within(limit, "delete", client.kv_client().delete(key, None)).await?;
    Ok(resp.deleted() > 0)
}

/// Deletes `key` if `lease` holds it.
pub(crate) async fn delete_owned(client: &Client, key: &str, lease: LeaseId, limit: Duration) -> Result<bool> {
    let t = Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, lease.0)])
        .and_then([TxnOp::delete(key, None)]);
    Ok(txn(client, t, limit).await?.succeeded())
}

/// Reads `key`.
pub(crate) async fn get(client: &Client, key: &str, limit: Duration) -> Result<(Header, Option<KeyValue>)> {
    let resp = within(limit, "get", client.kv_client().get(key, None)).await?;
    Ok((header(resp.header()), resp.kvs().first().map(convert_kv)))
}

/// A page being read in its own task; dropping it (the read was abandoned) stops the task.
struct Page(OwnedTask<Result<etcd_client::GetResponse>>);

impl Page {
    async fn finish(&mut self) -> Result<etcd_client::GetResponse> {
        (&mut self.0)
            .await
            .unwrap_or_else(|e| Err(Error::backend("range", format!("the page read ended: {e}"))))
    }
}

/// Starts reading one page of `[start, end)` (at revision `at`) in a task of its
/// own, so that it proceeds while the caller works on the page before.
fn read_page(
    client: &Client,
    start: Vec<u8>,
    end: Vec<u8>,
    at: Option<Revision>,
    page_size: i64,
    limit: Duration,
) -> Page {
    let mut opts = GetOptions::new().with_range(end).with_limit(page_size);
    if let Some(revision) = at {
        opts = opts.with_revision(revision);
    }
    let mut kv = client.kv_client();
    Page(OwnedTask::spawn(async move {
        within(limit, "range", kv.get(start, Some(opts))).await
    }))
}

/// Reads every key under `prefix`, `page_size` at a time, every page from the
/// first page's revision; hands each page to `page` as the next is on its way.
pub(crate) async fn range_prefix_pages(
    client: &Client,
    prefix: &str,
    page_size: i64,
    limit: Duration,
    page: &mut (dyn FnMut(Vec<KeyValue>) + Send),
) -> Result<Header> {
    let end = prefix_end(prefix.as_bytes());
    let mut next = read_page(client, prefix.as_bytes().to_vec(), end.clone(), None, page_size, limit);
    let mut at: Option<Header> = None;
    loop {
        let mut resp = next.finish().await?;
        let h = *at.get_or_insert(header(resp.header()));
        let more = resp.more();
        let kvs: Vec<KeyValue> = resp.take_kvs().into_iter().map(into_kv).collect();
        let after = kvs.last().filter(|_| more).map(|last| {
            let mut start = last.key.clone();
            start.push(0);
            start
        });
        let last_page = after.is_none();
        // The next page is on its way before this one is handed over; every page
        // from one revision.
        if let Some(start) = after {
            next = read_page(client, start, end.clone(), Some(h.revision), page_size, limit);
        }
        page(kvs);
        if last_page {
            return Ok(h);
        }
    }
}
