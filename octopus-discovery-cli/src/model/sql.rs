//! The SQL of the generated queries, for SQLite (index 0) and PostgreSQL (1).

use super::names::quote;
use super::schema::{Auto, Column, Default, Table, Ty};

/// The two dialects the generated code runs on, in the order of its SQL arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Sqlite,
    Postgres,
}

pub(crate) const TARGETS: [Target; 2] = [Target::Sqlite, Target::Postgres];

/// The current date or time for a column of type `ty`.
pub(crate) fn now(ty: &Ty, target: Target) -> &'static str {
    match (target, ty) {
        (Target::Sqlite, Ty::Date) => "date('now')",
        (Target::Sqlite, Ty::TimestampTz) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        (Target::Sqlite, _) => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
        (Target::Postgres, Ty::Date) => "CURRENT_DATE",
        (Target::Postgres, Ty::TimestampTz) => "CURRENT_TIMESTAMP",
        (Target::Postgres, _) => "LOCALTIMESTAMP",
    }
}

/// A column's default as an expression.
pub(crate) fn default(column: &Column, target: Target) -> Option<String> {
    Some(match column.default.as_ref()? {
        Default::Literal(l) => l.clone(),
        Default::Now => now(&column.ty, target).into(),
        Default::RandomUuid => match target {
            Target::Sqlite => "randomblob(16)".into(),
            Target::Postgres => "gen_random_uuid()".into(),
        },
    })
}

/// A parameter `$n` as the column's type takes it.
pub(crate) fn param(column: &Column, n: usize, target: Target) -> String {
    match (target, &column.ty) {
        (Target::Postgres, Ty::Decimal(_)) => format!("CAST(${n} AS NUMERIC)"),
        (Target::Postgres, Ty::Json) => format!("CAST(${n} AS JSONB)"),
        (Target::Postgres, Ty::PgText(ty)) => format!("CAST(${n} AS {ty})"),
        _ => format!("${n}"),
    }
}

/// The select list: decimals and JSON read back as text.
pub(crate) fn select_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| match c.ty {
            Ty::Decimal(_) | Ty::Json | Ty::PgText(_) => format!("CAST({0} AS TEXT) AS {0}", quote(&c.name)),
            _ => quote(&c.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_match(table: &Table, first: usize, target: Target) -> String {
    table
        .key()
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = {}", quote(&c.name), param(c, first + i, target)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// INSERT … RETURNING: the caller's columns as parameters (in `writable`
/// order), the SQL's own columns by expression.
pub(crate) fn insert(table: &Table, target: Target) -> String {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut n = 0;
    for c in &table.columns {
        let value = match c.auto {
            Auto::Identity | Auto::Computed => continue,
            Auto::Version => "1".to_string(),
            Auto::Created | Auto::Updated => now(&c.ty, target).to_string(),
            Auto::None => {
                n += 1;
                let p = param(c, n, target);
                match default(c, target) {
                    Some(d) => format!("COALESCE({p}, {d})"),
                    None => p,
                }
            }
        };
        names.push(quote(&c.name));
        values.push(value);
    }
    let head = if names.is_empty() {
        format!("INSERT INTO {} DEFAULT VALUES", quote(&table.name))
    } else {
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&table.name),
            names.join(", "),
            values.join(", ")
        )
    };
    format!("{head} RETURNING {}", select_list(table))
}

/// SELECT by primary key.
pub(crate) fn find(table: &Table, target: Target) -> String {
    format!(
        "SELECT {} FROM {} WHERE {}",
        select_list(table),
        quote(&table.name),
        key_match(table, 1, target)
    )
}

/// SELECT by the columns of a unique index.
pub(crate) fn find_by(table: &Table, columns: &[String], target: Target) -> String {
    let cond = columns
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{} = {}", quote(name), param(table.column(name), i + 1, target)))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("SELECT {} FROM {} WHERE {cond}", select_list(table), quote(&table.name))
}

/// UPDATE … RETURNING, or `None` when nothing in the row is updatable.
/// Parameters: the updatable columns, then the key, then the expected version.
pub(crate) fn update(table: &Table, target: Target) -> Option<String> {
    let mut sets = Vec::new();
    let mut n = 0;
    for c in table.updatable() {
        n += 1;
        sets.push(format!("{} = {}", quote(&c.name), param(c, n, target)));
    }
    for c in &table.columns {
        match c.auto {
            Auto::Updated => sets.push(format!("{} = {}", quote(&c.name), now(&c.ty, target))),
            Auto::Version => sets.push(format!("{0} = {0} + 1", quote(&c.name))),
            _ => {}
        }
    }
    if sets.is_empty() {
        return None;
    }
    let mut cond = key_match(table, n + 1, target);
    if let Some(v) = table.version() {
        cond += &format!(" AND {} = ${}", quote(&v.name), n + table.primary_key.len() + 1);
    }
    Some(format!(
        "UPDATE {} SET {} WHERE {cond} RETURNING {}",
        quote(&table.name),
        sets.join(", "),
        select_list(table)
    ))
}

/// DELETE by primary key.
pub(crate) fn delete(table: &Table, target: Target) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        quote(&table.name),
        key_match(table, 1, target)
    )
}

/// A keyset page: the first (`after` = false) or the one after a key.
pub(crate) fn list(table: &Table, after: bool, target: Target) -> String {
    let key = table.key();
    let order = key.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
    let limit = if after { key.len() + 1 } else { 1 };
    let cond = if !after {
        String::new()
    } else if key.len() == 1 {
        format!(" WHERE {} > {}", quote(&key[0].name), param(key[0], 1, target))
    } else {
        let params = key
            .iter()
            .enumerate()
            .map(|(i, c)| param(c, i + 1, target))
            .collect::<Vec<_>>()
            .join(", ");
        format!(" WHERE ({order}) > ({params})")
    };
    format!(
        "SELECT {} FROM {}{cond} ORDER BY {order} LIMIT ${limit}",
        select_list(table),
        quote(&table.name)
    )
}

/// COUNT(*).
pub(crate) fn count(table: &Table) -> String {
    format!("SELECT COUNT(*) FROM {}", quote(&table.name))
}
