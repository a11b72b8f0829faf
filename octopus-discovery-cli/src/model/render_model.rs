//! `src/model/<table>_gen.rs`: the row, key and new-row types, the queries, and
//! the conversions to and from the proto messages.

use std::fmt::Write;

use super::names::rust;
use super::schema::{new_optional, Auto, Column, Table};
use super::sql::{self, Target, TARGETS};

fn model_ty(c: &Column) -> String {
    if c.nullable {
        format!("Option<{}>", c.ty.rust())
    } else {
        c.ty.rust().to_string()
    }
}

/// `match db { Db::Sqlite(pool) => …, Db::Postgres(pool) => … }` with `{i}`
/// in `body` replaced by each dialect's index into the SQL arrays.
fn on_db(body: &str) -> String {
    let mut out = String::from("match db {\n");
    for (i, t) in TARGETS.iter().enumerate() {
        let arm = match t {
            Target::Sqlite => "Db::Sqlite(pool)",
            Target::Postgres => "Db::Postgres(pool)",
        };
        let _ = writeln!(
            out,
            "            {arm} => {{\n{}\n            }}",
            body.replace("{i}", &i.to_string())
        );
    }
    out + "        }"
}

fn sql_const(out: &mut String, name: &str, doc: &str, sql: impl Fn(Target) -> String) {
    let _ = writeln!(out, "/// {doc}: SQLite, PostgreSQL.\nconst {name}: [&str; 2] = [");
    for t in TARGETS {
        let _ = writeln!(out, "    {:?},", sql(t));
    }
    out.push_str("];\n\n");
}

/// The `.bind(…)` chain for `columns` read from `src`.
fn binds(columns: &[&Column], src: &str) -> String {
    columns
        .iter()
        .map(|c| format!(".bind(&{src}.{})", rust(&c.field)))
        .collect()
}

