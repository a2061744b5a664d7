//! `jemsafe timeline` as text, CSV and JSON (the SVG chart is in [`super::svg`]): pure
//! functions of the records.

use super::{peak, Damage, Event, Record, Sample};
use jemsafe_report::memory::PARTS;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// CSV: a header row, then one row per sample; bytes, empty when unknown. When lines of
/// the file were damaged, a last line `# jemsafe: N damaged lines skipped, ...`.
pub fn csv(records: &[Record], damage: Option<&Damage>) -> String {
    let parts_header: Vec<&str> = PARTS.iter().map(|p| p.key).collect();
    let mut out = format!(
        "time,pid,start_ticks,rss,{},swap,allocated,cgroup_usage,limit\n",
        parts_header.join(",")
    );
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in samples(records) {
        // The resident parts in their column order, then swap; empty when unknown.
        let parts: Vec<String> = match &s.parts {
            Some(p) => p
                .resident()
                .iter()
                .map(|(_, bytes)| bytes.to_string())
                .chain([p.swap.to_string()])
                .collect(),
            None => vec![String::new(); PARTS.len() + 1],
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            jemsafe_report::clock::rfc3339_millis(s.time),
            s.pid,
            s.start,
            s.rss,
            parts.join(","),
            opt(s.allocated),
            opt(s.cgroup_usage),
            opt(s.limit),
        );
    }
    if let Some(d) = damage {
        let _ = writeln!(out, "# jemsafe: {}", d.summary());
    }
    out
}

/// JSON: `{"samples": [...], "events": [...], "peak": {...}, "damaged_lines": N,
/// "damage": {...}}`, bytes in integers; `damage` is null when no line was damaged, else
/// where the first damaged line is and why. Keys are written in sorted order, as they
/// always were (scripts compare the text).
pub fn json(records: &[Record], damage: Option<&Damage>) -> String {
    let doc = json::Doc {
        samples: samples(records).map(json::Sample::of).collect(),
        events: events(records).map(json::Event::of).collect(),
        peak: peak(records).map(json::Peak::of),
        damaged_lines: damage.map_or(0, |d| d.lines),
        damage: damage.map(json::Damage::of),
    };
    // Through a `Value`, whose maps sort their keys: the flattened parts and event fields
    // land among the others in one order. It cannot fail: every key is a string.
    let mut text = serde_json::to_value(&doc).unwrap_or_default().to_string();
    text.push('\n');
    text
}

/// The types of `--format json`: its schema.
mod json {
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn time(t: std::time::SystemTime) -> String {
        jemsafe_report::clock::rfc3339_millis(t)
    }

    #[derive(Serialize)]
    pub struct Doc {
        pub samples: Vec<Sample>,
        pub events: Vec<Event>,
        pub peak: Option<Peak>,
        pub damaged_lines: usize,
        pub damage: Option<Damage>,
    }

    #[derive(Serialize)]
    pub struct Sample {
        time: String,
        pid: u32,
        start_ticks: u64,
        rss: u64,
        allocated: Option<u64>,
        cgroup_usage: Option<u64>,
        limit: Option<u64>,
        /// RSS's parts by name, and `swap`; absent when mysqld did not answer.
        #[serde(flatten)]
        parts: BTreeMap<&'static str, u64>,
    }

    impl Sample {
        pub fn of(s: &super::Sample) -> Sample {
            let parts = s.parts.map_or_else(BTreeMap::new, |p| {
                p.resident().into_iter().chain([("swap", p.swap)]).collect()
            });
            Sample {
                time: time(s.time),
                pid: s.pid,
                start_ticks: s.start,
                rss: s.rss,
                allocated: s.allocated,
                cgroup_usage: s.cgroup_usage,
                limit: s.limit,
                parts,
            }
        }
    }

    #[derive(Serialize)]
    pub struct Event {
        time: String,
        pid: u32,
        start_ticks: u64,
        event: &'static str,
        #[serde(flatten)]
        kind: Kind,
    }

    /// What each kind of event adds.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Kind {
        Start { restart: bool },
        Exit { how: String },
        Dump { file: String, trigger: String },
        Prof { active: bool },
    }

    impl Event {
        pub fn of(e: &super::Event) -> Event {
            use super::super::EventKind;
            let kind = match &e.kind {
                EventKind::Start { restart } => Kind::Start { restart: *restart },
                EventKind::Exit { how, .. } => Kind::Exit { how: how.clone() },
                EventKind::Dump { file, trigger } => Kind::Dump {
                    file: file.clone(),
                    trigger: trigger.clone(),
                },
                EventKind::Prof { active } => Kind::Prof { active: *active },
            };
            Event {
                time: time(e.time),
                pid: e.pid,
                start_ticks: e.start,
                event: e.word(),
                kind,
            }
        }
    }

    #[derive(Serialize)]
    pub struct Peak {
        time: String,
        pid: u32,
        rss: u64,
    }

    impl Peak {
        pub fn of(s: &super::Sample) -> Peak {
            Peak {
                time: time(s.time),
                pid: s.pid,
                rss: s.rss,
            }
        }
    }

    #[derive(Serialize)]
    pub struct Damage {
        first_line: usize,
        first_offset: usize,
        why: String,
    }

    impl Damage {
        pub fn of(d: &super::Damage) -> Damage {
            Damage {
                first_line: d.line,
                first_offset: d.offset,
                why: d.why.clone(),
            }
        }
    }
}

