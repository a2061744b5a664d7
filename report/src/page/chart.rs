//! The memory chart, one renderer for `jemsafe timeline --format svg` and the page: RSS's
//! parts ([`crate::memory::PARTS`]) stacked over time, RSS and the memory limit as lines,
//! dumps, starts, exits and OOM kills as markers (a dump's says why it was taken), the
//! peak marked, a legend. Plain SVG (no script, no external font): the standalone file
//! pastes into an incident report; the page's script only adds hover and clicks. A pure
//! function of a [`Timeline`].

use super::{h, Marker, Point, Timeline};
use crate::clock;
use crate::human_bytes;
use crate::memory::{OTHER, PARTS};
use std::fmt::Write as _;
use std::time::Duration;

/// The chart's geometry, for both its uses (the page's script reads the plot area from
/// the `data-` attributes, never from copies of these).
pub const W: f64 = 1200.0;
pub const H: f64 = 560.0;
const LEFT: f64 = 80.0;
/// Room for the legend.
const RIGHT: f64 = 200.0;
/// Room for the title and a note under it.
const TOP: f64 = 50.0;
/// Room for the time axis.
const BOTTOM: f64 = 50.0;

/// Ticks on either axis at most: a chart has 4 to 8; this is a bound, not a layout.
const MAX_TICKS: usize = 32;

/// The top layer of readings without a breakdown: RSS alone.
const NO_BREAKDOWN: (&str, &str) = ("RSS (no breakdown)", "#bab0ac");

/// The layers, bottom first: the parts, what is left of RSS, RSS without a breakdown.
const LAYERS: usize = PARTS.len() + 2;

fn layer(i: usize) -> (&'static str, &'static str) {
    match PARTS.get(i) {
        Some(p) => (p.label, p.colour),
        None if i == PARTS.len() => OTHER,
        None => NO_BREAKDOWN,
    }
}

fn layers_of(p: &Point) -> [u64; LAYERS] {
    let mut v = [0u64; LAYERS];
    match &p.parts {
        Some(stack) => v[..stack.len()].copy_from_slice(stack),
        None => v[LAYERS - 1] = p.rss,
    }
    v
}

/// Colour of a marker by its kind (`dump`, `oom`, `exit`, `start`).
fn marker_colour(kind: &str) -> &'static str {
    match kind {
        "dump" => "#1f77b4",
        "oom" => "#d62728",
        "exit" => "#7f7f7f",
        _ => "#2ca02c",
    }
}

/// A round axis step (a power of two, at least 1 MiB) for `max` bytes in 4 to 8 ticks.
pub fn tick_step(max: u64) -> u64 {
    (max / 5)
        .max(1 << 20)
        .checked_next_power_of_two()
        .unwrap_or(1 << 63)
}

/// The value axis's ticks: 0, `step`, 2 × `step`... up to `ymax`, at most [`MAX_TICKS`]
/// of them whatever the values (a sample's RSS is read from a file: a loop bounded by
/// the value wrapped a u64 and allocated until the kernel killed it).
fn value_ticks(step: u64, ymax: f64) -> impl Iterator<Item = u64> {
    let count = (ymax / step.max(1) as f64)
        .floor()
        .clamp(0.0, MAX_TICKS as f64) as u64;
    // `as` from f64 saturates: a tick beyond u64 is shown as its maximum.
    (0..=count).map(move |i| (i as f64 * step as f64) as u64)
}

/// Round durations, for time ticks and the rows of `jemsafe timeline`'s text view.
const STEPS: &[u64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/// The smallest round step that shows `span` in at most `rows` rows.
pub fn choose_step(span: Duration, rows: usize) -> Duration {
    let rows = rows.max(1) as u64;
    let needed = span.as_secs().div_ceil(rows).max(1);
    let secs = STEPS
        .iter()
        .copied()
        .find(|s| *s >= needed)
        .unwrap_or_else(|| needed.div_ceil(86400) * 86400);
    Duration::from_secs(secs)
}

/// Where the values sit on the chart: the value axis's top and step, the memory limit
/// and whether it is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub step: u64,
    pub ymax: f64,
    /// The memory limit that applied when RSS was highest (else the last one known): a
    /// reading of another limit (the machine's memory, read by a dump with no cgroup)
    /// never stands for it.
    pub limit: Option<u64>,
    /// It is drawn: within 3 times the highest RSS (a limit far above what mysqld used,
    /// the machine's memory, would flatten the chart; it is named instead).
    pub limit_drawn: bool,
}

