//! OctopusConfig: formats, substitution, environment overrides, and errors that
//! name the file, the key and the problem.

use std::path::PathBuf;
use std::time::Duration;

use octopus::OctopusConfig;

fn write(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path
}

// One test: it sets process-wide environment variables.
#[test]
fn formats_substitution_overrides_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("OCTOPUS_TEST_HOST", "127.0.0.9");
    let toml = write(
        &dir,
        "a.toml",
        r#"
registry = "etcd://${OCTOPUS_TEST_HOST}:2379"
ttl = "3s"
[service]
name = "users"
id = "${OCTOPUS_TEST_ID:-u1}"
addr = "127.0.0.1"
port = 7000
metadata = { zone = "a" }
"#,
    );
    let c = OctopusConfig::load(&toml).unwrap();
    assert_eq!(c.registry, "etcd://127.0.0.9:2379");
    let i = c.instance().unwrap().unwrap();
    assert_eq!((i.id.as_str(), i.port, &i.metadata["zone"]), ("u1", 7000, "a"));
    assert_eq!(c.register_options().unwrap().lease_ttl(), Duration::from_secs(3));

    let yaml = write(
        &dir,
        "b.yaml",
        "registry: mem://\nservice:\n  name: users\n  id: y1\n  addr: localhost\n  port: 1\n",
    );
    assert_eq!(
        OctopusConfig::load(&yaml).unwrap().instance().unwrap().unwrap().id,
        "y1"
    );
    // The process's zone: its instance's `zone` (unless the metadata names one)
    // and its channels' preference; OCTOPUS_ZONE overrides.
    let zoned = write(
        &dir,
        "z.toml",
        "zone = \"eu-1\"\n[service]\nname = \"users\"\nid = \"z1\"\naddr = \"127.0.0.1\"\nport = 7001\n",
    );
    let c = OctopusConfig::load(&zoned).unwrap();
    assert_eq!(c.instance().unwrap().unwrap().zone(), Some("eu-1"));
    assert_eq!(c.zone_preference().unwrap().zone, "eu-1");
    std::env::set_var("OCTOPUS_ZONE", "eu-2");
    let c = OctopusConfig::load(&zoned).unwrap();
    std::env::remove_var("OCTOPUS_ZONE");
    assert_eq!(c.instance().unwrap().unwrap().zone(), Some("eu-2"));
    assert_eq!(
        OctopusConfig::load(&toml).unwrap().instance().unwrap().unwrap().zone(),
        Some("a"),
        "the metadata's own zone wins"
    );
    let json = write(
        &dir,
        "c.json",
        r#"{"registry": "mem://", "retry_interval": "200ms", "retry_cap": "1s"}"#,
    );
    assert!(OctopusConfig::load(&json).unwrap().service.is_none());

    // The environment overrides the file; a double underscore descends.
    std::env::set_var("OCTOPUS_SERVICE__PORT", "7100");
    assert_eq!(
        OctopusConfig::load(&toml).unwrap().instance().unwrap().unwrap().port,
        7100
    );
    std::env::set_var("OCTOPUS_SERVICE__PORT", "seventy");
    let err = OctopusConfig::load(&toml).unwrap_err().to_string();
    assert!(
        err.contains("a.toml") && err.contains("service.port") && err.contains("environment"),
        "{err}"
    );
    std::env::remove_var("OCTOPUS_SERVICE__PORT");

    // The service's own settings: typed, substituted, overridden by OCTOPUS_APP__*.
    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Settings {
        greeting: String,
        limit: u32,
    }
    let app = write(
        &dir,
        "app.toml",
        "[app]\ngreeting = \"${OCTOPUS_TEST_GREETING:-hello}\"\nlimit = 3\n",
    );
    let settings: Settings = OctopusConfig::load(&app).unwrap().app().unwrap();
    assert_eq!(
        settings,
        Settings {
            greeting: "hello".into(),
            limit: 3
        }
    );
    std::env::set_var("OCTOPUS_APP__LIMIT", "9");
    let settings: Settings = OctopusConfig::load(&app).unwrap().app().unwrap();
    assert_eq!(settings.limit, 9);
    std::env::set_var("OCTOPUS_APP__LIMIT", "many");
    let err = OctopusConfig::load(&app)
        .unwrap()
        .app::<Settings>()
        .unwrap_err()
        .to_string();
    // The key and the types, never the value (it may be a secret).
    assert!(
        err.contains("app.limit") && err.contains("a string") && !err.contains("many"),
        "{err}"
    );
    std::env::remove_var("OCTOPUS_APP__LIMIT");

    // Without an id, each process gets its own: the host name and the port.
    let replicas = write(
        &dir,
        "replicas.toml",
        "[service]\nname = \"users\"\naddr = \"127.0.0.1\"\nport = 0\n",
    );
    let c = OctopusConfig::load(&replicas).unwrap();
    let (a, b) = (
        c.instance_on(7001).unwrap().unwrap(),
        c.instance_on(7002).unwrap().unwrap(),
    );
    assert!(a.id.ends_with("-7001") && b.id.ends_with("-7002"), "{} {}", a.id, b.id);
    assert_ne!(a.id, b.id);

    for (name, body, key, problem) in [
        (
            "unknown.toml",
            "registry = \"mem://\"\ncolour = \"blue\"\n",
            "colour",
            "unknown field",
        ),
        (
            "port.toml",
            "[service]\nname = \"s\"\nid = \"i\"\naddr = \"h\"\nport = 70000\n",
            "service.port",
            "",
        ),
        ("ttl.toml", "ttl = \"soon\"\n", "ttl", "duration"),
        (
            "name.toml",
            "[service]\nname = \"a/b\"\nid = \"i\"\naddr = \"h\"\nport = 1\n",
            "service",
            "invalid service",
        ),
        (
            "var.toml",
            "registry = \"${OCTOPUS_TEST_UNSET}\"\n",
            "OCTOPUS_TEST_UNSET",
            "not set",
        ),
        (
            "cap.toml",
            "retry_interval = \"5s\"\nretry_cap = \"1s\"\n",
            "retry_cap",
            "at least",
        ),
    ] {
        let err = OctopusConfig::load(write(&dir, name, body)).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(key) && err.contains(problem),
            "{name}: {err}"
        );
    }
    let err = OctopusConfig::load(dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml") && err.contains("cannot read"), "{err}");
    let err = OctopusConfig::load(write(&dir, "x.ini", "")).unwrap_err().to_string();
    assert!(err.contains("x.ini") && err.contains("unknown format"), "{err}");
}