pub(crate) fn render(table: &Table, module: &str) -> String {
    let p = &table.pascal;
    let t = &table.name;
    let key = table.key();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! The model of table `{t}`: its row, key and queries. Your own queries go in\n\
         //! `{m}.rs`, beside this file.\n\n\
         #[allow(unused_imports)]\n\
         use super::db::{{text, token, untoken, Db, Error}};\n\
         use crate::model_proto as pb;\n",
        m = table.module
    );
    let _ = module;

    // Types.
    let _ = writeln!(
        out,
        "/// A row of `{t}`.\n#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]\npub struct {p} {{"
    );
    for c in &table.columns {
        let _ = writeln!(
            out,
            "    /// Column `{}`.\n    #[sqlx(rename = {:?})]\n    pub {}: {},",
            c.name,
            c.name,
            rust(&c.field),
            model_ty(c)
        );
    }
    out.push_str("}\n\n");
    let _ = writeln!(
        out,
        "/// The primary key of `{t}`.\n#[derive(Clone, Debug, PartialEq)]\npub struct {p}Key {{"
    );
    for c in &key {
        let _ = writeln!(
            out,
            "    /// Column `{}`.\n    pub {}: {},",
            c.name,
            rust(&c.field),
            c.ty.rust()
        );
    }
    out.push_str("}\n\n");
    let _ = writeln!(
        out,
        "/// A row to insert into `{t}`. `None` in a column with a DEFAULT takes the\n\
         /// default; the SQL fills in identities, versions and created/updated times.\n\
         #[derive(Clone, Debug, PartialEq)]\npub struct New{p} {{"
    );
    for c in table.writable() {
        let ty = if new_optional(c) {
            format!("Option<{}>", c.ty.rust())
        } else {
            c.ty.rust().to_string()
        };
        let _ = writeln!(out, "    /// Column `{}`.\n    pub {}: {ty},", c.name, rust(&c.field));
    }
    out.push_str("}\n\n");
    let _ = writeln!(
        out,
        "impl {p} {{\n    /// The row's primary key.\n    pub fn key(&self) -> {p}Key {{\n        {p}Key {{"
    );
    for c in &key {
        let f = rust(&c.field);
        let _ = writeln!(out, "            {f}: self.{f}.clone(),");
    }
    out.push_str("        }\n    }\n}\n\n");

    // SQL.
    let writable = table.writable();
    let updatable = table.updatable();
    sql_const(&mut out, "INSERT", "Insert, returning the row", |d| {
        sql::insert(table, d)
    });
    sql_const(&mut out, "FIND", "By primary key", |d| sql::find(table, d));
    for (i, index) in table.uniques().iter().enumerate() {
        sql_const(
            &mut out,
            &format!("FIND_BY_{i}"),
            &format!("By unique index `{}`", index.name),
            |d| sql::find_by(table, &index.columns, d),
        );
    }
    let update = sql::update(table, Target::Sqlite).is_some();
    if update {
        sql_const(&mut out, "UPDATE", "Update, returning the row", |d| {
            sql::update(table, d).unwrap_or_default()
        });
    }
    sql_const(&mut out, "DELETE", "Delete by primary key", |d| sql::delete(table, d));
    sql_const(&mut out, "FIRST_PAGE", "The first page", |d| sql::list(table, false, d));
    sql_const(&mut out, "NEXT_PAGE", "The page after a key", |d| {
        sql::list(table, true, d)
    });
    let _ = writeln!(out, "/// Count.\nconst COUNT: &str = {:?};\n", sql::count(table));

    // Queries.
    let insert_binds = binds(&writable, "new");
    let key_binds = binds(&key, "key");
    let _ = writeln!(
        out,
        "/// The queries of `{t}`.\n#[derive(Clone, Copy, Debug)]\npub struct {p}Model;\n\nimpl {p}Model {{"
    );
    let _ = writeln!(
        out,
        "    /// Inserts `new` and returns the row as stored (identity, defaults and times filled in).\n\
         \x20   pub async fn insert(db: &Db, new: &New{p}) -> Result<{p}, Error> {{\n        {}\n    }}\n",
        on_db(&format!(
            "                Ok(sqlx::query_as::<_, {p}>(INSERT[{{i}}]){insert_binds}.fetch_one(pool).await?)"
        ))
    );
    let _ = writeln!(
        out,
        "    /// Inserts every row of `rows` in one transaction: all or none.\n\
         \x20   pub async fn insert_many(db: &Db, rows: &[New{p}]) -> Result<Vec<{p}>, Error> {{\n        {}\n    }}\n",
        on_db(&format!(
            "                let mut tx = pool.begin().await?;\n\
             \x20               let mut out = Vec::with_capacity(rows.len());\n\
             \x20               for new in rows {{\n\
             \x20                   out.push(sqlx::query_as::<_, {p}>(INSERT[{{i}}]){insert_binds}.fetch_one(&mut *tx).await?);\n\
             \x20               }}\n\
             \x20               tx.commit().await?;\n\
             \x20               Ok(out)"
        ))
    );
    let _ = writeln!(
        out,
        "    /// The row with primary key `key`, or [`Error::NotFound`].\n\
         \x20   pub async fn find_one(db: &Db, key: &{p}Key) -> Result<{p}, Error> {{\n        {}\n    }}\n",
        on_db(&format!(
            "                Ok(sqlx::query_as::<_, {p}>(FIND[{{i}}]){key_binds}.fetch_one(pool).await?)"
        ))
    );
    for (i, index) in table.uniques().iter().enumerate() {
        let cols: Vec<&Column> = index.columns.iter().map(|n| table.column(n)).collect();
        let name = cols.iter().map(|c| c.field.as_str()).collect::<Vec<_>>().join("_and_");
        let args = cols
            .iter()
            .map(|c| format!("{}: &{}", rust(&c.field), c.ty.rust()))
            .collect::<Vec<_>>()
            .join(", ");
        let b: String = cols.iter().map(|c| format!(".bind({})", rust(&c.field))).collect();
        let _ = writeln!(
            out,
            "    /// The row with these values of unique index `{}`, or [`Error::NotFound`].\n\
             \x20   pub async fn find_by_{name}(db: &Db, {args}) -> Result<{p}, Error> {{\n        {}\n    }}\n",
            index.name,
            on_db(&format!(
                "                Ok(sqlx::query_as::<_, {p}>(FIND_BY_{i}[{{i}}]){b}.fetch_one(pool).await?)"
            ))
        );
    }
    let version_doc = match table.version() {
        Some(v) => format!(
            "\n    /// The row's `{}` must be the one stored ([`Error::Conflict`] if not); it is incremented.",
            v.name
        ),
        None => String::new(),
    };
    if update {
        let mut b = binds(&updatable, "row");
        b += &binds(&key, "row");
        if let Some(v) = table.version() {
            b += &format!(".bind(row.{})", rust(&v.field));
        }
        let missing = if table.version().is_some() {
            "                    Err(sqlx::Error::RowNotFound) => match Self::find_one(db, &row.key()).await {\n\
             \x20                       Ok(_) => Err(Error::Conflict),\n\
             \x20                       Err(e) => Err(e),\n\
             \x20                   },"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    /// Writes `row`'s columns to the row with its key and returns the row as stored.{version_doc}\n\
             \x20   pub async fn update(db: &Db, row: &{p}) -> Result<{p}, Error> {{\n        {}\n    }}\n",
            on_db(&format!(
                "                match sqlx::query_as::<_, {p}>(UPDATE[{{i}}]){b}.fetch_one(pool).await {{\n\
                 \x20                   Ok(stored) => Ok(stored),\n{missing}\n\
                 \x20                   Err(e) => Err(e.into()),\n\
                 \x20               }}"
            ))
        );
    } else {
        let _ = writeln!(
            out,
            "    /// Every column of `{t}` is part of its key: an update changes nothing, and\n\
             \x20   /// returns the row stored under the key.\n\
             \x20   pub async fn update(db: &Db, row: &{p}) -> Result<{p}, Error> {{\n        Self::find_one(db, &row.key()).await\n    }}\n"
        );
    }
    let _ = writeln!(
        out,
        "    /// Deletes the row with primary key `key`, or [`Error::NotFound`].\n\
         \x20   pub async fn delete(db: &Db, key: &{p}Key) -> Result<(), Error> {{\n        let deleted = {};\n        if deleted == 0 {{\n            return Err(Error::NotFound);\n        }}\n        Ok(())\n    }}\n",
        on_db(&format!(
            "                sqlx::query(DELETE[{{i}}]){key_binds}.execute(pool).await?.rows_affected()"
        ))
    );
    let _ = writeln!(
        out,
        "    /// Up to `limit` rows in primary-key order, after `after` (from the first row if `None`).\n\
         \x20   pub async fn list(db: &Db, after: Option<&{p}Key>, limit: i64) -> Result<Vec<{p}>, Error> {{\n        {}\n    }}\n",
        on_db(&format!(
            "                Ok(match after {{\n\
             \x20                   None => sqlx::query_as::<_, {p}>(FIRST_PAGE[{{i}}]).bind(limit).fetch_all(pool).await?,\n\
             \x20                   Some(key) => sqlx::query_as::<_, {p}>(NEXT_PAGE[{{i}}]){key_binds}.bind(limit).fetch_all(pool).await?,\n\
             \x20               }})"
        ))
    );
    let _ = writeln!(
        out,
        "    /// The number of rows.\n\
         \x20   pub async fn count(db: &Db) -> Result<i64, Error> {{\n        {}\n    }}\n",
        on_db("                Ok(sqlx::query_scalar::<_, i64>(COUNT).fetch_one(pool).await?)")
    );
    let _ = writeln!(
        out,
        "    /// A page for the List RPC: up to `page_size` rows (0: 50, at most 1000)\n\
         \x20   /// after the key `page_token` carries, and the next page's token (empty on the last page).\n\
         \x20   pub async fn page(db: &Db, page_size: i32, page_token: &str) -> Result<(Vec<{p}>, String), Error> {{\n\
         \x20       let limit = super::db::page_size(page_size)?;\n\
         \x20       let after = match page_token {{\n\
         \x20           \"\" => None,\n\
         \x20           token => Some({p}Key::try_from(untoken::<pb::{p}Key>(token)?)?),\n\
         \x20       }};\n\
         \x20       let mut rows = Self::list(db, after.as_ref(), limit + 1).await?;\n\
         \x20       let mut next = String::new();\n\
         \x20       if rows.len() as i64 > limit {{\n\
         \x20           rows.truncate(limit as usize);\n\
         \x20           if let Some(last) = rows.last() {{\n\
         \x20               next = token(&pb::{p}Key::from(last.key()));\n\
         \x20           }}\n\
         \x20       }}\n\
         \x20       Ok((rows, next))\n\
         \x20   }}\n}}\n"
    );

    super::render_convert::render(&mut out, table);
    let _ = Auto::None;
    out
}
