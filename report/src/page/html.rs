//! The page as HTML: a pure function of the [`Model`]. Everything is inline (CSS, script,
//! SVG); a Content-Security-Policy meta tag forbids every fetch. Without JavaScript the
//! page is a document (tables, static SVGs of the default selection); the script
//! re-draws the interactive parts from the embedded data (`<script type="application/json">`).

use super::{top_rows, Model};
use crate::human_bytes;
use crate::memory::{OTHER, PARTS};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Label and colour of each value of a [`crate::memory::Stack`]: the parts, then what
/// is left of RSS.
fn stack_layers() -> Vec<(&'static str, &'static str)> {
    PARTS
        .iter()
        .map(|p| (p.label, p.colour))
        .chain([OTHER])
        .collect()
}

pub use super::h;

/// JSON that can sit inside `<script>`: no `<`, `>`, `&` (so no `</script>` or `<!--`),
/// and no U+2028/U+2029.
pub fn script_json(v: &impl serde::Serialize) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: f64, total: f64) -> String {
    if total.abs() > 0.0 {
        format!("{:.1}%", 100.0 * v / total)
    } else {
        "-".into()
    }
}

fn signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", human_bytes(v))
    } else {
        human_bytes(v)
    }
}

/// The Content-Security-Policy: nothing is fetched; the live page may post to itself.
pub fn csp(live: bool) -> String {
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
         img-src data:; connect-src {}; form-action {}; base-uri 'none'",
        if live { "'self'" } else { "'none'" },
        if live { "'self'" } else { "'none'" }
    )
}

/// The data the script reads: the model, and the label and colour of each value of a
/// stack (the script keeps no copy of them).
#[derive(serde::Serialize)]
struct Embedded<'a> {
    #[serde(flatten)]
    model: &'a Model,
    layers: Vec<(&'static str, &'static str)>,
}

/// The whole page.
pub fn render(model: &Model) -> String {
    let mut o = String::with_capacity(1 << 20);
    let live = model.live.is_some();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style></head>\n<body>\n<h1>{}</h1>\n",
        csp(live),
        h(&model.title),
        h(&model.title)
    );
    if let Some(l) = &model.live {
        let _ = writeln!(
            o,
            "<form id=\"dumpnow\" method=\"post\" action=\"/dump\"><input type=\"hidden\" \
             name=\"csrf\" value=\"{}\"><button type=\"submit\">Take a dump now</button> \
             <span id=\"dumpstatus\"></span></form>",
            h(&l.csrf)
        );
    }
    facts(&mut o, model);
    timeline(&mut o, model);
    selected(&mut o, model);
    growth(&mut o, model);
    let _ = write!(
        o,
        "<script type=\"application/json\" id=\"data\">{}</script>\n<script>{JS}</script>\n\
         </body></html>\n",
        script_json(&Embedded {
            model,
            layers: stack_layers(),
        })
    );
    o
}

fn facts(o: &mut String, model: &Model) {
    o.push_str("<section id=\"who\"><h2>Who and what</h2><table class=\"facts\">");
    for (k, v) in &model.facts {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", h(k), h(v));
    }
    o.push_str("</table>");
    if !model.notes.is_empty() {
        o.push_str("<div class=\"notes\" id=\"notes\"><b>Missing or left out:</b><ul>");
        for n in &model.notes {
            let _ = write!(o, "<li>{}</li>", h(n));
        }
        o.push_str("</ul></div>");
    }
    o.push_str("</section>\n");
}