/// The value axis for `points`: from 0 to a round step above the highest RSS (and the
/// limit when drawn), at least 1 MiB.
pub fn scale(points: &[Point]) -> Scale {
    let max_rss = points.iter().map(|p| p.rss).max().unwrap_or(0);
    let at_peak = points
        .iter()
        .filter(|p| p.rss == max_rss)
        .find_map(|p| p.limit);
    let limit = at_peak.or_else(|| points.iter().rev().find_map(|p| p.limit));
    let limit_drawn = limit.is_some_and(|l| l <= max_rss.saturating_mul(3).max(1 << 20));
    let top = max_rss
        .max(if limit_drawn { limit.unwrap_or(0) } else { 0 })
        .max(1 << 20);
    let step = tick_step(top);
    let ymax = (top as f64 * 1.05 / step as f64).ceil() * step as f64;
    Scale {
        step,
        ymax,
        limit,
        limit_drawn,
    }
}

/// How the chart is framed: alone in a file, or inside the page.
pub struct Frame<'a> {
    /// Over the chart (empty: none).
    pub title: &'a str,
    /// A warning under the title (a damaged timeline).
    pub note: Option<&'a str>,
    /// A file of its own: the XML declaration, a size, a white background.
    pub standalone: bool,
}

/// The chart of `t`.
pub fn svg(t: &Timeline, frame: &Frame) -> String {
    let mut out = String::new();
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let times = t
        .points
        .iter()
        .map(|p| p.t)
        .chain(t.markers.iter().map(|m| m.t));
    let (t0, t1) = times.fold((i64::MAX, i64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if frame.standalone {
        let _ = writeln!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, Arial, \
             sans-serif\" font-size=\"12\">\n<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" \
             fill=\"white\"/>"
        );
    } else {
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"tl\" viewBox=\"0 0 {W} {H}\" \
             font-size=\"12\" role=\"img\" data-t0=\"{t0}\" data-t1=\"{t1}\" data-x0=\"{x0}\" \
             data-x1=\"{x1}\" data-y0=\"{y0}\" data-y1=\"{y1}\">"
        );
    }
    if !frame.title.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>",
            h(frame.title)
        );
    }
    if let Some(note) = frame.note {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"42\" fill=\"#d62728\">{}</text>",
            h(note)
        );
    }
    if t0 > t1 {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{:.1}\">no samples and no dumps with a time: nothing to \
             draw</text>\n</svg>",
            TOP + 20.0
        );
        return out;
    }
    let span_ms = (i128::from(t1) - i128::from(t0)).max(1000) as f64;
    let x = |ms: i64| x0 + (x1 - x0) * ((i128::from(ms) - i128::from(t0)) as f64 / span_ms);
    let sc = scale(&t.points);
    let y = |v: u64| y1 - (y1 - y0) * v as f64 / sc.ymax;

    axes(&mut out, &sc, t0, t1, span_ms, &x, &y);

    // One stacked area per process run, one reading per pixel column (its highest RSS).
    let mut runs: Vec<Vec<&Point>> = Vec::new();
    for p in &t.points {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|q| q.run == p.run) => {
                let col = x(p.t).floor();
                match run.last_mut() {
                    Some(prev) if x(prev.t).floor() == col => {
                        if p.rss > prev.rss {
                            *prev = p;
                        }
                    }
                    _ => run.push(p),
                }
            }
            _ => runs.push(vec![p]),
        }
    }
    for run in &runs {
        let mut xs: Vec<f64> = run.iter().map(|p| x(p.t)).collect();
        let mut stacks: Vec<[u64; LAYERS]> = run.iter().map(|p| layers_of(p)).collect();
        let mut rss: Vec<u64> = run.iter().map(|p| p.rss).collect();
        if xs.len() == 1 {
            // One reading (a short run): a narrow band rather than nothing.
            xs.push(xs[0] + 3.0);
            stacks.push(stacks[0]);
            rss.push(rss[0]);
        }
        let mut below = vec![0u64; xs.len()];
        for i in 0..LAYERS {
            if stacks.iter().all(|s| s[i] == 0) {
                continue;
            }
            let above: Vec<u64> = below
                .iter()
                .zip(&stacks)
                .map(|(b, s)| b.saturating_add(s[i]))
                .collect();
            let mut points = String::new();
            for (xi, v) in xs.iter().zip(&above) {
                let _ = write!(points, "{xi:.1},{:.1} ", y(*v));
            }
            for (xi, v) in xs.iter().zip(&below).rev() {
                let _ = write!(points, "{xi:.1},{:.1} ", y(*v));
            }
            let (label, colour) = layer(i);
            let _ = writeln!(
                out,
                "<polygon class=\"layer\" points=\"{}\" fill=\"{colour}\" fill-opacity=\"0.85\" \
                 stroke=\"none\"><title>{}</title></polygon>",
                points.trim_end(),
                h(label)
            );
            below = above;
        }
        let line: Vec<String> = xs
            .iter()
            .zip(&rss)
            .map(|(xi, v)| format!("{xi:.1},{:.1}", y(*v)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline class=\"rss\" points=\"{}\" fill=\"none\" stroke=\"#222\" \
             stroke-width=\"1.2\"/>",
            line.join(" ")
        );
        if sc.limit_drawn {
            let line: Vec<String> = run
                .iter()
                .filter_map(|p| {
                    // Another limit far above the chart is not drawn through its top.
                    let l = p.limit.filter(|l| *l as f64 <= sc.ymax)?;
                    Some(format!("{:.1},{:.1}", x(p.t), y(l)))
                })
                .collect();
            if !line.is_empty() {
                let _ = writeln!(
                    out,
                    "<polyline class=\"limit\" points=\"{}\" fill=\"none\" stroke=\"#d62728\" \
                     stroke-width=\"1.5\" stroke-dasharray=\"6,4\"/>",
                    line.join(" ")
                );
            }
        }
    }
    if let (Some(l), true) = (sc.limit, sc.limit_drawn) {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\">limit {}</text>",
            x0 + 4.0,
            y(l) - 5.0,
            h(&human_bytes(l as f64))
        );
    }
    markers(&mut out, t, &runs, &x, &y);
    // The peak: the highest RSS, the first time it was reached.
    let peak = t
        .points
        .iter()
        .max_by_key(|p| (p.rss, std::cmp::Reverse(p.t)));
    if let Some(p) = peak {
        let (px, py) = (x(p.t), y(p.rss));
        let _ = writeln!(
            out,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"none\" stroke=\"#222\" \
             stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\" \
             text-anchor=\"end\">peak {}</text>",
            px - 6.0,
            py - 6.0,
            h(&human_bytes(p.rss as f64))
        );
    }
    legend(&mut out, &t.points, &sc);
    out.push_str("</svg>\n");
    out
}

