//! The house rules, checked on the source itself: no import circle between the
//! files of a crate, and no source file over 400 lines (outside tests and benches,
//! and not counting a file's own `#[cfg(test)]` module) unless a `//! Long:` line
//! near its top says why.
//!
//! A circle is read from paths: `crate::a::b`, `super::x` and `use crate::{a, b}`
//! name the file that holds the module. Paths to the crate root or a `mod.rs`
//! (which only declare and re-export) are not edges, and code after a file's
//! `#[cfg(test)]` is not read (a test module may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 400;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's members, as its `Cargo.toml` lists them.
fn members() -> Vec<String> {
    let manifest = fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("a members list") + "members = [".len();
    let end = start + manifest[start..].find(']').expect("the list's end");
    let members: Vec<String> = manifest[start..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.len() > 5, "read the workspace members: {members:?}");
    members
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/`: `lib.rs` and `main.rs` are the root
/// (empty), `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`. Files under
/// `src/bin/` are roots of their own and are skipped.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.trim_end_matches(".rs");
    if !(parts.is_empty() && (stem == "lib" || stem == "main")) && stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

/// The source before its test module, without comments (a doc link is not an import).
fn production_part(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Paths (as segment lists) that start at `prefix` (`crate` or `super`), with
/// `prefix::{a, b::c}` groups expanded to their first segments.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let needle = format!("{prefix}::");
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| ident_char(c) || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(segments(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(segments(&item));
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(s: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = s.trim_start();
    loop {
        let end = rest.find(|c: char| !ident_char(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segs.push(rest[..end].to_owned());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    segs
}

/// The longest module among `modules` that `path` starts with; a name that the
/// root or a `mod.rs` re-exports (`pub use a::X;`) resolves to where it is defined.
fn resolve(
    modules: &BTreeSet<Vec<String>>,
    reexports: &BTreeMap<Vec<String>, Vec<String>>,
    path: &[String],
) -> Option<Vec<String>> {
    for n in (1..=path.len()).rev() {
        if let Some(m) = reexports.get(&path[..n]) {
            return Some(m.clone());
        }
        if modules.contains(&path[..n]) {
            return Some(path[..n].to_vec());
        }
    }
    None
}

/// `pub use a::b::{X, Y};` in a declaring file `m`: `m::X` → `a::b`, `m::Y` → `a::b`.
fn reexports_of(m: &[String], text: &str, modules: &BTreeSet<Vec<String>>) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    for stmt in text.split(';') {
        let Some(i) = stmt.find("pub use ") else { continue };
        let body = stmt[i + "pub use ".len()..].trim();
        let body = body.strip_prefix("self::").unwrap_or(body);
        let (base, items): (Vec<String>, Vec<String>) = match body.split_once("::{") {
            Some((base, group)) => (
                segments(base),
                group
                    .trim_end_matches('}')
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect(),
            ),
            None => {
                let segs = segments(body);
                let Some((last, base)) = segs.split_last() else {
                    continue;
                };
                (base.to_vec(), vec![last.clone()])
            }
        };
        let mut module = if base.first().is_some_and(|s| s == "crate") {
            base[1..].to_vec()
        } else {
            let mut full = m.to_vec();
            full.extend(base);
            full
        };
        while !module.is_empty() && !modules.contains(&module) {
            module.pop();
        }
        for item in items {
            let name = item.rsplit(" as ").next().unwrap_or(&item);
            let segs = segments(name);
            if let Some(last) = segs.last() {
                let mut key = m.to_vec();
                key.push(last.clone());
                out.push((key, module.clone()));
            }
        }
    }
    out
}

struct Crate {
    name: String,
    /// Module path → file, for files that hold code (not the root, not `mod.rs`).
    files: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

/// The crates of a package: its `src/` (library and main binary), and each
/// `src/bin/NAME/` (a binary with modules of its own).
fn crate_roots(member: &str) -> Vec<(String, PathBuf)> {
    let src = workspace().join(member).join("src");
    let mut roots = vec![(member.to_owned(), src.clone())];
    if let Ok(bins) = fs::read_dir(src.join("bin")) {
        for b in bins.flatten().filter(|b| b.path().is_dir()) {
            roots.push((format!("{member} (bin {})", b.file_name().to_string_lossy()), b.path()));
        }
    }
    roots
}

fn read_crate(name: &str, src: &Path) -> Option<Crate> {
    let src = src.to_path_buf();
    let mut all = Vec::new();
    rust_files(&src, &mut all);
    if all.is_empty() {
        return None;
    }
    let mut modules = BTreeSet::new();
    let mut files = BTreeMap::new();
    let mut texts = Vec::new();
    let mut declaring = Vec::new();
    for f in &all {
        let Some(m) = module_of(&src, f) else { continue };
        modules.insert(m.clone());
        let text = fs::read_to_string(f).unwrap();
        let is_decl_only = m.is_empty() || f.file_name().is_some_and(|n| n == "mod.rs");
        if is_decl_only {
            declaring.push((m, text));
        } else {
            files.insert(m.clone(), f.clone());
            texts.push((m, text));
        }
    }
    let mut reexports = BTreeMap::new();
    for (m, text) in &declaring {
        reexports.extend(reexports_of(m, &production_part(text), &modules));
    }
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, text) in &texts {
        let text = &production_part(text);
        let mut targets = Vec::new();
        for p in paths_after(text, "crate") {
            targets.push(p);
        }
        for p in paths_after(text, "super") {
            let mut full = m[..m.len() - 1].to_vec();
            full.extend(p);
            targets.push(full);
        }
        for t in targets {
            if let Some(to) = resolve(&modules, &reexports, &t) {
                if &to != m && files.contains_key(&to) {
                    edges.entry(m.clone()).or_default().insert(to);
                }
            }
        }
    }
    Some(Crate {
        name: name.to_owned(),
        files,
        edges,
    })
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(c: &Crate) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        c: &'a Crate,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        found: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(ws) = s.c.edges.get(v) {
            for w in ws {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let l = s.low[w].min(s.low[v]);
                    s.low.insert(v, l);
                } else if s.on_stack.contains(w) {
                    let l = s.index[w].min(s.low[v]);
                    s.low.insert(v, l);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        c,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in c.files.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_import_circle_between_files() {
    let mut problems = Vec::new();
    for (name, src) in members().iter().flat_map(|m| crate_roots(m)) {
        let Some(c) = read_crate(&name, &src) else { continue };
        for comp in circles(&c) {
            let names: Vec<String> = comp.iter().map(|m| c.files[m].display().to_string()).collect();
            problems.push(format!("{}: {}", c.name, names.join(" <-> ")));
        }
    }
    assert!(
        problems.is_empty(),
        "import circles between files:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_long_source_file_without_a_reason() {
    let mut problems = Vec::new();
    for member in members() {
        let mut all = Vec::new();
        rust_files(&workspace().join(&member).join("src"), &mut all);
        for f in all {
            let text = fs::read_to_string(&f).unwrap();
            // A file's own test module is test code: count what comes before it.
            let lines = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count();
            let says_why = text.lines().take(20).any(|l| l.starts_with("//! Long:"));
            if lines > MAX_LINES && !says_why {
                problems.push(format!("{} has {lines} lines", f.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "source files over {MAX_LINES} lines without a `//! Long:` line saying why:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: a circle planted in text is found, a chain is not.
#[test]
fn the_circle_finder_finds_a_planted_circle() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let mut files = BTreeMap::new();
    for name in ["a", "b", "c", "d"] {
        files.insert(m(name), PathBuf::from(format!("{name}.rs")));
    }
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    edges.entry(m("a")).or_default().insert(m("b"));
    edges.entry(m("b")).or_default().insert(m("c"));
    edges.entry(m("c")).or_default().insert(m("d"));
    let chain = Crate {
        name: "t".into(),
        files: files.clone(),
        edges: edges.clone(),
    };
    assert!(circles(&chain).is_empty());
    edges.entry(m("c")).or_default().insert(m("a"));
    let circle = Crate {
        name: "t".into(),
        files,
        edges,
    };
    assert_eq!(circles(&circle), vec![vec![m("a"), m("b"), m("c")]]);

    let paths = paths_after("use crate::{x::Y, z}; fn f() { crate::w::g(); super::v::h() }", "crate");
    assert_eq!(paths, vec![m("x::Y"), m("z"), m("w::g")]);
    assert_eq!(paths_after("use super::{a, b::C};", "super"), vec![m("a"), m("b::C")]);
}
