//! `tests/model_gen.rs`: per table, CRUD, paging through every row, not found,
//! duplicates, version conflicts and bad input, over gRPC through discovery.

use std::fmt::Write;

use super::names::{rust, snake};
use super::schema::{Auto, Column, Schema, Table, Ty};

const HEAD: &str = include_str!("../../templates/model/tests_head.rs.tmpl");

/// The test value of column `c` in row `i` (an expression of proto type).
fn value(c: &Column, i: &str) -> String {
    match &c.ty {
        Ty::I16 | Ty::I32 => format!("{i} as i32"),
        Ty::I64 => format!("{i} as i64"),
        Ty::F32 => format!("{i} as f32 + 0.5"),
        Ty::F64 => format!("{i} as f64 + 0.5"),
        Ty::Bool => format!("{i} % 2 == 0"),
        Ty::Text(max) => format!("text({:?}, {i}, {max:?})", c.field),
        Ty::Bytes => format!("vec![{i} as u8, 7]"),
        Ty::Decimal(b) => format!("decimal({i}, {b:?})"),
        Ty::Date => format!("date({i})"),
        Ty::Time => format!("time({i})"),
        Ty::Timestamp => format!("timestamp({i})"),
        Ty::TimestampTz => format!("timestamptz({i})"),
        Ty::Uuid => format!("uuid({i})"),
        Ty::Json => format!("json({i})"),
        Ty::PgText(ty) => format!("pg_text({ty:?}, {i})"),
    }
}

fn wrap(v: String, optional: bool) -> String {
    if optional {
        format!("Some({v})")
    } else {
        v
    }
}