/// The value grid and its labels; the time ticks at round times and the span under them.
fn axes(
    out: &mut String,
    sc: &Scale,
    t0: i64,
    t1: i64,
    span_ms: f64,
    x: &dyn Fn(i64) -> f64,
    y: &dyn Fn(u64) -> f64,
) {
    let (x0, x1, y1) = (LEFT, W - RIGHT, H - BOTTOM);
    let _ = writeln!(
        out,
        "<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">"
    );
    let mut labels = String::new();
    for v in value_ticks(sc.step, sc.ymax) {
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{:.1}\" x2=\"{x1}\" y2=\"{:.1}\"/>",
            y(v),
            y(v)
        );
        let _ = writeln!(
            labels,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            y(v) + 4.0,
            h(&human_bytes(v as f64))
        );
    }
    let _ = writeln!(out, "</g>\n{labels}");
    // Some five to eight ticks at whole seconds, minutes, hours...
    let tick_ms = i128::from(
        u64::try_from(choose_step(Duration::from_millis(span_ms as u64), 6).as_millis())
            .unwrap_or(u64::MAX),
    )
    .max(1000);
    let first = (i128::from(t0) + tick_ms - 1).div_euclid(tick_ms) * tick_ms;
    for i in 0..MAX_TICKS as i128 {
        let Ok(ms) = i64::try_from(first + i * tick_ms) else {
            break;
        };
        if ms > t1 {
            break;
        }
        let stamp = clock::stamp(clock::from_millis_signed(ms));
        let label = if span_ms < 86_400_000.0 {
            stamp.get(11..)
        } else {
            stamp.get(5..16)
        }
        .unwrap_or(&stamp);
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(ms),
            x(ms),
            y1 + 4.0,
            x(ms),
            y1 + 18.0,
            h(label)
        );
    }
    let _ = writeln!(
        out,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{} to \
         {}</text>",
        (x0 + x1) / 2.0,
        y1 + 38.0,
        h(&clock::utc_words(clock::from_millis_signed(t0))),
        h(&clock::utc_words(clock::from_millis_signed(t1)))
    );
}