fn timeline(o: &mut String, model: &Model) {
    let t = &model.timeline;
    let _ = write!(
        o,
        "<section id=\"timeline\"><h2>Memory over time</h2><p class=\"src\">From {}. \
         Hover for values; click a dump marker to select that dump.</p>",
        h(&t.source)
    );
    o.push_str(&super::chart::svg(
        t,
        &super::chart::Frame {
            title: "",
            note: None,
            standalone: false,
        },
    ));
    o.push_str("<div id=\"tip\" hidden></div>");
    // The samples as a table for readers without the chart (few rows: every nth).
    let n = t.points.len();
    if n > 0 {
        o.push_str(
            "<details><summary>Samples</summary><table class=\"num\"><tr><th>time</th>\
             <th>RSS</th>",
        );
        for p in &PARTS[..2] {
            let _ = write!(o, "<th>{}</th>", h(p.label));
        }
        o.push_str("<th>limit</th></tr>");
        let step = n.div_ceil(40).max(1);
        for p in t.points.iter().step_by(step) {
            let part = |i: usize| {
                p.parts
                    .map(|q| human_bytes(q[i] as f64))
                    .unwrap_or_default()
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                h(&crate::clock::utc_words(crate::clock::from_millis_signed(
                    p.t
                ))),
                human_bytes(p.rss as f64),
                part(0),
                part(1),
                p.limit.map(|l| human_bytes(l as f64)).unwrap_or_default()
            );
        }
        o.push_str("</table></details>");
    }
    o.push_str("</section>\n");
}

fn selected(o: &mut String, model: &Model) {
    let Some(d) = model.dumps.get(model.selected) else {
        return;
    };
    o.push_str("<section id=\"dump\"><h2>The selected dump</h2>");
    // The list of dumps: a select for the script, readable without it.
    o.push_str("<p><label>Dump: <select id=\"sel\">");
    for (i, x) in model.dumps.iter().enumerate() {
        let _ = write!(
            o,
            "<option value=\"{i}\"{}>{} {} ({})</option>",
            if i == model.selected { " selected" } else { "" },
            h(&x.when),
            h(&x.name),
            human_bytes(x.total)
        );
    }
    o.push_str("</select></label></p><div id=\"dumpbody\">");
    let _ = write!(
        o,
        "<p id=\"dumptitle\">{} taken {}{}: heap in use (profile) {}</p>",
        h(&d.name),
        h(&d.when),
        d.why
            .as_ref()
            .map(|t| format!(" ({})", h(t)))
            .unwrap_or_default(),
        human_bytes(d.total)
    );
    breakdown(o, d);
    o.push_str(
        "<h3>Where the heap is: flame graph</h3><div class=\"js\"><input id=\"search\" \
         type=\"search\" placeholder=\"search functions (text)\"> <span id=\"found\"></span> \
         <button id=\"reset\" type=\"button\">reset zoom</button></div><div id=\"flame\">",
    );
    match &d.values {
        Some(v) => flame(o, model, &tree(model, v, None), false),
        None => o.push_str("<p>This dump was summarised: no stacks on this page.</p>"),
    }
    o.push_str("</div><h3>Top functions</h3><div id=\"toptable\">");
    if let Some(v) = &d.values {
        top_table(o, model, v, d.total);
    }
    o.push_str("</div></div></section>\n");
}

fn breakdown(o: &mut String, d: &super::DumpData) {
    o.push_str("<div id=\"breakdown\">");
    match (d.parts, d.rss) {
        (Some(parts), Some(rss)) => {
            let _ = write!(
                o,
                "<p>RSS {}:</p><div class=\"bar\">",
                human_bytes(rss as f64)
            );
            let layers = stack_layers();
            for ((label, colour), v) in layers.iter().zip(parts) {
                if v == 0 {
                    continue;
                }
                let _ = write!(
                    o,
                    "<span style=\"width:{:.2}%;background:{colour}\" title=\"{label}: {} ({})\">{}</span>",
                    100.0 * v as f64 / rss.max(1) as f64,
                    human_bytes(v as f64),
                    pct(v as f64, rss as f64),
                    if v as f64 > 0.08 * rss as f64 {
                        label
                    } else {
                        ""
                    }
                );
            }
            o.push_str("</div><table class=\"num\">");
            for ((label, colour), v) in layers.iter().zip(parts) {
                let _ = write!(
                    o,
                    "<tr><td><i class=\"sw\" style=\"background:{colour}\"></i>{label}</td><td>{}</td><td>{}</td></tr>",
                    human_bytes(v as f64),
                    pct(v as f64, rss as f64)
                );
            }
            o.push_str("</table>");
            if !d.advice.is_empty() {
                o.push_str("<ul class=\"advice\">");
                for a in &d.advice {
                    let _ = write!(o, "<li>{}</li>", h(a));
                }
                o.push_str("</ul>");
            }
        }
        _ => o.push_str(
            "<p class=\"missing\">No memory breakdown for this dump (no sidecar with a memory \
             snapshot).</p>",
        ),
    }
    o.push_str("</div>");
}

