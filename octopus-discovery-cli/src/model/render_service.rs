//! The Rust files around the models: `src/model/mod.rs`, the migrations'
//! list, the handlers (written once) and their registration.

use std::fmt::Write;

use super::names::snake;
use super::schema::{Schema, Table};

/// `src/model/mod.rs` (generated).
pub(crate) fn model_mod(schema: &Schema) -> String {
    let mut out = String::from(
        "//! The models of the tables: `<table>_gen.rs` is regenerated from the DDL by\n\
         //! `octopus model`; `<table>.rs` is yours (written once, never touched again).\n\n\
         #[path = \"db_gen.rs\"]\nmod db;\nmod migrations_gen;\n\npub use db::{page_size, text, token, untoken, Db, Error};\n\n",
    );
    for t in &schema.tables {
        let _ = writeln!(
            out,
            "/// Table `{}`: generated.\npub mod {m}_gen;\n/// Table `{0}`: your own queries.\npub mod {m};\n",
            t.name,
            m = t.module
        );
    }
    out
}

/// `src/model/<table>.rs`: the user's own queries (written once).
pub(crate) fn custom(t: &Table) -> String {
    let p = &t.pascal;
    format!(
        "//! Your own queries on `{t}`: written once by `octopus model`, never touched again.\n\
         //! The generated ones are in `{m}_gen.rs`; add methods here, e.g.:\n\
         //!\n\
         //! ```ignore\n\
         //! impl {p}Model {{\n\
         //!     pub async fn recent(db: &Db, limit: i64) -> Result<Vec<{p}>, Error> {{\n\
         //!         Ok(match db {{\n\
         //!             Db::Sqlite(pool) => sqlx::query_as(\"SELECT * FROM \\\"{t}\\\" LIMIT $1\").bind(limit).fetch_all(pool).await?,\n\
         //!             Db::Postgres(pool) => sqlx::query_as(\"SELECT * FROM \\\"{t}\\\" LIMIT $1\").bind(limit).fetch_all(pool).await?,\n\
         //!         }})\n\
         //!     }}\n\
         //! }}\n\
         //! ```\n\n\
         #[allow(unused_imports)]\n\
         use super::{m}_gen::{{{p}, {p}Model}};\n\
         #[allow(unused_imports)]\n\
         use crate::model::{{Db, Error}};\n",
        t = t.name,
        m = t.module
    )
}