/// What a marker's tooltip says: when, what, and for a dump why it was taken.
pub fn marker_title(m: &Marker) -> String {
    format!(
        "{} {}: {}{}",
        clock::utc_words(clock::from_millis_signed(m.t)),
        m.kind,
        m.label,
        m.why
            .as_ref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    )
}

/// Dumps, starts, exits and OOM kills: a line each with its tooltip; dumps and OOM kills
/// labelled along the line where there is room, an OOM kill crossed at the last RSS.
fn markers(
    out: &mut String,
    t: &Timeline,
    runs: &[Vec<&Point>],
    x: &dyn Fn(i64) -> f64,
    y: &dyn Fn(u64) -> f64,
) {
    let (y0, y1) = (TOP, H - BOTTOM);
    let mut last_label = f64::NEG_INFINITY;
    for m in &t.markers {
        let xm = x(m.t);
        let colour = marker_colour(&m.kind);
        let oom = m.kind == "oom";
        let data = m
            .dump
            .map(|d| format!(" data-dump=\"{d}\""))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<g class=\"marker {}\"{data}><title>{}</title><line x1=\"{xm:.1}\" y1=\"{y0}\" \
             x2=\"{xm:.1}\" y2=\"{y1}\" stroke=\"{colour}\" stroke-width=\"{}\" \
             stroke-opacity=\"0.8\"/>",
            h(&m.kind),
            h(&marker_title(m)),
            if oom { 2.5 } else { 1.2 }
        );
        if m.kind == "dump" {
            let _ = write!(
                out,
                "<circle cx=\"{xm:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>",
                y0 + 2.0
            );
        }
        if oom {
            let yk = runs
                .iter()
                .flatten()
                .filter(|p| p.t <= m.t)
                .max_by_key(|p| p.t)
                .map_or(y1, |p| y(p.rss));
            let _ = write!(
                out,
                "<path d=\"M{:.1},{:.1} l10,10 m0,-10 l-10,10\" stroke=\"#d62728\" \
                 stroke-width=\"3\"/>",
                xm - 5.0,
                yk - 5.0
            );
        }
        // Along the line, inside the chart, on a white halo so it reads over the areas.
        if oom || (m.kind == "dump" && xm - last_label >= 13.0) {
            last_label = xm;
            let _ = write!(
                out,
                "<text transform=\"translate({:.1},{:.1}) rotate(90)\" font-size=\"{}\" \
                 fill=\"{colour}\" stroke=\"white\" stroke-width=\"3\" \
                 paint-order=\"stroke\"{}>{}</text>",
                xm + 3.0,
                y0 + 10.0,
                if oom { 12 } else { 10 },
                if oom { " font-weight=\"bold\"" } else { "" },
                h(&m.label)
            );
        }
        out.push_str("</g>\n");
    }
}

