//! Token-level work done before sqlparser reads a statement: what it cannot read,
//! and what needs no full parse.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::names::shown;

/// MySQL's old `VARCHAR(40) BINARY` (a binary collation, not a type), which
/// sqlparser does not read: the attribute is dropped, the type kept.
pub(crate) fn without_binary_attribute(statement: &[TokenWithSpan]) -> Vec<TokenWithSpan> {
    let significant = |t: &&TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(statement.len());
    for (i, t) in statement.iter().enumerate() {
        let binary =
            matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("BINARY"));
        if binary {
            let before = out.iter().rev().find(significant).map(|p| &p.token);
            let after = statement[i + 1..].iter().find(significant).map(|n| &n.token);
            let attribute = match before {
                Some(Token::RParen) => true,
                Some(Token::Word(w)) => ["TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT"]
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k)),
                _ => false,
            };
            if attribute && after != Some(&Token::LParen) {
                continue;
            }
        }
        out.push(t.clone());
    }
    out
}

/// The partition an `ALTER TABLE … ATTACH PARTITION name …` attaches.
pub(crate) fn attached_partition(statement: &[TokenWithSpan]) -> Option<String> {
    let words: Vec<&Token> = statement
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let at = words.windows(2).position(|w| {
        w[0].to_string().eq_ignore_ascii_case("ATTACH") && w[1].to_string().eq_ignore_ascii_case("PARTITION")
    })?;
    // The name: `a` or `schema.a`; its last part is the table's.
    let mut rest = words[at + 2..].iter();
    let mut name = None;
    loop {
        match rest.next() {
            Some(Token::Word(w)) => {
                name = Some(match w.quote_style {
                    Some(_) => w.value.clone(),
                    None => w.value.to_ascii_lowercase(),
                })
            }
            _ => return name,
        }
        if !matches!(rest.next(), Some(Token::Period)) {
            return name;
        }
    }
}

/// PostgreSQL 18's virtual computed columns (`GENERATED ALWAYS AS (expr)
/// VIRTUAL`, or with no keyword after the expression), which sqlparser reads
/// only as `STORED`: the column is computed either way, and that is all the
/// generator needs to know.
pub(crate) fn computed_as_stored(statement: &[TokenWithSpan]) -> Vec<TokenWithSpan> {
    let is_word =
        |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let significant: Vec<usize> = (0..statement.len())
        .filter(|&i| !matches!(statement[i].token, Token::Whitespace(_)))
        .collect();
    let mut out: Vec<TokenWithSpan> = statement.to_vec();
    let mut inserts = Vec::new();
    for (k, &i) in significant.iter().enumerate() {
        let next = |n: usize| significant.get(k + n).map(|&j| &statement[j].token);
        let generated = is_word(&statement[i].token, "GENERATED")
            && next(1).is_some_and(|t| is_word(t, "ALWAYS"))
            && next(2).is_some_and(|t| is_word(t, "AS"))
            && next(3) == Some(&Token::LParen);
        if !generated {
            continue;
        }
        // The parenthesis that closes the expression.
        let mut depth = 0usize;
        let mut close = None;
        for &j in &significant[k + 3..] {
            match statement[j].token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { continue };
        let after = significant.iter().find(|&&j| j > close).copied();
        match after.map(|j| &statement[j].token) {
            Some(t) if is_word(t, "STORED") => {}
            Some(t) if is_word(t, "VIRTUAL") => {
                let j = after.unwrap_or(close);
                out[j] = TokenWithSpan::new(Token::make_keyword("STORED"), statement[j].span);
            }
            _ => inserts.push(close + 1),
        }
    }
    for at in inserts.into_iter().rev() {
        out.insert(at, TokenWithSpan::wrap(Token::make_keyword("STORED")));
        out.insert(
            at,
            TokenWithSpan::wrap(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space)),
        );
    }
    out
}

/// PostgreSQL's limit on the dimensions of an array.
pub(crate) const MAX_ARRAY_DIMENSIONS: usize = 6;

/// A run of more array dimensions than PostgreSQL allows.
pub(crate) struct TooDeep {
    /// The line of its column's name, or of its first `[`.
    pub(crate) line: u64,
    pub(crate) dimensions: usize,
    /// Its table and column, when it is in a column's definition.
    pub(crate) column: Option<(String, String)>,
}

impl TooDeep {
    /// The error that refuses it, in the file `file`.
    pub(crate) fn error(&self, file: &str) -> String {
        let place = self
            .column
            .as_ref()
            .map(|(table, column)| format!(" {}.{}:", shown(table), shown(column)))
            .unwrap_or_default();
        format!(
            "{file}:{}:{place} {} array dimensions, more than PostgreSQL's maximum of {MAX_ARRAY_DIMENSIONS}; nothing was written",
            self.line, self.dimensions
        )
    }
}

