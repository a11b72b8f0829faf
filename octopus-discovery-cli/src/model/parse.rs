//! Reads a DDL file with `sqlparser`: CREATE TABLE, `CREATE [UNIQUE] INDEX` and the
//! ALTER TABLE statements that add keys (as `pg_dump` writes them). Every other
//! statement (SET, CREATE EXTENSION, INSERT, views, functions…) is skipped.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnDef, ColumnOption, CreateIndex, CreateTable, ObjectName, Spanned,
    Statement, TableConstraint, UserDefinedTypeRepresentation,
};
use std::collections::BTreeMap;

use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::detect::{classify, finish, Classified};
use super::names::{field_name, ident, index_columns, module_name, object, pascal, printable, shown};
use super::schema::{Auto, Column, Index, Schema, Table, Ty};
use super::tokens::{
    attached_partition, computed_as_stored, too_many_dimensions, unreadable_column, without_binary_attribute,
};
use super::{types, Dialect, Result};

/// Reads `text` (the file `file`): the schema and warnings about what was
/// dropped, or an error naming the line.
pub(crate) fn parse(file: &str, text: &str, dialect: Dialect) -> Result<(Schema, Vec<String>)> {
    let sql: Box<dyn SqlDialect> = match dialect {
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
        Dialect::Mysql => Box::new(MySqlDialect {}),
        Dialect::Sqlite => Box::new(SQLiteDialect {}),
    };
    let tokens = Tokenizer::new(&*sql, text)
        .tokenize_with_location()
        .map_err(|e| format!("{file}: cannot read it as {dialect} SQL: {e}"))?;
    let mut reader = Reader {
        file,
        dialect,
        tables: Vec::new(),
        warnings: Vec::new(),
        aliases: BTreeMap::new(),
        partitions: Vec::new(),
    };
    for statement in tokens.split(|t| t.token == Token::SemiColon) {
        let words: Vec<String> = statement
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .take(4)
            .map(|t| t.token.to_string().to_ascii_uppercase())
            .collect();
        let Some(first) = statement.iter().find(|t| !matches!(t.token, Token::Whitespace(_))) else {
            continue;
        };
        let line = first.span.start.line;
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let kind = match w.as_slice() {
            ["CREATE", "TABLE", ..] | ["CREATE", _, "TABLE", ..] => "CREATE TABLE",
            ["CREATE", "INDEX", ..] | ["CREATE", "UNIQUE", "INDEX", ..] => "CREATE INDEX",
            ["ALTER", "TABLE", ..] => "ALTER TABLE",
            ["CREATE", "TYPE", ..] | ["CREATE", "DOMAIN", ..] => "CREATE TYPE",
            _ => continue,
        };
        if kind == "ALTER TABLE" {
            if let Some(partition) = attached_partition(statement) {
                reader.partitions.push(partition);
                continue;
            }
        }
        if let Some(deep) = too_many_dimensions(statement) {
            return Err(deep.error(file));
        }
        let mut stream: Vec<TokenWithSpan> = match dialect {
            Dialect::Mysql => without_binary_attribute(statement),
            Dialect::Postgres => computed_as_stored(statement),
            Dialect::Sqlite => statement.to_vec(),
        };
        stream.push(TokenWithSpan::wrap(Token::EOF));
        let parsed = Parser::new(&*sql).with_tokens_with_locations(stream).parse_statement();
        match (parsed, kind) {
            (Ok(Statement::CreateTable(table)), _) => reader.create_table(&table, line)?,
            (Ok(Statement::CreateIndex(index)), _) => reader.create_index(&index, line)?,
            (Ok(Statement::AlterTable(alter)), _) => {
                for op in &alter.operations {
                    reader.alter(&alter.name, op, line)?;
                }
            }
            (
                Ok(Statement::CreateType {
                    name,
                    representation: Some(UserDefinedTypeRepresentation::Enum { .. }),
                }),
                _,
            ) => {
                // An enum's values are text; the migrations carry it as text.
                reader.aliases.insert(object(&name), "TEXT".into());
            }
            (Ok(Statement::CreateDomain(domain)), _) => {
                reader
                    .aliases
                    .insert(object(&domain.name), domain.data_type.to_string());
            }
            (Ok(_), _) => {}
            (Err(e), "ALTER TABLE" | "CREATE TYPE") => reader
                .warnings
                .push(format!("{file}:{line}: skipped an ALTER TABLE it cannot read ({e})")),
            (Err(e), "CREATE TABLE") => {
                // Name the column whose definition could not be read, when the parser says where.
                return Err(match unreadable_column(statement, &e.to_string()) {
                    Some((at, table, column)) => format!(
                        "{file}:{at}: {table}.{column}: cannot read this column's definition as {dialect} SQL ({e}); nothing was written"
                    ),
                    None => format!("{file}:{line}: cannot read this CREATE TABLE as {dialect} SQL: {e}"),
                });
            }
            (Err(e), _) => return Err(format!("{file}:{line}: cannot read this {kind} as {dialect} SQL: {e}")),
        }
    }
    let Reader {
        mut tables,
        warnings,
        partitions,
        ..
    } = reader;
    tables.retain(|(t, _)| !partitions.contains(&t.name));
    if tables.is_empty() {
        return Err(format!("{file}: no CREATE TABLE statement: nothing to generate"));
    }
    for (table, line) in &mut tables {
        finish(file, table, *line)?;
    }
    let mut modules: Vec<&str> = tables.iter().map(|(t, _)| t.module.as_str()).collect();
    modules.sort_unstable();
    if let Some(w) = modules.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "{file}: two tables are both named `{}` once in snake case",
            w[0]
        ));
    }
    Ok((
        Schema {
            tables: tables.into_iter().map(|(t, _)| t).collect(),
        },
        warnings,
    ))
}

