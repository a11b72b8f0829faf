//! The conversions between a table's proto messages and its model types.

use std::fmt::Write;

use super::names::rust;
use super::schema::{new_optional, Column, Table, Ty};

/// proto value `v` → model value, `?` on the model's Error.
fn from_proto(c: &Column, v: &str) -> String {
    let f = &c.field;
    match &c.ty {
        Ty::I16 => format!("text::small({f:?}, {v})?"),
        Ty::Decimal(b) => format!("text::decimal({f:?}, {v}, {b:?})?"),
        Ty::Json => format!("text::json({f:?}, {v})?"),
        Ty::Uuid => format!("text::uuid({f:?}, &{v})?"),
        Ty::Date => format!("text::date({f:?}, &{v})?"),
        Ty::Time => format!("text::time({f:?}, &{v})?"),
        Ty::Timestamp => format!("text::timestamp({f:?}, &{v})?"),
        Ty::TimestampTz => format!("text::timestamptz({f:?}, &{v})?"),
        _ => v.to_string(),
    }
}

pub(crate) fn convert_in(c: &Column, src: &str, optional: bool) -> String {
    let access = format!("{src}.{}", rust(&c.field));
    if !c.ty.parsed() {
        return access;
    }
    if optional {
        format!(
            "{access}.map(|v| -> Result<_, Error> {{ Ok({}) }}).transpose()?",
            from_proto(c, "v")
        )
    } else {
        from_proto(c, &access)
    }
}

/// model value `v` (owned) → proto value.
fn to_proto(c: &Column, v: &str) -> String {
    match &c.ty {
        Ty::I16 => format!("i32::from({v})"),
        Ty::Uuid => format!("{v}.to_string()"),
        Ty::Date => format!("text::show_date(&{v})"),
        Ty::Time => format!("text::show_time(&{v})"),
        Ty::Timestamp => format!("text::show_timestamp(&{v})"),
        Ty::TimestampTz => format!("text::show_timestamptz(&{v})"),
        _ => v.to_string(),
    }
}

fn convert_out(c: &Column, src: &str) -> String {
    let access = format!("{src}.{}", rust(&c.field));
    let plain = matches!(
        c.ty,
        Ty::I16 | Ty::Uuid | Ty::Date | Ty::Time | Ty::Timestamp | Ty::TimestampTz
    );
    if !plain {
        access
    } else if c.nullable {
        format!("{access}.map(|v| {})", to_proto(c, "v"))
    } else {
        to_proto(c, &access)
    }
}

/// The From/TryFrom impls of table `table`.
pub(crate) fn render(out: &mut String, table: &Table) {
    let p = &table.pascal;
    let key = table.key();
    // Conversions.
    let _ = writeln!(
        out,
        "impl From<{p}> for pb::{p} {{\n    fn from(row: {p}) -> Self {{\n        pb::{p} {{"
    );
    for c in &table.columns {
        let _ = writeln!(*out, "            {}: {},", rust(&c.field), convert_out(c, "row"));
    }
    out.push_str("        }\n    }\n}\n\n");
    let _ = writeln!(
        out,
        "impl TryFrom<pb::{p}> for {p} {{\n    type Error = Error;\n\n    fn try_from(row: pb::{p}) -> Result<Self, Error> {{\n        Ok({p} {{"
    );
    for c in &table.columns {
        let _ = writeln!(
            out,
            "            {}: {},",
            rust(&c.field),
            convert_in(c, "row", c.nullable)
        );
    }
    out.push_str("        })\n    }\n}\n\n");
    let _ = writeln!(
        out,
        "impl From<{p}Key> for pb::{p}Key {{\n    fn from(key: {p}Key) -> Self {{\n        pb::{p}Key {{"
    );
    for c in &key {
        let _ = writeln!(*out, "            {}: {},", rust(&c.field), convert_out(c, "key"));
    }
    out.push_str("        }\n    }\n}\n\n");
    let _ = writeln!(
        out,
        "impl TryFrom<pb::{p}Key> for {p}Key {{\n    type Error = Error;\n\n    fn try_from(key: pb::{p}Key) -> Result<Self, Error> {{\n        Ok({p}Key {{"
    );
    for c in &key {
        let _ = writeln!(*out, "            {}: {},", rust(&c.field), convert_in(c, "key", false));
    }
    out.push_str("        })\n    }\n}\n\n");
    let _ = writeln!(
        out,
        "impl TryFrom<pb::Create{p}Request> for New{p} {{\n    type Error = Error;\n\n    fn try_from(new: pb::Create{p}Request) -> Result<Self, Error> {{\n        Ok(New{p} {{"
    );
    for c in table.writable() {
        let _ = writeln!(
            out,
            "            {}: {},",
            rust(&c.field),
            convert_in(c, "new", new_optional(c))
        );
    }
    out.push_str("        })\n    }\n}\n");
}
