//! `proto/model.proto`: a CRUD service and its messages per table, with field
//! numbers kept in `model/schema.lock` so that they never move.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::schema::{Column, Schema, Table};

/// Field numbers: table → column → number, and the numbers of dropped columns.
pub(crate) type Numbers = BTreeMap<String, BTreeMap<String, u32>>;

/// Gives new columns the next free numbers, and moves dropped columns'
/// numbers to `reserved`.
pub(crate) fn number(schema: &Schema, numbers: &mut Numbers, reserved: &mut BTreeMap<String, Vec<u32>>) {
    for table in &schema.tables {
        let fields = numbers.entry(table.name.clone()).or_default();
        let gone = reserved.entry(table.name.clone()).or_default();
        let dropped: Vec<String> = fields
            .keys()
            .filter(|name| !table.columns.iter().any(|c| &c.name == *name))
            .cloned()
            .collect();
        for name in dropped {
            if let Some(n) = fields.remove(&name) {
                gone.push(n);
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for c in &table.columns {
            if !fields.contains_key(&c.name) {
                let next = fields.values().chain(gone.iter()).max().copied().unwrap_or(0) + 1;
                fields.insert(c.name.clone(), next);
            }
        }
    }
    numbers.retain(|t, _| schema.tables.iter().any(|s| &s.name == t));
    reserved.retain(|t, r| schema.tables.iter().any(|s| &s.name == t) && !r.is_empty());
}

fn field(out: &mut String, c: &Column, n: u32, optional: bool) {
    let _ = writeln!(
        out,
        "  {}{} {} = {n};",
        if optional { "optional " } else { "" },
        c.ty.proto(),
        c.field
    );
}

fn reserved_line(out: &mut String, reserved: &[u32]) {
    if !reserved.is_empty() {
        let list = reserved.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "  reserved {list};");
    }
}

fn table(out: &mut String, t: &Table, numbers: &BTreeMap<String, u32>, reserved: &[u32]) {
    let p = &t.pascal;
    let n = |c: &Column| numbers[&c.name];
    let _ = writeln!(
        out,
        "// Table `{}`.\nservice {p}Service {{\n  \
         // Inserts a row; the reply is the row as stored (identity, defaults, times filled in).\n  \
         rpc Create{p} (Create{p}Request) returns ({p});\n  \
         // The row with this key (NOT_FOUND if none).\n  \
         rpc Get{p} ({p}Key) returns ({p});\n  \
         // Writes the row's columns to the row with its key{}.\n  \
         rpc Update{p} ({p}) returns ({p});\n  \
         // Deletes the row with this key (NOT_FOUND if none).\n  \
         rpc Delete{p} ({p}Key) returns (Delete{p}Reply);\n  \
         // A page of rows in key order; pass next_page_token back for the next.\n  \
         rpc List{p} (List{p}Request) returns (List{p}Reply);\n}}\n",
        t.name,
        match t.version() {
            Some(v) => format!(" (ABORTED unless `{}` is the stored one)", v.field),
            None => String::new(),
        }
    );
    let _ = writeln!(out, "message {p} {{");
    reserved_line(out, reserved);
    for c in &t.columns {
        field(out, c, n(c), c.nullable);
    }
    let _ = writeln!(out, "}}\n\nmessage {p}Key {{");
    for c in t.key() {
        field(out, c, n(c), false);
    }
    let _ = writeln!(out, "}}\n\nmessage Create{p}Request {{");
    reserved_line(out, reserved);
    for c in t.writable() {
        field(out, c, n(c), c.nullable || c.default.is_some());
    }
    let _ = writeln!(
        out,
        "}}\n\nmessage Delete{p}Reply {{}}\n\n\
         message List{p}Request {{\n  // 0: 50; at most 1000.\n  int32 page_size = 1;\n  string page_token = 2;\n}}\n\n\
         message List{p}Reply {{\n  repeated {p} items = 1;\n  // Empty on the last page.\n  string next_page_token = 2;\n}}\n"
    );
}

pub(crate) fn render(
    package: &str,
    schema: &Schema,
    numbers: &Numbers,
    reserved: &BTreeMap<String, Vec<u32>>,
) -> String {
    let mut out = format!(
        "// The CRUD services of the tables, generated from the DDL by `octopus model`.\n\
         syntax = \"proto3\";\npackage {package};\n\n"
    );
    for t in &schema.tables {
        let none = Vec::new();
        table(&mut out, t, &numbers[&t.name], reserved.get(&t.name).unwrap_or(&none));
    }
    out
}
