//! `jemsafe page`: one self-contained HTML page that tells the story of a mysqld's memory
//! (who and what, the timeline, the selected dump, what grew). [`build`] reads a series of
//! dumps into a [`Model`] (all dumps' stacks deduplicated once, names interned once);
//! [`html::render`] is a pure function of the model. The caller (the command line, the
//! live HTTP page) supplies the timeline when it has one.

pub mod chart;
pub mod html;

use crate::memory::{Parts, Stack};
use crate::safe::{escape, shown};
use crate::series::Series;
use crate::{format_time, leaks, symbolize, Result};
use serde::Serialize;
use std::collections::HashMap;

/// Text for HTML and SVG (content and quoted attributes): `&`, `<`, `>`, quotes escaped
/// (`&#39;` is both HTML's and XML's), control characters dropped (XML forbids them).
pub fn h(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One reading of mysqld's memory on the chart (a timeline sample, or a dump's own
/// snapshot): milliseconds since the epoch, RSS, its stack when known
/// ([`crate::memory::PARTS`], then what is left of RSS), the memory limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub t: i64,
    pub rss: u64,
    pub parts: Option<Stack>,
    pub limit: Option<u64>,
    /// Which run of a process it belongs to: the chart draws each run's area apart (a
    /// restart is a gap, not a slope).
    #[serde(skip)]
    pub run: u32,
}

/// A marker on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub t: i64,
    /// `dump`, `oom`, `exit`, `start`.
    pub kind: String,
    pub label: String,
    /// Why it happened, for a dump: its trigger and the reading that fired it
    /// (`limit90: RSS 691 MiB of 768 MiB`), escaped.
    pub why: Option<String>,
    /// Index into [`Model::dumps`] for a dump of the page.
    pub dump: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Where it came from (`the timeline file X`, `the dumps' memory snapshots`).
    pub source: String,
    pub points: Vec<Point>,
    pub markers: Vec<Marker>,
}

/// One dump of the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DumpData {
    /// File name (escaped).
    pub name: String,
    pub t: Option<i64>,
    pub when: String,
    pub trigger: Option<String>,
    /// Its trigger and the reading that fired it ([`crate::sidecar::Sidecar::why`]), escaped.
    pub why: Option<String>,
    /// Heap in use per the profile (un-sampled bytes).
    pub total: f64,
    pub rss: Option<u64>,
    /// RSS by part, from the sidecar's memory snapshot.
    pub parts: Option<Stack>,
    pub advice: Vec<String>,
    /// (stack index, bytes) for every stack holding memory; None when the dump was
    /// summarised to keep the page within its size bound.
    pub values: Option<Vec<(u32, f64)>>,
}

/// One row of the growth ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeakRow {
    /// Name ids, innermost frame first.
    pub frames: Vec<u32>,
    pub gained: f64,
    pub per_hour: Option<f64>,
    pub grew: usize,
    pub intervals: usize,
    pub first: f64,
    pub last: f64,
}

/// Everything the page shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Model {
    pub title: String,
    /// (label, value) of the "who and what" section, escaped.
    pub facts: Vec<(String, String)>,
    /// What is missing or was left out, for the reader.
    pub notes: Vec<String>,
    /// Frame names, escaped; stacks refer to them by index.
    pub names: Vec<String>,
    /// Distinct stacks, outermost frame first.
    pub stacks: Vec<Vec<u32>>,
    pub dumps: Vec<DumpData>,
    pub timeline: Timeline,
    /// Default selection and growth base (indices into `dumps`).
    pub selected: usize,
    pub base: usize,
    pub leaks: Vec<LeakRow>,
    /// `POST /dump` is offered (the live page), with this CSRF token.
    pub live: Option<Live>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    pub csrf: String,
}