/// The layers present, then the lines and markers; the limit when it is above the chart.
fn legend(out: &mut String, points: &[Point], sc: &Scale) {
    let lx = W - RIGHT + 20.0;
    let mut ly = TOP;
    for i in 0..LAYERS {
        if !points.iter().any(|p| layers_of(p)[i] > 0) {
            continue;
        }
        let (label, colour) = layer(i);
        let _ = writeln!(
            out,
            "<rect x=\"{lx}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 18.0,
            ly + 10.0,
            h(label)
        );
        ly += 18.0;
    }
    for (name, colour, dash) in [
        ("RSS", "#222", ""),
        ("memory limit", "#d62728", " stroke-dasharray=\"6,4\""),
        ("dump", marker_colour("dump"), ""),
        ("OOM kill", marker_colour("oom"), ""),
    ] {
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
             stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            ly + 6.0,
            lx + 12.0,
            ly + 6.0,
            lx + 18.0,
            ly + 10.0
        );
        ly += 18.0;
    }
    if let (Some(l), false) = (sc.limit, sc.limit_drawn) {
        // Two lines: the legend is 200 pixels wide.
        let _ = writeln!(
            out,
            "<text class=\"limit-note\" x=\"{lx}\" y=\"{:.1}\" fill=\"#d62728\">memory limit {}\
             <tspan x=\"{lx}\" dy=\"15\">(above the chart)</tspan></text>",
            ly + 10.0,
            h(&human_bytes(l as f64))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const T0: i64 = 1_795_000_000_000;

    fn point(s: i64, rss_mib: u64, run: u32) -> Point {
        let parts = crate::memory::Parts::default()
            .with("heap_in_use", rss_mib / 2 * MIB)
            .with("outside_jemalloc", rss_mib / 4 * MIB);
        Point {
            t: T0 + s * 1000,
            rss: rss_mib * MIB,
            parts: Some(parts.stack(rss_mib * MIB)),
            limit: Some(512 * MIB),
            run,
        }
    }

    fn marker(s: i64, kind: &str, label: &str) -> Marker {
        Marker {
            t: T0 + s * 1000,
            kind: kind.into(),
            label: label.into(),
            why: None,
            dump: None,
        }
    }

    fn standalone(title: &str) -> Frame<'_> {
        Frame {
            title,
            note: None,
            standalone: true,
        }
    }

    #[test]
    fn the_chart_has_the_stack_the_limit_the_markers_and_the_peak() {
        let mut t = Timeline::default();
        for i in 0..100 {
            t.points.push(point(i * 10 + 5, 100 + i as u64 * 4, 0));
        }
        let mut dump = marker(500, "dump", "mysqld.7.20261126T182554.0001.limit80.heap");
        dump.why = Some("limit80: RSS 400 MiB of 512 MiB".into());
        t.markers.push(dump);
        t.markers
            .push(marker(1001, "oom", "OOM kill: mysqld pid 7 was killed"));
        let svg = svg(&t, &standalone("mysqld <memory> & more"));
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("mysqld &lt;memory&gt; &amp; more"));
        assert!(svg.matches("<polygon").count() >= 3, "heap, outside, other");
        assert!(svg.contains(">limit 512.0 MiB</text>"), "{svg}");
        assert!(svg.contains(">mysqld.7.20261126T182554.0001.limit80.heap</text>"));
        assert!(
            svg.contains("(limit80: RSS 400 MiB of 512 MiB)</title>"),
            "{svg}"
        );
        assert!(svg.contains(">OOM kill: mysqld pid 7 was killed</text>"));
        assert!(svg.contains(">peak 496.0 MiB</text>"), "{svg}");
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }

    /// The campaign's file: one sample of `"rss": 18446744073709551615` made the value
    /// axis's loop wrap and allocate until the kernel killed it (24 GB).
    #[test]
    fn values_at_the_top_of_u64_draw_a_bounded_chart() {
        let mut huge = point(10, 100, 0);
        huge.rss = u64::MAX;
        huge.limit = Some(u64::MAX);
        huge.parts = Some([u64::MAX; PARTS.len() + 1]);
        let t = Timeline {
            points: vec![point(0, 100, 0), huge, point(20, 100, 0)],
            ..Default::default()
        };
        let svg = svg(&t, &standalone("t"));
        assert!(svg.len() < 64 << 10, "{} bytes", svg.len());
        assert!(svg.matches("text-anchor=\"end\">").count() <= MAX_TICKS + 2);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(tick_step(u64::MAX), 1 << 62);
        assert!(value_ticks(1 << 63, f64::MAX).count() <= MAX_TICKS + 1);
        assert_eq!(value_ticks(1 << 20, 4.5 * (1 << 20) as f64).count(), 5);
        assert_eq!(value_ticks(0, f64::NAN).count(), 1);
    }

    #[test]
    fn axis_steps_are_round_and_the_limit_is_the_one_at_the_peak() {
        assert_eq!(tick_step(512 << 20), 128 << 20);
        assert_eq!(tick_step(1), 1 << 20);
        assert_eq!(tick_step(8 << 30), 2 << 30);
        let mut points = vec![point(0, 100, 0), point(1, 100, 0)];
        points[0].limit = Some(250 * MIB);
        points[1].limit = Some(200 * MIB);
        let sc = scale(&points);
        assert_eq!((sc.limit, sc.limit_drawn), (Some(250 * MIB), true));
        assert_eq!(sc.ymax, 320.0 * MIB as f64);
        // A later reading of another limit (the machine's memory, after the peak) does
        // not stand for the limit that mysqld met.
        let mut climb = vec![point(0, 100, 0), point(1, 490, 0), point(2, 50, 0)];
        climb[1].limit = Some(512 * MIB);
        climb[2].limit = Some(23 << 30);
        assert_eq!(scale(&climb).limit, Some(512 * MIB));
        points[0].limit = Some(64 << 30);
        let sc = scale(&points);
        assert!(!sc.limit_drawn && sc.ymax < (200 * MIB) as f64, "{sc:?}");
        let svg = svg(
            &Timeline {
                points,
                ..Default::default()
            },
            &standalone(""),
        );
        assert!(svg.contains(">memory limit 64.0 GiB<tspan"), "{svg}");
        assert!(svg.contains(">(above the chart)</tspan>"), "{svg}");
    }

    #[test]
    fn runs_are_drawn_apart_and_a_lone_reading_is_a_band() {
        let t = Timeline {
            points: vec![point(0, 100, 0), point(10, 120, 0), point(20, 50, 1)],
            ..Default::default()
        };
        let svg = svg(&t, &standalone(""));
        assert_eq!(svg.matches("<polyline class=\"rss\"").count(), 2);
        let lone = svg
            .rsplit("<polyline class=\"rss\" points=\"")
            .next()
            .unwrap();
        let lone = &lone[..lone.find('"').unwrap()];
        assert_eq!(lone.split(' ').count(), 2, "{lone}");
    }

    #[test]
    fn nothing_to_draw_says_so_and_times_before_1970_do_not_panic() {
        let svg = svg(&Timeline::default(), &standalone("t"));
        assert!(svg.contains("nothing to draw"), "{svg}");
        let mut early = point(0, 10, 0);
        early.t = -86_400_000;
        let t = Timeline {
            points: vec![early, point(0, 10, 0)],
            ..Default::default()
        };
        assert!(svg_page(&t).contains("data-t0=\"-86400000\""));
        assert_eq!(
            choose_step(Duration::from_secs(600), 40),
            Duration::from_secs(15)
        );
    }

    fn svg_page(t: &Timeline) -> String {
        svg(
            t,
            &Frame {
                title: "",
                note: None,
                standalone: false,
            },
        )
    }
}
