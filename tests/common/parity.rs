//! The jeprof oracle: its output, and one parity check that every report test uses.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// `jeprof --text BINARY DUMP` output (Debian's jeprof from libjemalloc-dev).
pub fn jeprof_text(binary: &Path, dump: &Path) -> String {
    jeprof_with(&["--text"], binary, dump)
}

/// `jeprof ARGS BINARY DUMP` output.
pub fn jeprof_with(args: &[&str], binary: &Path, dump: &Path) -> String {
    let out = Command::new("jeprof")
        .args(args)
        .arg(binary)
        .arg(dump)
        .output()
        .expect("run jeprof (apt-get install libjemalloc-dev)");
    assert!(
        out.status.success(),
        "jeprof failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Debug)]
pub struct Table {
    pub total: f64,
    /// (name, flat, cum) in printed order.
    pub rows: Vec<(String, f64, f64)>,
}

/// One table row, `flat flat% sum% cum cum% name`, or without sum% (jemsafe's rows of what
/// shrank since the base).
fn parse_row(line: &str) -> Option<(String, f64, f64)> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() < 5 || !parts[1].ends_with('%') {
        return None;
    }
    let cum_at = if parts[2].ends_with('%') { 3 } else { 2 };
    if parts.len() < cum_at + 3 || !parts[cum_at + 1].ends_with('%') {
        return None;
    }
    let (flat, cum) = (parts[0].parse().ok()?, parts[cum_at].parse().ok()?);
    Some((parts[cum_at + 2..].join(" "), flat, cum))
}

/// jeprof --text --show_bytes: `Total: N B` and rows.
pub fn parse_jeprof(text: &str) -> Table {
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0);
    let rows = text.lines().filter_map(parse_row).collect();
    Table { total, rows }
}

