//! `octopus new`: writes a ready gRPC service that registers itself.

use std::path::{Path, PathBuf};

use crate::model::pascal;
use crate::{Backend, NewArgs, Result};

pub(crate) const CARGO: &str = include_str!("../templates/Cargo.toml.tmpl");
const PROTO: &str = include_str!("../templates/proto.tmpl");
pub(crate) const BUILD: &str = include_str!("../templates/build.rs.tmpl");
pub(crate) const LIB: &str = include_str!("../templates/lib.rs.tmpl");
const MAIN: &str = include_str!("../templates/main.rs.tmpl");
const LOGIC: &str = include_str!("../templates/logic.rs.tmpl");
pub(crate) const CONFIG: &str = include_str!("../templates/config.toml.tmpl");
const TEST: &str = include_str!("../templates/test.rs.tmpl");
pub(crate) const README: &str = include_str!("../templates/README.md.tmpl");
const CLIENT: &str = include_str!("../templates/client.rs.tmpl");
const DOCKERFILE: &str = include_str!("../templates/Dockerfile.tmpl");
const DOCKERIGNORE: &str = include_str!("../templates/dockerignore.tmpl");

/// Names Cargo or Rust would refuse or misread as a crate or module.
const RESERVED: [&str; 44] = [
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "build",
    "octopus",
];

