//! `${VAR}` and `${VAR:-default}` in configuration files.
//!
//! Errors name the line and the variable, never the rest of the line nor a
//! default: either may be a password. Inside a quoted string of the file's format
//! a variable's value is escaped for that string, so that a quote or a backslash
//! in a password neither breaks the file nor changes the value.

use std::ops::Range;

use super::reference::{parse_reference, Value};

/// Replaces `${VAR}` and `${VAR:-default}`; an unset variable without a default is
/// an error naming it (and its line). `$${` is a literal `${`; comment lines
/// (starting with `#`) are left as they are.
///
/// Values are inserted as they are: this function does not know the file's
/// format. [`OctopusConfig::load`](crate::OctopusConfig::load) also escapes a
/// value that goes inside a quoted string of a TOML, YAML or JSON file.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    substitute_in(text, Syntax::Plain, lookup).map(|s| s.text)
}

/// The format of the text substituted in: where its quoted strings are and how
/// a value is escaped inside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Syntax {
    /// No strings known: values are inserted as they are.
    Plain,
    Toml,
    Yaml,
    Json,
}

/// Text after substitution, and where each substitution went (to map a parse
/// error's position back to the file's). No `Debug`: the text holds the values.
pub(super) struct Substituted {
    pub(super) text: String,
    /// In order: the range each `${...}` (or `$${`) took in the original text, the
    /// range its replacement takes in `text`, and the variable (`None` for `$${`).
    edits: Vec<Edit>,
}

struct Edit {
    original: Range<usize>,
    out: Range<usize>,
    var: Option<String>,
}

/// A position in the original text: 1-based line and column (in characters),
/// and the variable whose value holds it, if one does.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) var: Option<String>,
}

impl Substituted {
    /// Where byte `offset` of the substituted text came from in `original` (the
    /// text it was substituted from): a position inside a substituted value is
    /// the position of its `${`, with the variable named.
    pub(super) fn position(&self, original: &str, offset: usize) -> Position {
        let mut at = offset;
        let mut var = None;
        for edit in &self.edits {
            if offset < edit.out.start {
                break;
            }
            if offset < edit.out.end {
                at = edit.original.start;
                var = edit.var.clone();
                break;
            }
            at = edit.original.end + (offset - edit.out.end);
        }
        let mut at = at.min(original.len());
        while !original.is_char_boundary(at) {
            at -= 1;
        }
        let line_start = original[..at].rfind('\n').map_or(0, |n| n + 1);
        Position {
            line: original[..line_start].matches('\n').count() + 1,
            column: original[line_start..at].chars().count() + 1,
            var,
        }
    }
}

/// Where the scanner is in the file's syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Outside,
    /// A comment, to the end of the line.
    Comment,
    /// A string with backslash escapes: TOML `"..."`, YAML `"..."`, JSON `"..."`.
    Escaped {
        multiline: bool,
    },
    /// A TOML literal string `'...'` or `'''...'''`: no escapes at all.
    Literal {
        multiline: bool,
    },
    /// A YAML single-quoted string: `''` is a quote, nothing else is escaped.
    YamlSingle,
}

/// Replaces every `${...}` of `text`, escaping a value inside a quoted string of
/// `syntax`. Errors name the line and the variable, never the rest of the line.
pub(super) fn substitute_in(
    text: &str,
    syntax: Syntax,
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<Substituted, String> {
    let mut out = String::with_capacity(text.len());
    let mut edits = Vec::new();
    let mut state = State::Outside;
    // YAML: the indentation of the line that opened a block scalar (`|`, `>`):
    // the more indented lines after it are its text, with no syntax of their own.
    let mut block_scalar: Option<usize> = None;
    let mut start = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let line_no = n + 1;
        let base = start;
        start += line.len();
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let mut line_syntax = syntax;
        if let Some(parent) = block_scalar {
            if indent > parent || line.trim().is_empty() {
                line_syntax = Syntax::Plain;
            } else {
                block_scalar = None;
            }
        }
        if state == State::Outside && line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut scan = Scan::new(line_syntax, state);
        let mut i = 0;
        while i < line.len() {
            let rest = &line[i..];
            if rest.starts_with("$${") {
                let at = out.len();
                out.push_str("${");
                edits.push(Edit {
                    original: base + i..base + i + 3,
                    out: at..out.len(),
                    var: None,
                });
                i += 3;
                continue;
            }
            if !rest.starts_with("${") {
                let taken = scan.step(rest);
                out.push_str(&rest[..taken]);
                i += taken;
                continue;
            }
            let column = line[..i].chars().count() + 1;
            let (reference, len) = parse_reference(rest, column).map_err(|e| format!("line {line_no}: {e}"))?;
            let at = out.len();
            match reference.value(&lookup).map_err(|e| format!("line {line_no}: {e}"))? {
                // The default is the file's own text, written in its syntax.
                Value::Default(d) => out.push_str(d),
                Value::Set(v) => match scan.state {
                    State::Escaped { .. } => escape_into(&v, &mut out),
                    State::Literal { multiline } => {
                        // TOML's literal strings have no escapes: a value goes in as
                        // it is, or not at all. A '''...''' string takes anything
                        // but `'''` and control characters other than tab and line
                        // breaks; a '...' string, anything but `'` and those but tab.
                        let fits = match multiline {
                            true => {
                                !v.contains("'''")
                                    && !v.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
                            }
                            false => !v.contains('\'') && !v.chars().any(|c| c.is_control() && c != '\t'),
                        };
                        if !fits {
                            return Err(format!(
                                "line {line_no}: the value of `${{{}}}` holds what cannot go inside this TOML \
                                 literal string (a `'`, or a control character): use a \"...\" string, where \
                                 values are escaped",
                                reference.var
                            ));
                        }
                        out.push_str(&v);
                    }
                    State::YamlSingle => {
                        if v.chars().any(char::is_control) {
                            return Err(format!(
                                "line {line_no}: the value of `${{{}}}` holds a control character (a newline?), \
                                 which cannot go inside a '...' string: use a \"...\" string, where values are \
                                 escaped",
                                reference.var
                            ));
                        }
                        out.push_str(&v.replace('\'', "''"));
                    }
                    State::Outside | State::Comment => out.push_str(&v),
                },
            }
            edits.push(Edit {
                original: base + i..base + i + len,
                out: at..out.len(),
                var: Some(reference.var.to_owned()),
            });
            scan.value();
            i += len;
        }
        state = match scan.state {
            State::Escaped { multiline: true } | State::Literal { multiline: true } | State::YamlSingle => scan.state,
            // A YAML double-quoted string may go on over lines; other one-line strings may not.
            State::Escaped { multiline: false } if syntax == Syntax::Yaml => scan.state,
            _ => State::Outside,
        };
        if line_syntax == Syntax::Yaml && state == State::Outside && scan.block_scalar_indicator() {
            block_scalar = Some(indent);
        }
    }
    Ok(Substituted { text: out, edits })
}