/// The first run of more array dimensions (`[]` or `[n]`, one after another)
/// than PostgreSQL allows in `statement`. sqlparser reads each pair into a
/// type nested in the one before, then drops and prints that type by
/// recursion: a long enough run overflows the stack, so it must be refused
/// before sqlparser sees it.
pub(crate) fn too_many_dimensions(statement: &[TokenWithSpan]) -> Option<TooDeep> {
    let words: Vec<&TokenWithSpan> = statement
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let token = |i: usize| words.get(i).map(|t| &t.token);
    let mut i = 0;
    while i < words.len() {
        let start = i;
        let mut dimensions = 0;
        loop {
            match (token(i), token(i + 1), token(i + 2)) {
                (Some(Token::LBracket), Some(Token::RBracket), _) => i += 2,
                (Some(Token::LBracket), Some(Token::Number(..)), Some(Token::RBracket)) => i += 3,
                _ => break,
            }
            dimensions += 1;
        }
        if dimensions > MAX_ARRAY_DIMENSIONS {
            return Some(match column_holding(&words, start) {
                Some((line, table, column)) => TooDeep {
                    line,
                    dimensions,
                    column: Some((table, column)),
                },
                None => TooDeep {
                    line: words[start].span.start.line,
                    dimensions,
                    column: None,
                },
            });
        }
        if dimensions == 0 {
            i += 1;
        }
    }
    None
}

/// A name as the database stores it: unquoted names fold to lowercase.
fn name(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) => Some(match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_ascii_lowercase(),
        }),
        _ => None,
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// The column whose definition holds `words[at]` (the significant tokens of a
/// statement), in a CREATE TABLE's column list or after an ALTER TABLE's ADD:
/// the line of its name, its table and its name.
fn column_holding(words: &[&TokenWithSpan], at: usize) -> Option<(u64, String, String)> {
    // Back to where the definition starts: `(` or `,` at its depth, or ADD.
    let mut depth = 0usize;
    let mut start = None;
    for j in (0..at).rev() {
        match &words[j].token {
            Token::RParen => depth += 1,
            Token::LParen if depth > 0 => depth -= 1,
            Token::LParen | Token::Comma if depth == 0 => {
                start = Some(j);
                break;
            }
            t if depth == 0 && is_word(t, "ADD") => {
                start = Some(j);
                break;
            }
            _ => {}
        }
    }
    let start = start?;
    let statement_is = |first: &str| {
        words.first().is_some_and(|t| is_word(&t.token, first))
            && words.iter().take(3).any(|t| is_word(&t.token, "TABLE"))
    };
    let (table, at_name) = if is_word(&words[start].token, "ADD") {
        if !statement_is("ALTER") {
            return None;
        }
        // ALTER TABLE [IF EXISTS] [ONLY] [schema.]name …
        let mut k = 2;
        while words
            .get(k)
            .is_some_and(|t| ["IF", "EXISTS", "ONLY"].iter().any(|w| is_word(&t.token, w)))
        {
            k += 1;
        }
        while words.get(k + 1).is_some_and(|t| t.token == Token::Period) {
            k += 2;
        }
        let table = name(&words.get(k)?.token)?;
        // ADD [COLUMN] [IF NOT EXISTS] name …
        let mut k = start + 1;
        while words
            .get(k)
            .is_some_and(|t| ["COLUMN", "IF", "NOT", "EXISTS"].iter().any(|w| is_word(&t.token, w)))
        {
            k += 1;
        }
        (table, k)
    } else {
        if !statement_is("CREATE") {
            return None;
        }
        // Only a definition right in the column list is a column's.
        let open = words.iter().position(|t| t.token == Token::LParen)?;
        let mut depth = 0usize;
        let mut enclosing = start;
        while words[enclosing].token != Token::LParen || depth > 0 {
            match words[enclosing].token {
                Token::RParen => depth += 1,
                Token::LParen => depth -= 1,
                _ => {}
            }
            enclosing = enclosing.checked_sub(1)?;
        }
        if enclosing != open {
            return None;
        }
        (name(&words[open.checked_sub(1)?].token)?, start + 1)
    };
    let column = words.get(at_name)?;
    let constraint = [
        "CONSTRAINT",
        "PRIMARY",
        "UNIQUE",
        "CHECK",
        "FOREIGN",
        "EXCLUDE",
        "KEY",
        "INDEX",
        "FULLTEXT",
        "SPATIAL",
        "LIKE",
    ]
    .iter()
    .any(|w| is_word(&column.token, w));
    if constraint || at_name >= at {
        return None;
    }
    Some((column.span.start.line, table, name(&column.token)?))
}

/// Where sqlparser's `error` on a CREATE TABLE points: its line, the table and
/// the column whose definition is on that line.
pub(crate) fn unreadable_column(statement: &[TokenWithSpan], error: &str) -> Option<(u64, String, String)> {
    let (_, rest) = error.rsplit_once("Line: ")?;
    let line: u64 = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let (table, column) = column_on_line(statement, line)?;
    Some((line, table, column))
}

/// The table a CREATE TABLE statement creates and the column whose definition
/// starts on `line`, both as the database names them.
fn column_on_line(statement: &[TokenWithSpan], line: u64) -> Option<(String, String)> {
    let words: Vec<&TokenWithSpan> = statement
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let open = words.iter().position(|t| t.token == Token::LParen)?;
    // The table's name is the last name part before the column list.
    let table = name(&words[..open].last()?.token)?;
    let column = words[open + 1..]
        .iter()
        .find(|t| t.span.start.line == line)
        .and_then(|t| name(&t.token))?;
    Some((table, column))
}
