//! `${VAR}` and `${VAR:-default}` in configuration files.

/// Replaces `${VAR}` and `${VAR:-default}`; an unset variable without a default is
/// an error naming it (and its line). `$${` is a literal `${`; comment lines
/// (starting with `#`) are left as they are.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(&substitute_line(line, &lookup).map_err(|e| format!("line {}: {e}", n + 1))?);
        }
    }
    Ok(out)
}

fn substitute_line(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ at {:?}", &rest[at..rest.len().min(at + 20)]))?;
        let inner = &rest[at + 2..at + end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("${{{inner}}} does not name a variable ([A-Za-z0-9_]+)"));
        }
        match (lookup(var).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {var} is not set and ${{{var}}} has no default"
                ))
            }
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