/// How much the page holds.
#[derive(Debug, Clone)]
pub struct Options {
    pub symbolize: symbolize::Options,
    /// (stack, value) entries embedded at most, over all dumps; older dumps beyond it are
    /// summarised (total and breakdown only). 150,000 entries are about 2 MB of page.
    pub max_entries: usize,
    /// Rows of the growth ranking.
    pub top: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            symbolize: symbolize::Options::default(),
            max_entries: 150_000,
            top: 20,
        }
    }
}

/// Which dumps keep their stacks: the newest first, while `max_entries` allows (the
/// newest always). `sizes[i]`: entries of dump i.
pub fn kept(sizes: &[usize], max_entries: usize) -> Vec<bool> {
    let mut keep = vec![false; sizes.len()];
    let mut used = 0usize;
    for (i, &n) in sizes.iter().enumerate().rev() {
        if i + 1 == sizes.len() || used + n <= max_entries {
            used += n;
            keep[i] = true;
        } else {
            break;
        }
    }
    keep
}

/// Each dump's own memory snapshot as a reading, and a marker for each dump with a time.
fn dump_readings(dumps: &[DumpData]) -> (Vec<Point>, Vec<Marker>) {
    let mut points = Vec::new();
    let mut markers = Vec::new();
    for (i, d) in dumps.iter().enumerate() {
        let Some(time) = d.t else { continue };
        if let Some(rss) = d.rss {
            points.push(Point {
                t: time,
                rss,
                parts: d.parts,
                limit: None,
                run: 0,
            });
        }
        markers.push(dump_marker(i, d, time));
    }
    (points, markers)
}

fn dump_marker(i: usize, d: &DumpData, t: i64) -> Marker {
    Marker {
        t,
        kind: "dump".into(),
        label: d.name.clone(),
        why: d.why.clone(),
        dump: Some(i),
    }
}

/// The chart's timeline: the timeline file's (its dump markers matched to the page's
/// dumps by file name, those of dumps not on the page dropped), with every dump's own
/// snapshot plotted among its samples and a marker for each dump the file does not know
/// of; without a file, the dumps' snapshots alone.
pub fn with_dumps(timeline: Option<Timeline>, dumps: &[DumpData]) -> Timeline {
    let (points, markers) = dump_readings(dumps);
    let Some(mut t) = timeline else {
        return Timeline {
            source: "the dumps' memory snapshots (no timeline file)".into(),
            points,
            markers,
        };
    };
    for mk in &mut t.markers {
        if mk.kind == "dump" {
            mk.dump = dumps.iter().position(|d| mk.label.ends_with(&d.name));
            mk.why = mk.dump.and_then(|i| dumps[i].why.clone()).or(mk.why.take());
        }
    }
    t.markers.retain(|m| m.kind != "dump" || m.dump.is_some());
    for m in markers {
        if !t.markers.iter().any(|k| k.dump == m.dump) {
            t.markers.push(m);
        }
    }
    t.markers.sort_by_key(|m| m.t);
    // The snapshots join the samples' run (one process per page): a short timeline, or
    // one that began after the dumps, still shows where the memory was.
    let run = t.points.last().map_or(0, |p| p.run);
    if !points.is_empty() {
        t.source = format!("{} and the dumps' memory snapshots", t.source);
    }
    t.points
        .extend(points.into_iter().map(|p| Point { run, ..p }));
    t.points.sort_by_key(|p| p.t);
    t
}