pub(super) fn samples(records: &[Record]) -> impl Iterator<Item = &Sample> {
    records.iter().filter_map(|r| match r {
        Record::Sample(s) => Some(s),
        _ => None,
    })
}

pub(super) fn events(records: &[Record]) -> impl Iterator<Item = &Event> {
    records.iter().filter_map(|r| match r {
        Record::Event(e) => Some(e),
        _ => None,
    })
}

/// The smallest round step that shows `span` in at most `rows` rows (the chart's).
pub use jemsafe_report::page::chart::choose_step;

/// The text view: one row per `step` (the sample with the highest RSS in it), the events
/// between rows, the peak marked.
pub fn text(records: &[Record], step: Duration) -> String {
    let mut out = String::new();
    let all: Vec<&Sample> = samples(records).collect();
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return "no records in the timeline for this selection\n".to_owned();
    };
    let limit = all.iter().rev().find_map(|s| s.limit);
    let _ = writeln!(
        out,
        "mysqld memory, {} to {} UTC ({}), one row per {}{}",
        stamp(first.time()),
        stamp(last.time()),
        span_words(last.time().duration_since(first.time()).unwrap_or_default()),
        span_words(step),
        limit
            .map(|l| format!("; memory limit {}", human(l)))
            .unwrap_or_default()
    );
    let columns: String = PARTS.iter().map(|p| format!("  {:>9}", p.column)).collect();
    let _ = writeln!(
        out,
        "{:<19}  {:>7}  {:>9}{columns}  {:>6}",
        "time (UTC)", "pid", "RSS", "limit"
    );
    let peak = peak(records).copied();
    let step_ms = step.as_millis().max(1);
    let bucket = |t: SystemTime| u128::from(jemsafe_report::clock::millis(t)) / step_ms;
    // Rows in time order; events follow the row of their bucket.
    let mut i = 0;
    while i < records.len() {
        let b = bucket(records[i].time());
        let mut j = i;
        while j < records.len() && bucket(records[j].time()) == b {
            j += 1;
        }
        let group = &records[i..j];
        // One row per process in the bucket (a restart inside it shows both).
        let mut shown: Vec<&Sample> = Vec::new();
        for s in samples(group) {
            match shown
                .iter_mut()
                .find(|x| x.pid == s.pid && x.start == s.start)
            {
                Some(x) if s.rss > x.rss => *x = s,
                Some(_) => {}
                None => shown.push(s),
            }
        }
        // The rows and the events of the bucket, in time order.
        let mut lines: Vec<(SystemTime, String)> = events(group)
            .map(|e| (e.time, format!("  {}  {}", stamp(e.time), e.describe())))
            .collect();
        for s in shown {
            // The resident parts, one column each, in the header's order.
            let parts: String = match &s.parts {
                Some(p) => p
                    .resident()
                    .iter()
                    .map(|(_, bytes)| format!("  {:>9}", human(*bytes)))
                    .collect(),
                None => format!("  {:>9}", "-").repeat(PARTS.len()),
            };
            let pct = s
                .limit
                .map(|l| format!("{:.0}%", 100.0 * s.rss as f64 / l.max(1) as f64))
                .unwrap_or_else(|| "-".into());
            let mark = if peak.is_some_and(|p| p == *s) {
                "  <- peak"
            } else {
                ""
            };
            lines.push((
                s.time,
                format!(
                    "{:<19}  {:>7}  {:>9}{parts}  {:>6}{mark}",
                    stamp(s.time),
                    s.pid,
                    human(s.rss),
                    pct,
                ),
            ));
        }
        lines.sort_by_key(|(t, _)| *t);
        for (_, line) in lines {
            out.push_str(&line);
            out.push('\n');
        }
        i = j;
    }
    if let Some(p) = peak {
        let _ = writeln!(
            out,
            "peak: RSS {} at {} UTC (mysqld pid {}){}",
            human(p.rss),
            stamp(p.time),
            p.pid,
            p.limit
                .map(|l| format!(
                    ", {:.0}% of the limit {}",
                    100.0 * p.rss as f64 / l.max(1) as f64,
                    human(l)
                ))
                .unwrap_or_default()
        );
    }
    out
}

