//! `proto/model.proto`: a CRUD service and its messages per table, with field
//! numbers kept in `model/schema.lock` so that they never move.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::schema::{Column, Schema, Table};
use super::Result;

/// Field numbers: table → column → number, and the numbers of dropped columns.
pub(crate) type Numbers = BTreeMap<String, BTreeMap<String, u32>>;

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD: u32 = 536_870_911;

/// The field numbers protobuf keeps for its own use: `protoc` refuses them.
const PROTOBUF_RESERVED: std::ops::RangeInclusive<u32> = 19_000..=19_999;

/// Why `n` cannot be a field number, if it cannot.
fn unusable(n: u32) -> Option<String> {
    if !(1..=MAX_FIELD).contains(&n) {
        Some(format!("is not in 1..={MAX_FIELD}, the numbers protobuf allows"))
    } else if PROTOBUF_RESERVED.contains(&n) {
        Some(format!(
            "is in {}..={}, which protobuf reserves for itself",
            PROTOBUF_RESERVED.start(),
            PROTOBUF_RESERVED.end()
        ))
    } else {
        None
    }
}

/// Checks the numbers read from the lock: a hand-edited one may hold any
/// `u32`, and the proto written from it must be one `protoc` accepts.
pub(crate) fn check(numbers: &Numbers, reserved: &BTreeMap<String, Vec<u32>>) -> Result {
    for (table, fields) in numbers {
        let mut taken = BTreeMap::new();
        for (column, &n) in fields {
            if let Some(why) = unusable(n) {
                return Err(format!("{table}.{column}: proto field number {n} {why}"));
            }
            // Two fields of one message on one number: protoc refuses it, and
            // a client decoding by the old layout would read one as the other.
            if let Some(other) = taken.insert(n, column) {
                return Err(format!(
                    "{table}.{column}: proto field number {n} is {table}.{other}'s too"
                ));
            }
        }
        for &n in reserved.get(table).into_iter().flatten() {
            if let Some(column) = taken.get(&n) {
                return Err(format!(
                    "{table}.{column}: proto field number {n} is reserved (a dropped column's)"
                ));
            }
        }
    }
    for (table, gone) in reserved {
        for &n in gone {
            if let Some(why) = unusable(n) {
                return Err(format!("{table}: reserved proto field number {n} {why}"));
            }
        }
    }
    Ok(())
}

/// Gives new columns the next free numbers, and moves dropped columns'
/// numbers to `reserved`. Fails when a table has no number left.
pub(crate) fn number(schema: &Schema, numbers: &mut Numbers, reserved: &mut BTreeMap<String, Vec<u32>>) -> Result {
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
                let last = fields.values().chain(gone.iter()).max().copied().unwrap_or(0);
                // Numbers only grow, so that a dropped column's is never reused;
                // protobuf's own range is stepped over.
                let next = match last.checked_add(1) {
                    Some(n) if PROTOBUF_RESERVED.contains(&n) => PROTOBUF_RESERVED.end() + 1,
                    next => next.unwrap_or(u32::MAX),
                };
                if next > MAX_FIELD {
                    return Err(format!(
                        "{}.{}: no proto field number left for this column ({MAX_FIELD} is the largest protobuf allows)",
                        table.name, c.name
                    ));
                }
                fields.insert(c.name.clone(), next);
            }
        }
    }
    numbers.retain(|t, _| schema.tables.iter().any(|s| &s.name == t));
    reserved.retain(|t, r| schema.tables.iter().any(|s| &s.name == t) && !r.is_empty());
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse::parse;
    use crate::model::Dialect;

    /// `number` on table `t (a, b)`, given these numbers: its result and the numbers after.
    fn numbered(fields: &[(&str, u32)], reserved: &[u32]) -> (Result, Numbers) {
        let (schema, _) = parse("s.sql", "CREATE TABLE t (a INT PRIMARY KEY, b INT);", Dialect::Postgres).unwrap();
        let mut numbers = Numbers::new();
        numbers.insert("t".into(), fields.iter().map(|(c, n)| (c.to_string(), *n)).collect());
        let mut gone = BTreeMap::new();
        gone.insert("t".to_string(), reserved.to_vec());
        let result = number(&schema, &mut numbers, &mut gone);
        (result, numbers)
    }

    #[test]
    fn new_columns_take_numbers_protobuf_allows() {
        let (result, numbers) = numbered(&[], &[]);
        assert_eq!(result, Ok(()));
        assert_eq!(numbers["t"]["a"], 1);
        assert_eq!(numbers["t"]["b"], 2);
        // After 18999 comes 20000: protoc refuses 19000..=19999.
        let (result, numbers) = numbered(&[("a", 18_999)], &[]);
        assert_eq!(result, Ok(()));
        assert_eq!(numbers["t"]["b"], 20_000);
        let (result, numbers) = numbered(&[("a", 1)], &[18_999]);
        assert_eq!(result, Ok(()));
        assert_eq!(numbers["t"]["b"], 20_000);
        // Past the largest, the column gets none, rather than one protoc refuses
        // (or a sum that overflows).
        for last in [MAX_FIELD, u32::MAX] {
            let (result, _) = numbered(&[("a", last)], &[]);
            assert_eq!(
                result,
                Err(
                    "t.b: no proto field number left for this column (536870911 is the largest protobuf allows)".into()
                )
            );
        }
    }

    #[test]
    fn lock_numbers_are_checked() {
        let mut numbers = Numbers::new();
        numbers.insert("t".into(), [("a".to_string(), 7)].into());
        let mut reserved = BTreeMap::new();
        reserved.insert("t".to_string(), vec![3, 20_000, MAX_FIELD]);
        assert_eq!(check(&numbers, &reserved), Ok(()));
        for bad in [0, 19_000, 19_500, 19_999, MAX_FIELD + 1, u32::MAX] {
            numbers.insert("t".into(), [("a".to_string(), bad)].into());
            let err = check(&numbers, &reserved).unwrap_err();
            assert!(err.starts_with(&format!("t.a: proto field number {bad} is ")), "{err}");
        }
        // One number for two fields, or a field on a dropped column's number.
        numbers.insert("t".into(), [("a".to_string(), 7), ("b".to_string(), 7)].into());
        assert_eq!(
            check(&numbers, &reserved).unwrap_err(),
            "t.b: proto field number 7 is t.a's too"
        );
        numbers.insert("t".into(), [("a".to_string(), 3)].into());
        assert_eq!(
            check(&numbers, &reserved).unwrap_err(),
            "t.a: proto field number 3 is reserved (a dropped column's)"
        );
    }
}
