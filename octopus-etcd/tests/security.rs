//! TLS with certificates made in the test (a CA, a server and a client
//! certificate; etcd requires client certificates), and password auth whose
//! tokens expire: registration and discovery survive.

use std::time::Duration;

use octopus_discovery_core::{Discovery, KvBackend, RegisterOptions, Registry, ServiceInstance};
use octopus_etcd::{EtcdBackend, TlsOptions};
use octopus_testkit::etcd::EtcdServer;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::time::{sleep, timeout};

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_pem: String,
    client_key: String,
}

impl Pki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "octopus test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, cn: &str| {
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "etcd");
        let (client_pem, client_key) = leaf(vec![], "octopus-client");
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            ("ca.pem", ca.pem()),
            ("server.pem", server_pem),
            ("server.key", server_key),
            ("client.pem", client_pem.clone()),
            ("client.key", client_key.clone()),
        ] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        Pki {
            ca_pem: ca.pem(),
            client_pem,
            client_key,
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn client_tls(&self) -> TlsOptions {
        TlsOptions::new(self.ca_pem.clone()).identity(self.client_pem.clone(), self.client_key.clone())
    }

    fn etcdctl_flags(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.path("ca.pem")),
            format!("--cert={}", self.path("client.pem")),
            format!("--key={}", self.path("client.key")),
        ]
    }
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "etcdctl: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_expiring_auth_tokens() {
    const TOKEN_TTL: u64 = 2;
    let pki = Pki::new();
    let args: Vec<String> = vec![
        format!("--cert-file={}", pki.path("server.pem")),
        format!("--key-file={}", pki.path("server.key")),
        format!("--trusted-ca-file={}", pki.path("ca.pem")),
        "--client-cert-auth".into(),
        format!("--auth-token-ttl={TOKEN_TTL}"),
    ];
    let server = EtcdServer::start_with(&args, Some(pki.client_tls())).await;

    // Users: root (to enable auth) and an application user limited to /octopus/.
    let mut admin = pki.etcdctl_flags();
    ok(server.etcdctl_with(&admin, &["user", "add", "root", "--new-user-password=rootpw"]));
    ok(server.etcdctl_with(&admin, &["user", "add", "app", "--new-user-password=apppw"]));
    ok(server.etcdctl_with(&admin, &["role", "add", "app"]));
    ok(server.etcdctl_with(
        &admin,
        &[
            "role",
            "grant-permission",
            "app",
            "--prefix=true",
            "readwrite",
            "/octopus/",
        ],
    ));
    ok(server.etcdctl_with(&admin, &["user", "grant-role", "app", "app"]));
    ok(server.etcdctl_with(&admin, &["auth", "enable"]));
    admin.push("--user=root:rootpw".into());

    // Without TLS settings the server is unreachable; with a wrong password, a clear error.
    let plain = octopus_etcd::EtcdOptions::new([server.endpoint()])
        .unwrap()
        .connect_timeout(Duration::from_secs(1));
    assert!(
        EtcdBackend::connect(plain).await.is_err(),
        "plain TCP must not reach a TLS-only etcd"
    );
    let wrong = server.options().user("app", "nope");
    let err = EtcdBackend::connect(wrong).await.unwrap_err().chain();
    println!("wrong password: {err}");
    assert!(
        err.to_lowercase().contains("authentication failed"),
        "a wrong password is named as such: {err}"
    );

    let backend = EtcdBackend::connect(server.options().user("app", "apppw"))
        .await
        .unwrap();
    let registry = backend.registry();
    let discovery = backend.discovery();
    let opts = RegisterOptions::default().ttl(Duration::from_secs(2));
    let a = registry
        .register(ServiceInstance::new("svc", "a", "127.0.0.1", 1).unwrap(), opts.clone())
        .await
        .unwrap();
    let lease = a.registered().await.unwrap();
    let mut w = discovery.watch("svc").await.unwrap();
    timeout(Duration::from_secs(5), w.wait_for(|s| s.instances.len() == 1))
        .await
        .unwrap()
        .unwrap();

    // Outlive several token lifetimes (real time: the tokens are etcd's), then use
    // every kind of request again.
    sleep(Duration::from_secs(TOKEN_TTL * 3)).await;
    let b = registry
        .register(ServiceInstance::new("svc", "b", "127.0.0.1", 2).unwrap(), opts.clone())
        .await
        .unwrap();
    timeout(Duration::from_secs(10), b.registered())
        .await
        .expect("registers after token expiry")
        .unwrap();
    timeout(Duration::from_secs(10), w.wait_for(|s| s.instances.len() == 2))
        .await
        .expect("watch keeps going")
        .unwrap();
    assert_eq!(
        a.current(),
        octopus_discovery_core::RegistrationStatus::Registered { lease },
        "keepalives kept the first lease"
    );
    assert_eq!(discovery.instances("svc").await.unwrap().len(), 2);
    assert!(backend.header().await.is_ok());

    // The witness: etcdctl as root over TLS sees both keys.
    let keys = ok(server.etcdctl_with(&admin, &["get", "--prefix", "--keys-only", "/octopus/services/svc/"]));
    assert_eq!(keys.split_whitespace().count(), 2, "{keys}");
}