/// `src/model/migrations_gen.rs` (generated): every migration, embedded.
pub(crate) fn migrations(files: &[(u32, String)]) -> String {
    let mut out = String::from("//! The migrations under `migrations/`, applied in order at start-up.\n\n");
    for (dir, name) in [("sqlite", "SQLITE"), ("postgres", "POSTGRES")] {
        let _ = writeln!(
            out,
            "/// `migrations/{dir}/`: (version, name, SQL).\npub(crate) const {name}: &[(i64, &str, &str)] = &["
        );
        for (n, file) in files {
            let _ = writeln!(
                out,
                "    ({n}, {file:?}, include_str!(\"../../migrations/{dir}/{file}.sql\")),"
            );
        }
        out.push_str("];\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// `src/handlers/mod.rs` (generated): one handler per table, all registered.
pub(crate) fn handlers_mod(schema: &Schema) -> String {
    let mut out = String::from(
        "//! The CRUD services of the tables: each handler in `<table>.rs` (written once,\n\
         //! yours to edit); this file, which adds them all to the server, is regenerated.\n\n",
    );
    for t in &schema.tables {
        let _ = writeln!(out, "pub mod {};", t.module);
    }
    out.push_str(
        "\n/// Adds every table's service to `router`, over `db`.\n\
         pub fn add_services(router: tonic::transport::server::Router, db: &crate::model::Db) -> tonic::transport::server::Router {\n    router",
    );
    for t in &schema.tables {
        let _ = write!(
            out,
            "\n        .add_service(crate::model_proto::{r}_service_server::{p}ServiceServer::new({m}::{p}Handler::new(db.clone())))",
            m = t.module,
            p = t.pascal,
            r = snake(&t.pascal)
        );
    }
    out.push_str("\n}\n");
    out
}

/// `src/handlers/<table>.rs`: the RPCs, wired to the model (written once).
pub(crate) fn handler(t: &Table) -> String {
    let p = &t.pascal;
    let m = &t.module;
    // What tonic names the service's module and methods after: the message's name.
    let r = snake(p);
    format!(
        "//! The RPCs of table `{name}`: written once by `octopus model`, yours to edit\n\
         //! (validation, authorization, other calls). Errors become gRPC codes: not found\n\
         //! NOT_FOUND, a duplicate ALREADY_EXISTS, a version conflict ABORTED, a bad\n\
         //! value INVALID_ARGUMENT, anything else INTERNAL (logged, not sent).\n\n\
         use tonic::{{Request, Response, Status}};\n\n\
         use crate::model::{m}_gen::{{New{p}, {p}Key, {p}Model, {p}}};\n\
         use crate::model::Db;\n\
         use crate::model_proto as pb;\n\
         use crate::model_proto::{r}_service_server::{p}Service;\n\n\
         /// `{p}Service`, over a database.\n\
         #[derive(Clone, Debug)]\n\
         pub struct {p}Handler {{\n    db: Db,\n}}\n\n\
         impl {p}Handler {{\n    /// A handler over `db`.\n    pub fn new(db: Db) -> Self {{\n        {p}Handler {{ db }}\n    }}\n}}\n\n\
         #[tonic::async_trait]\n\
         impl {p}Service for {p}Handler {{\n\
         \x20   async fn create_{r}(&self, request: Request<pb::Create{p}Request>) -> Result<Response<pb::{p}>, Status> {{\n\
         \x20       let new = New{p}::try_from(request.into_inner())?;\n\
         \x20       let row = {p}Model::insert(&self.db, &new).await?;\n\
         \x20       Ok(Response::new(row.into()))\n\
         \x20   }}\n\n\
         \x20   async fn get_{r}(&self, request: Request<pb::{p}Key>) -> Result<Response<pb::{p}>, Status> {{\n\
         \x20       let key = {p}Key::try_from(request.into_inner())?;\n\
         \x20       let row = {p}Model::find_one(&self.db, &key).await?;\n\
         \x20       Ok(Response::new(row.into()))\n\
         \x20   }}\n\n\
         \x20   async fn update_{r}(&self, request: Request<pb::{p}>) -> Result<Response<pb::{p}>, Status> {{\n\
         \x20       let row = {p}::try_from(request.into_inner())?;\n\
         \x20       let row = {p}Model::update(&self.db, &row).await?;\n\
         \x20       Ok(Response::new(row.into()))\n\
         \x20   }}\n\n\
         \x20   async fn delete_{r}(&self, request: Request<pb::{p}Key>) -> Result<Response<pb::Delete{p}Reply>, Status> {{\n\
         \x20       let key = {p}Key::try_from(request.into_inner())?;\n\
         \x20       {p}Model::delete(&self.db, &key).await?;\n\
         \x20       Ok(Response::new(pb::Delete{p}Reply {{}}))\n\
         \x20   }}\n\n\
         \x20   async fn list_{r}(&self, request: Request<pb::List{p}Request>) -> Result<Response<pb::List{p}Reply>, Status> {{\n\
         \x20       let request = request.into_inner();\n\
         \x20       let (rows, next_page_token) = {p}Model::page(&self.db, request.page_size, &request.page_token).await?;\n\
         \x20       Ok(Response::new(pb::List{p}Reply {{\n\
         \x20           items: rows.into_iter().map(Into::into).collect(),\n\
         \x20           next_page_token,\n\
         \x20       }}))\n\
         \x20   }}\n\
         }}\n",
        name = t.name
    )
}
