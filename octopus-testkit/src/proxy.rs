//! A fault-injecting TCP proxy on a loopback port (pass, blackhole, reset, delay),
//! and clients of an etcd-speaking server each behind a proxy of its own, so that
//! one client can be cut off while others stay connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::sleep;

use octopus_discovery_core::OwnedTask;
use octopus_etcd::{EtcdBackend, EtcdOptions};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass,
    /// Forward nothing, refuse nothing: connections hang, as in a partition.
    Blackhole,
    /// Close every connection with a reset and refuse new ones, as a crashed peer.
    Reset,
    /// Forward, each chunk held back this long (latency).
    Delay(Duration),
}

impl ProxyMode {
    fn forwards(&self) -> bool {
        matches!(self, ProxyMode::Pass | ProxyMode::Delay(_))
    }
}

/// A TCP proxy on a loopback port in front of one address, with a fault switch.
/// Dropping it stops it and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<ProxyMode>>,
    _task: OwnedTask<()>,
}

/// Clients of an etcd-speaking server for the conformance suite: each behind a
/// fault proxy of its own, grouped by namespace so that a case can cut its own.
#[derive(Debug, Default)]
pub struct ProxiedClients {
    proxies: std::sync::Mutex<std::collections::BTreeMap<String, Vec<Arc<FaultProxy>>>>,
}

impl ProxiedClients {
    /// A registry and a discovery of the server at `addr`, in `namespace`, through a
    /// new proxy (2 s request timeout, HTTP/2 keepalive 500 ms / 1 s).
    pub async fn open(
        &self,
        addr: SocketAddr,
        namespace: &str,
    ) -> (
        Arc<dyn octopus_discovery_core::Registry>,
        Arc<dyn octopus_discovery_core::Discovery>,
    ) {
        let proxy = Arc::new(FaultProxy::start(addr).await);
        let opts = EtcdOptions::new([proxy.endpoint()])
            .expect("loopback endpoint")
            .request_timeout(Duration::from_secs(2))
            .http2_keepalive(Duration::from_millis(500), Duration::from_secs(1));
        self.proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(namespace.to_owned())
            .or_default()
            .push(proxy);
        let backend = EtcdBackend::connect(opts).await.expect("the server answers");
        let layout = Arc::new(octopus_discovery_core::JsonLayout::new(namespace).expect("a valid namespace"));
        (
            Arc::new(backend.registry_with(layout.clone())),
            Arc::new(backend.discovery_with(layout)),
        )
    }

    /// Cuts (or restores) every connection of `namespace`'s clients.
    pub fn cut(&self, namespace: &str, cut: bool) {
        let mode = if cut { ProxyMode::Blackhole } else { ProxyMode::Pass };
        if let Some(proxies) = self.proxies.lock().unwrap_or_else(|p| p.into_inner()).get(namespace) {
            for proxy in proxies {
                proxy.set(mode);
            }
        }
    }
}

impl FaultProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(watch::channel(ProxyMode::Pass).0);
        let rx = mode.subscribe();
        let task = OwnedTask::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if *rx.borrow() == ProxyMode::Reset {
                    let _ = inbound.set_zero_linger(); // close with RST
                    continue;
                }
                conns.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let _ = (inbound.set_zero_linger(), outbound.set_zero_linger());
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        let reset = rx.clone();
                        tokio::select! {
                            _ = pipe(ri, wo, rx.clone()) => {}
                            _ = pipe(ro, wi, reset) => {}
                            _ = rx.wait_for(|m| *m == ProxyMode::Reset) => {} // dropping both sockets resets them
                        }
                    }
                });
            }
        });
        FaultProxy {
            addr,
            mode,
            _task: task,
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Switches the fault mode for every connection, current and future.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

/// Copies bytes while the mode is `Pass`; a blackhole stops reading (nothing is lost,
/// nothing moves) until the mode is `Pass` again.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if mode.wait_for(ProxyMode::forwards).await.is_err() {
            return;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = mode.wait_for(|m| !m.forwards()) => continue,
        };
        let Ok(current) = mode.wait_for(ProxyMode::forwards).await.map(|m| *m) else {
            return;
        };
        if let ProxyMode::Delay(d) = current {
            sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
