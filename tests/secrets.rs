//! Secrets never reach `Debug`, `Display` or an error: the registry URL, the
//! client, the etcd options and their TLS settings, and every error about them.

use octopus::etcd::{EtcdOptions, TlsOptions};
use octopus::{ErrorKind, RegistryUrl};

const SECRET: &str = "Planted-Secret-7c1f";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nPlanted-Key-Material-55d2\n-----END PRIVATE KEY-----\n";

fn clean(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET) && !text.contains("Planted-Key-Material"),
        "{what} shows a secret: {text}"
    );
}

#[test]
fn registry_urls_print_redacted() {
    let url = RegistryUrl::parse(&format!(
        "etcd://127.0.0.1:2379?user=root&password={SECRET}&namespace=/p"
    ))
    .unwrap();
    clean("RegistryUrl's Debug", &format!("{url:?}"));
    assert_eq!(
        url.redacted(),
        "etcd://127.0.0.1:2379?user=root&password=***&namespace=/p"
    );
    assert!(url.as_str().contains(SECRET), "the connecting code still has it");
    clean("an error about the URL", &url.error("some rule").chain());
}

#[test]
fn options_print_no_password_nor_private_key() {
    let opts = EtcdOptions::new(["127.0.0.1:2379"])
        .unwrap()
        .user("root", SECRET)
        .tls(TlsOptions::new("CA").identity("CERT", KEY_PEM));
    let shown = format!("{opts:?} {opts:#?}");
    clean("EtcdOptions' Debug", &shown);
    assert!(shown.contains("root") && shown.contains("***"), "{shown}");
}

#[tokio::test]
async fn errors_and_clients_print_redacted() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cases = [
        (
            format!("etcd://{closed}?user=root&password={SECRET}&connect_timeout=200ms&request_timeout=200ms"),
            ErrorKind::Backend,
        ),
        (
            format!("etcd://{closed}?user=root&password={SECRET}&bogus=1"),
            ErrorKind::InvalidUrl,
        ),
        (format!("mem://?user=root&password={SECRET}"), ErrorKind::InvalidUrl),
        (format!("etcd://{closed}?password={SECRET}"), ErrorKind::InvalidUrl),
        (
            format!("etcd://{closed}?user=root&password={SECRET}&password_file=/nonexistent"),
            ErrorKind::InvalidUrl,
        ),
    ];
    for (url, kind) in cases {
        let err = octopus::connect(&url).await.unwrap_err();
        clean(
            "an error's Display, Debug and chain",
            &format!("{err} {err:?} {}", err.chain()),
        );
        assert_eq!(err.kind(), kind, "{}", err.chain());
        let named = if kind == ErrorKind::InvalidUrl {
            "password=***".to_owned() // the URL, redacted
        } else {
            closed.to_string() // the endpoint
        };
        assert!(err.chain().contains(&named), "{named} is named: {}", err.chain());
    }
    let lazy = octopus::connect_lazy(&format!("etcd://{closed}?user=root&password={SECRET}"))
        .await
        .unwrap();
    clean("Client's Debug", &format!("{lazy:?}"));
    clean("Client::url", &lazy.url());
    let mem = octopus::connect("mem://?namespace=/secrets").await.unwrap();
    assert_eq!(mem.url(), "mem://?namespace=/secrets");
}

#[tokio::test]
async fn a_password_file_is_read_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let err = octopus::connect_lazy(&format!(
        "etcd://127.0.0.1:1?user=root&password_file={}",
        empty.display()
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let client = octopus::connect_lazy(&format!(
        "etcd://127.0.0.1:1?user=root&password_file={}",
        file.display()
    ))
    .await
    .unwrap();
    clean("Client's Debug", &format!("{client:?}"));
}
