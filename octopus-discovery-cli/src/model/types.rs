//! SQL types to the types the generated code carries: one table, for every
//! dialect, documented in docs/MODEL.md.

use super::schema::Ty;
use super::Dialect;

/// A type's base name, its arguments and whether it is UNSIGNED, from its SQL
/// spelling: `INT(11) UNSIGNED` is `("INT", [11], true)`.
fn split(sql: &str) -> (String, Vec<u32>, bool) {
    let upper = sql.trim().to_ascii_uppercase();
    let unsigned = upper.contains("UNSIGNED");
    let (base, args) = match upper.split_once('(') {
        Some((base, rest)) => {
            let inner = rest.split(')').next().unwrap_or_default();
            let after = rest.split_once(')').map(|(_, a)| a).unwrap_or_default();
            let args = inner.split(',').filter_map(|a| a.trim().parse().ok()).collect();
            (format!("{} {}", base.trim(), after.trim()), args)
        }
        None => (upper.clone(), Vec::new()),
    };
    let base = base
        .replace("UNSIGNED", "")
        .replace("ZEROFILL", "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (base, args, unsigned)
}

/// How an SQL type maps, or `None` if it cannot be carried faithfully.
/// Also says whether the type itself makes the column an identity (SERIAL).
pub(crate) fn map(sql: &str, dialect: Dialect) -> Option<(Ty, bool)> {
    if dialect == Dialect::Postgres {
        if let Some(ty) = postgres_text_form(sql) {
            return Some((ty, false));
        }
    }
    let (base, args, unsigned) = split(sql);
    let serial = matches!(
        base.as_str(),
        "SERIAL" | "SERIAL4" | "BIGSERIAL" | "SERIAL8" | "SMALLSERIAL" | "SERIAL2"
    );
    let ty = match base.as_str() {
        // MySQL's TINYINT(1) and BIT(1) are its booleans.
        "TINYINT" if args == [1] && dialect == Dialect::Mysql => Ty::Bool,
        "BIT" if args.is_empty() || args == [1] => Ty::Bool,
        "TINYINT" | "INT1" => Ty::I16,
        "SMALLINT" | "INT2" | "SMALLSERIAL" | "SERIAL2" | "YEAR" if !unsigned => Ty::I16,
        "SMALLINT" | "INT2" => Ty::I32,
        // SQLite's INTEGER is 64-bit: its rowid, and what it stores.
        "INT" | "INTEGER" if dialect == Dialect::Sqlite => Ty::I64,
        "MEDIUMINT" | "INT" | "INTEGER" | "INT4" | "SERIAL" | "SERIAL4" if !unsigned => Ty::I32,
        "MEDIUMINT" | "INT" | "INTEGER" | "INT4" => Ty::I64,
        // BIGINT UNSIGNED: signed 64-bit (values above 2^63-1 do not fit; see the docs).
        "BIGINT" | "INT8" | "BIGSERIAL" | "SERIAL8" => Ty::I64,
        "REAL" | "FLOAT4" => Ty::F32,
        "FLOAT" if dialect == Dialect::Mysql && args.first().is_none_or(|p| *p <= 24) => Ty::F32,
        "FLOAT" | "FLOAT8" | "DOUBLE" | "DOUBLE PRECISION" => Ty::F64,
        "BOOLEAN" | "BOOL" => Ty::Bool,
        "DECIMAL" | "NUMERIC" | "DEC" => Ty::Decimal(match args.as_slice() {
            [p] => Some((*p, 0)),
            [p, s] => Some((*p, *s)),
            _ => None,
        }),
        "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" | "CHAR" | "CHARACTER" | "NCHAR" | "BPCHAR" | "VARCHAR2" => {
            Ty::Text(args.first().copied())
        }
        "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "STRING" | "CLOB" | "CITEXT" | "ENUM" | "SET" => {
            Ty::Text(None)
        }
        "BYTEA" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" => Ty::Bytes,
        "DATE" => Ty::Date,
        "TIME" | "TIME WITHOUT TIME ZONE" => Ty::Time,
        "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => Ty::Timestamp,
        // MySQL's TIMESTAMP is an instant (stored in UTC); PostgreSQL's and
        // SQLite's is a wall-clock time.
        "TIMESTAMP" if dialect == Dialect::Mysql => Ty::TimestampTz,
        "TIMESTAMP" => Ty::Timestamp,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => Ty::TimestampTz,
        "UUID" => Ty::Uuid,
        "JSON" | "JSONB" => Ty::Json,
        _ => return None,
    };
    Some((ty, serial))
}

