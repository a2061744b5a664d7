//! mysqld's memory over time: `<dump dir>/<prefix>.timeline`, one JSON object per line.
//!
//! The first line is a header (`{"jemsafe_timeline":1}`); then samples (RSS and its parts
//! as in `jemsafe memory`, stats.allocated, the cgroup's usage and limit) and events
//! (mysqld started or ended, an OOM kill, a dump, prof on/off), each with the time, the
//! pid and the process's start time (clock ticks after boot), so that restarts and a
//! reused pid never merge two processes. Append-only; bounded by size and age by
//! rewriting its newest part ([`keep_from`]).
//!
//! Reading is a pure function of the bytes ([`parse`]): damaged lines (a crash in the
//! middle of a write, a corrupted or foreign file) are skipped and counted, the rest is
//! read, and the caller says so once.

pub mod file;
pub mod formats;
pub mod growth;
pub mod svg;

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The format version in the header line.
pub const VERSION: u32 = 1;

/// The file's name in the dump directory (the dump directory's names are defined in one
/// place).
pub fn file_name(prefix: &str) -> String {
    crate::dumpdir::naming::timeline_name(prefix)
}

/// The header line, with its newline.
pub fn header() -> Vec<u8> {
    format!("{{\"jemsafe_timeline\":{VERSION}}}\n").into_bytes()
}

/// RSS broken down, in bytes (as `jemsafe memory` has it): one definition, the report
/// crate's.
pub use jemsafe_report::memory::Parts;
use jemsafe_report::memory::PARTS;

/// The key of swap in a line (beside the parts' [`jemsafe_report::memory::Part::line_key`]).
const SWAP_KEY: &str = "swap";

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub time: SystemTime,
    pub pid: u32,
    pub start: u64,
    pub rss: u64,
    /// None when mysqld did not answer in time (RSS is then from /proc alone).
    pub parts: Option<Parts>,
    pub allocated: Option<u64>,
    pub cgroup_usage: Option<u64>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// mysqld started (`restart`: not the first start of this jemsafe).
    Start {
        restart: bool,
    },
    /// mysqld ended: how (`was killed by SIGKILL ...`), and whether the OOM killer did it.
    Exit {
        how: String,
        oom: bool,
    },
    Dump {
        file: String,
        trigger: String,
    },
    Prof {
        active: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: SystemTime,
    pub pid: u32,
    pub start: u64,
    pub kind: EventKind,
}

impl Event {
    /// `dump mysqld.1.x.limit80.heap (limit80)`, `OOM kill: ...`: for the text view.
    pub fn describe(&self) -> String {
        let safe = |s: &str| jemsafe_report::safe::escape(s).into_owned();
        match &self.kind {
            EventKind::Start { restart: false } => format!("mysqld pid {} started", self.pid),
            EventKind::Start { restart: true } => {
                format!("mysqld pid {} started (restart)", self.pid)
            }
            EventKind::Exit { how, oom: true } => {
                format!("OOM kill: mysqld pid {} {}", self.pid, safe(how))
            }
            EventKind::Exit { how, oom: false } => format!("mysqld pid {} {}", self.pid, safe(how)),
            EventKind::Dump { file, trigger } => format!("dump {} ({})", safe(file), safe(trigger)),
            EventKind::Prof { active } => {
                format!("prof.active = {active}")
            }
        }
    }

    /// The word for CSV/JSON: start, exit, oom_kill, dump, prof.
    pub fn word(&self) -> &'static str {
        match &self.kind {
            EventKind::Start { .. } => "start",
            EventKind::Exit { oom: true, .. } => "oom_kill",
            EventKind::Exit { .. } => "exit",
            EventKind::Dump { .. } => "dump",
            EventKind::Prof { .. } => "prof",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Sample(Sample),
    Event(Event),
}

impl Record {
    pub fn time(&self) -> SystemTime {
        match self {
            Record::Sample(s) => s.time,
            Record::Event(e) => e.time,
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Record::Sample(s) => s.pid,
            Record::Event(e) => e.pid,
        }
    }
}

/// One line as it is stored: short keys, absent when unknown (fields a newer writer adds
/// are ignored).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Line {
    /// Milliseconds since the Unix epoch.
    t: u64,
    pid: u32,
    #[serde(default)]
    start: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rss: Option<u64>,
    /// The parts of RSS under their line keys, and swap; absent when mysqld did not
    /// answer. Other keys a newer writer adds land here too, and are ignored.
    #[serde(flatten)]
    parts: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allocated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cg: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    how: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flag: Option<bool>,
}

