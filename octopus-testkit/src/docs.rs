//! Reading the repository's Markdown docs, for the tests that check the docs'
//! lists (commands, bugs, invariants) against the code.

use std::path::PathBuf;

/// The text of `path`, relative to the workspace's root.
pub fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// The lines of `doc` under `heading` (a whole line such as `## Help`), up to
/// the next heading of the same level or higher; fenced code is left out.
pub fn section<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = doc.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "no heading {heading:?}");
    let mut fenced = false;
    let mut out = Vec::new();
    for line in lines {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        out.push(line);
    }
    out
}