/// PostgreSQL types with no Rust counterpart in the generated code, carried in
/// their text form (`CAST(col AS TEXT)` out, `CAST($n AS type)` in): arrays of
/// any type the table above maps, full-text search, intervals, network
/// addresses, XML, geometry and ranges. Types whose text form depends on
/// session settings (MONEY, TSTZRANGE) stay unmapped.
const TEXT_FORM: &[&str] = &[
    "TSVECTOR",
    "TSQUERY",
    "INTERVAL",
    "INET",
    "CIDR",
    "MACADDR",
    "MACADDR8",
    "XML",
    "POINT",
    "LINE",
    "LSEG",
    "BOX",
    "PATH",
    "POLYGON",
    "CIRCLE",
    "INT4RANGE",
    "INT8RANGE",
    "NUMRANGE",
    "DATERANGE",
    "TSRANGE",
    "VARBIT",
    "BIT VARYING",
];

fn postgres_text_form(sql: &str) -> Option<Ty> {
    let upper = sql.trim().to_ascii_uppercase();
    // The dimensions are counted in a loop: recursing once per `[]` would
    // put the stack at the mercy of the DDL.
    let mut element = upper.as_str();
    let mut dimensions = 0;
    while let Some(inner) = element.strip_suffix("[]").or_else(|| element.strip_suffix(" ARRAY")) {
        element = inner.trim();
        dimensions += 1;
    }
    match dimensions {
        0 => {}
        // `element` has no dimension left: `map` goes no deeper than this.
        1 => {
            return match map(element, Dialect::Postgres)? {
                (Ty::PgText(_), _) => None,
                (ty, _) => Some(Ty::PgText(format!("{}[]", ty.postgres()))),
            }
        }
        // Arrays of arrays stay unmapped.
        _ => return None,
    }
    let (base, _, _) = split(&upper);
    TEXT_FORM
        .contains(&base.as_str())
        .then(|| Ty::PgText(if base == "BIT VARYING" { "VARBIT".into() } else { base }))
}