/// Checks a service name for use as a crate, a proto package and a service name.
pub(crate) fn validate(name: &str) -> Result {
    let rule = "must be 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter";
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    if !ok {
        return Err(format!(
            "invalid service name {name:?}: {rule} (and not ending in `-` or `_`)"
        ));
    }
    let module = name.replace('-', "_");
    if RESERVED.contains(&module.as_str()) {
        return Err(format!(
            "invalid service name {name:?}: `{module}` is a Rust keyword or a reserved crate name"
        ));
    }
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) fn run(args: &NewArgs) -> Result {
    validate(&args.name)?;
    let name = args.name.as_str();
    let module = name.replace('-', "_");
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .next()
            .is_none();
        if !empty && !args.force {
            return Err(format!(
                "{} exists and is not empty: nothing was written (use --force to write into it; the files \
                 `octopus new` generates are replaced, others are left alone)",
                dir.display()
            ));
        }
    }
    let (octopus_dep, dep_note) = dependency(args.octopus_path.as_deref())?;
    // A DDL that cannot be generated from stops everything before a file is written.
    let ddl = match &args.ddl {
        Some(path) => Some(crate::model::load(path, args.dialect)?),
        None => None,
    };
    let model_mods = model_mods(&module);
    let model_config = model_config(&module);
    let (registry, features, protoc_step) = match args.backend {
        Backend::Etcd => (
            "etcd://127.0.0.1:2379",
            r#""etcd", "grpc", "config", "metrics""#,
            PROTOC_STEP,
        ),
        Backend::Mem => ("mem://", r#""mem", "grpc", "config", "metrics""#, NO_PROTOC_STEP),
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{Pascal}}", &pascal(name))
            .replace("{{octopus_dep}}", &octopus_dep)
            .replace("{{features}}", features)
            .replace("{{registry}}", registry)
            .replace("{{protoc_step}}", protoc_step)
            .replace("{{octopus_version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{model_deps}}", if ddl.is_some() { MODEL_DEPS } else { "" })
            .replace("{{model_rerun}}", if ddl.is_some() { MODEL_RERUN } else { "" })
            .replace("{{model_proto}}", if ddl.is_some() { ", \"model.proto\"" } else { "" })
            .replace("{{model_mods}}", if ddl.is_some() { &model_mods } else { "" })
            .replace("{{model_setting}}", if ddl.is_some() { MODEL_SETTING } else { "" })
            .replace("{{model_connect}}", if ddl.is_some() { MODEL_CONNECT } else { "" })
            .replace("{{model_router}}", if ddl.is_some() { MODEL_ROUTER } else { "" })
            .replace("{{model_config}}", if ddl.is_some() { &model_config } else { "" })
            .replace("{{model_readme}}", if ddl.is_some() { MODEL_README } else { "" })
    };
    let files: [(String, &str); 13] = [
        ("Cargo.toml".into(), CARGO),
        (format!("proto/{module}.proto"), PROTO),
        ("build.rs".into(), BUILD),
        ("src/lib.rs".into(), LIB),
        ("src/main.rs".into(), MAIN),
        ("src/logic.rs".into(), LOGIC),
        ("etc/config.toml".into(), CONFIG),
        ("tests/discovery.rs".into(), TEST),
        ("examples/client.rs".into(), CLIENT),
        ("Dockerfile".into(), DOCKERFILE),
        (".dockerignore".into(), DOCKERIGNORE),
        ("README.md".into(), README),
        (".gitignore".into(), "/target\n"),
    ];
    for (file, template) in &files {
        write(&dir.join(file), &fill(template))?;
    }
    println!("created {} in {} ({dep_note})", name, dir.display());
    for (file, _) in &files {
        println!("  {file}");
    }
    if let Some(ddl) = &ddl {
        crate::model::generate(
            &dir,
            ddl,
            &crate::model::Options {
                force: true,
                check: false,
            },
        )?;
    }
    println!(
        "\nnext:\n  cd {}\n  cargo test          # a call through discovery, in-process\n  cargo run           # registers in {registry}{}",
        dir.display(),
        if args.backend == Backend::Etcd {
            " (no etcd? run `octopus dev` first)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The generated project's dependencies for the model layer: sqlx at run time
/// (no compile-time checked queries: no live database to build).
/// `src/lib.rs`'s modules of the model layer.
pub(crate) fn model_mods(module: &str) -> String {
    format!(
        "\npub mod handlers;\npub mod model;\n\n/// The code generated from `proto/model.proto` (the tables' CRUD services).\n\
         pub mod model_proto {{\n    tonic::include_proto!(\"{module}_model\");\n}}\n\n\
         fn default_database() -> String {{\n    \"sqlite:{module}.db\".into()\n}}"
    )
}

/// `etc/config.toml`'s database setting.
pub(crate) fn model_config(module: &str) -> String {
    format!(
        "\n# The database: sqlite:PATH (embedded; created if missing) or postgres://user:password@host/db.\n\
         database = \"${{DATABASE_URL:-sqlite:{module}.db}}\""
    )
}

pub(crate) const MODEL_DEPS: &str = "# The model layer (`octopus model`): sqlx's runtime queries, SQLite and PostgreSQL.\n\
sqlx = { version = \"0.8\", default-features = false, features = [\"runtime-tokio\", \"sqlite\", \"postgres\", \"derive\", \"chrono\", \"uuid\"] }\n\
chrono = { version = \"0.4\", default-features = false, features = [\"clock\", \"std\"] }\n\
uuid = \"1\"\n\
serde_json = \"1\"\n";
pub(crate) const MODEL_README: &str = "\n\n\
## The tables\n\n\
Generated from a SQL schema by `octopus model` (see Octopus's docs/MODEL.md): a model per table in\n\
`src/model/<table>_gen.rs` (regenerated) with your own queries in `src/model/<table>.rs` (written once),\n\
a CRUD service per table in `proto/model.proto` handled in `src/handlers/<table>.rs` (written once),\n\
migrations in `migrations/` (applied at start-up) and tests in `tests/model_gen.rs`. The database is\n\
`[app] database` in `etc/config.toml` (`DATABASE_URL`: `sqlite:PATH` or `postgres://…`).\n\
After changing the schema: `octopus model --ddl SCHEMA.sql`; in CI: `octopus model --ddl SCHEMA.sql --check`.";
pub(crate) const MODEL_RERUN: &str = "\n    println!(\"cargo:rerun-if-changed=proto/model.proto\");";
pub(crate) const MODEL_SETTING: &str =
    "\n    /// The database: `sqlite:PATH` (embedded) or `postgres://…` (see `model::Db`).\n    \
    #[serde(default = \"default_database\")]\n    pub database: String,";
pub(crate) const MODEL_CONNECT: &str =
    "\n    let db = model::Db::connect(&settings.database).await?;\n    db.migrate().await?;";
pub(crate) const MODEL_ROUTER: &str = "\n    let router = handlers::add_services(router, &db);";

/// The Dockerfile's step for protoc, which the etcd backend's client compiles
/// etcd's protos with (the service's own protos need none: protox compiles them).
const PROTOC_STEP: &str = "# protoc: the etcd backend's client (etcd-client) compiles etcd's protos at build time.\n\
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*\n";
const NO_PROTOC_STEP: &str = "# No protoc: with the mem backend nothing in the build compiles protos with it.\n";

/// The generated project's dependency on the facade, and a note saying which it is.
///
/// `--octopus-path` names a checkout. Otherwise a CLI built from a checkout of
/// Octopus's repository (`cargo install --path octopus-discovery-cli`, `cargo
/// run`) points the project at that checkout, so that the service builds against
/// the code the CLI came with; a CLI installed from crates.io depends on the
/// published `octopus-discovery` of its own version. The package is ours under
/// that name; its library is `octopus`, so the code says `use octopus::…`.
fn dependency(explicit: Option<&Path>) -> Result<(String, String)> {
    let checkout = match explicit {
        Some(path) => {
            let path = path
                .canonicalize()
                .map_err(|e| format!("--octopus-path {}: {e}", path.display()))?;
            if !is_facade(&path) {
                return Err(format!(
                    "--octopus-path {}: not a checkout of Octopus (no Cargo.toml of package `octopus-discovery` there)",
                    path.display()
                ));
            }
            Some(path)
        }
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .filter(|root| is_facade(root))
            .and_then(|root| root.canonicalize().ok()),
    };
    Ok(match checkout {
        Some(path) => (
            format!("path = {}", toml_string(&path.to_string_lossy())),
            format!("octopus-discovery from the checkout at {}", path.display()),
        ),
        None => (
            format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
            format!("octopus-discovery {} from crates.io", env!("CARGO_PKG_VERSION")),
        ),
    })
}

/// Whether `dir` holds the facade's manifest (package `octopus-discovery`).
fn is_facade(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|text| text.lines().any(|l| l.trim() == "name = \"octopus-discovery\""))
        && dir.join("src").join("lib.rs").is_file()
}

fn write(path: &Path, text: &str) -> Result {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_lowercase_words_and_never_keywords() {
        for good in ["demo", "user-service", "user_service2", "a"] {
            validate(good).unwrap();
        }
        for bad in [
            "",
            "Demo",
            "9lives",
            "user service",
            "user/service",
            "-x",
            "x-",
            "type",
            "octopus",
            "tést",
        ] {
            let err = validate(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(validate(&"a".repeat(65)).is_err());
        assert_eq!(pascal("user-service"), "UserService");
        assert_eq!(pascal("a_b-c"), "ABC");
        assert_eq!(toml_string(r#"C:\x "y""#), r#""C:\\x \"y\"""#);
    }

    #[test]
    fn dependency_is_ours() {
        // Built inside the checkout: the project depends on it, by path.
        let (dep, note) = dependency(None).unwrap();
        assert!(dep.starts_with("path = "), "{dep}");
        assert!(note.contains("checkout"), "{note}");
        let err = dependency(Some(Path::new(env!("CARGO_MANIFEST_DIR")))).unwrap_err();
        assert!(err.contains("octopus-discovery"), "{err}");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(dependency(Some(root)).unwrap().0.starts_with("path = "));
        // Whatever the source, the manifest names only our package.
        assert!(CARGO.contains("octopus-discovery = { {{octopus_dep}}"));
    }
}