struct Reader<'a> {
    file: &'a str,
    dialect: Dialect,
    tables: Vec<(Table, u64)>,
    warnings: Vec<String>,
    /// Enum types and domains: their name → the SQL type they stand for.
    aliases: BTreeMap<String, String>,
    /// Partitions of another table (`ATTACH PARTITION`): the parent's model covers them.
    partitions: Vec<String>,
}

impl Reader<'_> {
    fn table(&mut self, name: &str, line: u64) -> Result<&mut Table> {
        let file = self.file;
        self.tables
            .iter_mut()
            .map(|(t, _)| t)
            .find(|t| t.name == name)
            .ok_or_else(|| format!("{file}:{line}: table `{name}` is not created before this statement"))
    }

    fn create_table(&mut self, create: &CreateTable, line: u64) -> Result {
        let name = object(&create.name);
        printable(&format!("{}:{line}: {}", self.file, shown(&name)), &name)?;
        if self.tables.iter().any(|(t, _)| t.name == name) {
            return Err(format!("{}:{line}: table `{name}` is created twice", self.file));
        }
        if create.query.is_some() || create.like.is_some() {
            return Err(format!(
                "{}:{line}: table `{name}`: CREATE TABLE … AS / LIKE has no column list to generate from",
                self.file
            ));
        }
        let mut table = Table {
            module: module_name(&name),
            pascal: pascal(&name),
            name,
            columns: Vec::new(),
            primary_key: Vec::new(),
            indexes: Vec::new(),
        };
        for def in &create.columns {
            self.column(&mut table, def, line)?;
        }
        for constraint in &create.constraints {
            self.constraint(&mut table, constraint, line)?;
        }
        self.tables.push((table, line));
        Ok(())
    }

    fn column(&mut self, table: &mut Table, def: &ColumnDef, statement_line: u64) -> Result {
        let name = ident(&def.name);
        let line = match def.span().start.line {
            0 => statement_line,
            l => l,
        };
        let where_ = format!("{}:{line}: {}.{name}", self.file, table.name);
        printable(&format!("{}:{line}: {}.{}", self.file, table.name, shown(&name)), &name)?;
        let sql_type = def.data_type.to_string();
        let alias = sql_type
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_ascii_lowercase();
        let mapped =
            types::map(&sql_type, self.dialect).or_else(|| types::map(self.aliases.get(&alias)?, self.dialect));
        let (ty, serial) = mapped.ok_or_else(|| {
            format!(
                "{where_}: type `{sql_type}` cannot be mapped (see the type table in docs/MODEL.md); nothing was written"
            )
        })?;
        if table.columns.iter().any(|c| c.name == name) {
            return Err(format!("{where_}: the column is declared twice"));
        }
        let mut column = Column {
            field: field_name(&name),
            name: name.clone(),
            ty,
            nullable: true,
            default: None,
            auto: if serial { Auto::Identity } else { Auto::None },
            computed: None,
        };
        for option in &def.options {
            match &option.option {
                ColumnOption::NotNull => column.nullable = false,
                ColumnOption::Null => column.nullable = true,
                ColumnOption::Default(expr) => match classify(expr, &column.ty) {
                    Classified::Default(d) => column.default = Some(d),
                    Classified::Identity => column.auto = Auto::Identity,
                    Classified::Null => {}
                    Classified::Unknown => self.warnings.push(format!(
                        "{where_}: DEFAULT {expr} is not carried into the migrations (only literals, the current time and random UUIDs are)"
                    )),
                },
                ColumnOption::PrimaryKey(_) => {
                    table.primary_key = vec![name.clone()];
                    if self.dialect == Dialect::Sqlite && column.ty == Ty::I64 {
                        // INTEGER PRIMARY KEY is the rowid: filled in when not given.
                        column.auto = Auto::Identity;
                    }
                }
                ColumnOption::Unique(_) => table.indexes.push(Index {
                    name: format!("{}_{name}_key", table.name),
                    columns: vec![name.clone()],
                    unique: true,
                }),
                ColumnOption::Identity(_) => column.auto = Auto::Identity,
                ColumnOption::Generated {
                    generation_expr: None,
                    ..
                } => column.auto = Auto::Identity,
                ColumnOption::Generated {
                    generation_expr: Some(expr),
                    ..
                } => {
                    column.auto = Auto::Computed;
                    column.computed = Some(expr.to_string());
                }
                ColumnOption::DialectSpecific(tokens)
                    if tokens.iter().any(|t| {
                        let t = t.to_string().to_ascii_uppercase();
                        t == "AUTO_INCREMENT" || t == "AUTOINCREMENT"
                    }) =>
                {
                    column.auto = Auto::Identity
                }
                ColumnOption::OnUpdate(_) if column.ty.is_time() => column.auto = Auto::Updated,
                _ => {}
            }
        }
        if column.auto == Auto::Computed {
            column.default = None;
        }
        table.columns.push(column);
        Ok(())
    }

    fn constraint(&mut self, table: &mut Table, constraint: &TableConstraint, line: u64) -> Result {
        let (columns, unique, name) = match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if let Some(columns) = index_columns(&pk.columns) {
                    table.primary_key = columns;
                }
                return Ok(());
            }
            TableConstraint::Unique(u) => (index_columns(&u.columns), true, u.name.clone().or(u.index_name.clone())),
            TableConstraint::Index(i) => (index_columns(&i.columns), false, i.name.clone()),
            _ => return Ok(()),
        };
        let Some(columns) = columns else {
            self.warnings.push(format!(
                "{}:{line}: an index of table `{}` on expressions is skipped",
                self.file, table.name
            ));
            return Ok(());
        };
        let name = name.map(|n| ident(&n)).unwrap_or_else(|| {
            format!(
                "{}_{}_{}",
                table.name,
                columns.join("_"),
                if unique { "key" } else { "idx" }
            )
        });
        self.index_name(&table.name, &name, line)?;
        table.indexes.push(Index { name, columns, unique });
        Ok(())
    }

    /// Index names are written into doc comments too (`find_by_…`).
    fn index_name(&self, table: &str, name: &str, line: u64) -> Result {
        printable(
            &format!("{}:{line}: {}: index `{}`", self.file, shown(table), shown(name)),
            name,
        )
    }

    fn create_index(&mut self, index: &CreateIndex, line: u64) -> Result {
        let file = self.file;
        let table_name = object(&index.table_name);
        let Some(columns) = index_columns(&index.columns) else {
            self.warnings.push(format!(
                "{file}:{line}: index on expressions of table `{table_name}` is skipped"
            ));
            return Ok(());
        };
        let name = index
            .name
            .as_ref()
            .map(object)
            .unwrap_or_else(|| format!("{table_name}_{}_idx", columns.join("_")));
        self.index_name(&table_name, &name, line)?;
        let unique = index.unique;
        match self.tables.iter_mut().find(|(t, _)| t.name == table_name) {
            Some((table, _)) => table.indexes.push(Index { name, columns, unique }),
            // An index of a view, or of a table created elsewhere.
            None => self.warnings.push(format!(
                "{file}:{line}: index `{name}` is on `{table_name}`, which is no table of this file: skipped"
            )),
        }
        Ok(())
    }

    fn alter(&mut self, name: &ObjectName, op: &AlterTableOperation, line: u64) -> Result {
        let table_name = object(name);
        if !self.tables.iter().any(|(t, _)| t.name == table_name) {
            return Ok(());
        }
        match op {
            AlterTableOperation::AddConstraint { constraint, .. } => {
                let mut table = self.table(&table_name, line)?.clone();
                self.constraint(&mut table, constraint, line)?;
                *self.table(&table_name, line)? = table;
            }
            AlterTableOperation::AddColumn { column_def, .. } => {
                let mut table = self.table(&table_name, line)?.clone();
                self.column(&mut table, column_def, line)?;
                *self.table(&table_name, line)? = table;
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let column_name = ident(column_name);
                let identity = match op {
                    AlterColumnOperation::AddGenerated { .. } => true,
                    AlterColumnOperation::SetDefault { value } => {
                        matches!(classify(value, &Ty::I64), Classified::Identity)
                    }
                    _ => false,
                };
                if identity {
                    let table = self.table(&table_name, line)?;
                    if let Some(c) = table.columns.iter_mut().find(|c| c.name == column_name) {
                        c.auto = Auto::Identity;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