/// A scanner of one line's syntax: where its strings and comments are.
struct Scan {
    syntax: Syntax,
    state: State,
    /// YAML, outside strings and comments: the last character that was not
    /// whitespace (a quote opens a string only where a value starts)...
    last: Option<char>,
    /// ...whether whitespace followed it...
    space: bool,
    /// ...and whether the last word is a block scalar indicator (`|`, `>-`, `|2`).
    indicator: bool,
}

impl Scan {
    fn new(syntax: Syntax, state: State) -> Self {
        Scan {
            syntax,
            state,
            last: None,
            space: true,
            indicator: false,
        }
    }

    /// A substituted value was inserted: it is a value's text, so a quote after
    /// it does not open a string.
    fn value(&mut self) {
        if self.state == State::Outside {
            self.seen('x');
        }
    }

    /// YAML: the line ends in a block scalar indicator.
    fn block_scalar_indicator(&self) -> bool {
        self.indicator
    }

    fn seen(&mut self, c: char) {
        if c.is_whitespace() {
            self.space = true;
            return;
        }
        self.indicator = if self.space {
            matches!(c, '|' | '>')
        } else {
            self.indicator && matches!(c, '-' | '+' | '0'..='9')
        };
        self.last = Some(c);
        self.space = false;
    }

    fn close(&mut self) {
        self.state = State::Outside;
        // A closed string is a value: a quote after it does not open another.
        self.seen('"');
    }

    /// Moves over the start of `rest` (which is not a `${`): returns how many
    /// bytes it took.
    fn step(&mut self, rest: &str) -> usize {
        let c = rest.chars().next().unwrap_or(' ');
        let len = c.len_utf8();
        match (self.syntax, self.state) {
            (Syntax::Plain, _) | (_, State::Comment) => len,
            (_, State::Escaped { multiline }) => {
                if c == '\\' {
                    // The escaped character goes with it (`\"` does not close).
                    1 + rest[1..].chars().next().map_or(0, char::len_utf8)
                } else if multiline && rest.starts_with("\"\"\"") {
                    self.close();
                    3
                } else {
                    if c == '"' && !multiline {
                        self.close();
                    }
                    len
                }
            }
            (_, State::Literal { multiline: true }) if rest.starts_with("'''") => {
                self.close();
                3
            }
            (_, State::Literal { multiline }) => {
                if c == '\'' && !multiline {
                    self.close();
                }
                len
            }
            (_, State::YamlSingle) if rest.starts_with("''") => 2,
            (_, State::YamlSingle) => {
                if c == '\'' {
                    self.close();
                }
                len
            }
            (Syntax::Toml, State::Outside) => {
                let (state, taken) = match c {
                    '#' => (State::Comment, len),
                    '"' if rest.starts_with("\"\"\"") => (State::Escaped { multiline: true }, 3),
                    '"' => (State::Escaped { multiline: false }, len),
                    '\'' if rest.starts_with("'''") => (State::Literal { multiline: true }, 3),
                    '\'' => (State::Literal { multiline: false }, len),
                    _ => (State::Outside, len),
                };
                self.state = state;
                taken
            }
            (Syntax::Yaml, State::Outside) => {
                // A value starts at the line's start, after `: `, `- `, `? `, or
                // after `,`, `[`, `{` in a flow collection; a comment after a space.
                let value_starts = match self.last {
                    None => true,
                    Some(':' | '-' | '?') => self.space,
                    Some(',' | '[' | '{') => true,
                    Some(_) => false,
                };
                match c {
                    '#' if self.space => self.state = State::Comment,
                    '"' if value_starts => self.state = State::Escaped { multiline: false },
                    '\'' if value_starts => self.state = State::YamlSingle,
                    c => self.seen(c),
                }
                len
            }
            (Syntax::Json, State::Outside) => {
                if c == '"' {
                    self.state = State::Escaped { multiline: false };
                }
                len
            }
        }
    }
}

/// Appends `value` escaped for a double-quoted string, in the syntax TOML, YAML
/// and JSON share: `\\`, `\"`, `\n`, `\t`, `\r`, and `\uXXXX` for any other
/// control character.
fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}
