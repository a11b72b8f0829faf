//! `octopus dev`: the simulator's in-memory etcd on real TCP, for development.

use std::net::SocketAddr;
use std::path::PathBuf;

use octopus_devserver::{MemEtcd, MemEtcdOptions};
use octopus_mem::Store;

use crate::console::ConsoleArgs;
use crate::Result;

pub(crate) async fn run(listen: SocketAddr, data: Option<PathBuf>, console: Option<ConsoleArgs>) -> Result {
    let store = match &data {
        Some(path) if path.exists() => octopus_devserver::persist::load(path).map_err(|e| format!("--data: {e}"))?,
        _ => Store::new(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = MemEtcd::new(
        store.clone(),
        MemEtcdOptions {
            name: "octopus-dev".into(),
            client_urls: vec![format!("http://{addr}")],
            ..MemEtcdOptions::default()
        },
    );
    println!("octopus dev: an in-memory etcd (v3 API) on http://{addr}");
    println!("  implements KV, Lease, Watch, status and member list of a single member; no auth, no TLS");
    println!("  registry URL: etcd://{addr}   etcdctl: etcdctl --endpoints {addr} get --prefix /");
    match &data {
        Some(path) => println!(
            "  data: {} ({} keys loaded; saved on Ctrl-C or SIGTERM)",
            path.display(),
            store.len()
        ),
        None => println!("  data: in memory only (--data FILE keeps it across restarts)"),
    }
    // The console reads the embedded registry through its own etcd API, as any
    // client would; it stops with the server.
    let console = async {
        match &console {
            Some(args) => {
                let registry = format!("etcd://{addr}");
                let client = octopus::connect_lazy(&registry)
                    .await
                    .map_err(|e| format!("--console: cannot use {registry}: {e}"))?;
                crate::console::serve(args, &registry, &client).await
            }
            None => std::future::pending().await,
        }
    };
    // Watches are long-lived streams: stop at the signal without waiting for them.
    tokio::select! {
        served = server.serve(listener, std::future::pending()) => {
            served.map_err(|e| format!("serving on {addr} failed: {e}"))?;
        }
        served = console => served?,
        _ = octopus::shutdown_signal() => {}
    }
    if let Some(path) = &data {
        let (keys, leases) = octopus_devserver::persist::save(&store, path).map_err(|e| format!("--data: {e}"))?;
        println!("saved {keys} keys and {leases} leases to {}", path.display());
    }
    Ok(())
}