/// jemsafe report --bytes: `Total: 64.0 MiB (67108864 B)` and rows (the main table, then
/// what is listed only as shrunk).
pub fn parse_jemsafe(text: &str) -> Table {
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .and_then(|t| t.split('(').nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no total in:\n{text}"));
    // With --base, what shrank is listed after the main table (jeprof lists it in its one
    // table): a function listed only there is compared too.
    let (main, shrank) = text
        .split_once("Shrank since the base")
        .unwrap_or((text, ""));
    let mut rows: Vec<(String, f64, f64)> = main.lines().filter_map(parse_row).collect();
    for row in shrank.lines().filter_map(parse_row) {
        if !rows.iter().any(|(n, _, _)| *n == row.0) {
            rows.push(row);
        }
    }
    Table { total, rows }
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.005 * a.abs().max(b.abs()) + 2.0
}

/// Same total; every allocation site jeprof lists (rows with a flat value, up to `n`)
/// has the same flat and cum in ours; and nearly all of jeprof's other rows too. (With a
/// distribution's debug files installed, binutils sometimes reports an inlined function
/// without its caller chain where the DWARF has one; such rows may differ.)
pub fn assert_parity(ours: &str, oracle: &str, n: usize) {
    let o = parse_jemsafe(ours);
    let j = parse_jeprof(oracle);
    let ctx = format!("\n--- jemsafe\n{ours}\n--- jeprof\n{oracle}");
    assert!(
        close(o.total, j.total),
        "total {} vs jeprof {}{ctx}",
        o.total,
        j.total
    );
    let ours_by_name: HashMap<&str, (f64, f64)> = o
        .rows
        .iter()
        .map(|(n, f, c)| (n.as_str(), (*f, *c)))
        .collect();
    let mut compared = 0;
    for (name, flat, cum) in j.rows.iter().filter(|r| r.1 != 0.0).take(n) {
        // jeprof names an inlined function by its name alone; jemsafe marks it
        // `(inline)` (sampling decides whether such a pc, e.g. in libc's locale code, is
        // among the allocation sites at all).
        let inlined = format!("{name} (inline)");
        let Some(&(f, c)) = ours_by_name
            .get(name.as_str())
            .or_else(|| ours_by_name.get(inlined.as_str()))
        else {
            panic!("jeprof's row {name:?} ({flat} {cum}) is missing{ctx}");
        };
        // The exception above: DWARF names a function inlined at the allocation site, so
        // ours puts the flat value on that callee (a row jeprof has no flat for) and keeps
        // the same cum here.
        let inlined_callee = f == 0.0
            && close(c, *cum)
            && o.rows.iter().any(|(callee, cf, _)| {
                callee != name
                    && close(*cf, *flat)
                    && !j.rows.iter().any(|(jn, jf, _)| jn == callee && *jf != 0.0)
            });
        assert!(
            (close(f, *flat) && close(c, *cum)) || inlined_callee,
            "{name}: flat {f} cum {c} vs jeprof {flat} {cum}{ctx}"
        );
        compared += 1;
    }
    assert!(compared > 0, "no rows compared:{ctx}");
    let others: Vec<_> = j.rows.iter().filter(|r| r.1 == 0.0).collect();
    let same = others
        .iter()
        .filter(|(name, _, cum)| {
            ours_by_name
                .get(name.as_str())
                .is_some_and(|&(f, c)| f == 0.0 && close(c, *cum))
        })
        .count();
    assert!(
        same * 10 >= others.len() * 9,
        "only {same} of jeprof's {} other rows agree{ctx}",
        others.len()
    );
}

/// A call graph in DOT (jeprof --dot or jemsafe --format dot, exact bytes): node labels'
/// names with their flat and cum, and edges (caller, callee) with their values.
#[derive(Debug)]
pub struct DotGraph {
    pub nodes: HashMap<String, (f64, f64)>,
    pub edges: HashMap<(String, String), f64>,
}

/// Parses what PrintDot writes: `N1 [label="NAME\nFLAT (P%)\rof CUM (P%)\r",...]` and
/// `N1 -> N2 [label=VALUE, ...]` (jemsafe quotes the edge label).
pub fn parse_dot(dot: &str) -> DotGraph {
    let mut by_number: HashMap<String, String> = HashMap::new();
    let mut nodes = HashMap::new();
    let mut edges = HashMap::new();
    for line in dot.lines() {
        let Some((head, rest)) = line.split_once(" [label=") else {
            continue;
        };
        if let Some((src, dst)) = head.split_once(" -> ") {
            let value = rest
                .split(',')
                .next()
                .map(|v| v.trim_matches('"'))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("edge without a value: {line}"));
            let name = |n: &str| by_number.get(n).cloned().unwrap_or_default();
            edges.insert((name(src), name(dst)), value);
            continue;
        }
        if !head.starts_with('N') {
            continue;
        }
        let label = rest
            .strip_prefix('"')
            .and_then(|r| r.split_once("\",shape=box"))
            .map(|(l, _)| l)
            .unwrap_or_else(|| panic!("node without a label: {line}"));
        let (name, numbers) = label
            .rsplit_once("\\n")
            .unwrap_or_else(|| panic!("node label without values: {line}"));
        let number = |s: &str| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no value in {line}"))
        };
        let flat = number(numbers);
        let cum = numbers
            .split_once("\\rof ")
            .map_or(flat, |(_, c)| number(c));
        by_number.insert(head.to_owned(), name.to_owned());
        nodes.insert(name.to_owned(), (flat, cum));
    }
    DotGraph { nodes, edges }
}