/// The page's model for a series of dumps of one process, oldest first. `timeline`: from
/// the timeline file (its dump markers are matched to the dumps by file name), else built
/// from the dumps' memory snapshots. `notes`: what the caller found missing. The page
/// holds the stacks of the newest dumps within `max_entries` ([`kept`]); the growth
/// ranking covers every dump.
pub fn build(
    series: Series,
    timeline: Option<Timeline>,
    mut notes: Vec<String>,
    opts: &Options,
) -> Result<Model> {
    if series.is_empty() {
        return Err(crate::Error::Mismatch(
            "a page needs at least one heap dump".into(),
        ));
    }
    let m = crate::series::METRIC;
    for d in &series.dumps {
        notes.extend(d.notes.iter().cloned());
        if d.sidecar.is_none() {
            notes.push(format!(
                "{} has no sidecar (<dump>.json): its host, versions and memory breakdown \
                 are unknown",
                shown(&d.path)
            ));
        }
    }
    // Each dump's frames named with its own mappings (a plugin unloaded since is still
    // named in the dumps taken while it was loaded).
    let named = series.name(&opts.symbolize, &mut notes);
    let dumps = &named.dumps;
    let newest = &dumps[dumps.len() - 1];

    // Names as the series has them; the page's stacks are those of the dumps it keeps.
    let names: Vec<String> = named
        .names
        .list
        .iter()
        .map(|n| escape(n).into_owned())
        .collect();
    let intern = |n: &str| -> u32 { named.names.find(n).unwrap_or(0) };
    let mut held = Vec::new();
    let sizes: Vec<usize> = (0..dumps.len())
        .map(|i| {
            named.values_into(i, &mut held);
            held.iter().filter(|v| **v != 0.0).count()
        })
        .collect();
    let keep = kept(&sizes, opts.max_entries);
    let mut stacks: Vec<Vec<u32>> = Vec::new();
    let mut stack_index: HashMap<u32, u32> = HashMap::new();
    let mut per_dump: Vec<Option<Vec<(u32, f64)>>> = Vec::with_capacity(dumps.len());
    for (i, &k) in keep.iter().enumerate() {
        if !k {
            per_dump.push(None);
            continue;
        }
        named.values_into(i, &mut held);
        let mut values = Vec::new();
        for (s, &v) in held.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let next = stacks.len() as u32;
            let si = *stack_index.entry(s as u32).or_insert_with(|| {
                stacks.push(named.stacks[s].iter().rev().copied().collect());
                next
            });
            values.push((si, v.round()));
        }
        values.sort_by_key(|e| e.0);
        per_dump.push(Some(values));
    }
    let summarised = keep.iter().filter(|k| !**k).count();
    if summarised > 0 {
        notes.push(format!(
            "the {summarised} oldest of {} dumps are summarised (total and breakdown only, no \
             stacks) to keep this page within {} stack entries; the growth ranking still \
             covers all of them",
            dumps.len(),
            opts.max_entries
        ));
    }

    let mut data = Vec::with_capacity(dumps.len());
    for (i, (d, values)) in dumps.iter().zip(per_dump).enumerate() {
        let snapshot = d.sidecar.as_ref().and_then(|s| s.memory_snapshot());
        let breakdown = match snapshot {
            Some(Ok(s)) => match s.breakdown() {
                Ok(b) => Some(b),
                Err(e) => {
                    notes.push(format!("{}: memory snapshot: {e}", shown(&d.path)));
                    None
                }
            },
            Some(Err(e)) => {
                notes.push(format!("{}: {e}", shown(&d.path)));
                None
            }
            None => None,
        };
        data.push(DumpData {
            name: d
                .path
                .file_name()
                .map(|n| escape(&n.to_string_lossy()).into_owned())
                .unwrap_or_else(|| shown(&d.path)),
            t: d.time.map(crate::clock::millis_signed),
            when: d.time.map(format_time).unwrap_or_else(|| "-".into()),
            trigger: d
                .sidecar
                .as_ref()
                .and_then(|s| s.trigger.as_deref())
                .map(|t| escape(t).into_owned()),
            why: d
                .sidecar
                .as_ref()
                .and_then(|s| s.why())
                .map(|w| escape(&w).into_owned()),
            total: named.total(i)[m as usize].round(),
            rss: breakdown.as_ref().map(|b| b.rss),
            parts: breakdown
                .as_ref()
                .map(|b| Parts::from_breakdown(b).stack(b.rss)),
            advice: breakdown.as_ref().map(|b| b.advice()).unwrap_or_default(),
            values,
        });
    }

    // Growth ranking over the whole series.
    let leak_rows = if dumps.len() >= 2 {
        let (ranked, _) = leaks::analyze(&named);
        ranked
            .into_iter()
            .take(opts.top)
            .map(|s| LeakRow {
                frames: s.frames.iter().map(|f| intern(f)).collect(),
                gained: s.gained,
                per_hour: s.per_hour,
                grew: s.grew,
                intervals: s.intervals,
                first: s.first,
                last: s.last,
            })
            .collect()
    } else {
        notes.push("one dump only: growth needs two dumps of the process".into());
        Vec::new()
    };

    // Who and what.
    let side = dumps.iter().rev().find_map(|d| d.sidecar.as_ref());
    let mut facts: Vec<(String, String)> = Vec::new();
    let mut fact = |k: &str, v: Option<String>| {
        facts.push((
            k.to_owned(),
            v.map(|v| escape(&v).into_owned())
                .unwrap_or_else(|| "unknown".into()),
        ))
    };
    fact("host", side.and_then(|s| s.host.clone()));
    fact(
        "process",
        Some(match (newest.pid, newest.process()) {
            (_, Some(p)) => format!("{} {}", newest.program(), p.describe()),
            (Some(pid), None) => format!("{} pid {pid}", newest.program()),
            _ => newest.program(),
        }),
    );
    fact(
        "mysqld version",
        side.and_then(|s| s.mysqld_version.clone()),
    );
    let program = newest.dump.program().map(str::to_owned);
    fact(
        "binary build-id",
        side.and_then(|s| {
            s.objects
                .iter()
                .find(|o| Some(&o.path) == program.as_ref())
                .and_then(|o| o.build_id.clone())
        }),
    );
    fact(
        "jemalloc",
        side.and_then(|s| s.jemalloc.as_ref()).map(|j| {
            format!(
                "{}{}",
                j.version.as_deref().unwrap_or("version unknown"),
                j.lg_prof_sample
                    .map(|l| format!(", lg_prof_sample {l}"))
                    .unwrap_or_default()
            )
        }),
    );
    fact("jemsafe profile", side.and_then(|s| s.profile.clone()));
    let span = match (dumps[0].time, newest.time) {
        (Some(a), Some(b)) => format!(
            ", {} to {} ({})",
            format_time(a),
            format_time(b),
            humantime::format_duration(std::time::Duration::from_secs(
                b.duration_since(a).map(|d| d.as_secs()).unwrap_or(0)
            ))
        ),
        _ => String::new(),
    };
    fact("dumps", Some(format!("{}{span}", dumps.len())));
    {
        let outcome = &named.outcome;
        let prov =
            crate::provenance::Provenance::of(&named.newest, &outcome.symbols, &outcome.object, m);
        fact(
            "names",
            Some(format!(
                "{} frames from DWARF, {} from symbol tables, {} unnamed ({:.1}% of the heap \
                 under unnamed frames)",
                prov.dwarf,
                prov.symtab,
                prov.unnamed,
                if prov.total_value > 0.0 {
                    100.0 * prov.unnamed_value / prov.total_value
                } else {
                    0.0
                }
            )),
        );
    }

    let timeline = with_dumps(timeline, &data);

    let selected = data.len() - 1;
    let base = data.iter().position(|d| d.values.is_some()).unwrap_or(0);
    Ok(Model {
        title: format!("{} memory", newest.describe()),
        facts,
        notes,
        names,
        stacks,
        dumps: data,
        timeline,
        selected,
        base,
        leaks: leak_rows,
        live: None,
    })
}