/// A node of a flame graph: name id, value (width), delta (differential graphs), children.
#[derive(Debug, Default)]
pub struct Node {
    pub value: f64,
    pub delta: f64,
    pub children: BTreeMap<u32, Node>,
}

/// The call tree of `values` (root first). With `base`, a differential tree: width is the
/// larger of the two values of each stack, `delta` the change.
pub fn tree(model: &Model, values: &[(u32, f64)], base: Option<&[(u32, f64)]>) -> Node {
    let mut root = Node::default();
    let mut both: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for &(s, v) in values {
        both.entry(s).or_default().0 += v;
    }
    for &(s, v) in base.unwrap_or(&[]) {
        both.entry(s).or_default().1 += v;
    }
    for (s, (now, then)) in both {
        let Some(stack) = model.stacks.get(s as usize) else {
            continue;
        };
        let (w, d) = if base.is_some() {
            (now.max(then), now - then)
        } else {
            (now, 0.0)
        };
        if w <= 0.0 {
            continue;
        }
        let mut node = &mut root;
        node.value += w;
        node.delta += d;
        for &id in stack {
            node = node.children.entry(id).or_default();
            node.value += w;
            node.delta += d;
        }
    }
    root
}

const FW: f64 = 1200.0;
const FH: f64 = 17.0;

