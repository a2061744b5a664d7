//! The call graph (`report --format dot`): jeprof's `--dot` output (PrintDot) from the
//! same numbers as the text report. Nodes are functions (flat and cumulative values),
//! edges caller -> callee weighted by the values flowing through them, with jeprof's
//! selection: the `node_count` functions of largest |cum| above `node_fraction` of the
//! total, and per edge (largest first) kept when it is its callee's first, else when
//! above `edge_fraction` and neither end has `max_degree` edges yet. With a base the
//! values are differences; selection goes by absolute value, as jeprof's does.
//!
//! A pure function: names in, DOT text out. Names are hostile input (a dump names any
//! symbol it likes): every label is escaped for DOT here and nowhere else.

use crate::aggregate::{FlatCum, Metric, NameProfile};
use crate::text::{percent, value, TextOptions};
use std::collections::HashMap;
use std::fmt::Write;

/// jeprof's `--nodecount`, `--nodefraction`, `--edgefraction`, `--maxdegree`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphOptions {
    /// Functions drawn at most.
    pub node_count: usize,
    /// Functions whose |cum| is at most this fraction of the total are left out.
    pub node_fraction: f64,
    /// Edges whose |value| is at most this fraction of the total are left out (unless
    /// the only way into their callee).
    pub edge_fraction: f64,
    /// Edges kept per function, in and out.
    pub max_degree: usize,
    /// Lines at least 1 wide: for SVG, which draws thinner ones poorly (jeprof --svg).
    pub for_svg: bool,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            node_count: 80,
            node_fraction: 0.005,
            edge_fraction: 0.001,
            max_degree: 8,
            for_svg: false,
        }
    }
}

/// The graph and, when no function passed the limits, a note saying so.
pub struct Graph {
    pub dot: String,
    pub note: Option<String>,
}

