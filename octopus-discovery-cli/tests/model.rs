//! `octopus model` and `octopus new --ddl`: a project generated from a schema of
//! several tables builds, and its own tests pass on SQLite and on a real
//! PostgreSQL; regeneration keeps user code, `--check` notices a changed DDL,
//! and what cannot be mapped is refused with nothing written.

mod common;

use std::path::Path;
use std::process::Command;

use common::{octopus, stderr, target_dir, workspace};

const SHOP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemas/shop.sql");

fn generate(dir: &Path, schema: &str, extra: &[&str]) {
    let mut args = vec![
        "new",
        "shop",
        "--backend",
        "mem",
        "--path",
        dir.to_str().unwrap(),
        "--ddl",
        schema,
    ];
    let repo = workspace();
    args.extend(["--octopus-path", repo.to_str().unwrap()]);
    args.extend(extra);
    let out = octopus(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn cargo_test(dir: &Path, database: Option<&str>) {
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--quiet", "--test", "model_gen"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("DATABASE_URL");
    if let Some(url) = database {
        cmd.env("DATABASE_URL", url);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the generated tests failed ({database:?}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_project_passes_its_tests_on_sqlite_and_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    generate(&dir, SHOP, &[]);
    cargo_test(&dir, None);
    let pg = octopus_testkit::postgres::Postgres::start();
    let url = pg.database("shop");
    cargo_test(&dir, Some(&url));
}

#[test]
fn regeneration_keeps_user_code_and_check_notices_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    generate(&dir, SHOP, &[]);
    let path = dir.to_str().unwrap();
    let model = |extra: &[&str], schema: &str| {
        let mut args = vec!["model", "--ddl", schema, "--path", path];
        args.extend(extra);
        octopus(&args)
    };
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    };

    // A marker in a file written once survives; two runs are byte-identical.
    let custom = dir.join("src/model/customers.rs");
    let mut text = std::fs::read_to_string(&custom).unwrap();
    text.push_str("// MY MARKER\n");
    std::fs::write(&custom, &text).unwrap();
    let before = snapshot(&dir);
    let out = model(&[], SHOP);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(&dir), before, "a second run changed files");
    assert!(std::fs::read_to_string(&custom).unwrap().contains("// MY MARKER"));
    let out = model(&["--check"], SHOP);
    assert!(
        out.status.success(),
        "--check on an untouched project: {}",
        stderr(&out)
    );

    // A column added to the DDL: --check fails; a run adds a migration and a field.
    let changed = tmp.path().join("shop2.sql");
    let ddl = std::fs::read_to_string(SHOP).unwrap().replace(
        "    name TEXT NOT NULL,\n",
        "    name TEXT NOT NULL,\n    phone VARCHAR(20),\n",
    );
    std::fs::write(&changed, ddl).unwrap();
    let out = model(&["--check"], changed.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "--check passed a changed DDL");
    assert!(stderr(&out).contains("proto/model.proto"), "{}", stderr(&out));
    assert_eq!(snapshot(&dir), before, "--check wrote something");
    let out = model(&[], changed.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    let migration = std::fs::read_to_string(dir.join("migrations/postgres/0002_change.sql")).unwrap();
    assert!(migration.contains("ADD COLUMN \"phone\" VARCHAR(20)"), "{migration}");
    let proto = std::fs::read_to_string(dir.join("proto/model.proto")).unwrap();
    assert!(proto.contains("optional string phone = 13;"), "{proto}");
    assert!(proto.contains("string email = 2;"), "numbers kept:\n{proto}");

    // Dropping it again is destructive: refused, then forced; its number is reserved.
    let out = model(&[], SHOP);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("customers.phone"), "{}", stderr(&out));
    let out = model(&["--force"], SHOP);
    assert!(out.status.success(), "{}", stderr(&out));
    let proto = std::fs::read_to_string(dir.join("proto/model.proto")).unwrap();
    assert!(proto.contains("reserved 13;"), "{proto}");

    // A generated file edited by hand is refused, and kept.
    let gen = dir.join("src/model/customers_gen.rs");
    let edited = std::fs::read_to_string(&gen).unwrap() + "// edited\n";
    std::fs::write(&gen, &edited).unwrap();
    let out = model(&[], SHOP);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("edited by hand"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&gen).unwrap(), edited);
}