/// Colour of a frame: warm by name for a plain graph; red (growth) or blue (shrink) by
/// its share of change for a differential one.
fn colour(name: &str, node: &Node, diff: bool) -> String {
    if diff {
        let r = if node.value > 0.0 {
            (node.delta / node.value).clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let k = (255.0 * (1.0 - r.abs())) as u8;
        return if r >= 0.0 {
            format!("rgb(255,{k},{k})")
        } else {
            format!("rgb({k},{k},255)")
        };
    }
    let hsh = name
        .bytes()
        .fold(5381u32, |a, b| a.wrapping_mul(33) ^ u32::from(b));
    format!(
        "rgb({},{},{})",
        205 + hsh % 50,
        (hsh >> 8) % 180 + 40,
        (hsh >> 16) % 55
    )
}

/// A static flame graph (root at the top), frames narrower than a pixel left out.
pub fn flame(o: &mut String, model: &Model, root: &Node, diff: bool) {
    fn depth(n: &Node) -> usize {
        1 + n.children.values().map(depth).max().unwrap_or(0)
    }
    let total = root.value.max(1.0);
    let rows = depth(root).min(200);
    let height = rows as f64 * FH + 4.0;
    let _ = write!(
        o,
        "<svg class=\"flame\" viewBox=\"0 0 {FW} {height}\" width=\"100%\" role=\"img\">"
    );
    #[allow(clippy::too_many_arguments)]
    fn walk(
        o: &mut String,
        model: &Model,
        node: &Node,
        name: Option<u32>,
        x: f64,
        level: usize,
        total: f64,
        diff: bool,
    ) {
        let w = node.value / total * FW;
        if w < 1.0 || level >= 200 {
            return;
        }
        let label = match name {
            Some(id) => model.names.get(id as usize).map_or("?", String::as_str),
            None => "all",
        };
        let y = level as f64 * FH;
        let detail = if diff {
            format!("{} change {}", h(label), signed(node.delta))
        } else {
            format!(
                "{}: {} ({})",
                h(label),
                human_bytes(node.value),
                pct(node.value, total)
            )
        };
        let fits = ((w - 6.0) / 7.0).max(0.0) as usize;
        let text: String = if label.chars().count() <= fits {
            label.to_owned()
        } else if fits > 2 {
            label.chars().take(fits - 2).collect::<String>() + ".."
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<g class=\"fr\"><title>{detail}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            FH - 1.0,
            colour(label, node, diff),
            x + 3.0,
            y + FH - 5.0,
            h(&text)
        );
        let mut cx = x;
        for (id, child) in &node.children {
            walk(o, model, child, Some(*id), cx, level + 1, total, diff);
            cx += child.value / total * FW;
        }
    }
    walk(o, model, root, None, 0.0, 0, total, diff);
    o.push_str("</svg>");
}

fn top_table(o: &mut String, model: &Model, values: &[(u32, f64)], total: f64) {
    o.push_str(
        "<table id=\"top\" class=\"num sortable\"><thead><tr><th data-k=\"0\">function</th>\
         <th data-k=\"1\">flat</th><th data-k=\"2\">flat%</th><th data-k=\"3\">cum</th>\
         <th data-k=\"4\">cum%</th></tr></thead><tbody>",
    );
    for (id, flat, cum) in top_rows(model, values).into_iter().take(60) {
        let _ = write!(
            o,
            "<tr><td class=\"fn\">{}</td><td data-v=\"{flat}\">{}</td><td>{}</td>\
             <td data-v=\"{cum}\">{}</td><td>{}</td></tr>",
            h(model.names.get(id as usize).map_or("?", String::as_str)),
            human_bytes(flat),
            pct(flat, total),
            human_bytes(cum),
            pct(cum, total)
        );
    }
    o.push_str("</tbody></table>");
}

fn growth(o: &mut String, model: &Model) {
    o.push_str("<section id=\"growth\"><h2>What grew</h2>");
    let (Some(b), Some(s)) = (model.dumps.get(model.base), model.dumps.get(model.selected)) else {
        o.push_str("</section>\n");
        return;
    };
    let _ = write!(
        o,
        "<p id=\"growthtitle\">From {} ({}) to {} ({}): heap in use {} &rarr; {} ({})</p>",
        h(&b.name),
        h(&b.when),
        h(&s.name),
        h(&s.when),
        human_bytes(b.total),
        human_bytes(s.total),
        signed(s.total - b.total)
    );
    o.push_str(
        "<h3>Differential flame graph <small>(red: grew, blue: shrank; width: the larger of \
         the two)</small></h3><div id=\"diffflame\">",
    );
    match (&s.values, &b.values) {
        (Some(sv), Some(bv)) if model.base != model.selected => {
            flame(o, model, &tree(model, sv, Some(bv)), true)
        }
        _ => o.push_str("<p>No second dump with stacks to compare with.</p>"),
    }
    o.push_str("</div><h3>Leak suspects: stacks by steady growth over the whole series</h3>");
    if model.leaks.is_empty() {
        o.push_str("<p>Nothing grew steadily (or there is a single dump).</p>");
    } else {
        o.push_str(
            "<table id=\"leaks\" class=\"num\"><thead><tr><th>rank</th><th>gained</th>\
             <th>per hour</th><th>grew in</th><th>first &rarr; last</th><th>where (innermost \
             frame) and stack</th></tr></thead><tbody>",
        );
        for (i, r) in model.leaks.iter().enumerate() {
            let name = |id: &u32| model.names.get(*id as usize).map_or("?", String::as_str);
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{} &rarr; {}</td>\
                 <td class=\"fn\"><details><summary>{}</summary><ol>",
                i + 1,
                signed(r.gained),
                r.per_hour
                    .map(|p| format!("{}/h", signed(p)))
                    .unwrap_or_else(|| "-".into()),
                r.grew,
                r.intervals,
                human_bytes(r.first),
                human_bytes(r.last),
                h(r.frames.first().map(name).unwrap_or("?"))
            );
            for f in &r.frames {
                let _ = write!(o, "<li>{}</li>", h(name(f)));
            }
            o.push_str("</ol></details></td></tr>");
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::super::{DumpData, LeakRow, Marker, Point, Timeline};
    use super::*;

    fn model() -> Model {
        let dump = |i: i64, values: Vec<(u32, f64)>| DumpData {
            name: format!("mysqld.1.{i}.heap"),
            t: Some(1_700_000_000_000 + i * 60_000),
            when: format!("t{i}"),
            trigger: Some("usr1".into()),
            why: Some("usr1".into()),
            total: values.iter().map(|v| v.1).sum(),
            rss: Some(1000 << 20),
            parts: Some([500 << 20, 100 << 20, 0, 10 << 20, 300 << 20, 90 << 20, 0, 0]),
            advice: vec!["fewer arenas <please>".into()],
            values: Some(values),
        };
        Model {
            title: "mariadbd pid 1 memory".into(),
            facts: vec![("host".into(), "db1".into())],
            notes: vec!["a note".into()],
            names: vec![
                "main".into(),
                "leak_site</script><script>alert(1)</script>".into(),
                "other".into(),
            ],
            stacks: vec![vec![0, 1], vec![0, 2]],
            dumps: vec![
                dump(0, vec![(0, 1000.0), (1, 5000.0)]),
                dump(1, vec![(0, 9000.0), (1, 4000.0)]),
            ],
            timeline: Timeline {
                source: "test".into(),
                points: vec![
                    Point {
                        t: 1_700_000_000_000,
                        rss: 900 << 20,
                        parts: Some([400 << 20, 0, 0, 0, 0, 0, 0, 500 << 20]),
                        limit: Some(2000 << 20),
                        run: 0,
                    },
                    Point {
                        t: 1_700_000_060_000,
                        rss: 1000 << 20,
                        parts: Some([500 << 20, 0, 0, 0, 0, 0, 0, 500 << 20]),
                        limit: Some(2000 << 20),
                        run: 0,
                    },
                ],
                markers: vec![
                    Marker {
                        t: 1_700_000_000_000,
                        kind: "dump".into(),
                        label: "mysqld.1.0.heap".into(),
                        why: None,
                        dump: Some(0),
                    },
                    Marker {
                        t: 1_700_000_060_000,
                        kind: "dump".into(),
                        label: "mysqld.1.1.heap".into(),
                        why: Some("limit90: RSS 691 MiB of 768 MiB".into()),
                        dump: Some(1),
                    },
                ],
            },
            selected: 1,
            base: 0,
            leaks: vec![LeakRow {
                frames: vec![1, 0],
                gained: 8000.0,
                per_hour: Some(8000.0 * 60.0),
                grew: 1,
                intervals: 1,
                first: 1000.0,
                last: 9000.0,
            }],
            live: None,
        }
    }

    #[test]
    fn names_never_close_the_script_or_open_a_tag() {
        let page = render(&model());
        assert!(
            !page.contains("</script><script>alert"),
            "raw name in the page"
        );
        assert_eq!(page.matches("<script").count(), 2);
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(page.contains("leak_site&lt;/script&gt;"));
        assert!(page.contains("leak_site\\u003c/script\\u003e"));
        assert!(page.contains("fewer arenas &lt;please&gt;"));
    }

    #[test]
    fn the_page_has_every_section_and_forbids_the_network() {
        let page = render(&model());
        for id in [
            "id=\"who\"",
            "id=\"timeline\"",
            "id=\"dump\"",
            "id=\"growth\"",
            "id=\"leaks\"",
            "id=\"top\"",
            "class=\"flame\"",
        ] {
            assert!(page.contains(id), "{id} missing");
        }
        assert!(page.contains("default-src 'none'"));
        assert!(page.contains("connect-src 'none'"));
        assert_eq!(page.matches("class=\"marker dump\"").count(), 2);
        assert!(page.contains("(limit90: RSS 691 MiB of 768 MiB)</title>"));
        // Nothing is loaded from anywhere.
        for bad in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!page.contains(bad), "{bad}");
        }
        // The growth ranking's first row is the leak site, with its growth per hour.
        let leaks = &page[page.find("id=\"leaks\"").unwrap()..];
        assert!(leaks.contains("+7.8 KiB"), "{leaks}");
        assert!(leaks.contains("/h"));
    }

    #[test]
    fn a_differential_tree_keeps_shrinking_stacks_with_a_negative_delta() {
        let m = model();
        let t = tree(
            &m,
            m.dumps[1].values.as_ref().unwrap(),
            m.dumps[0].values.as_deref(),
        );
        let main = &t.children[&0];
        assert_eq!(main.children[&1].delta, 8000.0);
        assert_eq!(main.children[&1].value, 9000.0);
        assert_eq!(main.children[&2].delta, -1000.0);
        assert_eq!(main.children[&2].value, 5000.0);
    }

    #[test]
    fn the_live_page_may_post_to_itself_only() {
        let mut m = model();
        m.live = Some(super::super::Live {
            csrf: "tok\"en".into(),
        });
        let page = render(&m);
        assert!(page.contains("connect-src 'self'"));
        assert!(page.contains("value=\"tok&quot;en\""));
    }
}