/// `name` as it goes inside a DOT string: jeprof's line breaks (at runs of whitespace
/// and at `::`), quotes and backslashes escaped, other control characters shown as
/// `\xNN` (they would make the SVG invalid XML).
pub fn label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() || c == '\x0b' {
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_whitespace() || *n == '\x0b')
            {
                chars.next();
            }
            out.push_str("\\n");
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push_str("\\n");
        } else if c == '"' || c == '\\' {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let _ = write!(out, "\\\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A heading line (a title, a path) escaped for a DOT string, on one line.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Perl's `int()`: toward zero.
fn limit(fraction: f64, total: f64) -> f64 {
    (fraction * total).trunc()
}

/// The call graph of `np` for `metric`. `heading`: the legend's first lines (what, from
/// where); `exact`: values in bytes (jeprof's `--show_bytes`) rather than human units.
pub fn render(
    np: &NameProfile,
    metric: Metric,
    exact: bool,
    heading: &[String],
    opts: &GraphOptions,
) -> Graph {
    let fc = FlatCum::of(np);
    let m = metric as usize;
    let vo = TextOptions {
        metric,
        top: 0,
        exact,
        diff: false,
    };
    let unit = match (metric.is_bytes(), exact) {
        (false, _) => " objects",
        (true, true) => " B",
        (true, false) => "",
    };
    let shown = |v: f64| format!("{}{unit}", value(v, &vo));
    let local_total = fc.total[m];
    let overall_total = np.total[m];
    let node_limit = limit(opts.node_fraction, local_total);
    let edge_limit = limit(opts.edge_fraction, local_total);

    // Nodes: largest |cum| first, then by name; cut at node_count and node_limit.
    let mut list: Vec<(u32, f64)> = fc.cum.iter().map(|(&id, c)| (id, c[m])).collect();
    list.sort_by(|a, b| {
        b.1.abs()
            .partial_cmp(&a.1.abs())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| np.names.get(a.0).cmp(np.names.get(b.0)))
    });
    let mut count = opts.node_count.min(list.len());
    while count > 0 && list[count - 1].1.abs() <= node_limit {
        count -= 1;
    }
    list.truncate(count);

    let mut out = String::new();
    let first = heading.first().map(String::as_str).unwrap_or("");
    let _ = writeln!(out, "digraph \"{}\" {{", plain(first));
    let _ = writeln!(out, "node [width=0.375,height=0.25];");
    let mut legend: Vec<String> = heading.iter().map(|h| plain(h)).collect();
    legend.push(format!("Total: {}", shown(overall_total)));
    legend.push(format!("Focusing on: {}", shown(local_total)));
    legend.push(format!("Dropped nodes with <= {} abs", shown(node_limit)));
    legend.push(format!("Dropped edges with <= {} abs", shown(edge_limit)));
    let _ = writeln!(
        out,
        "Legend [shape=box,fontsize=24,shape=plaintext,label=\"{}\\l\"];",
        legend.join("\\l")
    );

    let mut node: HashMap<u32, usize> = HashMap::with_capacity(list.len());
    for (i, &(id, c)) in list.iter().enumerate() {
        let f = fc.flat.get(&id).map_or(0.0, |v| v[m]);
        let fs = if local_total > 0.0 {
            8.0 + 50.0 * (f / local_total).abs().sqrt()
        } else {
            8.0
        };
        node.insert(id, i + 1);
        let extra = if f != c {
            format!("\\rof {} ({})", value(c, &vo), percent(c, local_total))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "N{} [label=\"{}\\n{} ({}){}\\r\",shape=box,fontsize={:.1}];",
            i + 1,
            label_name(np.names.get(id)),
            value(f, &vo),
            percent(f, local_total),
            extra,
            fs
        );
    }

    // Edges: every caller -> callee step of every stack (recursion included), between
    // drawn nodes.
    let mut edges: HashMap<(u32, u32), f64> = HashMap::new();
    for (stack, v) in &np.stacks {
        for pair in stack.windows(2) {
            let (dst, src) = (pair[0], pair[1]);
            if node.contains_key(&src) && node.contains_key(&dst) {
                *edges.entry((src, dst)).or_insert(0.0) += v[m];
            }
        }
    }
    let mut edges: Vec<((u32, u32), f64)> = edges.into_iter().collect();
    // jeprof leaves ties in hash order; here they go by name, so output is reproducible.
    edges.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| np.names.get(a.0 .0).cmp(np.names.get(b.0 .0)))
            .then_with(|| np.names.get(a.0 .1).cmp(np.names.get(b.0 .1)))
    });
    let mut indegree: HashMap<u32, usize> = HashMap::new();
    let mut outdegree: HashMap<u32, usize> = HashMap::new();
    for ((src, dst), n) in edges {
        let ins = indegree.get(&dst).copied().unwrap_or(0);
        let outs = outdegree.get(&src).copied().unwrap_or(0);
        let keep =
            ins == 0 || (n.abs() > edge_limit && outs < opts.max_degree && ins < opts.max_degree);
        if !keep {
            continue;
        }
        *outdegree.entry(src).or_insert(0) += 1;
        *indegree.entry(dst).or_insert(0) += 1;
        let fraction = if local_total != 0.0 {
            (3.0 * n / local_total).abs().min(1.0)
        } else {
            0.0
        };
        let mut width = fraction * 2.0;
        if width < 1.0 && opts.for_svg {
            width = 1.0;
        }
        let weight = n.abs().powf(0.7).min(100000.0).trunc();
        let dashed = if np.names.get(dst).contains("(inline)") {
            ",dashed"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "N{} -> N{} [label=\"{}\", weight={}, style=\"setlinewidth({:.6}){}\"];",
            node[&src],
            node[&dst],
            value(n, &vo),
            weight,
            width,
            dashed
        );
    }
    out.push_str("}\n");
    let note = list.is_empty().then(|| {
        format!(
            "no function holds more than {} (--node-fraction {}): the graph shows only its legend",
            shown(node_limit),
            opts.node_fraction
        )
    });
    Graph { dot: out, note }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::profile_of_names as profile;

    fn graph(np: &NameProfile, opts: &GraphOptions) -> String {
        render(np, Metric::InuseSpace, true, &["prog".into()], opts).dot
    }

    /// The label of each node, by node number.
    fn nodes(dot: &str) -> Vec<String> {
        dot.lines()
            .filter(|l| l.starts_with('N') && !l.contains("->"))
            .map(|l| l.split('"').nth(1).unwrap_or("").to_owned())
            .collect()
    }

    fn edges(dot: &str) -> Vec<String> {
        dot.lines()
            .filter(|l| l.contains("->"))
            .map(|l| l.to_owned())
            .collect()
    }

    #[test]
    fn labels_carry_flat_and_cum_like_jeprofs() {
        let np = profile(&[(&["leaf", "mid", "main"], 300.0), (&["mid", "main"], 100.0)]);
        let dot = graph(&np, &GraphOptions::default());
        let n = nodes(&dot);
        // Largest |cum| first, then by name.
        assert_eq!(
            n,
            vec![
                "main\\n0 (0.0%)\\rof 400 (100.0%)\\r",
                "mid\\n100 (25.0%)\\rof 400 (100.0%)\\r",
                "leaf\\n300 (75.0%)\\r",
            ]
        );
        assert!(dot.starts_with("digraph \"prog\" {\n"), "{dot}");
        assert!(
            dot.contains("label=\"prog\\lTotal: 400 B\\lFocusing on: 400 B\\l"),
            "{dot}"
        );
        // Font size grows with flat: 8 + 50 * sqrt(300/400).
        assert!(dot.contains("fontsize=51.3]"), "{dot}");
        let e = edges(&dot);
        assert_eq!(e.len(), 2, "{dot}");
        assert_eq!(
            e[0],
            "N1 -> N2 [label=\"400\", weight=66, style=\"setlinewidth(2.000000)\"];"
        );
        assert!(e[1].starts_with("N2 -> N3 [label=\"300\""), "{dot}");
        assert!(dot.contains("Dropped nodes with <= 2 B abs"), "{dot}");
    }

    #[test]
    fn node_count_and_node_fraction_cut_the_smallest() {
        let mut stacks: Vec<(Vec<String>, f64)> = Vec::new();
        for i in 0..10 {
            stacks.push((vec![format!("f{i}"), "main".into()], 100.0 * (i + 1) as f64));
        }
        stacks.push((vec!["tiny".into(), "main".into()], 1.0));
        let refs: Vec<(Vec<&str>, f64)> = stacks
            .iter()
            .map(|(s, v)| (s.iter().map(String::as_str).collect(), *v))
            .collect();
        let refs: Vec<(&[&str], f64)> = refs.iter().map(|(s, v)| (&s[..], *v)).collect();
        let np = profile(&refs);
        // total 5501: node limit int(0.005 * 5501) = 27: `tiny` (1) is dropped.
        let all = nodes(&graph(&np, &GraphOptions::default()));
        assert_eq!(all.len(), 11);
        assert!(!all.iter().any(|l| l.starts_with("tiny")));
        let four = GraphOptions {
            node_count: 4,
            ..Default::default()
        };
        let n = nodes(&graph(&np, &four));
        let names: Vec<&str> = n.iter().map(|l| l.split('\\').next().unwrap()).collect();
        assert_eq!(names, vec!["main", "f9", "f8", "f7"]);
        // A fraction that no function passes: the legend alone, and a note.
        let none = GraphOptions {
            node_fraction: 1.0,
            ..Default::default()
        };
        let g = render(&np, Metric::InuseSpace, true, &[], &none);
        assert!(nodes(&g.dot).is_empty() && g.note.is_some(), "{}", g.dot);
    }

    #[test]
    fn max_degree_and_edge_fraction_drop_edges_but_keep_one_way_in() {
        // main calls 12 functions; each is reached only from main.
        let names: Vec<String> = (0..12).map(|i| format!("g{i:02}")).collect();
        let mut stacks: Vec<(Vec<&str>, f64)> = names
            .iter()
            .map(|n| (vec![n.as_str(), "main"], 1000.0))
            .collect();
        // `x` is reached from g00 (big) and from g01 (below the edge fraction).
        stacks.push((vec!["x", "g00", "main"], 5000.0));
        stacks.push((vec!["x", "g01", "main"], 10.0));
        let refs: Vec<(&[&str], f64)> = stacks.iter().map(|(s, v)| (&s[..], *v)).collect();
        let np = profile(&refs);
        let dot = graph(&np, &GraphOptions::default());
        let e = edges(&dot);
        // Every g is kept: each edge is the only one into its callee, whatever main's
        // out-degree; g01 -> x (10 <= int(0.001 * 17010) = 17) is dropped.
        assert_eq!(e.len(), 13, "{dot}");
        let two = GraphOptions {
            max_degree: 1,
            edge_fraction: 0.0,
            ..Default::default()
        };
        // max_degree 1: x already has its way in (from g00).
        assert_eq!(edges(&graph(&np, &two)).len(), 13);
        let zero = GraphOptions {
            edge_fraction: 0.0,
            ..Default::default()
        };
        assert_eq!(edges(&graph(&np, &zero)).len(), 14);
    }

    #[test]
    fn hostile_names_are_escaped_for_dot() {
        assert_eq!(label_name("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(label_name("ns::f(int,  char)"), "ns\\nf(int,\\nchar)");
        assert_eq!(
            label_name("x\"];\nN9 [label=\"y"),
            "x\\\"];\\nN9\\n[label=\\\"y"
        );
        assert_eq!(label_name("bell\x07"), "bell\\\\x07");
        let np = profile(&[(&["evil\"} digraph {", "main"], 10.0)]);
        let dot = graph(&np, &GraphOptions::default());
        assert!(dot.contains("evil\\\"}\\ndigraph\\n{\\n10"), "{dot}");
        // Exactly one graph: the name did not close it.
        assert_eq!(dot.matches("\ndigraph").count(), 0);
        assert_eq!(dot.lines().filter(|l| *l == "}").count(), 1);
    }

    /// The escaping holds for Graphviz itself: hostile names make one valid graph, one box
    /// each, whose SVG shows them as text.
    #[test]
    fn graphviz_draws_hostile_names_as_text() {
        use std::io::Write;
        let hostile = [
            "evil\"]; N1 -> N1; x [label=\"",
            "back\\slash\\",
            "new\nline\u{1}bell",
            "<b>html</b> & \\N \\G",
        ];
        let stacks: Vec<(Vec<&str>, f64)> =
            hostile.iter().map(|&n| (vec![n, "main"], 1000.0)).collect();
        let refs: Vec<(&[&str], f64)> = stacks.iter().map(|(s, v)| (&s[..], *v)).collect();
        let dot = graph(&profile(&refs), &GraphOptions::default());
        let mut child = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run Graphviz's dot (apt-get install graphviz)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{err}\n{dot}");
        let svg = String::from_utf8_lossy(&out.stdout);
        // The legend, main and the four: nothing a name said became a node or an edge.
        assert_eq!(svg.matches("class=\"node\"").count(), 6, "{svg}");
        assert_eq!(svg.matches("class=\"edge\"").count(), 4, "{svg}");
        assert!(svg.contains("&lt;b&gt;html&lt;/b&gt;"), "{svg}");
        assert!(svg.contains("back\\slash\\"), "{svg}");
        assert!(svg.contains("bell") && !svg.contains('\u{1}'), "{svg}");
        assert!(svg.contains("\\N"), "{svg}");
    }

    #[test]
    fn growth_with_a_base_selects_by_absolute_value_and_prints_negatives() {
        let np = profile(&[(&["grow", "main"], 1000.0), (&["shrink", "main"], -3000.0)]);
        let dot = graph(&np, &GraphOptions::default());
        let n = nodes(&dot);
        // |cum|: main 2000, shrink 3000, grow 1000.
        assert_eq!(
            n,
            vec![
                "shrink\\n-3000 (150.0%)\\r",
                "main\\n0 (-0.0%)\\rof -2000 (100.0%)\\r",
                "grow\\n1000 (-50.0%)\\r",
            ]
        );
        // The total is negative: so are the limits, and no edge falls below them.
        assert!(dot.contains("Dropped nodes with <= -10 B abs"), "{dot}");
        let e = edges(&dot);
        assert_eq!(e.len(), 2, "{dot}");
        assert!(e[0].starts_with("N2 -> N3 [label=\"1000\""), "{dot}");
        assert!(e[1].starts_with("N2 -> N1 [label=\"-3000\""), "{dot}");
    }

    #[test]
    fn svg_lines_are_at_least_one_wide_and_inlined_callees_dashed() {
        let np = profile(&[
            (&["leaf (inline)", "main"], 1.0),
            (&["big", "main"], 10000.0),
        ]);
        let opts = GraphOptions {
            for_svg: true,
            node_fraction: 0.0,
            ..Default::default()
        };
        let dot = graph(&np, &opts);
        let thin = edges(&dot)
            .into_iter()
            .find(|e| e.contains("label=\"1\""))
            .unwrap();
        assert!(
            thin.ends_with("style=\"setlinewidth(1.000000),dashed\"];"),
            "{thin}"
        );
    }
}
