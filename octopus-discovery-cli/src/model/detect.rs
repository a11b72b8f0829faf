//! What the SQL sets rather than the caller: defaults carried across
//! dialects, identities, the version column, created/updated times; and the
//! checks a table must pass (a primary key, names that stay distinct).

use sqlparser::ast::{Expr, Value};

use super::schema::{Auto, Default, Table, Ty};
use super::Result;

pub(crate) enum Classified {
    Default(Default),
    Identity,
    Null,
    Unknown,
}

/// What a DEFAULT expression means for a column of type `ty`.
pub(crate) fn classify(expr: &Expr, ty: &Ty) -> Classified {
    let expr = match expr {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => return classify(expr, ty),
        e => e,
    };
    let text = expr.to_string();
    let upper = text.to_ascii_uppercase();
    let call = upper.split('(').next().unwrap_or_default().trim().to_string();
    if call == "NEXTVAL" {
        return Classified::Identity;
    }
    if [
        "CURRENT_TIMESTAMP",
        "NOW",
        "LOCALTIMESTAMP",
        "CURRENT_DATE",
        "TRANSACTION_TIMESTAMP",
        "STATEMENT_TIMESTAMP",
        "CLOCK_TIMESTAMP",
        "SYSDATE",
        "UTC_TIMESTAMP",
    ]
    .contains(&call.as_str())
        && ty.is_time()
    {
        return Classified::Default(Default::Now);
    }
    if [
        "GEN_RANDOM_UUID",
        "UUID_GENERATE_V4",
        "UUID_GENERATE_V1",
        "UUIDV4",
        "UUIDV7",
        "UUID",
    ]
    .contains(&call.as_str())
        && *ty == Ty::Uuid
    {
        return Classified::Default(Default::RandomUuid);
    }
    let literal = match expr {
        Expr::Value(v) => match &v.value {
            Value::Null => return Classified::Null,
            Value::Boolean(b) => b.to_string().to_ascii_uppercase(),
            Value::Number(n, _) => n.to_string(),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                // MySQL writes numbers as strings: DEFAULT '0'.
                if ty.is_int() && s.parse::<i64>().is_ok()
                    || matches!(ty, Ty::F32 | Ty::F64) && s.parse::<f64>().is_ok()
                {
                    s.clone()
                } else if *ty == Ty::Bool && (s == "0" || s == "1") {
                    if s == "1" { "TRUE" } else { "FALSE" }.into()
                } else {
                    format!("'{}'", s.replace('\'', "''"))
                }
            }
            _ => return Classified::Unknown,
        },
        Expr::UnaryOp { op, expr } if op.to_string() == "-" => match &**expr {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => format!("-{n}"),
                _ => return Classified::Unknown,
            },
            _ => return Classified::Unknown,
        },
        _ => return Classified::Unknown,
    };
    let literal = match (ty, literal.as_str()) {
        (Ty::Bool, "1") => "TRUE".into(),
        (Ty::Bool, "0") => "FALSE".into(),
        (Ty::Decimal(_), l) if !l.starts_with('\'') => format!("'{l}'"),
        _ => literal,
    };
    Classified::Default(Default::Literal(literal))
}

/// Names the columns the SQL sets (identity, version, created/updated times),
/// and checks the table has a primary key.
pub(crate) fn finish(file: &str, table: &mut Table, line: u64) -> Result {
    if table.primary_key.is_empty() {
        return Err(format!(
            "{file}:{line}: table `{}` has no primary key: a model needs one to find, update and delete rows; nothing was written",
            table.name
        ));
    }
    let key = table.primary_key.clone();
    for k in &key {
        if !table.columns.iter().any(|c| &c.name == k) {
            return Err(format!(
                "{file}:{line}: {}: the primary key names no column `{k}`",
                table.name
            ));
        }
    }
    let mut fields: Vec<&str> = table.columns.iter().map(|c| c.field.as_str()).collect();
    fields.sort_unstable();
    if let Some(w) = fields.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "{file}:{line}: {}: two columns are both `{}` once in snake case",
            table.name, w[0]
        ));
    }
    for index in &table.indexes {
        if let Some(c) = index
            .columns
            .iter()
            .find(|c| !table.columns.iter().any(|col| &col.name == *c))
        {
            return Err(format!(
                "{file}:{line}: {}: index `{}` names no column `{c}`",
                table.name, index.name
            ));
        }
    }
    for column in &mut table.columns {
        let is_key = key.contains(&column.name);
        if is_key {
            column.nullable = false;
        }
        // Only a sole integer key can be filled in by SQLite as well as PostgreSQL.
        if column.auto == Auto::Identity && !(column.ty.is_int() && key == [column.name.clone()]) {
            column.auto = Auto::None;
        }
        if column.auto != Auto::None || is_key {
            continue;
        }
        let squashed: String = column.name.to_ascii_lowercase().chars().filter(|c| *c != '_').collect();
        if squashed == "version" && column.ty.is_int() && !column.nullable {
            column.auto = Auto::Version;
        } else if column.ty.is_time()
            && [
                "createdat",
                "createat",
                "createdon",
                "createtime",
                "createdtime",
                "creationtime",
                "insertedat",
                "datecreated",
                "created",
            ]
            .contains(&squashed.as_str())
        {
            column.auto = Auto::Created;
        } else if column.ty.is_time()
            && [
                "updatedat",
                "updateat",
                "updatedon",
                "updatetime",
                "updatedtime",
                "modifiedat",
                "modifiedon",
                "lastmodified",
                "lastupdate",
                "lastupdated",
                "datemodified",
                "updated",
                "modified",
            ]
            .contains(&squashed.as_str())
        {
            column.auto = Auto::Updated;
        }
    }
    Ok(())
}
