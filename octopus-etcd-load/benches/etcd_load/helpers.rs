//! What the scenarios share: the instances they write, connections to etcd,
//! bulk loading, etcd's metrics and formatting.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};
use octopus::core::{JsonLayout, KeyLayout};
use octopus::etcd::EtcdBackend;
use octopus::ServiceInstance;
use octopus_testkit::etcd::EtcdServer;

pub(crate) fn layout() -> Arc<dyn KeyLayout> {
    Arc::new(JsonLayout::default())
}

pub(crate) fn instance(service: &str, n: usize) -> ServiceInstance {
    ServiceInstance::new(service, format!("instance-{n:06}"), "127.0.0.7", 1 + (n % 60000) as u16)
        .unwrap()
        .with_version("v1.2.3")
        .with_metadata("zone", "eu-west-1a")
}

pub(crate) async fn backend(server: &EtcdServer) -> EtcdBackend {
    EtcdBackend::connect(server.options().request_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
}

pub(crate) async fn raw(server: &EtcdServer) -> Client {
    Client::connect([server.endpoint()], None).await.unwrap()
}

pub(crate) async fn big_etcd() -> EtcdServer {
    EtcdServer::start_with(
        &[
            "--quota-backend-bytes=8589934592".into(),
            "--max-txn-ops=1024".into(),
            "--max-request-bytes=33554432".into(),
        ],
        None,
    )
    .await
}

/// Writes `n` instances of `service` with raw txns of 500 puts (no lease).
pub(crate) async fn load(client: &mut Client, service: &str, n: usize) {
    let layout = layout();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| {
                let inst = instance(service, *i);
                TxnOp::put(
                    layout.key(&inst, octopus::LeaseId(0)),
                    layout.encode(&inst).unwrap(),
                    None,
                )
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
}

/// etcd's own count of messages received per gRPC method (its /metrics).
pub(crate) async fn etcd_messages(server: &EtcdServer, method: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("grpc_server_msg_received_total") && l.contains(&format!("grpc_method=\"{method}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