/// jemsafe's call graph against jeprof's (both with exact bytes): every allocation site
/// (a node with a flat value) both draw has the same flat and cum, and so do nearly all
/// other nodes and edges both draw; nearly all of jeprof's nodes are drawn by both.
///
/// "Nearly": the exception of [`assert_parity`]. With a distribution's debug files
/// installed, binutils (jeprof) sometimes names a pc by an inlined function without its
/// caller chain where the DWARF has one (libc's `call_init` inlined in
/// `__libc_start_main_impl`: jeprof's stack through it lacks `__libc_start_main_impl`),
/// so the cum of the frames above it differs by that stack.
pub fn assert_graph_parity(ours: &str, oracle: &str) {
    let o = parse_dot(ours);
    let j = parse_dot(oracle);
    let ctx = format!("\n--- jemsafe\n{ours}\n--- jeprof\n{oracle}");
    let (mut common, mut callers, mut callers_equal) = (0, 0, 0);
    let mut differ = Vec::new();
    for (name, &(flat, cum)) in &j.nodes {
        let Some(&(f, c)) = o.nodes.get(name) else {
            continue;
        };
        common += 1;
        if flat != 0.0 {
            assert!(
                close(f, flat) && close(c, cum),
                "{name}: flat {f} cum {c} vs jeprof {flat} {cum}{ctx}"
            );
            continue;
        }
        callers += 1;
        if close(f, flat) && close(c, cum) {
            callers_equal += 1;
        } else {
            differ.push(format!("{name}: cum {c} vs {cum}"));
        }
    }
    assert!(
        common > 0 && common * 10 >= j.nodes.len() * 9,
        "only {common} of jeprof's {} nodes are drawn by both{ctx}",
        j.nodes.len()
    );
    assert!(
        callers_equal * 10 >= callers * 9,
        "only {callers_equal} of {callers} nodes without a flat value agree: {differ:?}{ctx}"
    );
    let (mut shared_edges, mut edges_equal) = (0, 0);
    for (pair, &value) in &j.edges {
        if let Some(&v) = o.edges.get(pair) {
            shared_edges += 1;
            if close(v, value) {
                edges_equal += 1;
            } else {
                differ.push(format!("{pair:?}: {v} vs {value}"));
            }
        }
    }
    assert!(
        shared_edges > 0 && shared_edges * 10 >= j.edges.len() * 8,
        "only {shared_edges} of jeprof's {} edges are drawn by both{ctx}",
        j.edges.len()
    );
    assert!(
        edges_equal * 10 >= shared_edges * 9,
        "only {edges_equal} of {shared_edges} shared edges agree: {differ:?}{ctx}"
    );
    let only_jeprof: Vec<&String> = j
        .nodes
        .keys()
        .filter(|n| !o.nodes.contains_key(*n))
        .collect();
    eprintln!(
        "call graph parity: jeprof draws {} nodes and {} edges; {common} nodes and \
         {shared_edges} edges drawn by both, equal but {differ:?}; drawn by jeprof only: \
         {only_jeprof:?}",
        j.nodes.len(),
        j.edges.len()
    );
}

/// Two dumps of a real MariaDB for the oracle to read: `jemsafe sandbox` in `tmp`/sb, a
/// table of rows dumped (the first), then `tables` more tables (table cache, dictionary)
/// dumped again (the second). Returns the running sandbox, its directory and both dumps.
pub fn mariadb_grown_dumps(
    tmp: &super::TempDir,
    tables: usize,
) -> (
    super::Running,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use nix::sys::signal::Signal;
    use std::os::unix::fs::PermissionsExt;
    let start = std::time::Duration::from_secs(180);
    let dumped = std::time::Duration::from_secs(60);
    // The sandbox is a subdirectory: mysqld (as the mysql user) must be able to reach it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.join("sb");
    let mut js = super::Running::start(&["sandbox", dir.to_str().unwrap()]);
    js.wait_verified(start);
    js.err.wait_for("ready for connections", start);
    let socket = dir.join("mysqld/mysqld.sock");
    super::sql(
        &socket,
        "CREATE DATABASE r; USE r; CREATE TABLE r.t (id INT PRIMARY KEY AUTO_INCREMENT, pad TEXT) \
         ENGINE=InnoDB; INSERT INTO r.t (pad) SELECT REPEAT('x', 2000) FROM seq_1_to_2000;",
    );
    js.signal(Signal::SIGUSR1);
    let first = super::dump_path(&js.err.wait_for_nth("heap dump written: ", 1, dumped));
    let mut ddl = String::from("USE r; ");
    for i in 0..tables {
        ddl.push_str(&format!(
            "CREATE TABLE r.g{i} (id INT PRIMARY KEY, v VARCHAR(200), KEY(v)) ENGINE=InnoDB; \
             INSERT INTO r.g{i} SELECT seq, REPEAT('y', 150) FROM seq_1_to_300;"
        ));
    }
    super::sql(&socket, &ddl);
    // Distinct dump names need distinct seconds only for the time stamp; the seq differs.
    js.signal(Signal::SIGUSR1);
    let second = super::dump_path(&js.err.wait_for_nth("heap dump written: ", 2, dumped));
    (js, dir, first, second)
}
