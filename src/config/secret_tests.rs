//! Secrets in configuration never reach an error or `Debug`, and bad input never
//! panics: substitution errors, values with quotes and backslashes, parse errors,
//! type errors, and `Debug` of what was read.
//!
//! Each test sets its own `OCTOPUS_SECRET_TEST_*` variables (tests run in
//! parallel in one process: no two share a name).

use std::path::PathBuf;

use super::*;

const SECRET: &str = "Planted";

fn no_env(_: &str) -> Option<String> {
    None
}

fn write(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn an_unclosed_reference_with_multibyte_text_after_it_is_an_error_not_a_panic() {
    let line = "x = \"${aéééééééééé\"";
    let err = substitute(line, no_env).unwrap_err();
    assert!(err.starts_with("line 1:") && err.contains("unclosed"), "{err}");
    assert!(!err.contains('é'), "the rest of the line is not shown: {err}");
    let err = OctopusConfig::from_toml_str(&format!("a = 1\n{line}\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("unclosed"), "{err}");
}

#[test]
fn reference_errors_name_the_line_and_the_variable_never_the_rest_of_the_line() {
    // An unclosed reference: the variable is named, what follows it is not shown.
    let err = substitute("a = 1\nx = \"${DB_PW:-Planted-and-more\"", no_env).unwrap_err();
    assert!(err.starts_with("line 2:") && err.contains("DB_PW"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // Nothing that names a variable follows: the column does.
    let err = substitute("x = \"${ Planted\"", no_env).unwrap_err();
    assert!(err.starts_with("line 1:") && err.contains("column 6"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // A bad name with a default: the name, not the default (a dev password).
    let err = substitute("a = 1\nb = 2\npassword = \"${ETCD-PASSWORD:-devpass}\"", no_env).unwrap_err();
    assert!(err.starts_with("line 3:") && err.contains("ETCD-PASSWORD"), "{err}");
    assert!(err.contains("does not name a variable"), "{err}");
    assert!(!err.contains("devpass"), "{err}");
    // Whatever the characters, no panic and no rest of the line.
    for line in [
        "${",
        "${é",
        "é${",
        "${:-Planted}",
        "${é:-Planted}",
        "x${ééééééééééééééééééééééééé:-Planted",
    ] {
        let err = substitute(line, no_env).unwrap_err();
        assert!(err.starts_with("line 1:") && !err.contains(SECRET), "{line}: {err}");
    }
}

#[test]
fn quotes_and_backslashes_in_values_stay_inside_toml_strings() {
    std::env::set_var("OCTOPUS_SECRET_TEST_QUOTE", "pa\"ss");
    std::env::set_var("OCTOPUS_SECRET_TEST_BACKSLASH", "C:\\Users\\q\\new");
    std::env::set_var("OCTOPUS_SECRET_TEST_CONTROL", "a\tb\nc\u{1}d");
    let config = OctopusConfig::from_toml_str(
        "registry = \"etcd://h:2379?user=root&password=${OCTOPUS_SECRET_TEST_QUOTE}\"\n\
         [app]\n\
         path = \"${OCTOPUS_SECRET_TEST_BACKSLASH}\"\n\
         control = \"${OCTOPUS_SECRET_TEST_CONTROL}\"\n\
         many = \"\"\"\n${OCTOPUS_SECRET_TEST_QUOTE}\"${OCTOPUS_SECRET_TEST_BACKSLASH}\"\"\"\"\n\
         raw = '${OCTOPUS_SECRET_TEST_BACKSLASH}'\n",
    )
    .unwrap();
    assert_eq!(config.registry, "etcd://h:2379?user=root&password=pa\"ss");
    #[derive(Debug, Deserialize, PartialEq)]
    struct App {
        path: String,
        control: String,
        many: String,
        raw: String,
    }
    let app: App = config.app().unwrap();
    assert_eq!(
        app,
        App {
            path: "C:\\Users\\q\\new".into(),
            control: "a\tb\nc\u{1}d".into(),
            many: "pa\"ss\"C:\\Users\\q\\new\"".into(),
            raw: "C:\\Users\\q\\new".into(),
        }
    );
}

#[test]
fn quotes_and_backslashes_in_values_stay_inside_yaml_and_json_strings() {
    std::env::set_var("OCTOPUS_SECRET_TEST_YJ", "it's \"a\\b\"\n#x");
    let dir = tempfile::tempdir().unwrap();
    #[derive(Debug, Deserialize, PartialEq)]
    struct App {
        double: String,
        single: String,
    }
    let want = App {
        double: "it's \"a\\b\"\n#x".into(),
        single: "it's \"a\\b\" #x".into(),
    };
    let yaml = write(
        &dir,
        "a.yaml",
        "app:\n  double: \"${OCTOPUS_SECRET_TEST_YJ}\"\n  single: '${OCTOPUS_SECRET_TEST_YJ}'\n",
    );
    // A newline cannot go into a single-quoted YAML string as itself.
    let err = OctopusConfig::load(&yaml).unwrap_err().to_string();
    assert!(
        err.contains("line 3") && err.contains("OCTOPUS_SECRET_TEST_YJ"),
        "{err}"
    );
    assert!(!err.contains("#x"), "{err}");
    std::env::set_var("OCTOPUS_SECRET_TEST_YJ_ONE_LINE", "it's \"a\\b\" #x");
    let yaml = write(
        &dir,
        "b.yaml",
        "app:\n  double: \"${OCTOPUS_SECRET_TEST_YJ}\"\n  single: '${OCTOPUS_SECRET_TEST_YJ_ONE_LINE}'\n",
    );
    assert_eq!(OctopusConfig::load(&yaml).unwrap().app::<App>().unwrap(), want);
    let json = write(
        &dir,
        "c.json",
        "{\"app\": {\"double\": \"${OCTOPUS_SECRET_TEST_YJ}\",\n \"single\": \"${OCTOPUS_SECRET_TEST_YJ_ONE_LINE}\"}}",
    );
    assert_eq!(OctopusConfig::load(&json).unwrap().app::<App>().unwrap(), want);
}

#[test]
fn parse_errors_show_neither_substituted_values_nor_the_line() {
    std::env::set_var("OCTOPUS_SECRET_TEST_PARSE", "Planted-pa\"ss");
    let dir = tempfile::tempdir().unwrap();
    // Broken for another reason: text after the string.
    let body = "ttl = \"1s\"\nregistry = \"etcd://h:2379?user=root&password=${OCTOPUS_SECRET_TEST_PARSE}\" trailing\n";
    for err in [
        OctopusConfig::from_toml_str(body).unwrap_err().to_string(),
        OctopusConfig::load(write(&dir, "a.toml", body))
            .unwrap_err()
            .to_string(),
    ] {
        assert!(!err.contains(SECRET) && !err.contains("pa\"ss"), "{err}");
        assert!(!err.contains("etcd://") && !err.contains("trailing"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
    // Broken by the value itself, outside any string: the variable is named.
    std::env::set_var("OCTOPUS_SECRET_TEST_PARSE_RAW", "Planted x");
    let err = OctopusConfig::from_toml_str("max_retries = ${OCTOPUS_SECRET_TEST_PARSE_RAW}\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains(SECRET) && err.contains("line 1"), "{err}");
    assert!(err.contains("OCTOPUS_SECRET_TEST_PARSE_RAW"), "{err}");
    for (name, body) in [
        (
            "b.yaml",
            "registry: \"etcd://h?password=${OCTOPUS_SECRET_TEST_PARSE}\"\n  - x: [\n",
        ),
        (
            "c.json",
            "{\"registry\": \"etcd://h?password=${OCTOPUS_SECRET_TEST_PARSE}\" \"trailing\"}",
        ),
        ("d.json", "\"${OCTOPUS_SECRET_TEST_PARSE}\""),
        ("e.yaml", "${OCTOPUS_SECRET_TEST_PARSE}"),
    ] {
        let err = OctopusConfig::load(write(&dir, name, body)).unwrap_err().to_string();
        assert!(err.contains(name) && !err.contains(SECRET), "{name}: {err}");
        assert!(!err.contains("etcd://"), "{name}: {err}");
    }
}

#[test]
fn type_errors_name_the_key_and_the_types_never_the_value() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Safe,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct App {
        #[serde(default)]
        db_password: String,
        #[serde(default)]
        mode: Option<Mode>,
    }
    let err = OctopusConfig::from_toml_str("[app]\ndb_password = 20240917\n")
        .unwrap()
        .app::<App>()
        .unwrap_err()
        .to_string();
    assert!(!err.contains("20240917"), "{err}");
    assert!(
        err.contains("key `app.db_password`") && err.contains("an integer") && err.contains("a string"),
        "{err}"
    );
    let err = OctopusConfig::from_toml_str("[app]\nmode = \"Planted\"\n")
        .unwrap()
        .app::<App>()
        .unwrap_err()
        .to_string();
    assert!(!err.contains(SECRET) && err.contains("key `app.mode`"), "{err}");
    assert!(err.contains("`Fast`"), "{err}");
    for body in [
        "ttl = 20240917\n",
        "zone = 20240917\n",
        "[service]\nname = \"s\"\naddr = \"h\"\nport = 20240917\n",
    ] {
        let err = OctopusConfig::from_toml_str(body).unwrap_err().to_string();
        assert!(!err.contains("20240917") && err.contains("key `"), "{body}: {err}");
    }

    // From the environment: OCTOPUS_APP__DB_PASSWORD=20240917.
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "app.toml", "[app]\nmode = \"Fast\"\n");
    std::env::set_var("OCTOPUS_APP__DB_PASSWORD", "20240917");
    let config = OctopusConfig::load(&path);
    std::env::remove_var("OCTOPUS_APP__DB_PASSWORD");
    let err = config.unwrap().app::<App>().unwrap_err().to_string();
    assert!(!err.contains("20240917"), "{err}");
    assert!(
        err.contains("key `app.db_password`") && err.contains("an integer") && err.contains("a string"),
        "{err}"
    );
}

#[test]
fn debug_shows_no_registry_password_nor_app_value() {
    let config = OctopusConfig::from_toml_str(
        "registry = \"etcd://root:Planted@h:2379?user=root&password=Planted\"\n\
         [app]\n\
         db_password = \"Planted\"\n\
         nested = { token = \"Planted\" }\n",
    )
    .unwrap();
    for shown in [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.app),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("db_password") && shown.contains("nested"), "{shown}");
    }
    // The registry as redact_url shows it.
    let shown = format!("{config:?}");
    let redacted = crate::redact_url(&config.registry);
    assert!(
        redacted.contains("h:2379") && shown.contains(&format!("{redacted:?}")),
        "{shown}"
    );
}

#[test]
fn the_scanner_knows_strings_comments_and_yaml_block_scalars() {
    let lookup = |var: &str| match var {
        "Q" => Some("a\"b'c".to_owned()),
        _ => None,
    };
    let toml = |text: &str| substitute::substitute_in(text, Syntax::Toml, lookup).map(|s| s.text);
    let yaml = |text: &str| substitute::substitute_in(text, Syntax::Yaml, lookup).map(|s| s.text);
    // TOML: escaped in "...", bare outside strings and in comments, `\"` does not close.
    assert_eq!(toml("a = \"${Q}\" # ${Q}\n").unwrap(), "a = \"a\\\"b'c\" # a\"b'c\n");
    assert_eq!(toml("a = \"\\\" ${Q}\"").unwrap(), "a = \"\\\" a\\\"b'c\"");
    assert_eq!(
        toml("a = ${N:-\"d\"}").unwrap(),
        "a = \"d\"",
        "a default is the file's text"
    );
    // A '...' string cannot hold a quote: an error naming the variable, not the value.
    let err = toml("a = '${Q}'").unwrap_err();
    assert!(
        err.starts_with("line 1:") && err.contains("${Q}") && !err.contains("b'c"),
        "{err}"
    );
    // A multi-line string goes on over lines; a `#` line inside it is no comment.
    assert_eq!(
        toml("a = \"\"\"\n# ${Q}\n\"\"\"\nb = ${Q}").unwrap(),
        "a = \"\"\"\n# a\\\"b'c\n\"\"\"\nb = a\"b'c"
    );
    // YAML: a quote opens a string only where a value starts.
    assert_eq!(yaml("a: it's ${Q}\n").unwrap(), "a: it's a\"b'c\n");
    assert_eq!(yaml("a: '${Q}'\n").unwrap(), "a: 'a\"b''c'\n");
    assert_eq!(yaml("- [\"${Q}\", '${Q}']\n").unwrap(), "- [\"a\\\"b'c\", 'a\"b''c']\n");
    assert_eq!(yaml("a: \"x\n  ${Q}\"\n").unwrap(), "a: \"x\n  a\\\"b'c\"\n");
    // A block scalar's lines are text: no quotes, no escapes.
    assert_eq!(
        yaml("a: |-\n  \"${Q}\n  '${Q}\nb: \"${Q}\"\n").unwrap(),
        "a: |-\n  \"a\"b'c\n  'a\"b'c\nb: \"a\\\"b'c\"\n"
    );
}

#[test]
fn a_parse_error_in_a_value_points_at_its_reference() {
    let text = "a = 1\nb = [${Q}]\n";
    let lookup = |_: &str| Some("1 2 3".to_owned());
    let s = substitute::substitute_in(text, Syntax::Toml, lookup).unwrap();
    assert_eq!(s.text, "a = 1\nb = [1 2 3]\n");
    let var = Some("Q".to_owned());
    assert_eq!(
        s.position(text, 10),
        substitute::Position {
            line: 2,
            column: 5,
            var: None
        }
    );
    assert_eq!(
        s.position(text, 14),
        substitute::Position {
            line: 2,
            column: 6,
            var
        }
    );
    assert_eq!(
        s.position(text, 16),
        substitute::Position {
            line: 2,
            column: 10,
            var: None
        }
    );
}

/// What a TOML literal string can hold goes in as it is: a multi-line one takes
/// line breaks and `'` (a PEM key, a name like O'Brien); only what it cannot
/// hold is refused, by the variable's name.
#[test]
fn literal_strings_take_what_toml_lets_them_hold() {
    std::env::set_var(
        "OCTOPUS_SECRET_TEST_PEM",
        "-----BEGIN KEY-----\nabc\ndef\n-----END KEY-----",
    );
    std::env::set_var("OCTOPUS_SECRET_TEST_NAME", "O'Brien");
    let config = OctopusConfig::from_toml_str(
        "[app]\n\
         pem = '''\n${OCTOPUS_SECRET_TEST_PEM}'''\n\
         name = '''${OCTOPUS_SECRET_TEST_NAME}'''\n",
    )
    .unwrap();
    #[derive(Debug, Deserialize, PartialEq)]
    struct App {
        pem: String,
        name: String,
    }
    let app: App = config.app().unwrap();
    assert_eq!(app.pem, "-----BEGIN KEY-----\nabc\ndef\n-----END KEY-----");
    assert_eq!(app.name, "O'Brien");
    for (text, var) in [
        (
            "[app]\nname = '${OCTOPUS_SECRET_TEST_NAME}'\n",
            "OCTOPUS_SECRET_TEST_NAME",
        ),
        ("[app]\npem = '${OCTOPUS_SECRET_TEST_PEM}'\n", "OCTOPUS_SECRET_TEST_PEM"),
    ] {
        let err = OctopusConfig::from_toml_str(text).unwrap_err().to_string();
        assert!(
            err.contains(var) && !err.contains("Brien") && !err.contains("abc"),
            "{err}"
        );
    }
}

/// An empty YAML file, or one of comments alone, is an empty table: every
/// default applies.
#[test]
fn an_empty_yaml_file_is_all_defaults() {
    let dir = tempfile::tempdir().unwrap();
    for body in ["", "# nothing set here\n", "---\n"] {
        let path = write(&dir, "octopus.yaml", body);
        let config = OctopusConfig::load(&path).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert_eq!(config.registry, default_registry(), "{body:?}");
    }
}