/// `2026-12-05 03:46:40` (UTC).
pub fn stamp(t: SystemTime) -> String {
    jemsafe_report::clock::stamp(t)
}

/// `3 d`, `5 h`, `12 min`, `40 s`.
pub fn span_words(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 2 * 86400 {
        format!("{:.0} d", s as f64 / 86400.0)
    } else if s >= 2 * 3600 {
        format!("{:.0} h", s as f64 / 3600.0)
    } else if s >= 120 {
        format!("{:.0} min", s as f64 / 60.0)
    } else {
        format!("{s} s")
    }
}

pub fn human(bytes: u64) -> String {
    jemsafe_report::units::bytes(bytes as f64, jemsafe_report::units::WHOLE)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, event, sample};
    use super::super::{Damage, EventKind, Sample};
    use super::*;

    fn climb() -> Vec<Record> {
        let mut r = vec![event(0, 7, EventKind::Start { restart: false })];
        for i in 0..60 {
            r.push(sample(i * 10 + 5, 7, 100 + i * 6));
        }
        r.push(event(
            300,
            7,
            EventKind::Dump {
                file: "mysqld.7.20261126T182554.0001.limit80.heap".into(),
                trigger: "limit80".into(),
            },
        ));
        r.push(event(
            601,
            7,
            EventKind::Exit {
                how: "was killed by SIGKILL (the kernel's OOM killer)".into(),
                oom: true,
            },
        ));
        r.push(event(602, 8, EventKind::Start { restart: true }));
        r.push(sample(610, 8, 90));
        r.sort_by_key(|r| r.time());
        r
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_sample_in_bytes() {
        let text = csv(&climb(), None);
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(head[0], "time");
        assert!(head.contains(&"rss") && head.contains(&"heap_in_use"));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 61);
        let first: Vec<&str> = rows[0].split(',').collect();
        assert_eq!(first.len(), head.len());
        assert!(
            first[0].ends_with('Z') && first[0].contains('T'),
            "{}",
            first[0]
        );
        assert_eq!(first[3], (100u64 << 20).to_string());
    }

    #[test]
    fn rows_without_parts_keep_their_columns() {
        let mut bare = sample(5, 7, 100);
        if let Record::Sample(s) = &mut bare {
            s.parts = None;
        }
        let records = [sample(0, 7, 100), bare];
        let rows: Vec<String> = csv(&records, None)
            .lines()
            .skip(1)
            .map(String::from)
            .collect();
        assert_eq!(
            rows[0],
            "2026-11-18T11:06:40.000Z,7,100,104857600,52428800,0,0,0,26214400,0,0,0,52428800,\
             115343360,536870912"
        );
        assert_eq!(
            rows[1],
            "2026-11-18T11:06:45.000Z,7,100,104857600,,,,,,,,,52428800,115343360,536870912"
        );
        let text = text(&records, Duration::from_secs(1));
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("    100 MiB")).collect();
        assert_eq!(
            rows[0],
            "2026-11-18 11:06:40        7    100 MiB     50 MiB      0 KiB      0 KiB      0 KiB     \
             25 MiB      0 KiB      0 KiB     20%  <- peak"
        );
        assert_eq!(
            rows[1],
            format!(
                "2026-11-18 11:06:45        7    100 MiB{}     20%",
                "          -".repeat(7)
            )
        );
    }

    /// Scripts read `--format json`: its exact text for a fixed timeline of every kind
    /// of record, with and without damage.
    #[test]
    fn the_json_schema_is_pinned() {
        let unanswered = match sample(2, 7, 120) {
            Record::Sample(s) => Record::Sample(Sample {
                parts: None,
                allocated: None,
                cgroup_usage: None,
                limit: None,
                ..s
            }),
            other => other,
        };
        let events = [
            (0, 7, EventKind::Start { restart: false }),
            (
                3,
                7,
                EventKind::Dump {
                    file: "mysqld.7.20261126T182554.0001.limit80.heap".into(),
                    trigger: "limit80".into(),
                },
            ),
            (4, 7, EventKind::Prof { active: true }),
            (
                5,
                7,
                EventKind::Exit {
                    how: "was killed by SIGKILL".into(),
                    oom: true,
                },
            ),
            (6, 8, EventKind::Start { restart: true }),
            (
                7,
                8,
                EventKind::Exit {
                    how: "exited with status 1".into(),
                    oom: false,
                },
            ),
        ];
        let mut records: Vec<Record> = events
            .into_iter()
            .map(|(s, pid, kind)| event(s, pid, kind))
            .collect();
        records.extend([sample(1, 7, 100), unanswered]);
        let damage = Damage {
            line: 3,
            offset: 120,
            lines: 2,
            why: "not JSON".into(),
        };
        assert_eq!(json(&records, Some(&damage)), PINNED_WITH_DAMAGE);
        records.truncate(1);
        assert_eq!(json(&records, None), PINNED_EVENT_ONLY);
        assert_eq!(
            json(&[], None),
            "{\"damage\":null,\"damaged_lines\":0,\"events\":[],\"peak\":null,\"samples\":[]}\n"
        );
    }

    const PINNED_WITH_DAMAGE: &str = concat!(
        r#"{"damage":{"first_line":3,"first_offset":120,"why":"not JSON"},"damaged_lines":2,"events":[{"event":"start","pid":7,"restart":false,"start_ticks":100,"time":"2026-11-18T11:06:40.000Z"},{"event":"dump","file":"mysqld.7.20261126T182554.0001.limit80.heap","pid":7,"start_ticks":100,"time":"2026-11-18T11:06:43.000Z","trigger":"limit80"},{"active":true,"event":"prof","pid":7,"start_ticks":100,"time":"2026-11-18T11:06:44.000Z"},{"event":"oom_kill","how":"was killed by SIGKILL","pid":7,"start_ticks":100,"time":"2026-11-18T11:06:45.000Z"},{"event":"start","pid":8,"restart":true,"start_ticks":100,"time":"2026-11-18T11:06:46.000Z"},{"event":"exit","how":"exited with status 1","pid":8,"start_ticks":100,"time":"2026-11-18T11:06:47.000Z"}],"peak":{"pid":7,"rss":125829120,"time":"2026-11-18T11:06:42.000Z"},"samples":[{"allocated":52428800,"cgroup_usage":115343360,"dirty_pages":0,"file_backed":0,"fragmentation":0,"heap_in_use":52428800,"limit":536870912,"metadata":0,"outside_jemalloc":26214400,"pid":7,"rss":104857600,"shmem":0,"start_ticks":100,"swap":0,"time":"2026-11-18T11:06:41.000Z"},{"allocated":null,"cgroup_usage":null,"limit":null,"pid":7,"rss":125829120,"start_ticks":100,"time":"2026-11-18T11:06:42.000Z"}]}"#,
        "\n"
    );
    const PINNED_EVENT_ONLY: &str = concat!(
        r#"{"damage":null,"damaged_lines":0,"events":[{"event":"start","pid":7,"restart":false,"start_ticks":100,"time":"2026-11-18T11:06:40.000Z"}],"peak":null,"samples":[]}"#,
        "\n"
    );

    #[test]
    fn json_has_samples_events_and_the_peak() {
        let v: serde_json::Value = serde_json::from_str(&json(&climb(), None)).unwrap();
        assert_eq!(v["samples"].as_array().unwrap().len(), 61);
        let words: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(words, ["start", "dump", "oom_kill", "start"]);
        assert_eq!(v["peak"]["rss"], 454u64 << 20);
    }

    #[test]
    fn the_text_view_fits_its_step_marks_the_peak_and_shows_events_between() {
        let text = text(&climb(), Duration::from_secs(60));
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("2026")).collect();
        // 600 s in minutes (11 buckets on this clock), and the restarted pid's row.
        assert!((11..=12).contains(&rows.len()), "{text}");
        assert!(rows.iter().any(|r| r.contains("       8  ")), "{text}");
        let peak: Vec<&&str> = rows.iter().filter(|l| l.ends_with("<- peak")).collect();
        assert_eq!(peak.len(), 1, "{text}");
        assert!(
            peak[0].contains("454 MiB") && peak[0].contains("89%"),
            "{text}"
        );
        assert!(text.contains("dump mysqld.7.20261126T182554.0001.limit80.heap (limit80)"));
        let oom = text
            .find("OOM kill: mysqld pid 7 was killed by SIGKILL")
            .unwrap();
        let restart = text.find("mysqld pid 8 started (restart)").unwrap();
        assert!(oom < restart && text[..oom].contains("<- peak"), "{text}");
        assert!(text.contains("peak: RSS 454 MiB at "), "{text}");
        assert_eq!(
            super::text(&[], Duration::from_secs(1)),
            "no records in the timeline for this selection\n"
        );
        let _ = at(0);
    }

    #[test]
    fn steps_are_round_and_fit_the_rows() {
        assert_eq!(
            choose_step(Duration::from_secs(600), 40),
            Duration::from_secs(15)
        );
        assert_eq!(
            choose_step(Duration::from_secs(3 * 86400), 40),
            Duration::from_secs(7200)
        );
        assert_eq!(choose_step(Duration::ZERO, 40), Duration::from_secs(1));
        assert_eq!(
            choose_step(Duration::from_secs(400 * 86400), 10),
            Duration::from_secs(40 * 86400)
        );
        assert_eq!(span_words(Duration::from_secs(3 * 86400)), "3 d");
        assert_eq!(span_words(Duration::from_secs(40)), "40 s");
    }
}