/// `record` as one line, with its newline.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut l = Line {
        t: jemsafe_report::clock::millis(record.time()),
        pid: record.pid(),
        ..Default::default()
    };
    match record {
        Record::Sample(s) => {
            l.start = s.start;
            l.rss = Some(s.rss);
            if let Some(p) = s.parts {
                for (part, bytes) in PARTS.iter().zip(p.bytes) {
                    l.parts.insert(part.line_key.into(), bytes.into());
                }
                l.parts.insert(SWAP_KEY.into(), p.swap.into());
            }
            l.allocated = s.allocated;
            l.cg = s.cgroup_usage;
            l.limit = s.limit;
        }
        Record::Event(e) => {
            l.start = e.start;
            match &e.kind {
                EventKind::Start { restart } => {
                    l.event = Some("start".into());
                    l.flag = Some(*restart);
                }
                EventKind::Exit { how, oom } => {
                    l.event = Some("exit".into());
                    l.how = Some(how.clone());
                    l.flag = Some(*oom);
                }
                EventKind::Dump { file, trigger } => {
                    l.event = Some("dump".into());
                    l.name = Some(file.clone());
                    l.trigger = Some(trigger.clone());
                }
                EventKind::Prof { active } => {
                    l.event = Some("prof".into());
                    l.flag = Some(*active);
                }
            }
        }
    }
    let mut out = serde_json::to_vec(&l).unwrap_or_default();
    out.push(b'\n');
    out
}

/// What one line holds.
enum Decoded {
    Record(Record),
    Header(u32),
    /// A well-formed line of a kind this version does not know (a newer writer's).
    Unknown,
}

fn decode(line: &[u8]) -> Result<Decoded, String> {
    #[derive(Deserialize)]
    struct Header {
        jemsafe_timeline: u32,
    }
    if let Ok(h) = serde_json::from_slice::<Header>(line) {
        return Ok(Decoded::Header(h.jemsafe_timeline));
    }
    let l: Line = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    // A time RFC 3339 cannot write (after the year 9999) makes the line damaged: nothing
    // downstream formats or draws it.
    let time = jemsafe_report::clock::from_millis(l.t)
        .map_err(|why| format!("\"t\": {} is {why}", l.t))?;
    let Some(event) = l.event else {
        let rss = l.rss.ok_or("a sample without rss")?;
        let parts = parts_of(&l.parts);
        return Ok(Decoded::Record(Record::Sample(Sample {
            time,
            pid: l.pid,
            start: l.start,
            rss,
            parts,
            allocated: l.allocated,
            cgroup_usage: l.cg,
            limit: l.limit,
        })));
    };
    let kind = match event.as_str() {
        "start" => EventKind::Start {
            restart: l.flag.unwrap_or(false),
        },
        "exit" => EventKind::Exit {
            how: l.how.unwrap_or_default(),
            oom: l.flag.unwrap_or(false),
        },
        "dump" => EventKind::Dump {
            file: l.name.ok_or("a dump event without its file")?,
            trigger: l.trigger.unwrap_or_default(),
        },
        "prof" => EventKind::Prof {
            active: l.flag.ok_or("a prof event without its state")?,
        },
        _ => return Ok(Decoded::Unknown),
    };
    Ok(Decoded::Record(Record::Event(Event {
        time,
        pid: l.pid,
        start: l.start,
        kind,
    })))
}

/// The parts of a line: all of them, or None when one is missing (a sample without the
/// shim's reading). Swap is 0 when absent.
fn parts_of(keys: &std::collections::BTreeMap<String, serde_json::Value>) -> Option<Parts> {
    let mut bytes = [0u64; PARTS.len()];
    for (b, part) in bytes.iter_mut().zip(&PARTS) {
        *b = keys.get(part.line_key)?.as_u64()?;
    }
    Some(Parts {
        bytes,
        swap: keys.get(SWAP_KEY).and_then(|v| v.as_u64()).unwrap_or(0),
    })
}

/// Where a file stopped making sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line of the first damaged line, and its byte offset.
    pub line: usize,
    pub offset: usize,
    /// Damaged lines skipped in all.
    pub lines: usize,
    pub why: String,
}

impl Damage {
    pub fn describe(&self) -> String {
        format!(
            "line {} (byte {}) is damaged ({}){}: read the rest around it",
            self.line,
            self.offset,
            self.why(),
            if self.lines > 1 {
                format!(", {} damaged lines in all", self.lines)
            } else {
                String::new()
            }
        )
    }