impl Ty {
    /// The Rust type of a non-null value in the model.
    pub(crate) fn rust(&self) -> &'static str {
        match self {
            Ty::I16 => "i16",
            Ty::I32 => "i32",
            Ty::I64 => "i64",
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::Bool => "bool",
            Ty::Text(_) | Ty::Decimal(_) | Ty::Json | Ty::PgText(_) => "String",
            Ty::Bytes => "Vec<u8>",
            Ty::Date => "chrono::NaiveDate",
            Ty::Time => "chrono::NaiveTime",
            Ty::Timestamp => "chrono::NaiveDateTime",
            Ty::TimestampTz => "chrono::DateTime<chrono::Utc>",
            Ty::Uuid => "uuid::Uuid",
        }
    }

    /// The proto3 scalar that carries it.
    pub(crate) fn proto(&self) -> &'static str {
        match self {
            Ty::I16 | Ty::I32 => "int32",
            Ty::I64 => "int64",
            Ty::F32 => "float",
            Ty::F64 => "double",
            Ty::Bool => "bool",
            Ty::Bytes => "bytes",
            _ => "string",
        }
    }

    /// Whether the proto field is a string the model parses (and may reject).
    pub(crate) fn parsed(&self) -> bool {
        matches!(
            self,
            Ty::Decimal(_) | Ty::Json | Ty::Date | Ty::Time | Ty::Timestamp | Ty::TimestampTz | Ty::Uuid
        ) || *self == Ty::I16
    }

    /// The column type in a SQLite migration.
    pub(crate) fn sqlite(&self) -> &'static str {
        match self {
            Ty::I16 | Ty::I32 | Ty::I64 => "INTEGER",
            Ty::F32 | Ty::F64 => "REAL",
            Ty::Bool => "BOOLEAN",
            Ty::Bytes | Ty::Uuid => "BLOB",
            // Decimals as text: SQLite's NUMERIC affinity would turn them into floats.
            _ => "TEXT",
        }
    }

    /// The column type in a PostgreSQL migration.
    pub(crate) fn postgres(&self) -> String {
        match self {
            Ty::I16 => "SMALLINT".into(),
            Ty::I32 => "INTEGER".into(),
            Ty::I64 => "BIGINT".into(),
            Ty::F32 => "REAL".into(),
            Ty::F64 => "DOUBLE PRECISION".into(),
            Ty::Bool => "BOOLEAN".into(),
            Ty::Text(Some(n)) => format!("VARCHAR({n})"),
            Ty::Text(None) => "TEXT".into(),
            Ty::Bytes => "BYTEA".into(),
            Ty::Decimal(Some((p, s))) => format!("NUMERIC({p},{s})"),
            Ty::Decimal(None) => "NUMERIC".into(),
            Ty::Date => "DATE".into(),
            Ty::Time => "TIME".into(),
            Ty::Timestamp => "TIMESTAMP".into(),
            Ty::TimestampTz => "TIMESTAMPTZ".into(),
            Ty::Uuid => "UUID".into(),
            Ty::Json => "JSONB".into(),
            Ty::PgText(ty) => ty.clone(),
        }
    }

    /// The SQL type of a timestamp-like column, for `created_at`-style detection.
    pub(crate) fn is_time(&self) -> bool {
        matches!(self, Ty::Timestamp | Ty::TimestampTz | Ty::Date)
    }

    /// Whether it is an integer.
    pub(crate) fn is_int(&self) -> bool {
        matches!(self, Ty::I16 | Ty::I32 | Ty::I64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_type_spellings_map_to_rust_types() {
        let pg = Dialect::Postgres;
        let my = Dialect::Mysql;
        assert_eq!(map("INT(11) UNSIGNED", my), Some((Ty::I64, false)));
        assert_eq!(map("bigint unsigned", my), Some((Ty::I64, false)));
        assert_eq!(map("TINYINT(1)", my), Some((Ty::Bool, false)));
        assert_eq!(map("TINYINT(4)", my), Some((Ty::I16, false)));
        assert_eq!(map("SERIAL", pg), Some((Ty::I32, true)));
        assert_eq!(map("BIGSERIAL", pg), Some((Ty::I64, true)));
        assert_eq!(map("NUMERIC(10,2)", pg), Some((Ty::Decimal(Some((10, 2))), false)));
        assert_eq!(map("CHARACTER VARYING(40)", pg), Some((Ty::Text(Some(40)), false)));
        assert_eq!(map("TIMESTAMP WITH TIME ZONE", pg), Some((Ty::TimestampTz, false)));
        assert_eq!(map("TIMESTAMP", pg), Some((Ty::Timestamp, false)));
        assert_eq!(map("TIMESTAMP", my), Some((Ty::TimestampTz, false)));
        assert_eq!(map("DOUBLE PRECISION", pg), Some((Ty::F64, false)));
        assert_eq!(map("INTEGER", Dialect::Sqlite), Some((Ty::I64, false)));
        assert_eq!(map("INTEGER", pg), Some((Ty::I32, false)));
        assert_eq!(map("INTERVAL", my), None);
        assert_eq!(map("POINT", Dialect::Sqlite), None);
        assert_eq!(map("TEXT[]", my), None);
        assert_eq!(map("MONEY", pg), None);
        assert_eq!(map("GEOMETRY", pg), None);
    }

    #[test]
    fn postgres_types_without_a_rust_counterpart_travel_as_text() {
        let pg = Dialect::Postgres;
        let text = |t: &str| Some((Ty::PgText(t.into()), false));
        assert_eq!(map("TEXT[]", pg), text("TEXT[]"));
        assert_eq!(map("integer[]", pg), text("INTEGER[]"));
        assert_eq!(map("CHARACTER VARYING(20)[]", pg), text("VARCHAR(20)[]"));
        assert_eq!(map("tsvector", pg), text("TSVECTOR"));
        assert_eq!(map("interval", pg), text("INTERVAL"));
        assert_eq!(map("bit varying(8)", pg), text("VARBIT"));
        assert_eq!(map("INET", pg), text("INET"));
        // An array of what cannot be mapped, or of arrays, is still refused.
        assert_eq!(map("MONEY[]", pg), None);
        assert_eq!(map("TSVECTOR[]", pg), None);
        assert_eq!(map("INT[][]", pg), None);
        assert_eq!(map("INT[] ARRAY", pg), None);
        assert_eq!(map("integer ARRAY", pg), text("INTEGER[]"));
    }

    #[test]
    fn deep_array_spellings_do_not_recurse() {
        // The parser refuses more than 6 dimensions; the mapping must not
        // depend on that to stay off the stack.
        let deep = format!("INT{}", "[]".repeat(200_000));
        assert_eq!(map(&deep, Dialect::Postgres), None);
        assert_eq!(map(&deep, Dialect::Mysql), None);
    }
}
