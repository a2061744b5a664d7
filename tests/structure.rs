//! The shape of the code, checked: no import cycles between the source files of a crate,
//! no source file so long that it holds several concerns, and a README layout table that
//! names every source file (itself or a folder above it) and nothing that is gone.
//!
//! A file's imports are the `crate::…` and `super::…` paths it names outside its unit
//! tests (`use` lines and paths in code alike), resolved to the longest module path that is
//! a file of the crate. A submodule naming its own parent is not an edge (the parent owns
//! it); anything else that closes a loop is a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 5] = [
    "src",
    "report/src",
    "shim-core/src",
    "proto/src",
    "shim/src",
];
/// No non-test source file is longer than this.
const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Module path (`supervisor::dumping`, "" for the crate root) -> file, for one crate.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension() != Some(std::ffi::OsStr::new("rs")) {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The code of a file without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths `text` names after `crate::` or `super::`, absolute, with the braces
/// of `use x::{a, b::c}` expanded one level.
fn named_paths(module: &str, is_dir_module: bool, text: &str) -> Vec<String> {
    let parent_of = |m: &str| m.rsplit_once("::").map_or(String::new(), |(p, _)| p.into());
    // `super` in a.rs (module x::a) is x; in a/mod.rs (module x::a) it is x too.
    let _ = is_dir_module;
    let sup = parent_of(module);
    let mut out = Vec::new();
    for (start, kw) in [("crate::", ""), ("super::", sup.as_str())] {
        let mut rest = text;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + start.len()..];
            if before.is_some_and(is_ident) {
                continue;
            }
            // The path: identifiers joined by `::`, possibly ending in `::{…}`.
            let mut path = String::new();
            let mut tail = rest;
            loop {
                let ident: String = tail.chars().take_while(|&c| is_ident(c)).collect();
                if ident.is_empty() {
                    break;
                }
                if !path.is_empty() {
                    path.push_str("::");
                }
                path.push_str(&ident);
                tail = &tail[ident.len()..];
                match tail.strip_prefix("::") {
                    Some(t) => tail = t,
                    None => break,
                }
            }
            let base = match (kw.is_empty(), path.is_empty()) {
                (true, _) => path.clone(),
                (false, true) => kw.to_owned(),
                (false, false) => format!("{kw}::{path}"),
            };
            if let Some(group) = tail.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let item = item.trim().split(" as ").next().unwrap_or("").trim();
                    let first = item.split("::").next().unwrap_or("");
                    if first.is_empty() || first == "self" {
                        continue;
                    }
                    out.push(if base.is_empty() {
                        first.to_owned()
                    } else {
                        format!("{base}::{first}")
                    });
                }
            } else if !base.is_empty() {
                out.push(base);
            }
        }
    }
    out
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve<'a>(mods: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|k| parts[..k].join("::"))
        .find_map(|m| mods.get_key_value(&m).map(|(k, _)| k.as_str()))
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut graph = BTreeMap::new();
    for (module, path) in &mods {
        let is_dir = path.file_name().is_some_and(|f| f == "mod.rs");
        let mut edges = BTreeSet::new();
        for p in named_paths(module, is_dir, &code(path)) {
            let Some(target) = resolve(&mods, &p) else {
                continue;
            };
            let owns = module.starts_with(&format!("{target}::"));
            if target != module && !target.is_empty() && !owns {
                edges.insert(target.to_owned());
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// Strongly connected groups of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, n: &'g str) {
        let i = s.index.len();
        s.index.insert(n, i);
        s.low.insert(n, i);
        s.stack.push(n);
        s.on_stack.insert(n);
        for w in &s.graph[n] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let ln = s.low.get_mut(n).unwrap();
                *ln = (*ln).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let ln = s.low.get_mut(n).unwrap();
                *ln = (*ln).min(iw);
            }
        }
        if s.low[n] == s.index[n] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.to_owned());
                if w == n {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for n in graph.keys() {
        if !s.index.contains_key(n.as_str()) {
            visit(&mut s, n);
        }
    }
    s.found
}

