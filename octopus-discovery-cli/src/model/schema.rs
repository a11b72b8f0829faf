//! The schema the generator works from: tables, columns and their mapped types,
//! independent of the SQL dialect they were read in.

use serde::{Deserialize, Serialize};

/// A column's type, as the generated code carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ty {
    I16,
    I32,
    I64,
    F32,
    F64,
    Bool,
    /// Text, with its length limit if it has one.
    Text(Option<u32>),
    Bytes,
    /// NUMERIC(precision, scale): carried exactly, as a decimal string.
    Decimal(Option<(u32, u32)>),
    Date,
    Time,
    /// A timestamp without time zone.
    Timestamp,
    /// A timestamp with time zone (an instant, carried in UTC).
    TimestampTz,
    Uuid,
    Json,
    /// A PostgreSQL type carried in its text form (`TSVECTOR`, `TEXT[]`, …):
    /// its spelling in PostgreSQL.
    PgText(String),
}

/// What the SQL, rather than the caller, sets in a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Auto {
    /// Written by the caller.
    None,
    /// Filled in by the database on insert (SERIAL, IDENTITY, AUTO_INCREMENT…).
    Identity,
    /// `created_at`-style: the current time on insert, never updated.
    Created,
    /// `updated_at`-style: the current time on insert and on every update.
    Updated,
    /// The optimistic-concurrency counter: 1 on insert, +1 on every update.
    Version,
    /// Computed by the database from other columns (`GENERATED ALWAYS AS (expr)`):
    /// read, never written.
    Computed,
}

/// A default the generator can carry into either dialect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Default {
    /// A literal, as SQL text valid in SQLite and PostgreSQL.
    Literal(String),
    /// The current date or time.
    Now,
    /// A random UUID.
    RandomUuid,
}

/// A column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Column {
    /// The name in SQL (unquoted names folded to lowercase).
    pub(crate) name: String,
    /// The Rust and proto field name.
    pub(crate) field: String,
    pub(crate) ty: Ty,
    pub(crate) nullable: bool,
    pub(crate) default: Option<Default>,
    pub(crate) auto: Auto,
    /// A computed column's expression, as the DDL writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) computed: Option<String>,
}

/// An index: unique ones get a `find_by_…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Index {
    pub(crate) name: String,
    pub(crate) columns: Vec<String>,
    pub(crate) unique: bool,
}

/// A table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Table {
    /// The name in SQL (schema dropped).
    pub(crate) name: String,
    /// The Rust module name (snake case).
    pub(crate) module: String,
    /// The type and service name stem (Pascal case).
    pub(crate) pascal: String,
    pub(crate) columns: Vec<Column>,
    /// The primary key's columns, in key order.
    pub(crate) primary_key: Vec<String>,
    pub(crate) indexes: Vec<Index>,
}

impl Table {
    /// The column named `name`.
    pub(crate) fn column(&self, name: &str) -> &Column {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .expect("a column of the table")
    }

    /// The primary key's columns.
    pub(crate) fn key(&self) -> Vec<&Column> {
        self.primary_key.iter().map(|k| self.column(k)).collect()
    }

    /// The unique indexes other than the primary key, each once.
    pub(crate) fn uniques(&self) -> Vec<&Index> {
        let mut seen: Vec<&Vec<String>> = vec![&self.primary_key];
        let mut out = Vec::new();
        for index in self.indexes.iter().filter(|i| i.unique) {
            if !seen.contains(&&index.columns) {
                seen.push(&index.columns);
                out.push(index);
            }
        }
        out
    }

    /// Whether `name` is part of the primary key.
    pub(crate) fn is_key(&self, name: &str) -> bool {
        self.primary_key.iter().any(|k| k == name)
    }

    /// The version column, if the table has one.
    pub(crate) fn version(&self) -> Option<&Column> {
        self.columns.iter().find(|c| c.auto == Auto::Version)
    }

    /// Columns the caller writes on insert.
    pub(crate) fn writable(&self) -> Vec<&Column> {
        self.columns.iter().filter(|c| c.auto == Auto::None).collect()
    }

    /// Columns an update sets from the caller's values (not the key).
    pub(crate) fn updatable(&self) -> Vec<&Column> {
        self.columns
            .iter()
            .filter(|c| c.auto == Auto::None && !self.is_key(&c.name))
            .collect()
    }
}

/// Every table of a DDL file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Schema {
    pub(crate) tables: Vec<Table>,
}

/// A new row's field: optional when the column is NULL-able or has a default.
pub(crate) fn new_optional(c: &Column) -> bool {
    c.nullable || c.default.is_some()
}
