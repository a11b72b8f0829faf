//! `octopus model --ddl FILE`: models, CRUD gRPC services, migrations and tests
//! generated from a SQL schema, without a database.

mod detect;
mod migrate;
mod names;
mod output;
mod parse;
#[cfg(test)]
mod parse_tests;
mod render_convert;
mod render_model;
mod render_proto;
mod render_service;
mod render_tests;
mod schema;
mod sql;
mod tokens;
mod types;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use crate::Result;
pub(crate) use names::pascal;
use output::{File, Kind};
use schema::Schema;

/// The SQL dialect a DDL file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Dialect {
    /// PostgreSQL (also what a file without MySQL or SQLite marks is read as).
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
            Dialect::Sqlite => "SQLite",
        })
    }
}

/// The dialect a file looks written in: MySQL's backticks, AUTO_INCREMENT and
/// ENGINE=, SQLite's AUTOINCREMENT; PostgreSQL otherwise.
fn guess(text: &str) -> Dialect {
    // Comments say anything: only the statements count.
    let text: String = text
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let upper = text.to_ascii_uppercase();
    if text.contains('`') || upper.contains("AUTO_INCREMENT") || upper.contains("ENGINE=") || upper.contains("ENGINE =")
    {
        Dialect::Mysql
    } else if upper.contains("AUTOINCREMENT") || upper.contains("WITHOUT ROWID") {
        Dialect::Sqlite
    } else {
        Dialect::Postgres
    }
}

/// A DDL file, read and mapped.
pub(crate) struct Ddl {
    name: String,
    schema: Schema,
}

/// Reads and maps `path`: errors name the file, the line, `table.column` and the rule.
pub(crate) fn load(path: &Path, dialect: Option<Dialect>) -> Result<Ddl> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "schema.sql".into());
    let dialect = dialect.unwrap_or_else(|| guess(&text));
    let (schema, warnings) = parse::parse(&path.display().to_string(), &text, dialect)?;
    for w in warnings {
        eprintln!("octopus: warning: {w}");
    }
    Ok(Ddl { name, schema })
}

/// What the generator remembers between runs (`model/schema.lock`).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Lock {
    /// The schema as of the last migration.
    tables: Vec<schema::Table>,
    /// Proto field numbers: table → column → number.
    fields: render_proto::Numbers,
    /// Numbers of dropped columns, never used again.
    reserved: BTreeMap<String, Vec<u32>>,
    /// The migrations, in order: (version, file stem).
    migrations: Vec<(u32, String)>,
}

impl Lock {
    /// Reads the lock at `path` (none yet: an empty one) and checks what the
    /// next run computes from: a hand-edited lock may hold any number.
    fn read(path: &Path) -> Result<Lock> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::default()),
            // Taken for no lock, an unreadable one would renumber every field.
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let lock: Lock = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a lock file this version can read: {e}", path.display()))?;
        render_proto::check(&lock.fields, &lock.reserved).map_err(|e| format!("{}: {e}", path.display()))?;
        // A stem becomes a path in the generated code (`include_str!`) and on
        // disk: only what the generator writes, `{n:04}_` and a word.
        if let Some((n, stem)) = lock.migrations.iter().find(|(n, stem)| {
            let word = stem.strip_prefix(&format!("{n:04}_")).unwrap_or("");
            word.is_empty() || !word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        }) {
            return Err(format!(
                "{}: migration {n} has the file stem {stem:?}, not one this generator writes ({n:04}_ and a lower-case word)",
                path.display()
            ));
        }
        if let Some((n, _)) = lock.migrations.iter().find(|m| m.0 == u32::MAX) {
            return Err(format!(
                "{}: migration {n} leaves no number for the next one (the last can be at most {})",
                path.display(),
                u32::MAX - 1
            ));
        }
        Ok(lock)
    }
}

const LOCK: &str = "model/schema.lock";
const DB: &str = include_str!("../../templates/model/db.rs.tmpl");

/// What `octopus model` is asked to do.
pub(crate) struct Options {
    pub(crate) force: bool,
    pub(crate) check: bool,
}

/// The project's package name, from its Cargo.toml.
fn package(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "cannot read {}: {e} (run `octopus model` in a project made by `octopus new`, or pass --path)",
            manifest.display()
        )
    })?;
    text.lines()
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| format!("{}: no package name", manifest.display()))
}

