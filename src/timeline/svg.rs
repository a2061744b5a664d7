//! `jemsafe timeline --format svg`: a stacked area chart of RSS's parts over time, the
//! memory limit as a line, dumps and OOM kills as markers with their file names, the peak
//! marked. A self-contained SVG (no script, no external font) that a DBA can paste into an
//! incident report; a pure function of the records.

use super::render::{events, human, samples, stamp};
use super::{peak, Damage, EventKind, Record, Sample};
use jemsafe_report::page::html::h as xml;
use std::fmt::Write as _;
use std::time::SystemTime;

const W: f64 = 1200.0;
const H: f64 = 620.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 50.0;

/// The layers, bottom first: name and colour. The last two are what is left of RSS
/// beyond the parts, and RSS of samples taken without a breakdown.
const LAYERS: [(&str, &str); 9] = [
    ("heap in use", "#4e79a7"),
    ("fragmentation", "#f28e2b"),
    ("freed, not returned", "#edc948"),
    ("jemalloc metadata", "#b07aa1"),
    ("outside jemalloc", "#59a14f"),
    ("file-backed", "#9c755f"),
    ("shared memory", "#76b7b2"),
    ("other", "#d3d3d3"),
    ("RSS (no breakdown)", "#bab0ac"),
];

fn layers_of(s: &Sample) -> [u64; 9] {
    let mut v = [0u64; 9];
    match s.parts {
        Some(p) => {
            let parts = p.resident();
            for (i, (_, b)) in parts.iter().enumerate() {
                v[i] = *b;
            }
            let sum = parts.iter().fold(0u64, |a, (_, b)| a.saturating_add(*b));
            v[7] = s.rss.saturating_sub(sum);
        }
        None => v[8] = s.rss,
    }
    v
}

