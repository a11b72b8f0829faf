//! The docs list the commands the CLI has: every subcommand of `octopus --help`
//! (clap's list, from the `Command` enum) appears in docs/CLI.md's command
//! table, has its `--help` section there, and is named in docs/QUICK_REFERENCE.md
//! ("The `octopus` command") and in the README's two lists (the install line and
//! the crates table), and none of those lists a command the CLI lacks.
//! Adding, renaming or removing a command without its doc lines fails here.

use std::collections::BTreeSet;
use std::process::Command;

use octopus_testkit::docs::{repo_file, section};

/// The subcommands `octopus --help` lists under "Commands:", clap's own `help`
/// left out.
fn cli_commands() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_octopus"))
        .arg("--help")
        .output()
        .expect("running octopus --help");
    assert!(out.status.success(), "octopus --help failed");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let commands: BTreeSet<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    assert!(commands.len() > 3, "no command list in `octopus --help`:\n{help}");
    commands
}

/// The first word after `octopus ` in each of `items`, when there is one.
fn named<'a>(items: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    items
        .filter_map(|item| item.strip_prefix("octopus "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|word| !word.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// The code spans (text between backticks) of `lines`, in order.
fn code_spans<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines.iter().flat_map(|l| l.split('`').skip(1).step_by(2)).collect()
}

#[test]
fn cli_md_command_table_lists_every_command() {
    let doc = repo_file("docs/CLI.md");
    // The table's rows start with the command in a code span: "| `octopus ls [SERVICE]` | …".
    let rows = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next());
    assert_eq!(
        named(rows),
        cli_commands(),
        "docs/CLI.md's command table (left) against `octopus --help` (right)"
    );
}

#[test]
fn cli_md_has_a_help_section_for_every_command() {
    let doc = repo_file("docs/CLI.md");
    // "### `octopus ls --help`", under "## Help"; `octopus --help` itself names no command.
    let headings = section(&doc, "## Help")
        .into_iter()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix(" --help`"));
    assert_eq!(
        named(headings),
        cli_commands(),
        "docs/CLI.md's `--help` sections (left) against `octopus --help` (right)"
    );
}

#[test]
fn quick_reference_names_every_command() {
    let doc = repo_file("docs/QUICK_REFERENCE.md");
    // "`octopus new NAME`, `ls [SERVICE]`, …, `--json`": the first span names the
    // program; flags and variables are not commands.
    let listed: BTreeSet<String> = code_spans(&section(&doc, "## The `octopus` command"))
        .into_iter()
        .map(|span| span.strip_prefix("octopus ").unwrap_or(span))
        .filter_map(|span| span.split_whitespace().next())
        .filter(|word| !word.starts_with('-') && word.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed,
        cli_commands(),
        "docs/QUICK_REFERENCE.md's command list (left) against `octopus --help` (right)"
    );
}

#[test]
fn readme_names_every_command_where_it_lists_them() {
    let doc = repo_file("README.md");
    // The install line's comment: "cargo install octopus-discovery-cli   # the `octopus` command: new, model, …".
    let install = doc
        .lines()
        .find(|l| l.starts_with("cargo install octopus-discovery-cli"))
        .expect("README.md has the CLI's install line");
    let (_, commented) = install
        .split_once("command:")
        .expect("the install line's comment lists the commands after \"command:\"");
    let in_comment: BTreeSet<String> = commented.split(',').map(|c| c.trim().to_owned()).collect();
    assert_eq!(
        in_comment,
        cli_commands(),
        "README.md's install comment (left) against `octopus --help` (right)"
    );
    // The crates table's row: "| `octopus-discovery-cli/` | … | the `octopus` command: `new`, `model`, … |".
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `octopus-discovery-cli/`"))
        .expect("README.md's crates table has the CLI's row");
    let job = row.rsplit('|').nth(1).expect("the row's last cell");
    let (_, listed) = job
        .split_once("command:")
        .expect("the CLI's row lists the commands after \"command:\"");
    let in_table: BTreeSet<String> = code_spans(&[listed]).into_iter().map(str::to_owned).collect();
    assert_eq!(
        in_table,
        cli_commands(),
        "README.md's crates table (left) against `octopus --help` (right)"
    );
}
