//! Token-level work done before sqlparser reads a statement: what it cannot read,
//! and what needs no full parse.

use sqlparser::tokenizer::{Token, TokenWithSpan};

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
    let name = |t: &TokenWithSpan| match &t.token {
        Token::Word(w) => Some(match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_ascii_lowercase(),
        }),
        _ => None,
    };
    let words: Vec<&TokenWithSpan> = statement
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let open = words.iter().position(|t| t.token == Token::LParen)?;
    // The table's name is the last name part before the column list.
    let table = name(words[..open].last()?)?;
    let column = words[open + 1..]
        .iter()
        .find(|t| t.span.start.line == line)
        .and_then(|t| name(t))?;
    Some((table, column))
}
