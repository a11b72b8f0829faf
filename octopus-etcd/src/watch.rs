//! etcd's Watch service: creating a watch (and learning that its start is
//! compacted) and its responses as Octopus watch messages.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use octopus_discovery_core::{Result, Revision, SinkStart, WatchGuard, WatchSink, WatchStart};

use crate::call::bounded;
use crate::convert::etcd_err;
use crate::watch_mux::{Opened, Spec, WatchMux};

/// Creates the watch `spec` describes, read as a stream.
pub(crate) async fn open(client: &Client, watches: &WatchMux, spec: Spec, limit: Duration) -> Result<WatchStart> {
    Ok(match open_with(client, watches, spec, None, limit).await? {
        Opened::Watch(stream, _) => WatchStart::Stream(stream),
        Opened::Compacted(compacted) => WatchStart::Compacted { compacted },
        Opened::Pushed(..) => unreachable!("a watch opened without a sink is a stream"),
    })
}

/// Creates the watch `spec` describes, its messages handed to `sink` by the
/// task that reads the client's watch stream.
pub(crate) async fn open_into(
    client: &Client,
    watches: &WatchMux,
    spec: Spec,
    sink: Box<dyn WatchSink>,
    limit: Duration,
) -> Result<SinkStart> {
    Ok(match open_with(client, watches, spec, Some(sink), limit).await? {
        Opened::Pushed(handle, _) => SinkStart::Watching(WatchGuard::new(handle)),
        Opened::Compacted(compacted) => SinkStart::Compacted { compacted },
        Opened::Watch(..) => unreachable!("a watch opened with a sink is pushed"),
    })
}

async fn open_with(
    client: &Client,
    watches: &WatchMux,
    spec: Spec,
    sink: Option<Box<dyn WatchSink>>,
    limit: Duration,
) -> Result<Opened> {
    let (key, prefix, start) = (spec.key.clone(), spec.prefix, spec.start);
    let key = key.as_str();
    // On the client's one watch stream; resolves once etcd has created the
    // watch, or refused it (its start compacted).
    let opened = bounded(limit, "watch", watches.open(spec, sink)).await??;
    let created = match &opened {
        Opened::Watch(_, created) | Opened::Pushed(_, created) => *created,
        Opened::Compacted(_) => return Ok(opened),
    };
    // etcd creates a watch whose start revision is compacted and only then
    // cancels it (its sync loop finds it, within 100 ms). A watch that starts
    // after the store's revision at its creation is synced from birth and can
    // never be compacted (a compaction only removes revisions that exist), so
    // it needs no check: the usual case, a watch opened right after the read
    // it follows. Otherwise writes landed between that read and the watch and
    // a compaction may have too: for prefix watches (discovery's), read at the
    // revision before the start once the watch is created. Compaction only
    // moves forward, so if that revision is readable now it was when the watch
    // was created, and the watch is sound; if not, the compacted start is an
    // error here, never a watch that looks healthy (and makes a view fresh)
    // for a round trip before its cancel arrives. (Read before creating, a
    // compaction could land between the read and the create.) A
    // single-key watch (the key of a service's only registration, watched from
    // its write or its read) skips the extra request and learns of a compaction from the
    // cancel that follows.
    let synced_from_birth = created > 0 && start > created;
    if prefix && start > 1 && !synced_from_birth && compacted(client, key, prefix, start, limit).await? {
        // Dropping the watch cancels it on etcd.
        return Ok(Opened::Compacted(0));
    }
    Ok(opened)
}

/// Whether revision `start - 1` of `key` is compacted away.
async fn compacted(client: &Client, key: &str, prefix: bool, start: Revision, limit: Duration) -> Result<bool> {
    let mut opts = GetOptions::new().with_revision(start - 1).with_count_only();
    if prefix {
        opts = opts.with_prefix();
    }
    let mut kv = client.kv_client();
    match bounded(limit, "watch", kv.get(key, Some(opts))).await? {
        Ok(_) => Ok(false),
        Err(etcd_client::Error::GRpcStatus(s))
            if s.code() == tonic::Code::OutOfRange && s.message().contains("compacted") =>
        {
            Ok(true)
        }
        Err(e) => Err(etcd_err("watch", e)),
    }
}
