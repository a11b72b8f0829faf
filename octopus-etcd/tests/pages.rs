//! Paginated reads against a real etcd: every key under a prefix, in key order,
//! at one revision, handed over page by page; and a watch cache that syncs
//! through many pages.

use std::sync::Arc;

use octopus_discovery_core::{Discovery, JsonLayout, KeyLayout, KvBackend, ServiceInstance, WatchDiscovery};
use octopus_etcd::{EtcdBackend, EtcdOptions};
use octopus_testkit::etcd::EtcdServer;

async fn paged(server: &EtcdServer, page_size: u32) -> EtcdBackend {
    EtcdBackend::connect(EtcdOptions::new([server.endpoint()]).unwrap().page_size(page_size))
        .await
        .unwrap()
}

fn put(server: &EtcdServer, key: &str, value: &str) {
    let o = server.etcdctl(&["put", key, value]);
    assert!(o.status.success(), "etcdctl: {}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_is_read_in_pages_in_key_order_at_one_revision() {
    let server = EtcdServer::start().await;
    for i in 0..10 {
        put(&server, &format!("/p/k{i:02}"), &format!("v{i}"));
    }
    put(&server, "/p0", "outside the prefix");
    put(&server, "/o", "outside the prefix");
    let backend = paged(&server, 3).await;

    let mut pages = Vec::new();
    let header = backend
        .range_prefix_pages("/p/", &mut |kvs| pages.push(kvs))
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 3, 1], "pages of 3 as they came");
    let keys: Vec<String> = pages
        .iter()
        .flatten()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("/p/k{i:02}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(pages[3][0].value, b"v9");
    // Twelve puts made revisions 2..=13; the read is at the last of them.
    assert_eq!(header.revision, 13);

    // The collecting read gives the same, and an exact multiple of the page ends
    // without an empty page.
    let (h, all) = backend.range_prefix("/p/").await.unwrap();
    assert_eq!((h.revision, all.len()), (13, 10));
    let mut sizes = Vec::new();
    paged(&server, 5)
        .await
        .range_prefix_pages("/p/", &mut |kvs| sizes.push(kvs.len()))
        .await
        .unwrap();
    assert_eq!(sizes, [5, 5]);

    // Nothing under a prefix: one empty page, and the store's revision.
    let mut sizes = Vec::new();
    let h = backend
        .range_prefix_pages("/none/", &mut |kvs| sizes.push(kvs.len()))
        .await
        .unwrap();
    assert_eq!((sizes, h.revision), (vec![0], 13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cache_syncs_through_many_pages() {
    let server = EtcdServer::start().await;
    let layout: Arc<dyn KeyLayout> = Arc::new(JsonLayout::default());
    let writer = paged(&server, 1000).await;
    for i in 0..250 {
        let inst = ServiceInstance::new("paged", format!("i{i:03}"), "127.0.0.1", 1000 + i).unwrap();
        let key = layout.key(&inst, octopus_discovery_core::LeaseId(0));
        writer
            .client()
            .await
            .unwrap()
            .clone()
            .put(key, layout.encode(&inst).unwrap(), None)
            .await
            .unwrap();
    }
    put(
        &server,
        &layout.key(
            &ServiceInstance::new("paged", "bad", "127.0.0.1", 1).unwrap(),
            octopus_discovery_core::LeaseId(0),
        ),
        "not json",
    );
    let discovery = WatchDiscovery::new(Arc::new(paged(&server, 7).await), layout);
    // The one-shot read, and a watch's first snapshot (the cache decodes page by page).
    let once = discovery.instances("paged").await.unwrap();
    let mut watch = discovery.watch("paged").await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    for found in [once, first.instances] {
        assert_eq!(
            found.len(),
            250,
            "every instance across 36 pages, the undecodable value skipped"
        );
        let ids: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(found.iter().last().map(|i| i.port), Some(1249));
    }
}
