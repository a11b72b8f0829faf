//! Wiring the model layer into a project made by `octopus new` without
//! `--ddl`: the lines `new --ddl` would have written, inserted where the
//! scaffold's templates put them. A file whose anchor line is gone or
//! ambiguous (edited by hand) stops everything before anything is written.

use std::path::Path;

use super::names::pascal;
use crate::new;
use crate::Result;

/// One template's model insertions: (the placeholder, what `new --ddl` puts there).
type Inserts<'a> = Vec<(&'static str, &'a str)>;

/// The text before `{{placeholder}}` on its line of the template, filled in:
/// where the insertion goes (every placeholder wired here ends a line of code).
fn anchor(template: &str, placeholder: &str, fill: &dyn Fn(&str) -> String) -> String {
    let at = template.find(placeholder).unwrap_or(0);
    let line_start = template[..at].rfind('\n').map_or(0, |i| i + 1);
    fill(&template[line_start..at])
}

/// `text` with each insertion after its anchor, or what cannot be found.
fn insert(
    file: &str,
    text: &str,
    template: &str,
    inserts: &Inserts<'_>,
    fill: &dyn Fn(&str) -> String,
) -> Result<String> {
    let mut out = text.to_string();
    for (placeholder, addition) in inserts {
        let anchor = anchor(template, placeholder, fill);
        let found: Vec<usize> = out.match_indices(anchor.as_str()).map(|(i, _)| i).collect();
        match found.as_slice() {
            [at] => out.insert_str(at + anchor.len(), addition),
            [] => return Err(format!("{file}: the line `{}` is not there", anchor.trim())),
            _ => return Err(format!("{file}: the line `{}` is there more than once", anchor.trim())),
        }
    }
    Ok(out)
}

/// The model layer's dependencies that `Cargo.toml` lacks, after its `[dependencies]` line.
fn cargo(text: &str) -> Result<String> {
    let header = "[dependencies]\n";
    let Some(at) = text.find(header) else {
        return Err("Cargo.toml: no `[dependencies]` table".into());
    };
    let has = |name: &str| {
        text.lines()
            .any(|l| l.split(['=', '.']).next().is_some_and(|k| k.trim() == name))
    };
    let missing: String = new::MODEL_DEPS
        .lines()
        .filter(|l| l.starts_with('#') || !has(l.split(' ').next().unwrap_or_default()))
        .map(|l| format!("{l}\n"))
        .collect();
    // At the end of the table: before the next table's header, if any.
    let body = at + header.len();
    let end = text[body..].find("\n[").map_or(text.len(), |i| body + i + 1);
    let mut out = text.to_string();
    out.insert_str(end, &missing);
    Ok(out)
}

/// Wires the model layer into the project at `dir`, the package `name`, or says
/// what stops it. Returns the files changed.
pub(crate) fn wire(dir: &Path, name: &str) -> Result<Vec<String>> {
    let read =
        |file: &str| std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{}: {e}", dir.join(file).display()));
    let manifest = read("Cargo.toml")?;
    let module = name.replace('-', "_");
    let pascal = pascal(name);
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{Pascal}}", &pascal)
    };
    let mods = new::model_mods(&module);
    let config = new::model_config(&module);
    let plan: [(&str, &str, Inserts<'_>); 3] = [
        (
            "build.rs",
            new::BUILD,
            vec![
                ("{{model_rerun}}", new::MODEL_RERUN),
                ("{{model_proto}}", ", \"model.proto\""),
            ],
        ),
        (
            "src/lib.rs",
            new::LIB,
            vec![
                ("{{model_mods}}", mods.as_str()),
                ("{{model_setting}}", new::MODEL_SETTING),
                ("{{model_connect}}", new::MODEL_CONNECT),
                ("{{model_router}}", new::MODEL_ROUTER),
            ],
        ),
        (
            "etc/config.toml",
            new::CONFIG,
            vec![("{{model_config}}", config.as_str())],
        ),
    ];
    let mut writes = vec![("Cargo.toml".to_string(), cargo(&manifest))];
    for (file, template, inserts) in &plan {
        writes.push((
            file.to_string(),
            read(file).and_then(|t| insert(file, &t, template, inserts, &fill)),
        ));
    }
    let problems: Vec<String> = writes.iter().filter_map(|(_, w)| w.as_ref().err().cloned()).collect();
    if !problems.is_empty() {
        return Err(format!(
            "cannot wire the model layer into {} ({}): add its lines by hand (docs/MODEL.md, \"Projects made without `--ddl`\"); nothing was written",
            dir.display(),
            problems.join("; ")
        ));
    }
    let mut changed = Vec::new();
    for (file, text) in writes {
        let text = text?;
        std::fs::write(dir.join(&file), text).map_err(|e| format!("{}: {e}", dir.join(&file).display()))?;
        changed.push(file);
    }
    Ok(changed)
}
