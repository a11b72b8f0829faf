//! A config file's text read: its variables substituted, parsed, and every
//! error about it told by message, position and key, never by the text itself
//! (which holds the substituted values, secrets among them).

use figment::error::{Actual, Kind};
use figment::providers::{Format, Json, Toml, Yaml};
use figment::Figment;

use super::substitute::{substitute_in, Syntax};
use crate::{Error, Result};

/// An error about the config `file`.
pub(super) fn config_err(file: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid_option("config", file, reason)
}

/// `text` with its variables substituted, parsed as `syntax` (`Plain` reads as TOML).
///
/// Parsed here first, to report a syntax error by its message and position
/// alone: the parser's own error quotes the line, substituted values and all. A
/// position inside a substituted value is its `${`, the variable named.
pub(super) fn parse(text: &str, syntax: Syntax, file: &str) -> Result<Figment> {
    use figment::value::Value;

    let substituted = substitute_in(text, syntax, |var| std::env::var(var).ok()).map_err(|e| config_err(file, e))?;
    let out = substituted.text.as_str();
    let at = |offset: usize| Some(substituted.position(text, offset));
    let (format, parsed) = match syntax {
        Syntax::Toml | Syntax::Plain => (
            "TOML",
            Toml::from_str::<Value>(out).map_err(|e| (e.message().to_owned(), e.span().and_then(|s| at(s.start)))),
        ),
        Syntax::Yaml => (
            "YAML",
            Yaml::from_str::<Value>(out).map_err(|e| match e.location() {
                Some(l) => {
                    let message =
                        e.to_string()
                            .replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1);
                    (message, at(offset_of(out, l.line(), l.column(), true)))
                }
                None => (e.to_string(), None),
            }),
        ),
        Syntax::Json => (
            "JSON",
            Json::from_str::<Value>(out).map_err(|e| {
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).map(str::to_owned).unwrap_or(message);
                let position = (e.line() > 0).then(|| offset_of(out, e.line(), e.column(), false));
                (message, position.and_then(at))
            }),
        ),
    };
    match parsed {
        Err((message, position)) => {
            let message = message.trim().replace('\n', "; ");
            let reason = match position {
                Some(p) => {
                    let inside = p
                        .var
                        .map(|v| format!(" (in the value of `${{{v}}}`)"))
                        .unwrap_or_default();
                    format!(
                        "not valid {format}: line {}, column {}{inside}: {message}",
                        p.line, p.column
                    )
                }
                None => format!("not valid {format}: {message}"),
            };
            Err(config_err(file, reason))
        }
        // An empty file, or one of comments alone, is an empty table: every default applies.
        Ok(value) if value.as_dict().is_none() && !matches!(value, Value::Empty(..)) => Err(config_err(
            file,
            format!("the top level must be a table, not {}", actual(&value.to_actual())),
        )),
        Ok(_) => Ok(match syntax {
            Syntax::Toml | Syntax::Plain => Figment::from(Toml::string(out)),
            Syntax::Yaml => Figment::from(Yaml::string(out)),
            Syntax::Json => Figment::from(Json::string(out)),
        }),
    }
}

/// The byte offset in `text` of 1-based `line` and `column` (in characters, or in
/// bytes when not `chars`), or the nearest one within the text.
fn offset_of(text: &str, line: usize, column: usize, chars: bool) -> usize {
    let start = match line.checked_sub(2) {
        None => 0,
        Some(n) => text.match_indices('\n').nth(n).map_or(text.len(), |(i, _)| i + 1),
    };
    let skip = column.saturating_sub(1);
    if chars {
        text[start..]
            .char_indices()
            .nth(skip)
            .map_or(text.len(), |(i, _)| start + i)
    } else {
        (start + skip).min(text.len())
    }
}

/// What kind of value `a` is, without the value: `an integer`, `a string`.
fn actual(a: &Actual) -> &'static str {
    match a {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "an empty value",
        Actual::Option => "an option",
        Actual::NewtypeStruct => "a newtype struct",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        Actual::Enum => "an enum",
        Actual::UnitVariant => "a unit variant",
        Actual::NewtypeVariant => "a newtype variant",
        Actual::TupleVariant => "a tuple variant",
        Actual::StructVariant => "a struct variant",
        Actual::Other(_) => "another kind of value",
    }
}

/// A figment error kind as a sentence that names the types involved, never a
/// value read (a value may be a secret: a password that a number was expected
/// in the place of, a token given as a variant name).
fn kind_message(kind: &Kind) -> String {
    let one_of = |names: &[&str]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    match kind {
        Kind::Message(message) => message.clone(),
        Kind::InvalidType(found, expected) => format!("invalid type: found {}, expected {expected}", actual(found)),
        Kind::InvalidValue(found, expected) => format!("invalid value: found {}, expected {expected}", actual(found)),
        Kind::InvalidLength(len, expected) => format!("invalid length {len}, expected {expected}"),
        Kind::UnknownVariant(_, expected) => format!("unknown variant: expected one of {}", one_of(expected)),
        Kind::UnknownField(field, []) => format!("unknown field `{field}`"),
        Kind::UnknownField(field, expected) => {
            format!("unknown field `{field}`, expected one of {}", one_of(expected))
        }
        Kind::MissingField(field) => format!("missing field `{field}`"),
        Kind::DuplicateField(field) => format!("duplicate field `{field}`"),
        Kind::ISizeOutOfRange(_) => "a signed integer out of range".to_owned(),
        Kind::USizeOutOfRange(_) => "an unsigned integer out of range".to_owned(),
        Kind::Unsupported(found) => format!("unsupported type: {}", actual(found)),
        Kind::UnsupportedKey(found, expected) => {
            format!("unsupported key type: {}, expected {expected}", actual(found))
        }
    }
}

/// A figment error as ours: the file, then each key (under `prefix`) and its
/// problem, with the types involved but no value read.
pub(super) fn figment_err(file: &str, e: figment::Error, prefix: &str) -> Error {
    let errors: Vec<String> = e
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                "(top level)".to_owned()
            } else {
                format!("{prefix}{}", e.path.join("."))
            };
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment") => " (from the environment)".to_owned(),
                _ => String::new(),
            };
            format!("key `{key}`{source}: {}", kind_message(&e.kind))
        })
        .collect();
    config_err(file, errors.join("; "))
}