/// Every file generated from `ddl` for the project in `dir`.
fn files(dir: &Path, ddl: &Ddl, force: bool) -> Result<Vec<File>> {
    let name = package(dir)?;
    let module = name.replace('-', "_");
    let lock_path = dir.join(LOCK);
    let mut lock = Lock::read(&lock_path)?;
    let schema = &ddl.schema;
    render_proto::number(schema, &mut lock.fields, &mut lock.reserved)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let mut out = Vec::new();
    let migration = if lock.migrations.is_empty() {
        let mut both = [String::new(), String::new()];
        for (i, target) in sql::TARGETS.into_iter().enumerate() {
            for t in &schema.tables {
                both[i] += &migrate::create_table(t, target);
            }
        }
        Some((1, "init", both))
    } else {
        let last = lock.migrations.last().map_or(0, |m| m.0);
        match migrate::diff(&lock.tables, &schema.tables, force)? {
            // `Lock::read` leaves room after the last; checked all the same.
            Some(both) => Some((
                last.checked_add(1).ok_or_else(|| {
                    format!(
                        "{}: migration {last} leaves no number for the next one",
                        lock_path.display()
                    )
                })?,
                "change",
                both,
            )),
            None => None,
        }
    };
    if let Some((n, what, both)) = migration {
        let stem = format!("{n:04}_{what}");
        for (dir, sql) in ["sqlite", "postgres"].iter().zip(both) {
            out.push(File {
                path: format!("migrations/{dir}/{stem}.sql"),
                text: format!(
                    "-- Migration {n} ({dir}), generated from {} by `octopus model`, once: it is never rewritten.\n{sql}",
                    // Escaped: a newline in the file's name would end the comment.
                    names::shown(&ddl.name)
                ),
                kind: Kind::Once,
            });
        }
        lock.migrations.push((n, stem));
        lock.tables = schema.tables.clone();
    }
    let gen = |path: String, text: String| File {
        path,
        text,
        kind: Kind::Generated,
    };
    out.push(gen(
        "proto/model.proto".into(),
        render_proto::render(&format!("{module}_model"), schema, &lock.fields, &lock.reserved),
    ));
    out.push(gen("src/model/mod.rs".into(), render_service::model_mod(schema)));
    out.push(gen("src/model/db_gen.rs".into(), DB.to_string()));
    out.push(gen(
        "src/model/migrations_gen.rs".into(),
        render_service::migrations(&lock.migrations),
    ));
    out.push(gen("src/handlers/mod.rs".into(), render_service::handlers_mod(schema)));
    for t in &schema.tables {
        out.push(gen(
            format!("src/model/{}_gen.rs", t.module),
            render_model::render(t, &module),
        ));
        out.push(File {
            path: format!("src/model/{}.rs", t.module),
            text: render_service::custom(t),
            kind: Kind::Once,
        });
        out.push(File {
            path: format!("src/handlers/{}.rs", t.module),
            text: render_service::handler(t),
            kind: Kind::Once,
        });
    }
    out.push(gen(
        "tests/model_gen.rs".into(),
        render_tests::render(schema, &name, &module),
    ));
    let lock_text = serde_json::to_string_pretty(&lock).map_err(|e| format!("cannot write the lock: {e}"))? + "\n";
    out.push(File {
        path: LOCK.into(),
        text: lock_text,
        kind: Kind::State,
    });
    for f in &mut out {
        if f.kind == Kind::Generated {
            f.text = output::stamp(&f.path, &ddl.name, &f.text);
        }
    }
    Ok(out)
}

/// Generates into the project at `dir`.
pub(crate) fn generate(dir: &Path, ddl: &Ddl, options: &Options) -> Result {
    let lib = dir.join("src/lib.rs");
    let wired = std::fs::read_to_string(&lib).is_ok_and(|t| t.contains("pub mod model;"));
    if !wired && options.check {
        return Err(format!(
            "{} does not declare `pub mod model;`: the model layer is not wired in yet (run `octopus model` without --check)",
            lib.display()
        ));
    }
    // Everything the generation needs is checked before the wiring is written.
    let files = files(dir, ddl, options.force)?;
    if !wired {
        let changed = wire::wire(dir, &package(dir)?)?;
        println!("wired the model layer into {}: {}", dir.display(), changed.join(", "));
    }
    if options.check {
        return output::check(dir, &files);
    }
    output::write(dir, &files, options.force)
}

