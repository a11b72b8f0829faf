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
