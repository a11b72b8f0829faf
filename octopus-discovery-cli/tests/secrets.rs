//! A password planted in the registry URL reaches no output: not the CLI's
//! errors (a closed port, an unknown parameter, etcd parameters given to
//! `mem://`, a wrong password, a password before the host or split off by a
//! `&`, a misspelt parameter), not `--help` with the URL in
//! `OCTOPUS_REGISTRY`, not its headers and listings against a real etcd with
//! auth on, not the scaffolded service's logs at debug level. (`Debug` of the
//! library's types is checked in the facade's `tests/secrets.rs`.)

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use octopus_testkit::etcd::EtcdServer;

const SECRET: &str = "Planted-Secret-7c1f";
const WRONG: &str = "Wrong-Secret-93ab";

/// Every byte a command printed, headed by the command for the message (the
/// heading is not part of what is checked: the command line holds the secret).
fn all_output(args: &[&str], env: &[(&str, &str)]) -> Printed {
    let out = Command::new(OCTOPUS)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug")
        .output()
        .expect("octopus runs");
    Printed {
        command: format!("octopus {}", args.first().copied().unwrap_or_default()),
        output: format!("{}{}", stdout(&out), stderr(&out)),
    }
}

struct Printed {
    command: String,
    output: String,
}

impl Printed {
    fn contains(&self, s: &str) -> bool {
        self.output.contains(s)
    }
}

impl std::fmt::Display for Printed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "$ {} …\n{}", self.command, self.output)
    }
}

fn assert_clean(printed: impl std::fmt::Display) {
    let output = printed.to_string();
    for secret in [SECRET, WRONG] {
        assert!(!output.contains(secret), "a password reached the output:\n{output}");
    }
}

#[test]
fn a_planted_password_reaches_no_output() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let etcd = runtime.block_on(EtcdServer::start());
    let admin = [format!("--user=root:{SECRET}")];
    for args in [
        &["user", "add", "root", &format!("--new-user-password={SECRET}")][..],
        &["auth", "enable"][..],
    ] {
        let flags: &[String] = if args[0] == "auth" { &admin } else { &[] };
        let out = etcd.etcdctl_with(flags, args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", stderr(&out));
    }
    let endpoint = etcd.endpoint().trim_start_matches("http://").to_owned();
    let good = format!("etcd://{endpoint}?user=root&password={SECRET}");
    let closed = free_addr();
    let timeouts = "connect_timeout=300ms&request_timeout=300ms";

    // Errors: each must still say what is wrong, and show the URL redacted
    // (`password=***` where the password is where it belongs). A password where
    // the URL's grammar does not expect it is refused, unseen.
    for (url, says, starred) in [
        (
            format!("etcd://{closed}?user=root&password={SECRET}&{timeouts}"),
            "did not answer",
            true,
        ),
        (
            format!("etcd://{endpoint}?bogus=1&user=root&password={SECRET}"),
            "unknown parameter \"bogus\"",
            true,
        ),
        (format!("{good}&bogus=1"), "after a hidden value", true),
        (format!("mem://?user=root&password={SECRET}"), "user", true),
        (
            format!("etcd://{endpoint}?user=root&password={WRONG}&{timeouts}"),
            "uthentication failed",
            true,
        ),
        (format!("etcd://root:{SECRET}@{endpoint}"), "user:password@", false),
        (
            format!("etcd://{endpoint}?user=root&password=Xy7&{SECRET}"),
            "%26",
            true,
        ),
        (
            format!("etcd://{endpoint}?user=root&pasword={SECRET}"),
            "unknown parameter \"pasword\"",
            false,
        ),
    ] {
        let output = all_output(&["ls", "--registry", &url], &[]);
        assert_clean(&output);
        assert!(
            output.contains(says),
            "the error still says what is wrong ({says}):\n{output}"
        );
        if starred {
            assert!(output.contains("password=***"), "the URL is shown redacted:\n{output}");
        }
    }
    // Help shows where the registry comes from, not what the environment holds.
    for command in ["ls", "console"] {
        let output = all_output(&[command, "--help"], &[("OCTOPUS_REGISTRY", &good)]);
        assert_clean(&output);
        assert!(output.contains("OCTOPUS_REGISTRY"), "{output}");
    }
    // The same password from a file or from the environment: the recommended ways.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd-password");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let from_file = format!("etcd://{endpoint}?user=root&password_file={}", file.display());
    let output = all_output(&["ls", "--registry", &from_file], &[]);
    assert_clean(&output);
    assert!(output.contains("no services"), "{output}");
    let output = all_output(
        &["ls", "--registry", &format!("etcd://{endpoint}?user=root")],
        &[("OCTOPUS_ETCD_PASSWORD", SECRET)],
    );
    assert_clean(&output);
    assert!(output.contains("no services"), "{output}");

    // The scaffolded service, at debug level, registering through auth.
    let Scaffold { project, binary, .. } = scaffold("secretive");
    let mut service = Running(
        Command::new(binary)
            .current_dir(project)
            .env("REGISTRY", &good)
            .env("PORT", "0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "debug")
            .env_remove("OCTOPUS_SERVICE__ID")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let service_output = drain(&mut service.0);
    until(
        || stdout(&octopus(&["ls", "secretive", "--registry", &good])).contains("serving"),
        "the service registers through etcd's auth",
    );
    // Every CLI command against the live registry: listings, one instance, marks.
    let id = stdout(&octopus(&["ls", "secretive", "--registry", &good, "--json"]));
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id["instances"][0]["id"]
        .as_str()
        .expect("one instance, with its id")
        .to_owned();
    let instance = format!("secretive/{id}");
    for args in [
        &["ls", "--registry", &good][..],
        &["ls", "secretive", "--registry", &good],
        &["get", &instance, "--registry", &good],
        &["drain", &instance, "--registry", &good],
        &["undrain", &instance, "--registry", &good],
        &["get", "secretive/nobody", "--registry", &good],
    ] {
        assert_clean(all_output(args, &[]));
    }
    // `watch` runs until stopped: its header and first lines.
    let mut watch = Running(
        Command::new(OCTOPUS)
            .args(["watch", "secretive", "--registry", &good])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let watch_output = drain(&mut watch.0);
    std::thread::sleep(Duration::from_millis(1500)); // output, not timing: whatever it printed by then
    let _ = watch.0.kill();
    let watched = joined(watch_output);
    assert!(watched.contains(&id), "the watch showed the instance: {watched}");
    assert_clean(&watched);

    // The service's own output, start to stop.
    sigterm(&mut service);
    let logs = joined(service_output);
    assert!(
        logs.contains("serving on") && logs.contains("DEBUG"),
        "debug logs were read: {logs}"
    );
    assert!(
        logs.contains("password=***"),
        "the start-up line shows the URL redacted: {logs}"
    );
    assert_clean(&logs);
}

/// Reads a child's stdout and stderr to their ends on threads of their own, so
/// that a pipe never fills and blocks it (debug logs are long).
fn drain(child: &mut Child) -> [JoinHandle<String>; 2] {
    fn read_all(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    [
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    ]
}

fn joined(readers: [JoinHandle<String>; 2]) -> String {
    readers.map(|r| r.join().unwrap()).concat()
}
