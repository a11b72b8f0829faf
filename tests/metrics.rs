//! `/metrics` parsed by a real Prometheus text parser, and `/healthz`, `/readyz`.

use std::time::Duration;

use octopus::mem::{MemBackend, Store};
use octopus::metrics::{self, Readiness};
use octopus::{BackoffPolicy, Discovery, RegisterOptions, Registry, ServiceInstance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_series_and_health_endpoints() {
    let handle = metrics::install().unwrap();
    let readiness = Readiness::default();
    let (addr, server) = metrics::bind("127.0.0.1:0".parse().unwrap(), handle, readiness.clone())
        .await
        .unwrap();

    let backend = MemBackend::new(Store::new());
    let opts = RegisterOptions::default()
        .ttl(Duration::from_secs(1))
        .retry(BackoffPolicy::new(Duration::from_millis(20), Duration::from_millis(100)).unwrap());
    let reg = backend
        .registry()
        .register(ServiceInstance::new("metered", "m1", "127.0.0.1", 1).unwrap(), opts)
        .await
        .unwrap();
    readiness.track(&reg);
    let discovery = backend.discovery();
    let mut w = discovery.watch("metered").await.unwrap();
    w.wait_for(|s| s.instances.len() == 1).await.unwrap();
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);

    // Lose the lease: readiness says so, and the counters move.
    backend.set_reachable(false);
    timeout(Duration::from_secs(5), async {
        while get(addr, "/readyz").await.0 != 503 {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("not ready while the registration is lost");
    backend.set_reachable(true);
    reg.registered().await.unwrap();
    // …and discovery sees the new registration live (its watch resumes after a backoff).
    let now = backend.store().header().revision;
    timeout(
        Duration::from_secs(10),
        w.wait_for(|s| s.is_fresh() && s.revision >= now),
    )
    .await
    .expect("discovery caught up")
    .unwrap();

    // An abandoned registration (its key left to the TTL) leaves the gauge too.
    let abandoned = backend
        .registry()
        .register(
            ServiceInstance::new("abandoned", "a1", "127.0.0.1", 1).unwrap(),
            RegisterOptions::default(),
        )
        .await
        .unwrap();
    abandoned.registered().await.unwrap();
    abandoned.abandon().await;

    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, service: &str, extra: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.get("service") == Some(service)
                    && extra.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value("octopus_registrations", "metered", Some(("status", "registered"))),
        Some(1.0),
        "{body}"
    );
    assert!(
        value("octopus_lease_losses_total", "metered", None).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(
        value("octopus_keepalive_failures_total", "metered", None).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(
        value("octopus_reregistrations_total", "metered", None).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(
        value("octopus_watch_reconnects_total", "metered", None).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert_eq!(value("octopus_instances", "metered", None), Some(1.0), "{body}");
    assert_eq!(
        value("octopus_registrations", "abandoned", Some(("status", "registered"))),
        Some(0.0),
        "{body}"
    );
    // The re-registration reached the watch: one propagation observed, in buckets.
    let propagation = scrape
        .samples
        .iter()
        .find(|s| s.metric == "octopus_discovery_propagation_seconds" && s.labels.get("service") == Some("metered"))
        .unwrap_or_else(|| panic!("no propagation histogram in {body}"));
    match &propagation.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let all = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert!(all >= 1.0, "{body}");
            assert!(buckets.iter().any(|b| b.less_than == 0.001), "{body}");
        }
        other => panic!("propagation is not a histogram: {other:?}"),
    }
    assert_eq!(get(addr, "/nope").await.0, 404);
    // A request that arrives in pieces is read whole.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /hea").await.unwrap();
    // A pause between the pieces, so that the server reads the first on its own.
    sleep(Duration::from_millis(50)).await;
    conn.write_all(b"lthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    promtool_lint(&body);

    reg.deregister().await.unwrap();
    assert_eq!(
        get(addr, "/readyz").await.0,
        200,
        "a deregistered registration no longer counts"
    );

    // Dropping the owner stops the server, and a connection it had open.
    let mut open = tokio::net::TcpStream::connect(addr).await.unwrap();
    open.write_all(b"GET /hea").await.unwrap();
    // Time for the server to accept the connection and start reading it (nothing
    // outside the server shows that it has).
    sleep(Duration::from_millis(50)).await;
    drop(server);
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the open connection ended with the server: {read:?}"
    );
    let refused = timeout(Duration::from_secs(5), async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the listener still accepts after its owner was dropped"
    );
}

/// Prometheus's own linter on the scraped text (Debian's `prometheus` package,
/// which `./scripts/test` installs): help text for every family, naming rules.
fn promtool_lint(body: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; ./scripts/test installs it)");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n--- the text:\n{body}"
    );
}
