//! The dump directory's names: heap files (jemsafe's for on-demand dumps, jemalloc's for
//! automatic ones), incident records and the timeline.

use std::time::SystemTime;

/// Why a dump was taken; part of the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Usr1,
    Usr2,
    Cli,
    Growth,
    /// `/debug/pprof/heap` of jemsafe's HTTP server.
    Http,
    /// A loadable function of jemsafe_udf.so (`SELECT jemsafe_dump()`).
    Sql,
    /// A `[triggers]` level crossed: `rss<MiB>`, `limit<percent>` or `pressure`.
    Level(LevelName),
}

impl Trigger {
    pub fn as_str(&self) -> &str {
        match self {
            Trigger::Usr1 => "usr1",
            Trigger::Usr2 => "usr2",
            Trigger::Cli => "cli",
            Trigger::Growth => "growth",
            Trigger::Http => "http",
            Trigger::Sql => "sql",
            Trigger::Level(name) => name.as_str(),
        }
    }

    fn parse(s: &str) -> Option<Trigger> {
        Some(match s {
            "usr1" => Trigger::Usr1,
            "usr2" => Trigger::Usr2,
            "cli" => Trigger::Cli,
            "growth" => Trigger::Growth,
            "http" => Trigger::Http,
            "sql" => Trigger::Sql,
            _ => Trigger::Level(LevelName::parse(s)?),
        })
    }

    /// `rss<mib>`: RSS rose past `mib` MiB.
    pub fn rss(mib: u64) -> Trigger {
        Trigger::Level(LevelName::make("rss", Some(mib)))
    }

    /// `limit<percent>`: RSS rose past `percent` % of mysqld's memory limit.
    pub fn limit(percent: u8) -> Trigger {
        Trigger::Level(LevelName::make("limit", Some(u64::from(percent))))
    }

    /// `pressure`: memory pressure (PSI) rose past the configured level.
    pub fn pressure() -> Trigger {
        Trigger::Level(LevelName::make("pressure", None))
    }
}

/// The name of a `[triggers]` level, kept inline so that a trigger stays `Copy`:
/// `rss2048`, `limit90`, `pressure` (at most 24 ASCII bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LevelName {
    len: u8,
    bytes: [u8; 24],
}

impl LevelName {
    fn make(kind: &str, n: Option<u64>) -> LevelName {
        let text = match n {
            Some(n) => format!("{kind}{n}"),
            None => kind.to_owned(),
        };
        let mut bytes = [0u8; 24];
        // kind is ours and n has at most 20 digits: it always fits.
        let len = text.len().min(bytes.len());
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        LevelName {
            len: len as u8,
            bytes,
        }
    }

    /// `rss<digits>`, `limit<digits>` (1..=100) or `pressure`; None for anything else.
    fn parse(s: &str) -> Option<LevelName> {
        if s == "pressure" {
            return Some(LevelName::make("pressure", None));
        }
        let digits = |d: &str| -> Option<u64> {
            (!d.is_empty() && d.len() <= 19 && d.bytes().all(|b| b.is_ascii_digit()))
                .then(|| d.parse().ok())
                .flatten()
        };
        if let Some(n) = s.strip_prefix("rss").and_then(digits) {
            return Some(LevelName::make("rss", Some(n)));
        }
        let p = s.strip_prefix("limit").and_then(digits)?;
        (1..=100)
            .contains(&p)
            .then(|| LevelName::make("limit", Some(p)))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("level")
    }
}

impl std::fmt::Debug for LevelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// `<prefix>.<pid>.<UTC yyyymmddThhmmss>.<seq>.<trigger>.heap`: for one pid, names sort
/// in time order, and each says when, why and from which process. jemalloc's own
/// automatic names (`<prefix>.<pid>.<seq>.<type><n>.heap`) cannot collide with it.
pub fn on_demand_name(
    prefix: &str,
    pid: i32,
    when: SystemTime,
    seq: u64,
    trigger: Trigger,
) -> String {
    format!(
        "{prefix}.{pid}.{}.{seq:04}.{}.heap",
        utc_stamp(when),
        trigger.as_str()
    )
}

/// `20261126T182554` (UTC).
pub fn utc_stamp(when: SystemTime) -> String {
    jemsafe_report::clock::rfc3339_seconds(when)
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | 'Z'))
        .collect()
}