    /// Why the first damaged line is, with control characters escaped (a parser's
    /// message can quote the line).
    pub fn why(&self) -> String {
        jemsafe_report::safe::escape(&self.why).into_owned()
    }

    /// `2 damaged lines skipped, the first line 4 (byte 120): ...`: the marker the CSV
    /// and SVG outputs carry.
    pub fn summary(&self) -> String {
        format!(
            "{} damaged line{} skipped, the first line {} (byte {}): {}",
            self.lines,
            if self.lines == 1 { "" } else { "s" },
            self.line,
            self.offset,
            self.why()
        )
    }
}

/// A timeline's records, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    pub damage: Option<Damage>,
    /// The file was read from somewhere in its middle (it was longer than the bound):
    /// its first, partial line was dropped.
    pub started_mid_file: bool,
}

/// Reads `bytes` as a timeline: every line that decodes, the others counted. A last line
/// without its newline is a write cut short and counts as damage; so does a header of
/// another version, and everything after it (a foreign format).
pub fn parse(bytes: &[u8], started_mid_file: bool) -> Parsed {
    let mut out = Parsed {
        started_mid_file,
        ..Default::default()
    };
    let mut offset = 0;
    let damage = |out: &mut Parsed, line: usize, offset: usize, why: String| match &mut out.damage {
        Some(d) => d.lines += 1,
        None => {
            out.damage = Some(Damage {
                line,
                offset,
                lines: 1,
                why,
            })
        }
    };
    let mut foreign = false;
    for (i, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let at = offset;
        offset += raw.len();
        if started_mid_file && i == 0 {
            continue;
        }
        let Some(line) = raw.strip_suffix(b"\n") else {
            damage(
                &mut out,
                i + 1,
                at,
                "cut short: no newline at its end".into(),
            );
            continue;
        };
        if line.is_empty() {
            continue;
        }
        if foreign {
            damage(
                &mut out,
                i + 1,
                at,
                "after a header of another version".into(),
            );
            continue;
        }
        match decode(line) {
            Ok(Decoded::Record(r)) => out.records.push(r),
            Ok(Decoded::Header(VERSION)) | Ok(Decoded::Unknown) => {}
            Ok(Decoded::Header(v)) => {
                foreign = true;
                damage(
                    &mut out,
                    i + 1,
                    at,
                    format!("a header of format version {v}; this jemsafe reads version {VERSION}"),
                );
            }
            Err(why) => damage(&mut out, i + 1, at, why),
        }
    }
    out
}

/// Which line to keep the file from, so that it holds nothing older than `max_age` (0:
/// no limit) and, once it is over `max_bytes`, at most half of that (so it is rewritten
/// rarely): the index into `lines` (time and length of each line, in file order).
/// `lines.len()` means none is kept.
pub fn keep_from(
    lines: &[(Option<SystemTime>, usize)],
    max_bytes: u64,
    max_age: Duration,
    now: SystemTime,
) -> usize {
    let mut from = 0;
    if !max_age.is_zero() {
        if let Some(cutoff) = now.checked_sub(max_age) {
            from = lines
                .iter()
                .position(|(t, _)| t.map_or(true, |t| t >= cutoff))
                .unwrap_or(lines.len());
        }
    }
    let total: u64 = lines[from..].iter().map(|(_, n)| *n as u64).sum();
    if total > max_bytes {
        let mut left = total;
        while from < lines.len() && left > max_bytes / 2 {
            left -= lines[from].1 as u64;
            from += 1;
        }
    }
    from
}

/// What a rewrite from line `from` (of [`keep_from`]) drops, by why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dropped {
    /// Lines older than `max_age`.
    pub too_old: usize,
    /// Older lines dropped to bring the file down to half of `max_bytes`.
    pub over_size: usize,
    /// Lines without a readable time (damaged), wherever they were.
    pub damaged: usize,
    pub kept: usize,
}

impl Dropped {
    /// Counts what keeping `lines[from..]` (only those with a time) drops.
    pub fn count(
        lines: &[(Option<SystemTime>, usize)],
        from: usize,
        max_age: Duration,
        now: SystemTime,
    ) -> Dropped {
        let age_from = keep_from(lines, u64::MAX, max_age, now).min(from);
        let timed =
            |part: &[(Option<SystemTime>, usize)]| part.iter().filter(|l| l.0.is_some()).count();
        Dropped {
            too_old: timed(&lines[..age_from]),
            over_size: timed(&lines[age_from..from]),
            damaged: lines.iter().filter(|l| l.0.is_none()).count(),
            kept: timed(&lines[from..]),
        }
    }