#[test]
fn the_checker_finds_a_cycle() {
    let mods: BTreeMap<String, PathBuf> = ["", "a", "b", "c", "c::d"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    assert_eq!(resolve(&mods, "c::d::Thing"), Some("c::d"));
    assert_eq!(
        named_paths(
            "c::d",
            false,
            "use super::{a, b::X};\nlet x = crate::a::f();"
        ),
        ["a::f", "c::a", "c::b"]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("d", &["a"]),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}

#[test]
fn no_import_cycles_between_source_files() {
    let mut found = Vec::new();
    for krate in CRATES {
        for group in cycles(&import_graph(&root().join(krate))) {
            found.push(format!("{krate}: {}", group.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut long = Vec::new();
    for krate in CRATES {
        for path in modules(&root().join(krate)).values() {
            let text = std::fs::read_to_string(path).unwrap();
            // Unit tests beside the code do not count.
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => &text[..i],
                None => &text[..],
            };
            let n = code.lines().count();
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (one concern each, please):\n{}",
        long.join("\n")
    );
}

/// The README's "Source layout" table: per row, the paths its `where` column names
/// (folders end in `/`), and the file names (`policy.rs`) and paths its `job` column
/// names.
fn layout_rows() -> Vec<(Vec<String>, Vec<String>)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| !t.contains(' ') && !t.starts_with('/'))
            .map(str::to_owned)
            .collect()
    };
    // A place is a path: a folder (`src/page/`) or a file (`src/oom.rs`).
    let paths = |cell: &str| -> Vec<String> {
        ticked(cell)
            .into_iter()
            .filter(|t| t.ends_with('/') || t.ends_with(".rs"))
            .collect()
    };
    readme
        .lines()
        .skip_while(|l| !l.starts_with("Source layout"))
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let mut cells = l.trim_matches('|').splitn(2, " | ");
            let (place, job) = (cells.next()?, cells.next()?);
            Some((paths(place), ticked(job)))
        })
        .collect()
}

/// Every file below `dir` (relative to the repository, `/`-separated).
fn files_below(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join(dir)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(root()) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Whether the layout names `file` (`src/timeline/svg.rs`): itself, or a folder above it,
/// or its name in the job of a row whose folder holds it.
fn named_in_layout(rows: &[(Vec<String>, Vec<String>)], file: &str) -> bool {
    rows.iter().any(|(places, job)| {
        places.iter().any(|p| {
            p == file
                || (p.ends_with('/') && file.starts_with(p.as_str()))
                || (p.ends_with('/') && job.iter().any(|j| format!("{p}{j}") == file))
        })
    })
}

#[test]
fn the_layout_checker_reads_rows_and_folders() {
    let rows = vec![
        (vec!["src/a/".to_owned()], vec!["b.rs".to_owned()]),
        (vec!["src/c.rs".to_owned()], vec![]),
    ];
    assert!(named_in_layout(&rows, "src/a/b.rs"));
    assert!(named_in_layout(&rows, "src/a/deep/d.rs"));
    assert!(named_in_layout(&rows, "src/c.rs"));
    assert!(!named_in_layout(&rows, "src/d.rs"));
    assert!(!named_in_layout(&rows, "src/ab.rs"));
}

/// The README's layout table is the newcomer's map: it names every source file of every
/// crate (itself or a folder holding it), and nothing that is gone.
#[test]
fn the_readme_layout_names_every_module_and_nothing_gone() {
    let rows = layout_rows();
    assert!(rows.len() > 10, "no layout table found in README.md");
    let mut missing = Vec::new();
    for krate in CRATES.iter().chain(&["udf/src", "bundled/src"]) {
        for file in files_below(krate) {
            if file.ends_with(".rs") && !named_in_layout(&rows, &file) {
                missing.push(file);
            }
        }
    }
    let mut gone = Vec::new();
    for (places, job) in &rows {
        gone.extend(places.iter().filter(|p| !root().join(p).exists()).cloned());
        // What the job names (`policy.rs`, `page/`, `tests/common/`) is in the repository
        // or below one of the row's folders.
        let below: Vec<String> = places
            .iter()
            .filter(|p| p.ends_with('/'))
            .flat_map(|f| files_below(f))
            .collect();
        for name in job
            .iter()
            .filter(|j| j.ends_with(".rs") || j.ends_with('/'))
        {
            let found = root().join(name).exists()
                || below.iter().any(|file| file.contains(&format!("/{name}")));
            if !found {
                gone.push(format!("{name} (in the row of {})", places.join(", ")));
            }
        }
    }
    assert!(
        missing.is_empty() && gone.is_empty(),
        "README.md's \"Source layout\" table: name these modules (or a folder above them): \
         {missing:?}; these are gone: {gone:?}"
    );
}