/// Flat and cumulative bytes per name of one dump's values, largest flat first.
pub fn top_rows(model: &Model, values: &[(u32, f64)]) -> Vec<(u32, f64, f64)> {
    let mut flat: HashMap<u32, f64> = HashMap::new();
    let mut cum: HashMap<u32, f64> = HashMap::new();
    let mut seen: Vec<u32> = Vec::new();
    for &(si, v) in values {
        let Some(stack) = model.stacks.get(si as usize) else {
            continue;
        };
        if let Some(&leaf) = stack.last() {
            *flat.entry(leaf).or_default() += v;
        }
        seen.clear();
        for &id in stack {
            if !seen.contains(&id) {
                seen.push(id);
                *cum.entry(id).or_default() += v;
            }
        }
    }
    let mut rows: Vec<(u32, f64, f64)> = cum
        .into_iter()
        .map(|(id, c)| (id, flat.get(&id).copied().unwrap_or(0.0), c))
        .collect();
    rows.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.0.cmp(&b.0))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_dumps_keep_their_stacks_within_the_bound() {
        assert_eq!(kept(&[10, 10, 10], 25), vec![false, true, true]);
        assert_eq!(kept(&[10, 10, 10], 100), vec![true, true, true]);
        // The newest is always kept, even alone over the bound.
        assert_eq!(kept(&[10, 50], 20), vec![false, true]);
    }

    fn dump(i: i64, rss: u64, why: Option<&str>) -> DumpData {
        DumpData {
            name: format!("mysqld.1.{i}.heap"),
            t: Some(1_000_000 + i * 1000),
            when: String::new(),
            trigger: Some("cli".into()),
            why: why.map(String::from),
            total: 0.0,
            rss: Some(rss),
            parts: Some([rss / 2, 0, 0, 0, 0, 0, 0, rss / 2]),
            advice: Vec::new(),
            values: None,
        }
    }

    /// The defect: a timeline of one early sample hid the dumps' snapshots from the chart.
    #[test]
    fn the_chart_has_every_dumps_snapshot_beside_the_timelines_samples() {
        let dumps: Vec<DumpData> = (0..6)
            .map(|i| dump(i, (170 + i as u64) << 20, None))
            .collect();
        let file = Timeline {
            source: "the timeline file t".into(),
            points: vec![Point {
                t: 999_000,
                rss: 20 << 20,
                parts: None,
                limit: None,
                run: 0,
            }],
            markers: vec![
                Marker {
                    t: 1_002_000,
                    kind: "dump".into(),
                    label: "mysqld.1.2.heap".into(),
                    why: Some("cli".into()),
                    dump: None,
                },
                Marker {
                    t: 1_002_500,
                    kind: "dump".into(),
                    label: "mysqld.9.9.heap".into(),
                    why: None,
                    dump: None,
                },
            ],
        };
        let t = with_dumps(Some(file), &dumps);
        assert_eq!(t.points.len(), 7);
        assert!(t.points.windows(2).all(|w| w[0].t <= w[1].t));
        assert_eq!(t.points.iter().map(|p| p.rss).max(), Some(175 << 20));
        // One marker per dump of the page (the file's matched, another process's gone).
        let marked: Vec<Option<usize>> = t.markers.iter().map(|m| m.dump).collect();
        assert_eq!(marked, (0..6).map(Some).collect::<Vec<_>>());
        assert!(
            t.source.contains("the dumps' memory snapshots"),
            "{}",
            t.source
        );
        let alone = with_dumps(None, &[dump(0, 1 << 20, Some("limit90: RSS 1 MiB"))]);
        assert_eq!((alone.points.len(), alone.markers.len()), (1, 1));
        assert_eq!(alone.markers[0].why.as_deref(), Some("limit90: RSS 1 MiB"));
    }

    #[test]
    fn top_rows_count_a_recursive_name_once_in_cum() {
        let model = Model {
            names: vec!["main".into(), "f".into(), "g".into()],
            stacks: vec![vec![0, 1, 1, 2], vec![0, 1]],
            ..Default::default()
        };
        let rows = top_rows(&model, &[(0, 100.0), (1, 50.0)]);
        let f = rows.iter().find(|r| r.0 == 1).unwrap();
        assert_eq!((f.1, f.2), (50.0, 150.0));
        assert_eq!(rows[0], (2, 100.0, 100.0));
        let main = rows.iter().find(|r| r.0 == 0).unwrap();
        assert_eq!((main.1, main.2), (0.0, 150.0));
    }
}