/// A round axis step (a power of two, at least 1 MiB) for `max` bytes in 4 to 8 ticks.
fn tick_step(max: u64) -> u64 {
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

/// Ticks on either axis at most: a chart has 4 to 8; this is a bound, not a layout.
const MAX_TICKS: usize = 32;

/// The chart; a note under the title when lines of the file were `damage`d.
pub fn svg(records: &[Record], title: &str, damage: Option<&Damage>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        xml(title)
    );
    if let Some(d) = damage {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"42\" fill=\"#d62728\">timeline damaged: {}</text>",
            xml(&d.summary())
        );
    }
    let all: Vec<&Sample> = samples(records).collect();
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        let _ = writeln!(out, "<text x=\"{LEFT}\" y=\"60\">no records in the timeline for this selection</text>\n</svg>");
        return out;
    };
    let t0 = first.time();
    let span = last
        .time()
        .duration_since(t0)
        .unwrap_or_default()
        .as_secs_f64()
        .max(1.0);
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let x = |t: SystemTime| {
        x0 + (x1 - x0) * t.duration_since(t0).unwrap_or_default().as_secs_f64() / span
    };
    let max_rss = all.iter().map(|s| s.rss).max().unwrap_or(0);
    let limit = all.iter().rev().find_map(|s| s.limit);
    // A limit far above what mysqld used (the machine's memory) would flatten the chart.
    let limit_shown = limit.filter(|l| *l <= max_rss.saturating_mul(3).max(1 << 20));
    let top_value = max_rss.max(limit_shown.unwrap_or(0)).max(1 << 20);
    let step = tick_step(top_value);
    let ymax = (top_value as f64 * 1.05 / step as f64).ceil() * step as f64;
    let y = |v: u64| y1 - (y1 - y0) * v as f64 / ymax;

    // Axes and grid.
    let _ = writeln!(out, "<g stroke=\"#e0e0e0\" stroke-width=\"1\">");
    let mut labels = String::new();
    for v in value_ticks(step, ymax) {
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{:.1}\" x2=\"{x1}\" y2=\"{:.1}\"/>",
            y(v),
            y(v)
        );
        let _ = writeln!(
            labels,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            y(v) + 4.0,
            xml(&human(v))
        );
    }
    let _ = writeln!(out, "</g>\n{labels}");
    // Time ticks at round times (whole minutes, hours...), some five to eight of them.
    let tick = super::render::choose_step(std::time::Duration::from_secs_f64(span), 6).as_secs();
    let epoch = jemsafe_report::clock::secs;
    let first_tick = epoch(t0).div_ceil(tick).saturating_mul(tick);
    let last_s = epoch(last.time());
    for secs in (first_tick..=last_s)
        .step_by(usize::try_from(tick).unwrap_or(usize::MAX))
        .take(MAX_TICKS)
    {
        let t = jemsafe_report::clock::from_secs_clamped(secs);
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>",
            x(t),
            x(t),
            y1 + 4.0
        );
        let label = stamp(t);
        let label = if span < 86400.0 {
            label[11..].to_owned()
        } else {
            label[5..16].to_owned()
        };
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(t),
            y1 + 18.0,
            xml(&label)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{} to {} UTC</text>",
        (x0 + x1) / 2.0,
        y1 + 38.0,
        xml(&stamp(t0)),
        xml(&stamp(last.time()))
    );

    // One stacked area per process run, one sample per pixel column (its highest RSS).
    let mut runs: Vec<Vec<&Sample>> = Vec::new();
    for s in &all {
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|p| p.pid == s.pid && p.start == s.start) =>
            {
                let col = x(s.time).floor();
                match run.last_mut() {
                    Some(prev) if x(prev.time).floor() == col => {
                        if s.rss > prev.rss {
                            *prev = s;
                        }
                    }
                    _ => run.push(s),
                }
            }
            _ => runs.push(vec![s]),
        }
    }
    for run in &runs {
        let stacks: Vec<[u64; 9]> = run.iter().map(|s| layers_of(s)).collect();
        let mut xs: Vec<f64> = run.iter().map(|s| x(s.time)).collect();
        let mut stacks = stacks;
        if xs.len() == 1 {
            // One sample (a short run): a narrow band rather than nothing.
            xs.push(xs[0] + 3.0);
            stacks.push(stacks[0]);
        }
        let mut below = vec![0u64; xs.len()];
        for (layer, (_, colour)) in LAYERS.iter().enumerate() {
            if stacks.iter().all(|s| s[layer] == 0) {
                continue;
            }
            let above: Vec<u64> = below
                .iter()
                .zip(&stacks)
                .map(|(b, s)| b.saturating_add(s[layer]))
                .collect();
            let mut points = String::new();
            for (xi, v) in xs.iter().zip(&above) {
                let _ = write!(points, "{xi:.1},{:.1} ", y(*v));
            }
            for (xi, v) in xs.iter().zip(&below).rev() {
                let _ = write!(points, "{xi:.1},{:.1} ", y(*v));
            }
            let _ = writeln!(
                out,
                "<polygon points=\"{}\" fill=\"{colour}\" fill-opacity=\"0.85\" stroke=\"none\"/>",
                points.trim_end()
            );
            below = above;
        }
        let mut line = String::new();
        for s in run {
            let _ = write!(line, "{:.1},{:.1} ", x(s.time), y(s.rss));
        }
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.2\"/>",
            line.trim_end()
        );
        if limit_shown.is_some() {
            let mut line = String::new();
            for s in run.iter().filter(|s| s.limit.is_some()) {
                let _ = write!(line, "{:.1},{:.1} ", x(s.time), y(s.limit.unwrap_or(0)));
            }
            if !line.is_empty() {
                let _ = writeln!(
                    out,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"6,4\"/>",
                    line.trim_end()
                );
            }
        }
    }
    if let Some(l) = limit_shown {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\">limit {}</text>",
            x0 + 4.0,
            y(l) - 5.0,
            xml(&human(l))
        );
    }

    // Dumps and OOM kills: a line each, labelled where there is room.
    let mut last_label = f64::NEG_INFINITY;
    for e in events(records) {
        let xe = x(e.time);
        let (colour, width, label) = match &e.kind {
            EventKind::Dump { file, .. } => ("#1f77b4", 1.0, file.clone()),
            EventKind::Exit { oom: true, .. } => {
                ("#d62728", 2.5, format!("OOM kill: mysqld pid {}", e.pid))
            }
            _ => continue,
        };
        let _ = writeln!(
            out,
            "<line x1=\"{xe:.1}\" y1=\"{y0}\" x2=\"{xe:.1}\" y2=\"{y1}\" stroke=\"{colour}\" stroke-width=\"{width}\" stroke-opacity=\"0.8\"/>"
        );
        let oom = width > 2.0;
        if oom {
            let yk = all
                .iter()
                .rev()
                .find(|s| s.pid == e.pid && s.time <= e.time)
                .map_or(y1, |s| y(s.rss));
            let _ = writeln!(
                out,
                "<path d=\"M{:.1},{:.1} l10,10 m0,-10 l-10,10\" stroke=\"#d62728\" stroke-width=\"3\"/>",
                xe - 5.0,
                yk - 5.0
            );
        }
        // Along the line, inside the chart, on a white halo so it reads over the areas.
        if oom || xe - last_label >= 13.0 {
            last_label = xe;
            let _ = writeln!(
                out,
                "<text transform=\"translate({:.1},{:.1}) rotate(90)\" font-size=\"{}\" fill=\"{colour}\" \
                 stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\"{}>{}</text>",
                xe + 3.0,
                y0 + 4.0,
                if oom { 12 } else { 10 },
                if oom { " font-weight=\"bold\"" } else { "" },
                xml(&label)
            );
        }
    }
    if let Some(p) = peak(records) {
        let (px, py) = (x(p.time), y(p.rss));
        let _ = writeln!(
            out,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"none\" stroke=\"#222\" stroke-width=\"2\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\" text-anchor=\"end\">peak {}</text>",
            px - 6.0,
            py - 6.0,
            xml(&human(p.rss))
        );
    }

    // Legend.
    let lx = x1 + 20.0;
    let mut ly = y0;
    for (i, (name, colour)) in LAYERS.iter().enumerate() {
        if !all.iter().any(|s| layers_of(s)[i] > 0) {
            continue;
        }
        let _ = writeln!(
            out,
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ly,
            lx + 18.0,
            ly + 10.0,
            xml(name)
        );
        ly += 18.0;
    }
    for (name, colour, dash) in [
        ("RSS", "#222", ""),
        ("memory limit", "#d62728", " stroke-dasharray=\"6,4\""),
        ("dump", "#1f77b4", ""),
        ("OOM kill", "#d62728", ""),
    ] {
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            ly + 6.0,
            lx + 12.0,
            ly + 6.0,
            lx + 18.0,
            ly + 10.0
        );
        ly += 18.0;
    }
    if let (Some(l), None) = (limit, limit_shown) {
        let _ = writeln!(
            out,
            "<text x=\"{lx}\" y=\"{:.1}\" fill=\"#d62728\">limit {} (off the chart)</text>",
            ly + 10.0,
            xml(&human(l))
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{event, sample};
    use super::*;

    #[test]
    fn the_chart_has_the_stack_the_limit_the_markers_and_the_peak() {
        let mut r = vec![event(0, 7, EventKind::Start { restart: false })];
        for i in 0..100 {
            r.push(sample(i * 10 + 5, 7, 100 + i * 4));
        }
        r.push(event(
            500,
            7,
            EventKind::Dump {
                file: "mysqld.7.20261126T182554.0001.limit80.heap".into(),
                trigger: "limit80".into(),
            },
        ));
        r.push(event(
            1001,
            7,
            EventKind::Exit {
                how: "was killed by SIGKILL".into(),
                oom: true,
            },
        ));
        let svg = svg(&r, "mysqld <memory> & more", None);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("mysqld &lt;memory&gt; &amp; more"));
        assert!(svg.matches("<polygon").count() >= 3, "heap, outside, other");
        assert!(svg.contains("limit 512 MiB"));
        assert!(svg.contains(">mysqld.7.20261126T182554.0001.limit80.heap</text>"));
        assert!(svg.contains(">OOM kill: mysqld pid 7</text>"));
        assert!(svg.contains(">peak 496 MiB</text>"));
        assert_eq!(
            svg.matches('<').count(),
            svg.matches('>').count(),
            "balanced tags"
        );
    }

    /// The campaign's file: one sample of `"rss": 18446744073709551615` made the value
    /// axis's loop wrap and allocate until the kernel killed it (24 GB).
    #[test]
    fn values_at_the_top_of_u64_draw_a_bounded_chart() {
        let mut huge = sample(10, 7, 100);
        if let Record::Sample(s) = &mut huge {
            s.rss = u64::MAX;
            s.limit = Some(u64::MAX);
            if let Some(p) = &mut s.parts {
                p.heap_in_use = u64::MAX;
                p.outside_jemalloc = u64::MAX;
            }
        }
        let records = [sample(0, 7, 100), huge, sample(20, 7, 100)];
        let svg = svg(&records, "t", None);
        assert!(svg.len() < 64 << 10, "{} bytes", svg.len());
        assert!(svg.matches("text-anchor=\"end\">").count() <= MAX_TICKS + 2);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(tick_step(u64::MAX), 1 << 62);
        assert!(value_ticks(1 << 63, f64::MAX).count() <= MAX_TICKS + 1);
        assert_eq!(value_ticks(1 << 20, 4.5 * (1 << 20) as f64).count(), 5);
        assert_eq!(value_ticks(0, f64::NAN).count(), 1);
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(tick_step(512 << 20), 128 << 20);
        assert_eq!(tick_step(1), 1 << 20);
        assert_eq!(tick_step(8 << 30), 2 << 30);
        assert_eq!(xml("a\u{1b}<b>\"'&"), "a&lt;b&gt;&quot;&#39;&amp;");
    }
}
