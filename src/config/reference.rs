//! A `${VAR}` or `${VAR:-default}` reference in a config file: read, looked up,
//! and named in errors by its variable alone.

/// A `${VAR}` or `${VAR:-default}` reference.
pub(super) struct Reference<'a> {
    pub(super) var: &'a str,
    default: Option<&'a str>,
}

pub(super) enum Value<'a> {
    Set(String),
    /// The default, text of the file itself: inserted as written.
    Default(&'a str),
}

impl<'a> Reference<'a> {
    pub(super) fn value(&self, lookup: &impl Fn(&str) -> Option<String>) -> std::result::Result<Value<'a>, String> {
        match (lookup(self.var).filter(|v| !v.is_empty()), self.default) {
            (Some(v), _) => Ok(Value::Set(v)),
            (None, Some(d)) => Ok(Value::Default(d)),
            (None, None) => Err(format!(
                "environment variable {var} is not set and ${{{var}}} has no default",
                var = self.var
            )),
        }
    }
}

/// The longest variable name shown in an error (a longer one is cut, at a
/// character boundary).
const NAME_SHOWN: usize = 64;

/// Parses the reference `rest` starts with (`${`, at `column` of its line):
/// the reference and its length in bytes. The error names the variable (or the
/// column), never what follows it: the rest of the line, or a default, may be a
/// password.
pub(super) fn parse_reference(rest: &str, column: usize) -> std::result::Result<(Reference<'_>, usize), String> {
    let Some(end) = rest.find('}') else {
        let name_len = rest[2..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - 2);
        let name = &rest[2..2 + name_len];
        return Err(if name.is_empty() {
            format!(
                "unclosed `${{` at column {column}: no `}}` after it on the line (write `$${{` for a literal `${{`)"
            )
        } else {
            format!(
                "unclosed `${{{}`: no `}}` after it on the line (write `$${{` for a literal `${{`)",
                shown(name)
            )
        });
    };
    let inner = &rest[2..end];
    let (var, default) = match inner.split_once(":-") {
        Some((v, d)) => (v, Some(d)),
        None => (inner, None),
    };
    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let with_default = if default.is_some() { ":-…" } else { "" };
        return Err(if var.trim().is_empty() {
            format!("`${{{with_default}}}` at column {column} does not name a variable ([A-Za-z0-9_]+)")
        } else {
            format!(
                "`${{{}{with_default}}}` does not name a variable ([A-Za-z0-9_]+)",
                shown(var)
            )
        });
    }
    Ok((Reference { var, default }, end + 1))
}

/// `name` for an error: without control characters, cut to [`NAME_SHOWN`] characters.
fn shown(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(NAME_SHOWN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().count() > NAME_SHOWN {
        s.push('…');
    }
    s
}
