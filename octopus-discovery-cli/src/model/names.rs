//! Names: SQL identifiers to Rust modules, types and fields, and proto names.

use sqlparser::ast::{Expr, Ident, IndexColumn, ObjectName};

/// snake_case, as prost names fields and modules: `CustomerID` → `customer_id`.
pub(crate) fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_string();
    match out.chars().next() {
        None => "x".into(),
        Some(c) if c.is_ascii_digit() => format!("t_{out}"),
        _ => out,
    }
}

/// PascalCase: `order_items` → `OrderItems`.
pub(crate) fn pascal(name: &str) -> String {
    snake(name)
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map_or(String::new(), |f| f.to_ascii_uppercase().to_string() + c.as_str())
        })
        .collect()
}

/// A table's module name: snake case, kept clear of Rust keywords and of the
/// files the generator writes beside the tables' (`db_gen.rs`, `migrations_gen.rs`).
pub(crate) fn module_name(table: &str) -> String {
    let m = snake(table);
    if KEYWORDS.contains(&m.as_str()) || ["db", "migrations", "self", "super", "crate", "extern"].contains(&m.as_str())
    {
        format!("{m}_table")
    } else {
        m
    }
}

/// A column's field name in proto and Rust (before keyword escaping).
pub(crate) fn field_name(column: &str) -> String {
    snake(column)
}

const KEYWORDS: [&str; 51] = [
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "static",
    "struct",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "union",
    "Self",
    "macro_rules",
];

/// A field as Rust code names it, the way prost does: `type` → `r#type`,
/// `self` → `self_`.
pub(crate) fn rust(field: &str) -> String {
    if ["self", "super", "crate", "extern"].contains(&field) {
        format!("{field}_")
    } else if KEYWORDS.contains(&field) {
        format!("r#{field}")
    } else {
        field.to_string()
    }
}

/// An SQL identifier, quoted for both SQLite and PostgreSQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An identifier as the database stores it: unquoted names fold to lowercase.
pub(crate) fn ident(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_ascii_lowercase(),
    }
}

/// Refuses a `name` that cannot be written into the generated code (the
/// error starts with `at`): names go into its comments (`///`, `//!`, proto's
/// `//`), where a newline would end the comment and make the rest of the name
/// code.
pub(crate) fn printable(at: &str, name: &str) -> Result<(), String> {
    match name.chars().any(char::is_control) {
        true => Err(format!("{at}: names must not contain control characters")),
        false => Ok(()),
    }
}

/// `name` for an error message, its control characters escaped.
pub(crate) fn shown(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub(crate) fn object(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_else(|| name.to_string())
}

/// The plain column names of an index, or `None` if it indexes expressions.
pub(crate) fn index_columns(columns: &[IndexColumn]) -> Option<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            Expr::Identifier(id) => Some(ident(id)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_convert_between_cases_and_escape_keywords() {
        assert_eq!(snake("CustomerID"), "customer_id");
        assert_eq!(snake("order_items"), "order_items");
        assert_eq!(snake("HTTPServer"), "http_server");
        assert_eq!(snake("address2"), "address2");
        assert_eq!(snake("2fa"), "t_2fa");
        assert_eq!(pascal("order_items"), "OrderItems");
        assert_eq!(pascal("film_actor"), "FilmActor");
        assert_eq!(rust("type"), "r#type");
        assert_eq!(rust("self"), "self_");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(module_name("migrations"), "migrations_table");
        assert_eq!(module_name("type"), "type_table");
        assert_eq!(module_name("Orders"), "orders");
    }
}
