//! The simulator's docs name what the code has: every deliberate bug
//! (`Bug::ALL`) and every invariant the checker reports (`check::INVARIANTS`)
//! appears where docs/RELIABILITY.md, docs/ARCHITECTURE.md ("The contract"),
//! `octopus-sim --help` and `scripts/test` list them, and nothing else does.
//! Adding a bug or an invariant without its doc line fails here.

use std::collections::BTreeSet;
use std::process::Command;

use octopus_discovery_core::hooks::Bug;
use octopus_sim::check::INVARIANTS;
use octopus_testkit::docs::{repo_file, section};

/// The first cell of each table row, trimmed (header and separator rows included).
fn first_cells<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .map(str::trim)
        .collect()
}

/// `N name` for each numbered item `N. **Name.** …` or `N. **Name** (…)` of a list.
fn numbered_items(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let (n, rest) = l.split_once(". **")?;
            n.parse::<u32>().ok()?;
            let (name, _) = rest.split_once("**")?;
            Some(format!("{n} {}", name.trim_end_matches('.').to_lowercase()))
        })
        .collect()
}

fn bug_names() -> BTreeSet<&'static str> {
    Bug::ALL.iter().map(|(_, name)| *name).collect()
}

fn invariants() -> Vec<String> {
    INVARIANTS.iter().map(|s| s.to_string()).collect()
}

fn number_word(n: usize) -> &'static str {
    const WORDS: &str = "zero one two three four five six seven eight nine ten eleven twelve thirteen \
                         fourteen fifteen sixteen seventeen eighteen nineteen twenty";
    WORDS
        .split_whitespace()
        .nth(n)
        .unwrap_or_else(|| panic!("no word for {n}: extend number_word"))
}

fn assert_same(what: &str, code: &BTreeSet<&str>, doc: &BTreeSet<&str>) {
    let missing: Vec<_> = code.difference(doc).collect();
    let unknown: Vec<_> = doc.difference(code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{what} does not match the code: missing {missing:?}, not in the code {unknown:?}"
    );
}

#[test]
fn reliability_bug_table_names_every_bug() {
    let doc = repo_file("docs/RELIABILITY.md");
    let rows = section(&doc, "## Proof that it finds bugs");
    // Rows look like "| `name` |" or "| `name` (with `--world proxy`) |"; the
    // header's first cell is "`--bug`".
    let named: BTreeSet<&str> = first_cells(&rows)
        .into_iter()
        .filter_map(|cell| cell.strip_prefix('`')?.split('`').next())
        .filter(|name| *name != "--bug")
        .collect();
    assert_same(
        "docs/RELIABILITY.md's bug table (\"Proof that it finds bugs\")",
        &bug_names(),
        &named,
    );
    let count = format!("{} deliberate bugs", number_word(Bug::ALL.len()));
    assert!(
        doc.to_lowercase().contains(&count),
        "docs/RELIABILITY.md should say \"{count}\" (Bug::ALL has {})",
        Bug::ALL.len()
    );
}

#[test]
fn help_and_scripts_name_every_bug() {
    let out = Command::new(env!("CARGO_BIN_EXE_octopus-sim"))
        .arg("--help")
        .output()
        .expect("octopus-sim runs");
    assert!(out.status.success(), "octopus-sim --help failed");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    // The `--bug NAME` option's text runs to the next option.
    let start = help.find("--bug NAME").expect("--help describes --bug NAME");
    let end = start
        + help[start..]
            .find("\n    --expect-violation")
            .expect("--expect-violation follows --bug");
    let listed: BTreeSet<&str> = help[start + "--bug NAME".len()..end]
        .split(|c: char| !(c.is_ascii_lowercase() || c == '-'))
        .filter(|w| w.contains('-'))
        .collect();
    assert_same("octopus-sim --help's --bug NAME", &bug_names(), &listed);

    for (path, role) in [
        ("scripts/test", "its list of bugs that must be caught"),
        (
            "scripts/sim-ticks",
            "its list of bugs compared at the 1 ms and 3 ms steps",
        ),
    ] {
        let script = repo_file(path);
        for name in bug_names() {
            assert!(
                contains_word(&script, name),
                "{path} does not run the deliberate bug {name}: add it to {role}"
            );
        }
    }
}

/// Whether `word` occurs in `text` with neither a letter, a digit nor `-` on either side.
fn contains_word(text: &str, word: &str) -> bool {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
    text.match_indices(word)
        .any(|(i, _)| !part(text[..i].chars().next_back()) && !part(text[i + word.len()..].chars().next()))
}

#[test]
fn readme_counts_bugs_and_invariants() {
    let readme = repo_file("README.md").to_lowercase();
    for count in [
        format!("{} deliberate bugs", number_word(Bug::ALL.len())),
        format!("{} invariants", number_word(INVARIANTS.len())),
    ] {
        assert!(readme.contains(&count), "README.md should say \"{count}\"");
    }
}

#[test]
fn reliability_lists_every_invariant() {
    let doc = repo_file("docs/RELIABILITY.md");
    let code = invariants();
    let code_set: BTreeSet<&str> = code.iter().map(String::as_str).collect();
    let lines = section(&doc, "## Invariants and their bounds");

    let table: BTreeSet<&str> = first_cells(&lines)
        .into_iter()
        .filter(|cell| cell.split(' ').next().is_some_and(|n| n.parse::<u32>().is_ok()))
        .collect();
    assert_same(
        "docs/RELIABILITY.md's table of invariants and their preconditions",
        &code_set,
        &table,
    );

    let list = numbered_items(&lines);
    assert_eq!(
        list, code,
        "docs/RELIABILITY.md's numbered list of invariants (\"N. **Name.**\") does not match check::INVARIANTS"
    );

    let count = format!("checks {} invariants", number_word(INVARIANTS.len()));
    assert!(
        doc.contains(&count),
        "docs/RELIABILITY.md should say \"{count}\" (the checker has {})",
        INVARIANTS.len()
    );
}

#[test]
fn architecture_contract_lists_every_invariant() {
    let doc = repo_file("docs/ARCHITECTURE.md");
    let lines = section(&doc, "### The simulator's invariants");
    assert_eq!(
        numbered_items(&lines),
        invariants(),
        "docs/ARCHITECTURE.md's \"The simulator's invariants\" (\"N. **Name.**\") does not match check::INVARIANTS"
    );
}