/// `octopus model`.
pub(crate) fn run(ddl: &Path, dialect: Option<Dialect>, path: Option<PathBuf>, options: &Options) -> Result {
    let ddl = load(ddl, dialect)?;
    let dir = path.unwrap_or_else(|| PathBuf::from("."));
    generate(&dir, &ddl, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project as far as `files` looks: its Cargo.toml and this `model/schema.lock`.
    fn project(lock: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"shop\"\n").unwrap();
        std::fs::create_dir(dir.path().join("model")).unwrap();
        std::fs::write(dir.path().join(LOCK), lock).unwrap();
        dir
    }

    fn ddl(sql: &str) -> Ddl {
        let (schema, _) = parse::parse("s.sql", sql, Dialect::Postgres).unwrap();
        Ddl {
            name: "s.sql".into(),
            schema,
        }
    }

    /// A lock holding `fields` and `reserved` (JSON) for table `t`, after one migration.
    fn lock(fields: &str, reserved: &str, migrations: &str) -> String {
        format!(
            r#"{{"tables": [], "fields": {{"t": {fields}}}, "reserved": {{"t": {reserved}}}, "migrations": {migrations}}}"#
        )
    }

    /// What `files` says of a project with this lock, generating table `t (id, x)`.
    fn error(lock: &str) -> String {
        let dir = project(lock);
        let err = files(dir.path(), &ddl("CREATE TABLE t (id INT PRIMARY KEY, x INT);"), false).unwrap_err();
        let path = dir.path().join(LOCK).display().to_string();
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        err[path.len() + 2..].to_string()
    }

    #[test]
    fn migration_numbers_must_leave_room_for_the_next() {
        let last = lock(
            r#"{"id": 1}"#,
            "[]",
            r#"[[1, "0001_init"], [4294967295, "4294967295_change"]]"#,
        );
        assert_eq!(
            error(&last),
            "migration 4294967295 leaves no number for the next one (the last can be at most 4294967294)"
        );
        // The largest that leaves room still generates the next migration.
        let dir = project(&lock(r#"{"id": 1}"#, "[]", r#"[[4294967294, "4294967294_change"]]"#));
        let out = files(dir.path(), &ddl("CREATE TABLE t (id INT PRIMARY KEY, x INT);"), false).unwrap();
        assert!(
            out.iter()
                .any(|f| f.path == "migrations/postgres/4294967295_change.sql"),
            "{:?}",
            out.iter().map(|f| &f.path).collect::<Vec<_>>()
        );
    }

    #[test]
    fn migration_stems_must_be_ones_the_generator_writes() {
        for stem in [
            "0002_../../../etc/x",
            "0002_init\")); pwned(); (\"",
            "0003_init",
            "0002_",
            "0002_Init",
        ] {
            let text = lock(r#"{"id": 1}"#, "[]", &format!(r#"[[1, "0001_init"], [2, {stem:?}]]"#));
            let err = error(&text);
            assert!(err.starts_with("migration 2 has the file stem"), "{stem}: {err}");
        }
    }

    #[test]
    fn proto_field_numbers_must_be_ones_protobuf_allows() {
        let one = r#"[[1, "0001_init"]]"#;
        for (fields, reserved, rule) in [
            (
                r#"{"id": 4294967295}"#,
                "[]",
                "t.id: proto field number 4294967295 is not in 1..=536870911, the numbers protobuf allows",
            ),
            (
                r#"{"id": 0}"#,
                "[]",
                "t.id: proto field number 0 is not in 1..=536870911, the numbers protobuf allows",
            ),
            (
                r#"{"id": 536870912}"#,
                "[]",
                "t.id: proto field number 536870912 is not in 1..=536870911, the numbers protobuf allows",
            ),
            (
                r#"{"id": 19000}"#,
                "[]",
                "t.id: proto field number 19000 is in 19000..=19999, which protobuf reserves for itself",
            ),
            (
                r#"{"id": 1}"#,
                "[2, 19999]",
                "t: reserved proto field number 19999 is in 19000..=19999, which protobuf reserves for itself",
            ),
            (
                r#"{"id": 1}"#,
                "[4294967295]",
                "t: reserved proto field number 4294967295 is not in 1..=536870911, the numbers protobuf allows",
            ),
        ] {
            assert_eq!(error(&lock(fields, reserved, one)), rule);
        }
        // The largest number allowed leaves none for a new column.
        assert_eq!(
            error(&lock(r#"{"id": 536870911}"#, "[]", one)),
            "t.x: no proto field number left for this column (536870911 is the largest protobuf allows)"
        );
    }

    #[test]
    fn an_unreadable_lock_is_not_taken_for_none() {
        // With no lock, every field would be numbered afresh.
        let dir = project("");
        std::fs::write(dir.path().join(LOCK), b"{\xff}").unwrap();
        let err = files(dir.path(), &ddl("CREATE TABLE t (id INT PRIMARY KEY);"), false).unwrap_err();
        let path = dir.path().join(LOCK).display().to_string();
        assert!(err.starts_with(&format!("cannot read {path}: ")), "{err}");
    }
}