    pub fn any(&self) -> bool {
        self.too_old + self.over_size + self.damaged > 0
    }

    /// `dropped 812 lines over max_mb = 16 and 3 damaged lines, kept 1200`.
    pub fn describe(&self, max_mb: u64, max_age_h: u64) -> String {
        let mut why = Vec::new();
        if self.too_old > 0 {
            why.push(format!(
                "{} lines older than [dumps] max_age_h = {max_age_h}",
                self.too_old
            ));
        }
        if self.over_size > 0 {
            why.push(format!(
                "{} older lines to stay within [timeline] max_mb = {max_mb} (the file keeps its \
                 newest half)",
                self.over_size
            ));
        }
        if self.damaged > 0 {
            why.push(format!("{} damaged lines (no readable time)", self.damaged));
        }
        format!("dropped {}; kept {} lines", why.join(", "), self.kept)
    }
}

/// Records of process `pid` (any process when None) from `since` on.
pub fn select(records: &[Record], since: Option<SystemTime>, pid: Option<u32>) -> Vec<Record> {
    records
        .iter()
        .filter(|r| since.map_or(true, |s| r.time() >= s))
        .filter(|r| pid.map_or(true, |p| r.pid() == p))
        .cloned()
        .collect()
}

/// The sample with the highest RSS.
pub fn peak(records: &[Record]) -> Option<&Sample> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Sample(s) => Some(s),
            _ => None,
        })
        .max_by_key(|s| (s.rss, std::cmp::Reverse(s.time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s)
    }

    pub(crate) fn sample(s: u64, pid: u32, rss_mib: u64) -> Record {
        Record::Sample(Sample {
            time: at(s),
            pid,
            start: 100,
            rss: rss_mib << 20,
            parts: Some(
                Parts::default()
                    .with("heap_in_use", (rss_mib / 2) << 20)
                    .with("outside_jemalloc", (rss_mib / 4) << 20),
            ),
            allocated: Some((rss_mib / 2) << 20),
            cgroup_usage: Some((rss_mib + 10) << 20),
            limit: Some(512 << 20),
        })
    }

    pub(crate) fn event(s: u64, pid: u32, kind: EventKind) -> Record {
        Record::Event(Event {
            time: at(s),
            pid,
            start: 100,
            kind,
        })
    }

    fn file(records: &[Record]) -> Vec<u8> {
        let mut out = header();
        for r in records {
            out.extend(encode(r));
        }
        out
    }

    fn all_kinds() -> Vec<Record> {
        vec![
            event(0, 7, EventKind::Start { restart: false }),
            sample(1, 7, 100),
            Record::Sample(Sample {
                parts: None,
                allocated: None,
                cgroup_usage: None,
                limit: None,
                ..match sample(2, 7, 120) {
                    Record::Sample(s) => s,
                    _ => unreachable!(),
                }
            }),
            event(
                3,
                7,
                EventKind::Dump {
                    file: "mysqld.7.x.limit80.heap".into(),
                    trigger: "limit80".into(),
                },
            ),
            event(4, 7, EventKind::Prof { active: false }),
            event(
                5,
                7,
                EventKind::Exit {
                    how: "was killed by SIGKILL (the kernel's OOM killer)".into(),
                    oom: true,
                },
            ),
        ]
    }

    #[test]
    fn every_kind_of_record_round_trips() {
        let records = all_kinds();
        let parsed = parse(&file(&records), false);
        assert_eq!(parsed.damage, None);
        assert_eq!(parsed.records, records);
        let line = String::from_utf8(encode(&records[1])).unwrap();
        assert!(line.len() < 300, "compact: {line}");
    }

    /// The line's keys are the file format: a line written before the parts were
    /// defined in one table reads the same, and a line written now is what older
    /// jemsafes read (the same keys, nothing they would refuse).
    #[test]
    fn lines_keep_their_keys_both_ways() {
        let old = b"{\"t\":1795000001000,\"pid\":7,\"start\":100,\"rss\":104857600,\
            \"heap\":52428800,\"frag\":1,\"dirty\":2,\"meta\":3,\"outside\":26214400,\
            \"file\":4,\"shmem\":5,\"swap\":6,\"allocated\":52428800,\"cg\":115343360,\
            \"limit\":536870912}\n";
        let mut bytes = header();
        bytes.extend(old);
        let parsed = parse(&bytes, false);
        assert_eq!(parsed.damage, None);
        let Some(Record::Sample(s)) = parsed.records.first() else {
            panic!("{parsed:?}");
        };
        let p = s.parts.unwrap();
        assert_eq!(p.bytes, [50 << 20, 1, 2, 3, 25 << 20, 4, 5]);
        assert_eq!(p.swap, 6);
        let line: serde_json::Value = serde_json::from_slice(&encode(&parsed.records[0])).unwrap();
        let again: serde_json::Value = serde_json::from_slice(old).unwrap();
        assert_eq!(line, again);
        // One part missing: a sample without a breakdown, as before.
        let mut bytes = header();
        bytes.extend(b"{\"t\":1795000001000,\"pid\":7,\"rss\":9,\"heap\":1}\n");
        let parsed = parse(&bytes, false);
        assert!(matches!(&parsed.records[..], [Record::Sample(s)] if s.parts.is_none()));
    }

    #[test]
    fn a_truncated_file_is_read_up_to_the_cut() {
        let records = all_kinds();
        let bytes = file(&records);
        let cut = bytes.len() - 10;
        let parsed = parse(&bytes[..cut], false);
        assert_eq!(parsed.records, records[..records.len() - 1]);
        let d = parsed.damage.unwrap();
        assert_eq!((d.line, d.lines), (records.len() + 1, 1));
        assert!(d.describe().contains("cut short"), "{}", d.describe());
    }

    #[test]
    fn corrupt_lines_are_skipped_counted_and_the_first_one_located() {
        let records = all_kinds();
        let mut bytes = file(&records[..2]);
        let damaged_at = bytes.len();
        bytes.extend(b"{\"t\":12,\"pid\":\x00garbage\n\xff\xfe\n");
        bytes.extend(file(&records[2..]).split_off(header().len()));
        let parsed = parse(&bytes, false);
        assert_eq!(parsed.records, records);
        let d = parsed.damage.unwrap();
        assert_eq!((d.line, d.offset, d.lines), (4, damaged_at, 2));
    }

    #[test]
    fn another_versions_file_and_unknown_events_are_not_misread() {
        let mut bytes = b"{\"jemsafe_timeline\":2}\n".to_vec();
        bytes.extend(encode(&sample(1, 7, 100)));
        let parsed = parse(&bytes, false);
        assert!(parsed.records.is_empty());
        assert!(parsed.damage.unwrap().why.contains("format version 2"));
        let mut bytes = header();
        bytes.extend(b"{\"t\":1,\"pid\":7,\"event\":\"reload\"}\n");
        bytes.extend(encode(&sample(1, 7, 100)));
        let parsed = parse(&bytes, false);
        assert_eq!((parsed.records.len(), parsed.damage), (1, None));
    }

    #[test]
    fn a_read_from_the_middle_drops_its_partial_first_line() {
        let bytes = file(&all_kinds());
        let tail = &bytes[bytes.len() / 2..];
        let parsed = parse(tail, true);
        assert_eq!(parsed.damage, None);
        assert!(!parsed.records.is_empty());
    }

    #[test]
    fn the_file_keeps_its_newest_half_once_over_size_and_nothing_too_old() {
        let now = at(10_000);
        let lines: Vec<(Option<SystemTime>, usize)> =
            (0..100).map(|i| (Some(at(i * 100)), 100)).collect();
        assert_eq!(keep_from(&lines, 20_000, Duration::ZERO, now), 0);
        // 10 000 bytes over a 9 000 byte bound: down to 4 500.
        assert_eq!(keep_from(&lines, 9_000, Duration::ZERO, now), 55);
        // Older than an hour (3600 s back from 10 000 s: lines before 6 400 s).
        assert_eq!(
            keep_from(&lines, 1 << 30, Duration::from_secs(3600), now),
            64
        );
        assert_eq!(keep_from(&[], 10, Duration::from_secs(1), now), 0);
        // The header (no time) is never what makes the file too old.
        let with_header = [(None, 22), (Some(at(9_999)), 100)];
        assert_eq!(
            keep_from(&with_header, 1 << 20, Duration::from_secs(60), now),
            0
        );
    }

    #[test]
    fn a_rewrite_counts_what_it_drops_and_why() {
        let now = at(10_000);
        let mut lines: Vec<(Option<SystemTime>, usize)> =
            (0..100).map(|i| (Some(at(i * 100)), 100)).collect();
        lines.insert(70, (None, 40));
        // Older than an hour: gone first; then over 3 000 bytes: down to half.
        let from = keep_from(&lines, 3_000, Duration::from_secs(3600), now);
        let d = Dropped::count(&lines, from, Duration::from_secs(3600), now);
        assert_eq!(d.too_old + d.over_size + d.kept, 100);
        assert_eq!((d.too_old, d.damaged), (64, 1));
        assert!(d.over_size > 0 && d.kept <= 15, "{d:?}");
        let text = d.describe(16, 1);
        assert!(
            text.contains("64 lines older than [dumps] max_age_h = 1")
                && text.contains("older lines to stay within [timeline] max_mb = 16")
                && text.contains("1 damaged lines"),
            "{text}"
        );
        // Size alone.
        let from = keep_from(&lines[71..], 1_000, Duration::ZERO, now);
        let d = Dropped::count(&lines[71..], from, Duration::ZERO, now);
        assert_eq!((d.too_old, d.over_size, d.kept), (0, 25, 5));
        assert!(!d.describe(1, 0).contains("max_age_h"));
        assert!(!Dropped::count(&lines[71..], 0, Duration::ZERO, now).any());
    }

    /// The campaign's line: `"t": 253402300801000` (a year above 9999) made the page,
    /// every format of `jemsafe timeline` and the live page panic formatting it.
    #[test]
    fn a_time_after_the_year_9999_is_a_damaged_line_not_a_record() {
        let mut bytes = header();
        bytes.extend(encode(&sample(1, 7, 100)));
        bytes.extend(b"{\"t\":253402300801000,\"pid\":7,\"start\":100,\"rss\":1}\n");
        bytes.extend(b"{\"t\":18446744073709551615,\"pid\":7,\"event\":\"exit\",\"flag\":true}\n");
        bytes.extend(b"{\"t\":253402300799999,\"pid\":7,\"start\":100,\"rss\":2}\n");
        let parsed = parse(&bytes, false);
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(
            jemsafe_report::clock::rfc3339_seconds(parsed.records[1].time()),
            "9999-12-31T23:59:59Z"
        );
        let d = parsed.damage.unwrap();
        assert_eq!((d.line, d.lines), (3, 2));
        assert!(d.why.contains("after the year 9999"), "{}", d.why);
        // Every rendering of what was read stays whole.
        let records = parsed.records;
        for text in [
            formats::csv(&records, Some(&d)),
            formats::json(&records, Some(&d)),
            formats::text(&records, Duration::from_secs(60)),
            svg::svg(&records, "t", Some(&d), None),
        ] {
            assert!(text.contains("9999-12-31"), "{text}");
        }
    }

    #[test]
    fn damage_is_marked_in_csv_json_and_svg() {
        let damage = Damage {
            line: 4,
            offset: 120,
            lines: 2,
            why: "expected value\nat line 1".into(),
        };
        let records = [sample(1, 7, 100)];
        let csv = formats::csv(&records, Some(&damage));
        assert_eq!(
            csv.lines().last().unwrap(),
            "# jemsafe: 2 damaged lines skipped, the first line 4 (byte 120): expected value\\x0aat line 1"
        );
        assert!(!formats::csv(&records, None).contains('#'));
        let v: serde_json::Value =
            serde_json::from_str(&formats::json(&records, Some(&damage))).unwrap();
        assert_eq!(v["damaged_lines"], 2);
        assert_eq!(v["damage"]["first_line"], 4);
        assert_eq!(v["damage"]["why"], "expected value\nat line 1");
        let v: serde_json::Value = serde_json::from_str(&formats::json(&records, None)).unwrap();
        assert_eq!(
            (v["damaged_lines"].clone(), v["damage"].clone()),
            (0.into(), serde_json::Value::Null)
        );
        let svg = svg::svg(&records, "t", Some(&damage), None);
        assert!(
            svg.contains(">timeline damaged: 2 damaged lines skipped, the first line 4"),
            "{svg}"
        );
        assert!(!svg::svg(&records, "t", None, None).contains("damaged"));
    }

    #[test]
    fn selection_by_time_and_pid_and_the_peak() {
        let records = vec![sample(1, 7, 100), sample(2, 7, 300), sample(3, 8, 200)];
        assert_eq!(select(&records, Some(at(2)), None).len(), 2);
        assert_eq!(select(&records, None, Some(8)).len(), 1);
        assert_eq!(peak(&records).unwrap().rss, 300 << 20);
        assert_eq!(peak(&select(&records, None, Some(8))).unwrap().pid, 8);
    }
}