/// `octopus model` in a project made by `octopus new` without `--ddl` wires the
/// model layer in (what `new --ddl` writes), and refuses, writing nothing, when
/// a line it inserts after was edited away.
#[test]
fn model_wires_a_project_made_without_ddl() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = workspace();
    let new = |dir: &Path, ddl: bool| {
        let mut args = vec!["new", "shop", "--backend", "mem", "--path", dir.to_str().unwrap()];
        args.extend(["--octopus-path", repo.to_str().unwrap()]);
        if ddl {
            args.extend(["--ddl", SHOP]);
        }
        let out = octopus(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let (plain, reference) = (tmp.path().join("plain"), tmp.path().join("reference"));
    new(&plain, false);
    new(&reference, true);
    let out = octopus(&["model", "--ddl", SHOP, "--path", plain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "build.rs",
        "src/lib.rs",
        "etc/config.toml",
        "src/model/customers_gen.rs",
        "proto/model.proto",
    ] {
        let read = |dir: &Path| std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(read(&plain), read(&reference), "{file}");
    }
    let deps = |dir: &Path| {
        let mut lines: Vec<String> = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(deps(&plain), deps(&reference), "Cargo.toml has the same lines");

    // An edited src/lib.rs: the line the modules go after is gone.
    let edited = tmp.path().join("edited");
    new(&edited, false);
    let lib = edited.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib)
        .unwrap()
        .replace("pub mod logic;", "pub mod logic_v2;");
    std::fs::write(&lib, &text).unwrap();
    let before = std::fs::read_to_string(edited.join("Cargo.toml")).unwrap();
    let out = octopus(&["model", "--ddl", SHOP, "--path", edited.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("src/lib.rs: the line `pub mod logic;` is not there"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(edited.join("Cargo.toml")).unwrap(),
        before,
        "nothing written"
    );
    assert!(!edited.join("src/model").exists(), "nothing generated");
}

#[test]
fn unmappable_types_and_missing_keys_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for (ddl, needle) in [
        (
            "CREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE spots (\n  id INT PRIMARY KEY,\n  location GEOMETRY\n);\n",
            "spots.location: type `GEOMETRY`",
        ),
        (
            "CREATE TABLE logs (at TIMESTAMP, line TEXT);\n",
            "table `logs` has no primary key",
        ),
    ] {
        let schema = tmp.path().join("bad.sql");
        std::fs::write(&schema, ddl).unwrap();
        let dir = tmp.path().join("out");
        let repo = workspace();
        let out = octopus(&[
            "new",
            "shop",
            "--path",
            dir.to_str().unwrap(),
            "--ddl",
            schema.to_str().unwrap(),
            "--octopus-path",
            repo.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        assert!(!dir.exists(), "something was written");
    }
    let schema = tmp.path().join("bad.sql");
    std::fs::write(
        &schema,
        "CREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE spots (\n  id INT PRIMARY KEY,\n  location GEOMETRY\n);\n",
    )
    .unwrap();
    let out = octopus(&[
        "new",
        "shop",
        "--path",
        tmp.path().join("x").to_str().unwrap(),
        "--ddl",
        schema.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains(":4:"), "the line is named: {}", stderr(&out));
}

/// The generated CRUD path against hand-written sqlx running the same statements
/// (tests/bench/model_crud.rs), release build, on SQLite and on PostgreSQL.
/// Measures and prints; asserts nothing about time. Results: docs/PERFORMANCE.md.
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn bench_generated_crud_against_hand_written_sqlx() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    generate(&dir, SHOP, &[]);
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/model_crud.rs"),
        dir.join("examples/model_crud.rs"),
    )
    .unwrap();
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let pg = octopus_testkit::postgres::Postgres::start();
    let sqlite = format!("sqlite:{}", tmp.path().join("bench.db").display());
    for url in [sqlite, pg.database("bench")] {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "run",
                "--quiet",
                "--release",
                "--example",
                "model_crud",
                "--",
                &url,
                "500",
            ])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", target_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