/// What a heap file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapName {
    pub pid: u32,
    pub seq: u64,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// jemsafe's on-demand dump, with its UTC stamp.
    OnDemand { stamp: String, trigger: Trigger },
    /// jemalloc's automatic dump: `i` interval, `m` manual, `u` gdump, `f` final.
    Automatic { kind: char },
}

/// `s` if it is a non-empty run of ASCII digits.
fn number(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

impl HeapName {
    /// Parses `name` if it is a heap file of `prefix`; None for anything else.
    pub fn parse(prefix: &str, name: &str) -> Option<HeapName> {
        let rest = name
            .strip_prefix(prefix)?
            .strip_prefix('.')?
            .strip_suffix(".heap")?;
        let parts: Vec<&str> = rest.split('.').collect();
        match parts.as_slice() {
            [pid, stamp, seq, trigger] => {
                is_stamp(stamp).then_some(())?;
                Some(HeapName {
                    pid: number(pid)?.parse().ok()?,
                    seq: number(seq)?.parse().ok()?,
                    origin: Origin::OnDemand {
                        stamp: (*stamp).to_owned(),
                        trigger: Trigger::parse(trigger)?,
                    },
                })
            }
            [pid, seq, kind] => {
                let mut chars = kind.chars();
                let k = chars.next()?;
                let n = chars.as_str();
                let valid = match k {
                    'i' | 'm' | 'u' => number(n).is_some(),
                    'f' => n.is_empty(),
                    _ => false,
                };
                valid.then_some(())?;
                Some(HeapName {
                    pid: number(pid)?.parse().ok()?,
                    seq: number(seq)?.parse().ok()?,
                    origin: Origin::Automatic { kind: k },
                })
            }
            _ => None,
        }
    }

    /// When jemsafe asked for the dump, from its name; None for jemalloc's own names,
    /// which carry no time.
    pub fn time(&self) -> Option<SystemTime> {
        match &self.origin {
            Origin::OnDemand { stamp, .. } => parse_stamp(stamp),
            Origin::Automatic { .. } => None,
        }
    }

    /// "usr1", "cli", "growth", "limit90", or jemalloc's "interval", "manual", "gdump",
    /// "final".
    pub fn trigger(&self) -> &str {
        match &self.origin {
            Origin::OnDemand { trigger, .. } => trigger.as_str(),
            Origin::Automatic { kind } => automatic_trigger(*kind),
        }
    }
}

/// The trigger of a dump jemalloc named itself, from the letter in its name.
pub fn automatic_trigger(kind: char) -> &'static str {
    match kind {
        'i' => "interval",
        'm' => "manual",
        'u' => "gdump",
        _ => "final",
    }
}