fn table_tests(out: &mut String, t: &Table, crate_name: &str) {
    let p = &t.pascal;
    let m = &t.module;
    let r = snake(p);
    let client = format!("pb::{r}_service_client::{p}ServiceClient");
    // The create request of row i.
    let _ = writeln!(
        out,
        "\nfn new_{m}(i: i64) -> pb::Create{p}Request {{\n    pb::Create{p}Request {{"
    );
    for c in t.writable() {
        let _ = writeln!(
            out,
            "        {}: {},",
            rust(&c.field),
            wrap(value(c, "i"), c.nullable || c.default.is_some())
        );
    }
    let _ = writeln!(
        out,
        "    }}\n}}\n\nfn key_{m}(row: &pb::{p}) -> pb::{p}Key {{\n    pb::{p}Key {{"
    );
    for c in t.key() {
        let _ = writeln!(out, "        {0}: row.{0}.clone(),", rust(&c.field));
    }
    let _ = writeln!(out, "    }}\n}}\n");
    // The stored row carries what was sent.
    let _ = writeln!(
        out,
        "fn assert_stored_{m}(row: &pb::{p}, sent: &pb::Create{p}Request) {{"
    );
    for c in t.writable() {
        let f = rust(&c.field);
        let optional_sent = c.nullable || c.default.is_some();
        if optional_sent && !c.nullable {
            let _ = writeln!(out, "    assert_eq!(Some(row.{f}.clone()), sent.{f}, \"{}\");", c.name);
        } else {
            let _ = writeln!(out, "    assert_eq!(row.{f}, sent.{f}, \"{}\");", c.name);
        }
    }
    out.push_str("}\n");

    // CRUD, not found, version conflict.
    let _ = writeln!(
        out,
        "\n#[tokio::test]\nasync fn {m}_crud_not_found_and_conflict() {{\n    let h = Harness::start(\"{m}_crud\").await;\n    let mut client = {client}::new(h.channel.clone());\n    let sent = new_{m}(1);\n    let created = client.create_{r}(sent.clone()).await.unwrap().into_inner();\n    assert_stored_{m}(&created, &sent);\n    let got = client.get_{r}(key_{m}(&created)).await.unwrap().into_inner();\n    assert_eq!(got, created);"
    );
    let changed = t.updatable().into_iter().find(|c| !matches!(c.ty, Ty::Bool));
    let binding = if changed.is_some() {
        "let mut changed"
    } else {
        "let changed"
    };
    let _ = writeln!(out, "    {binding} = created.clone();");
    if let Some(c) = changed {
        let _ = writeln!(
            out,
            "    changed.{} = {};",
            rust(&c.field),
            wrap(value(c, "1001"), c.nullable)
        );
    }
    let _ = writeln!(
        out,
        "    let updated = client.update_{r}(changed.clone()).await.unwrap().into_inner();"
    );
    if let Some(c) = changed {
        let _ = writeln!(out, "    assert_eq!(updated.{0}, changed.{0});", rust(&c.field));
    }
    if let Some(v) = t.version() {
        let f = rust(&v.field);
        let _ = writeln!(
            out,
            "    assert_eq!(updated.{f}, created.{f} + 1, \"the version goes up by one\");\n    let stale = client.update_{r}(changed.clone()).await.unwrap_err();\n    assert_eq!(stale.code(), Code::Aborted, \"{{stale:?}}\");"
        );
    }
    let _ = writeln!(
        out,
        "    client.delete_{r}(key_{m}(&created)).await.unwrap();\n    for status in [\n        client.get_{r}(key_{m}(&created)).await.unwrap_err(),\n        client.delete_{r}(key_{m}(&created)).await.unwrap_err(),\n        client.update_{r}(updated.clone()).await.unwrap_err(),\n    ] {{\n        assert_eq!(status.code(), Code::NotFound, \"{{status:?}}\");\n    }}\n    h.stop().await;\n}}"
    );

    // Paging through every row, count, insert-many, find_by.
    let _ = writeln!(
        out,
        "\n#[tokio::test]\nasync fn {m}_paging_count_and_find_by() {{\n    use {crate_name}::model::{m}_gen::{{New{p}, {p}Model}};\n    let h = Harness::start(\"{m}_paging\").await;\n    let mut client = {client}::new(h.channel.clone());\n    let mut keys = Vec::new();\n    for i in 1..=5 {{\n        keys.push(key_{m}(&client.create_{r}(new_{m}(i)).await.unwrap().into_inner()));\n    }}\n    let mut seen = Vec::new();\n    let mut token = String::new();\n    let mut pages = 0;\n    loop {{\n        let page = client\n            .list_{r}(pb::List{p}Request {{ page_size: 2, page_token: token }})\n            .await\n            .unwrap()\n            .into_inner();\n        assert!(page.items.len() <= 2);\n        seen.extend(page.items.iter().map(key_{m}));\n        pages += 1;\n        token = page.next_page_token;\n        if token.is_empty() {{\n            break;\n        }}\n        assert!(pages < 10, \"paging does not end\");\n    }}\n    assert_eq!(seen.len(), 5, \"every row once: {{seen:?}}\");\n    for key in &keys {{\n        assert!(seen.contains(key), \"{{key:?}} not listed\");\n    }}\n    assert_eq!({p}Model::count(&h.db).await.unwrap(), 5);\n    let more: Vec<New{p}> = (6..=8).map(|i| New{p}::try_from(new_{m}(i)).unwrap()).collect();\n    let stored = {p}Model::insert_many(&h.db, &more).await.unwrap();\n    assert_eq!(stored.len(), 3);\n    assert_eq!({p}Model::count(&h.db).await.unwrap(), 8);\n    assert_eq!({p}Model::find_one(&h.db, &stored[0].key()).await.unwrap(), stored[0]);"
    );
    for index in t.uniques() {
        let cols: Vec<&Column> = index.columns.iter().map(|n| t.column(n)).collect();
        let name = cols.iter().map(|c| c.field.as_str()).collect::<Vec<_>>().join("_and_");
        let args = cols
            .iter()
            .map(|c| {
                let f = rust(&c.field);
                if c.nullable {
                    format!("stored[1].{f}.as_ref().unwrap()")
                } else {
                    format!("&stored[1].{f}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "    assert_eq!({p}Model::find_by_{name}(&h.db, {args}).await.unwrap(), stored[1]);"
        );
    }
    let _ = writeln!(out, "    h.stop().await;\n}}");

    // Duplicates: only where a key or unique index is written by the caller.
    let natural = t.key().iter().all(|c| c.auto == Auto::None)
        || t.uniques()
            .iter()
            .any(|i| i.columns.iter().all(|n| t.column(n).auto == Auto::None));
    if natural {
        let _ = writeln!(
            out,
            "\n#[tokio::test]\nasync fn {m}_duplicate() {{\n    use {crate_name}::model::{m}_gen::{{New{p}, {p}Model}};\n    let h = Harness::start(\"{m}_duplicate\").await;\n    let mut client = {client}::new(h.channel.clone());\n    client.create_{r}(new_{m}(3)).await.unwrap();\n    let again = client.create_{r}(new_{m}(3)).await.unwrap_err();\n    assert_eq!(again.code(), Code::AlreadyExists, \"{{again:?}}\");\n    // insert_many is all or none.\n    let rows: Vec<New{p}> = [4, 3].into_iter().map(|i| New{p}::try_from(new_{m}(i)).unwrap()).collect();\n    assert!({p}Model::insert_many(&h.db, &rows).await.is_err());\n    assert_eq!({p}Model::count(&h.db).await.unwrap(), 1);\n    h.stop().await;\n}}"
        );
    }

    // Bad input.
    let _ = writeln!(
        out,
        "\n#[tokio::test]\nasync fn {m}_bad_input() {{\n    let h = Harness::start(\"{m}_bad\").await;\n    let mut client = {client}::new(h.channel.clone());\n    for request in [\n        pb::List{p}Request {{ page_size: -1, page_token: String::new() }},\n        pb::List{p}Request {{ page_size: 2, page_token: \"zz\".into() }},\n    ] {{\n        let status = client.list_{r}(request).await.unwrap_err();\n        assert_eq!(status.code(), Code::InvalidArgument, \"{{status:?}}\");\n    }}"
    );
    if let Some(c) = t.writable().into_iter().find(|c| c.ty.parsed() && c.ty != Ty::I16) {
        let bad = wrap("\"not a value\".to_string()".into(), c.nullable || c.default.is_some());
        let _ = writeln!(
            out,
            "    let mut bad = new_{m}(1);\n    bad.{} = {bad};\n    let status = client.create_{r}(bad).await.unwrap_err();\n    assert_eq!(status.code(), Code::InvalidArgument, \"{{status:?}}\");\n    assert!(status.message().contains(\"{}\"), \"{{status:?}}\");",
            rust(&c.field),
            c.field
        );
    }
    let _ = writeln!(out, "    h.stop().await;\n}}");
}

pub(crate) fn render(schema: &Schema, name: &str, module: &str) -> String {
    let mut out = HEAD.replace("{{module}}", module).replace("{{name}}", name);
    for t in &schema.tables {
        table_tests(&mut out, t, module);
    }
    out
}
