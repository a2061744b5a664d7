//! `jemsafe timeline --format svg`: the memory chart (the page's, one renderer:
//! [`jemsafe_report::page::chart`]) of the timeline's records, as a file of its own that a
//! DBA can paste into an incident report. A pure function of the records.

use super::{Damage, EventKind, Record};
use jemsafe_report::clock::millis_signed;
use jemsafe_report::page::chart::{self, Frame};
use jemsafe_report::page::{Marker, Point, Timeline};
use std::path::Path;

/// The chart's timeline of `records`: every sample as a reading (each process run apart),
/// dumps, starts, exits and OOM kills as markers (a dump's with its trigger).
pub fn chart_of(records: &[Record]) -> Timeline {
    let mut t = Timeline::default();
    let mut run: Option<(u32, u64, u32)> = None;
    for r in records {
        match r {
            Record::Sample(s) => {
                let index = match run {
                    Some((pid, start, i)) if pid == s.pid && start == s.start => i,
                    Some((_, _, i)) => i + 1,
                    None => 0,
                };
                run = Some((s.pid, s.start, index));
                t.points.push(Point {
                    t: millis_signed(s.time),
                    rss: s.rss,
                    parts: s.parts.map(|p| p.stack(s.rss)),
                    limit: s.limit,
                    run: index,
                });
            }
            Record::Event(e) => {
                let (kind, label, why) = match &e.kind {
                    EventKind::Dump { file, trigger } => {
                        ("dump", file.clone(), Some(trigger.clone()))
                    }
                    // Short along the line (as the chart has always labelled it); how, in
                    // its tooltip.
                    EventKind::Exit { oom: true, how } => (
                        "oom",
                        format!("OOM kill: mysqld pid {}", e.pid),
                        Some(how.clone()),
                    ),
                    EventKind::Exit { .. } => ("exit", e.describe(), None),
                    EventKind::Start { .. } => ("start", e.describe(), None),
                    EventKind::Prof { .. } => continue,
                };
                let safe = |s: &str| jemsafe_report::safe::escape(s).into_owned();
                t.markers.push(Marker {
                    t: millis_signed(e.time),
                    kind: kind.into(),
                    label: safe(&label),
                    why: why.filter(|w| !w.is_empty()).map(|w| safe(&w)),
                    dump: None,
                });
            }
        }
    }
    t
}

/// Each dump marker's why from its sidecar in `dir` (the trigger with the reading that
/// fired it), where the sidecar is there and says.
pub fn reasons_from(t: &mut Timeline, dir: &Path) {
    for m in t.markers.iter_mut().filter(|m| m.kind == "dump") {
        // A plain name only: the line is the file's, and the file is mysqld's user's.
        let name = Path::new(&m.label);
        if name.file_name() != Some(name.as_os_str()) || m.label.starts_with('.') {
            continue;
        }
        let sidecar = jemsafe_report::sidecar::read_for(&dir.join(name), false);
        if let Some(why) = sidecar.ok().flatten().and_then(|s| s.why()) {
            m.why = Some(jemsafe_report::safe::escape(&why).into_owned());
        }
    }
}

/// The chart; a note under the title when lines of the file were `damage`d. With
/// `dumps_dir`, a dump marker says why from the dump's sidecar there.
pub fn svg(
    records: &[Record],
    title: &str,
    damage: Option<&Damage>,
    dumps_dir: Option<&Path>,
) -> String {
    let note = damage.map(|d| format!("timeline damaged: {}", d.summary()));
    let mut t = chart_of(records);
    if let Some(dir) = dumps_dir {
        reasons_from(&mut t, dir);
    }
    chart::svg(
        &t,
        &Frame {
            title,
            note: note.as_deref(),
            standalone: true,
        },
    )
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
        r.push(event(1002, 8, EventKind::Start { restart: true }));
        r.push(sample(1003, 8, 90));
        let svg = svg(&r, "mysqld <memory> & more", None, None);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("mysqld &lt;memory&gt; &amp; more"));
        assert!(svg.matches("<polygon").count() >= 3, "heap, outside, other");
        assert!(svg.contains("limit 512.0 MiB"));
        assert!(svg.contains(">mysqld.7.20261126T182554.0001.limit80.heap</text>"));
        assert!(svg.contains("limit80.heap (limit80)</title>"), "{svg}");
        assert!(svg.contains(">OOM kill: mysqld pid 7</text>"));
        assert!(
            svg.contains("OOM kill: mysqld pid 7 (was killed by SIGKILL)</title>"),
            "{svg}"
        );
        assert!(svg.contains(">peak 496.0 MiB</text>"));
        // The restart is a run of its own.
        assert_eq!(svg.matches("<polyline class=\"rss\"").count(), 2);
        assert_eq!(
            svg.matches('<').count(),
            svg.matches('>').count(),
            "balanced tags"
        );
    }

    #[test]
    fn a_dump_marker_says_why_from_its_sidecar_and_only_for_a_plain_name() {
        let dir = std::env::temp_dir().join(format!("jemsafe-svg-why-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut side = jemsafe_report::sidecar::Sidecar::new();
        side.trigger = Some("pressure".into());
        side.reason = Some("some avg10=31.5 > 20".into());
        let name = "mysqld.7.20261126T182554.0001.pressure.heap";
        std::fs::write(
            jemsafe_report::sidecar::path_for(&dir.join(name)),
            side.to_json(),
        )
        .unwrap();
        let dump = |file: &str| {
            event(
                5,
                7,
                EventKind::Dump {
                    file: file.into(),
                    trigger: "pressure".into(),
                },
            )
        };
        let records = [sample(0, 7, 100), dump(name), dump("../x.heap")];
        let svg = svg(&records, "t", None, Some(&dir));
        assert!(
            svg.contains("pressure.heap (pressure: some avg10=31.5 &gt; 20)</title>"),
            "{svg}"
        );
        assert!(svg.contains("../x.heap (pressure)</title>"), "{svg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