/// Whether `stamp` is shaped as [`utc_stamp`] writes it (`yyyymmddThhmmss`): a name of
/// ours whatever time it says ([`parse_stamp`] tells whether it is one).
pub fn is_stamp(stamp: &str) -> bool {
    stamp.len() == 15
        && stamp.bytes().enumerate().all(|(i, b)| {
            if i == 8 {
                b == b'T'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// `20261126T182554` (UTC) as a time.
pub fn parse_stamp(stamp: &str) -> Option<SystemTime> {
    if !is_stamp(stamp) {
        return None;
    }
    let s = |r: std::ops::Range<usize>| &stamp[r];
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        s(0..4),
        s(4..6),
        s(6..8),
        s(9..11),
        s(11..13),
        s(13..15)
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// The timeline file of `prefix`'s dump directory.
pub fn timeline_name(prefix: &str) -> String {
    format!("{prefix}.timeline")
}

/// At most this many incident records are kept, whatever else retention says.
pub const MAX_INCIDENTS: usize = 100;

/// An incident record's name: `<prefix>.<pid>.<UTC yyyymmddThhmmss>.oom.json`, or with
/// `.<unique>` (16 hex digits) before `.oom.json` when that name was taken.
pub fn incident_name(prefix: &str, pid: i32, when: SystemTime, unique: Option<u64>) -> String {
    let unique = unique.map_or_else(String::new, |u| format!(".{u:016x}"));
    format!("{prefix}.{pid}.{}{unique}.oom.json", utc_stamp(when))
}

/// The pid in an incident record's name, if `name` is one of `prefix`'s.
pub fn parse_incident_name(prefix: &str, name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_suffix(".oom.json")?;
    let (pid, stamp) = rest.split_once('.')?;
    let stamp = match stamp.split_once('.') {
        Some((stamp, unique))
            if unique.len() == 16 && unique.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            stamp
        }
        Some(_) => return None,
        None => stamp,
    };
    // Its shape, not a calendar check: a record is ours by its shape.
    let valid_stamp = is_stamp(stamp);
    (valid_stamp && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc() {
        let t = parse_stamp("20261126T182554").unwrap();
        assert_eq!(
            t,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_717_554)
        );
        assert_eq!(parse_stamp("20261326T182554"), None);
        assert_eq!(parse_stamp("2026112618255"), None);
    }

    /// A dump's name is mysqld's user's to choose: its time is read within RFC 3339's
    /// range or not at all, and a stamp is written for any time.
    #[test]
    fn stamps_at_the_edges_of_the_range_neither_panic_nor_wrap() {
        assert_eq!(parse_stamp("19691231T235959"), None);
        assert_eq!(parse_stamp("00000101T000000"), None);
        assert_eq!(parse_stamp("99999999T999999"), None);
        let last = parse_stamp("99991231T235959").unwrap();
        assert_eq!(utc_stamp(last), "99991231T235959");
        assert_eq!(utc_stamp(last + Duration::from_secs(1)), "99991231T235959");
        assert_eq!(
            utc_stamp(UNIX_EPOCH - Duration::from_secs(86400)),
            "19700101T000000"
        );
    }

    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn on_demand_names_carry_pid_time_seq_and_trigger() {
        let when = UNIX_EPOCH + Duration::from_secs(1_795_717_554);
        let name = on_demand_name("mysqld", 4242, when, 7, Trigger::Usr1);
        assert_eq!(name, "mysqld.4242.20261126T182554.0007.usr1.heap");
        let later = on_demand_name(
            "mysqld",
            4242,
            when + Duration::from_secs(1),
            8,
            Trigger::Cli,
        );
        assert!(later > name);
        let parsed = HeapName::parse("mysqld", &name).unwrap();
        assert_eq!(
            (parsed.pid, parsed.seq, parsed.trigger()),
            (4242, 7, "usr1")
        );
        assert_eq!(parsed.time(), Some(when));
        let auto = HeapName::parse("mysqld", "mysqld.4242.3.i3.heap").unwrap();
        assert_eq!(auto.time(), None);
    }

    #[test]
    fn jemallocs_names_parse() {
        for (name, trigger) in [
            ("mysqld.77.3.i12.heap", "interval"),
            ("mysqld.77.0.m0.heap", "manual"),
            ("mysqld.77.5.u4.heap", "gdump"),
            ("mysqld.77.9.f.heap", "final"),
        ] {
            assert_eq!(
                HeapName::parse("mysqld", name).unwrap().trigger(),
                trigger,
                "{name}"
            );
        }
    }

    #[test]
    fn level_triggers_are_named_and_parse_back() {
        let when = UNIX_EPOCH + Duration::from_secs(1_795_717_554);
        for (t, text) in [
            (Trigger::rss(2048), "rss2048"),
            (Trigger::limit(90), "limit90"),
            (Trigger::pressure(), "pressure"),
        ] {
            assert_eq!(t.as_str(), text);
            let name = on_demand_name("mysqld", 7, when, 1, t);
            assert_eq!(name, format!("mysqld.7.20261126T182554.0001.{text}.heap"));
            let parsed = HeapName::parse("mysqld", &name).unwrap();
            assert_eq!(parsed.trigger(), text);
            assert!(matches!(parsed.origin, Origin::OnDemand { trigger, .. } if trigger == t));
        }
        assert_eq!(Trigger::rss(u64::MAX).as_str(), "rss18446744073709551615");
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "mysqld.77.3.i12.heap.gz",
            "other.77.3.i12.heap",
            "mysqld.x.3.i12.heap",
            "mysqld.77.3.q1.heap",
            "mysqld.77.3.f1.heap",
            "mysqld.77.20261126T18255.0001.usr1.heap",
            "mysqld.77.20261126T182554.0001.bogus.heap",
            "mysqld.77.20261126T182554.0001.rss.heap",
            "mysqld.77.20261126T182554.0001.rss12x.heap",
            "mysqld.77.20261126T182554.0001.limit150.heap",
            "mysqld.77.20261126T182554.0001.limit0.heap",
            "mysqld.77.20261126T182554.0001.pressure2.heap",
            "mysqld.heap",
            "mysqld2.77.3.i12.heap",
            "notes.txt",
        ] {
            assert_eq!(HeapName::parse("mysqld", name), None, "{name}");
        }
    }
}
