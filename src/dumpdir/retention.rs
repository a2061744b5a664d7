//! Which files of the dump directory to delete: a pure function of what is there, the
//! policy, the running mysqld and the time.
//!
//! Heap files are ordered by what their names say before what their mtimes say: mysqld's
//! user can `touch` a file, a backup can be restored with odd times, and the clock can
//! step, and none of that may make retention delete the dumps mysqld has just written.
//! Besides heap files, it removes what nothing else ever will: sidecars whose dump is
//! gone, partial files left by an interrupted dump and temporary files left by an
//! interrupted rewrite, once they are a minute old; and incident records, which go with
//! the dumps of their time and within their own cap. The timeline is known and never
//! deleted here (it bounds itself).

use super::files::TEMP_PREFIX;
use super::naming::{parse_incident_name, timeline_name, HeapName, Origin, MAX_INCIDENTS};
use std::time::{Duration, SystemTime};

/// `[dumps] keep`, `max_total_mb`, `max_age_h`; 0 switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep: u64,
    pub max_total_bytes: u64,
    pub max_age: Duration,
}

/// How old an orphan sidecar or a partial file must be before it goes: a dump's sidecar
/// is written milliseconds after its heap file, and a partial file lives while its
/// dump is written; a minute leaves any of them room to finish.
pub const ORPHAN_AGE: Duration = Duration::from_secs(60);

/// An entry of the dump directory that carries one of jemsafe's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub modified: SystemTime,
    /// A regular file. Nothing else (a symlink, a directory, a FIFO) is counted or deleted.
    pub regular: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Heap(HeapName),
    /// `<heap file name>.json`
    Sidecar {
        of: String,
    },
    /// `.jemsafe-partial.<heap file name>`: an on-demand dump being written, or what an
    /// interrupted one left.
    Partial {
        of: String,
    },
    /// `<prefix>.<pid>.<time>.oom.json`: an incident record of process `pid`.
    Incident {
        pid: u32,
    },
    /// `<prefix>.timeline`.
    Timeline,
    /// `.<timeline name>.jemsafe-<random>.tmp`: the timeline being rewritten, or what an
    /// interrupted rewrite left.
    Staged {
        of: String,
    },
}

impl Kind {
    /// What `name` is among the files of `prefix`; None for any other name.
    pub fn of(prefix: &str, name: &str) -> Option<Kind> {
        if let Some(heap) = HeapName::parse(prefix, name) {
            return Some(Kind::Heap(heap));
        }
        if let Some(pid) = parse_incident_name(prefix, name) {
            return Some(Kind::Incident { pid });
        }
        if name == timeline_name(prefix) {
            return Some(Kind::Timeline);
        }
        if let Some(of) = staged_of(name).filter(|of| *of == timeline_name(prefix)) {
            return Some(Kind::Staged { of: of.to_owned() });
        }
        if let Some(of) = name.strip_suffix(".json") {
            return HeapName::parse(prefix, of).map(|_| Kind::Sidecar { of: of.to_owned() });
        }
        let of = name.strip_prefix(TEMP_PREFIX)?;
        // jemsafe writes partial files for its own on-demand dumps only.
        match HeapName::parse(prefix, of)?.origin {
            Origin::OnDemand { .. } => Some(Kind::Partial { of: of.to_owned() }),
            Origin::Automatic { .. } => None,
        }
    }
}

/// The final name of a temporary name of [`jemsafe_report::create::temp_name`]'s.
fn staged_of(name: &str) -> Option<&str> {
    let (of, random) = name
        .strip_prefix('.')?
        .strip_suffix(".tmp")?
        .rsplit_once(".jemsafe-")?;
    (random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(of)
}

/// What retention decides from.
#[derive(Debug, Clone, Copy)]
pub struct State<'a> {
    pub entries: &'a [Entry],
    /// The running mysqld's pid, if one runs.
    pub running: Option<u32>,
    /// Final names of the on-demand dumps in flight: their partial files are being written
    /// (by a stopped mysqld, perhaps, for longer than a minute).
    pub in_flight: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Heap,
    /// The sidecar of a heap file deleted in the same plan.
    Sidecar,
    /// A sidecar whose heap file is gone.
    OrphanSidecar,
    Partial,
    /// A temporary file of an interrupted rewrite.
    Staged,
    Incident,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub what: What,
    pub reason: String,
}

/// The heap files among `entries` (regular ones only), oldest first, each with the time
/// it is ordered by.
///
/// The time is the one in jemsafe's file name, else the mtime (jemalloc's own names carry
/// none), and never later than `now`: a time in the future is taken as now. Within one
/// process jemalloc's dump counter is the truth, so a later automatic dump is never older
/// than an earlier one whatever the mtimes say. The running mysqld's dumps come after
/// every other process's: it started after all of them ended, whatever the clock said.
pub fn chronological(
    entries: &[Entry],
    running: Option<u32>,
    now: SystemTime,
) -> Vec<(&Entry, &HeapName, SystemTime)> {
    let mut heaps: Vec<(&Entry, &HeapName, SystemTime)> = entries
        .iter()
        .filter(|e| e.regular)
        .filter_map(|e| match &e.kind {
            Kind::Heap(h) => Some((e, h, h.time().unwrap_or(e.modified).min(now))),
            _ => None,
        })
        .collect();
    // Automatic dumps by process and counter; each takes at least the time of the one
    // before it.
    let mut automatic: Vec<usize> = (0..heaps.len())
        .filter(|&i| matches!(heaps[i].1.origin, Origin::Automatic { .. }))
        .collect();
    automatic.sort_by_key(|&i| (heaps[i].1.pid, heaps[i].1.seq));
    let mut before: Option<(u32, SystemTime)> = None;
    for i in automatic {
        let pid = heaps[i].1.pid;
        if let Some((p, t)) = before {
            if p == pid && heaps[i].2 < t {
                heaps[i].2 = t;
            }
        }
        before = Some((pid, heaps[i].2));
    }
    heaps.sort_by(|a, b| {
        let key = |(e, h, t): &(&Entry, &HeapName, SystemTime)| {
            (Some(h.pid) == running, *t, h.pid, h.seq, e.name.clone())
        };
        key(a).cmp(&key(b))
    });
    heaps
}

/// The files to delete, with the reason for each: heap files beyond the policy's
/// limits, oldest first, each with its sidecar; then orphan sidecars and partial files
/// older than [`ORPHAN_AGE`]; then incident records ([`retire_incidents`]). The newest
/// heap file, which is the running mysqld's newest when it has one, is never deleted,
/// whatever the limits say.
pub fn plan(state: &State, policy: &Policy, now: SystemTime) -> Vec<Deletion> {
    let age = |t: SystemTime| now.duration_since(t.min(now)).unwrap_or_default();
    let heaps = chronological(state.entries, state.running, now);
    // The running mysqld's dumps come last, so this is its newest when it has one.
    let newest = heaps.last().map(|(e, _, _)| e.name.as_str());
    let has_sidecar = |heap: &str| {
        state
            .entries
            .iter()
            .any(|e| e.regular && matches!(&e.kind, Kind::Sidecar { of } if of == heap))
    };

    let mut count = heaps.len() as u64;
    let mut total: u64 = heaps.iter().map(|(e, _, _)| e.size).sum();
    let mut out = Vec::new();
    for (file, _, when) in &heaps {
        if Some(file.name.as_str()) == newest {
            continue;
        }
        let reason = if policy.keep > 0 && count > policy.keep {
            format!("more than keep = {} files", policy.keep)
        } else if policy.max_total_bytes > 0 && total > policy.max_total_bytes {
            format!(
                "heap files take {} MiB, more than max_total_mb = {}",
                total >> 20,
                policy.max_total_bytes >> 20
            )
        } else if !policy.max_age.is_zero() && age(*when) > policy.max_age {
            format!("older than max_age_h = {}", policy.max_age.as_secs() / 3600)
        } else {
            continue;
        };
        count -= 1;
        total -= file.size;
        out.push(Deletion {
            name: file.name.clone(),
            what: What::Heap,
            reason,
        });
        if has_sidecar(&file.name) {
            out.push(Deletion {
                name: format!("{}.json", file.name),
                what: What::Sidecar,
                reason: format!("the sidecar of {}", file.name),
            });
        }
    }

    for e in state.entries.iter().filter(|e| e.regular) {
        let old = age(e.modified);
        if old <= ORPHAN_AGE {
            continue;
        }
        match &e.kind {
            // A heap-named entry of any kind keeps its sidecar: only a name that is
            // gone altogether makes an orphan.
            Kind::Sidecar { of }
                if !state
                    .entries
                    .iter()
                    .any(|h| matches!(&h.kind, Kind::Heap(_)) && h.name == *of) =>
            {
                out.push(Deletion {
                    name: e.name.clone(),
                    what: What::OrphanSidecar,
                    reason: format!(
                        "an orphan sidecar: its dump {of} is gone; {} s old",
                        old.as_secs()
                    ),
                });
            }
            Kind::Partial { of } if !state.in_flight.contains(of) => {
                out.push(Deletion {
                    name: e.name.clone(),
                    what: What::Partial,
                    reason: format!(
                        "the partial file of a dump that was interrupted (jemsafe or mysqld killed); {} s old",
                        old.as_secs()
                    ),
                });
            }
            Kind::Staged { of } => out.push(Deletion {
                name: e.name.clone(),
                what: What::Staged,
                reason: format!(
                    "the temporary file of an interrupted rewrite of {of}; {} s old",
                    old.as_secs()
                ),
            }),
            _ => {}
        }
    }
    let deleted: Vec<&str> = out.iter().map(|d| d.name.as_str()).collect();
    let kept: Vec<&Entry> = heaps
        .iter()
        .map(|(e, _, _)| *e)
        .filter(|e| !deleted.contains(&e.name.as_str()))
        .collect();
    out.extend(retire_incidents(state.entries, &kept, policy.max_age, now));
    out
}

/// Incident records to delete, with the reason: kept while a dump of their process is
/// kept, or while they are no older than the oldest dump kept (the dumps of their
/// time); never beyond `max_age` (0 = no limit) or the newest [`MAX_INCIDENTS`].
fn retire_incidents(
    entries: &[Entry],
    kept_heaps: &[&Entry],
    max_age: Duration,
    now: SystemTime,
) -> Vec<Deletion> {
    let mut incidents: Vec<(&Entry, u32)> = entries
        .iter()
        .filter(|e| e.regular)
        .filter_map(|e| match e.kind {
            Kind::Incident { pid } => Some((e, pid)),
            _ => None,
        })
        .collect();
    incidents.sort_by(|(a, _), (b, _)| a.modified.cmp(&b.modified).then(a.name.cmp(&b.name)));
    let heap_pid = |e: &Entry| match &e.kind {
        Kind::Heap(h) => Some(h.pid),
        _ => None,
    };
    let oldest_heap = kept_heaps.iter().map(|h| h.modified).min();
    let excess = incidents.len().saturating_sub(MAX_INCIDENTS);
    let mut out = Vec::new();
    for (i, (inc, pid)) in incidents.into_iter().enumerate() {
        let age = now.duration_since(inc.modified).unwrap_or_default();
        let reason = if i < excess {
            format!("more than {MAX_INCIDENTS} incident records")
        } else if kept_heaps.iter().any(|h| heap_pid(h) == Some(pid)) {
            continue;
        } else if !max_age.is_zero() && age > max_age {
            format!("older than max_age_h = {}", max_age.as_secs() / 3600)
        } else if oldest_heap.is_some_and(|t| inc.modified < t) {
            "the dumps of its time are gone".to_owned()
        } else {
            continue;
        };
        out.push(Deletion {
            name: inc.name.clone(),
            what: What::Incident,
            reason,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const S: Duration = Duration::from_secs(1);

    fn entry(name: &str, size: u64, modified: SystemTime) -> Entry {
        Entry {
            name: name.to_owned(),
            kind: Kind::of("mysqld", name).unwrap_or_else(|| panic!("{name} is not ours")),
            size,
            modified,
            regular: true,
        }
    }

    /// jemalloc's interval dump `i` of pid 1, `age_h` hours old.
    fn file(i: u64, size: u64, age_h: u64, now: SystemTime) -> Entry {
        entry(
            &format!("mysqld.1.{i}.i{i}.heap"),
            size,
            now - HOUR * age_h as u32,
        )
    }

    /// jemsafe's dump `seq` of `pid` asked for at `when`.
    fn on_demand(pid: i32, when: SystemTime, seq: u64) -> String {
        super::super::on_demand_name("mysqld", pid, when, seq, super::super::Trigger::Cli)
    }

    fn state(entries: &[Entry]) -> State<'_> {
        State {
            entries,
            running: None,
            in_flight: &[],
        }
    }

    fn names(plan: &[Deletion]) -> Vec<&str> {
        plan.iter().map(|d| d.name.as_str()).collect()
    }

    fn keep(n: u64) -> Policy {
        Policy {
            keep: n,
            max_total_bytes: 0,
            max_age: Duration::ZERO,
        }
    }

    /// A whole second, as names carry them.
    fn whole(t: SystemTime) -> SystemTime {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn keeps_the_newest_n() {
        let now = SystemTime::now();
        let files: Vec<_> = (0..5).map(|i| file(i, 10, 5 - i, now)).collect();
        assert_eq!(
            names(&plan(&state(&files), &keep(3), now)),
            ["mysqld.1.0.i0.heap", "mysqld.1.1.i1.heap"]
        );
    }

    #[test]
    fn total_size_and_age_limits() {
        let now = SystemTime::now();
        let files: Vec<_> = (0..4).map(|i| file(i, 100, 40 - i * 10, now)).collect();
        let by_size = Policy {
            keep: 0,
            max_total_bytes: 250,
            max_age: Duration::ZERO,
        };
        assert_eq!(
            names(&plan(&state(&files), &by_size, now)),
            ["mysqld.1.0.i0.heap", "mysqld.1.1.i1.heap"]
        );
        let by_age = Policy {
            keep: 0,
            max_total_bytes: 0,
            max_age: HOUR * 25,
        };
        let p = plan(&state(&files), &by_age, now);
        assert_eq!(names(&p), ["mysqld.1.0.i0.heap", "mysqld.1.1.i1.heap"]);
        assert!(p[0].reason.contains("max_age_h = 25"));
    }

    #[test]
    fn never_deletes_the_newest_even_if_it_breaks_every_limit() {
        let now = SystemTime::now();
        let files = vec![file(0, 1 << 40, 1000, now)];
        let strict = Policy {
            keep: 1,
            max_total_bytes: 1,
            max_age: HOUR,
        };
        assert!(plan(&state(&files), &strict, now).is_empty());
        assert!(plan(&state(&[]), &strict, now).is_empty());
    }

    /// The campaign's fault: two dumps with mtimes a day ahead made the running mysqld's
    /// fresh dumps the "oldest", and keep = 3 deleted them as they came.
    #[test]
    fn future_mtimes_count_as_now_and_the_running_processs_dumps_are_newest() {
        let now = whole(SystemTime::now());
        let ahead = now + 24 * HOUR;
        let mut files = vec![
            entry(&on_demand(50, now - HOUR, 1), 10, ahead),
            entry("mysqld.50.7.i7.heap", 10, ahead),
        ];
        for seq in 1..=3 {
            let t = now - S * (4 - seq) as u32;
            files.push(entry(&on_demand(60, t, seq), 10, t));
        }
        let running = State {
            running: Some(60),
            ..state(&files)
        };
        let p = plan(&running, &keep(3), now);
        assert_eq!(
            names(&p),
            [files[0].name.as_str(), files[1].name.as_str()],
            "the old process's dumps go first"
        );
        // Without a running process: the future mtime counts as now, the name's time
        // as itself, so only jemalloc's file (no time in its name) is newer than the
        // three fresh ones.
        let p = plan(&state(&files), &keep(3), now);
        assert_eq!(names(&p), [files[0].name.as_str(), files[2].name.as_str()]);
        // Ages are never negative: nothing here is older than a day.
        let by_age = Policy {
            keep: 0,
            max_total_bytes: 0,
            max_age: HOUR * 24,
        };
        assert!(plan(&running, &by_age, now).is_empty());
    }

    #[test]
    fn the_name_orders_before_the_mtime() {
        let now = whole(SystemTime::now());
        // jemsafe's names: the time in the name, whatever the mtime says.
        let early = on_demand(7, now - 3 * S, 1);
        let late = on_demand(7, now - 2 * S, 2);
        let files = [entry(&late, 1, now - HOUR), entry(&early, 1, now)];
        let order: Vec<&str> = chronological(&files, None, now)
            .iter()
            .map(|(e, _, _)| e.name.as_str())
            .collect();
        assert_eq!(order, [early.as_str(), late.as_str()]);
        // jemalloc's names: its counter within a process, whatever the mtimes say.
        let files = [
            entry("mysqld.7.2.i2.heap", 1, now - HOUR),
            entry("mysqld.7.1.u1.heap", 1, now - 2 * S),
            entry("mysqld.7.0.i0.heap", 1, now - 3 * S),
        ];
        let order: Vec<&str> = chronological(&files, None, now)
            .iter()
            .map(|(e, _, _)| e.name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "mysqld.7.0.i0.heap",
                "mysqld.7.1.u1.heap",
                "mysqld.7.2.i2.heap"
            ]
        );
        // Between processes without a running one: the mtime, as a fallback.
        let files = [
            entry("mysqld.9.0.i0.heap", 1, now - 2 * S),
            entry("mysqld.8.5.i5.heap", 1, now - HOUR),
        ];
        assert_eq!(
            names(&plan(&state(&files), &keep(1), now)),
            ["mysqld.8.5.i5.heap"]
        );
    }

    #[test]
    fn the_newest_dump_of_the_running_process_is_never_deleted() {
        let now = whole(SystemTime::now());
        // Its only dump is from before a clock step: the name says an hour ago, and
        // another process's dump says now; keep = 1 keeps it all the same.
        let files = [
            entry(&on_demand(60, now - HOUR, 1), 1 << 30, now - HOUR),
            entry(&on_demand(50, now, 1), 1, now),
        ];
        let running = State {
            running: Some(60),
            ..state(&files)
        };
        let strict = Policy {
            keep: 1,
            max_total_bytes: 1,
            max_age: Duration::from_secs(60),
        };
        let p = plan(&running, &strict, now);
        assert_eq!(names(&p), [files[1].name.as_str()]);
    }

    #[test]
    fn orphan_sidecars_and_partial_files_go_after_a_minute() {
        let now = whole(SystemTime::now());
        let heap = on_demand(7, now - HOUR, 1);
        let gone = on_demand(7, now - HOUR, 2);
        let fresh_gone = on_demand(7, now - S, 3);
        let writing = on_demand(7, now - HOUR, 4);
        let files = [
            entry(&heap, 1, now - HOUR),
            entry(&format!("{heap}.json"), 1, now - HOUR),
            entry(&format!("{gone}.json"), 1, now - 2 * ORPHAN_AGE),
            entry(&format!("{fresh_gone}.json"), 1, now - S),
            entry(&format!("{TEMP_PREFIX}{gone}"), 1, now - 2 * ORPHAN_AGE),
            entry(&format!("{TEMP_PREFIX}{fresh_gone}"), 1, now - S),
            entry(&format!("{TEMP_PREFIX}{writing}"), 1, now - HOUR),
            // A future mtime counts as now: not old yet.
            entry(
                &format!("{TEMP_PREFIX}{}", on_demand(7, now, 5)),
                1,
                now + HOUR,
            ),
        ];
        let in_flight = [writing.clone()];
        let s = State {
            in_flight: &in_flight,
            ..state(&files)
        };
        let p = plan(&s, &keep(0), now);
        assert_eq!(
            names(&p),
            [format!("{gone}.json"), format!("{TEMP_PREFIX}{gone}")]
        );
        assert_eq!(p[0].what, What::OrphanSidecar);
        assert!(p[0].reason.contains("120 s old"), "{}", p[0].reason);
        assert_eq!(p[1].what, What::Partial);
    }

    #[test]
    fn a_deleted_heap_file_takes_its_sidecar() {
        let now = whole(SystemTime::now());
        let old = on_demand(7, now - HOUR, 1);
        let new = on_demand(7, now, 2);
        let files = [
            entry(&old, 1, now),
            entry(&format!("{old}.json"), 1, now),
            entry(&new, 1, now),
        ];
        let p = plan(&state(&files), &keep(1), now);
        assert_eq!(names(&p), [old.clone(), format!("{old}.json")]);
        assert_eq!(p[1].what, What::Sidecar);
    }

    #[test]
    fn only_jemsafes_own_names_are_anything() {
        for name in [
            "notes.txt",
            "other.1.2.i2.heap",
            "mysqld.1.2.i2.heap.gz",
            "mysqld.1.2.i2.heap.json.bak",
            "notes.txt.json",
            ".jemsafe-partial.notes.txt",
            // jemsafe writes partial files for on-demand names only.
            ".jemsafe-partial.mysqld.1.2.i2.heap",
            ".jemsafe-partial.mysqld.1.20261126T182554.0001.cli.heap.json",
            "x.jemsafe-partial.mysqld.1.20261126T182554.0001.cli.heap",
        ] {
            assert_eq!(Kind::of("mysqld", name), None, "{name}");
        }
        assert!(matches!(
            Kind::of("mysqld", "mysqld.1.2.i2.heap.json"),
            Some(Kind::Sidecar { of }) if of == "mysqld.1.2.i2.heap"
        ));
    }

    #[test]
    fn only_regular_files_are_counted_or_deleted() {
        let now = whole(SystemTime::now());
        let gone = on_demand(7, now - HOUR, 2);
        let mut files = vec![
            file(0, 1, 3, now),
            file(1, 1, 2, now),
            file(2, 1, 1, now),
            entry(&format!("{gone}.json"), 1, now - HOUR),
            entry(&format!("{TEMP_PREFIX}{gone}"), 1, now - HOUR),
        ];
        for f in files.iter_mut().take(2) {
            f.regular = false; // a symlink planted under a heap name
        }
        files[3].regular = false;
        files[4].regular = false;
        assert!(plan(&state(&files), &keep(1), now).is_empty());
        // A planted non-regular heap name does not make its sidecar an orphan either.
        let files = [
            Entry {
                regular: false,
                ..entry(&gone, 1, now)
            },
            entry(&format!("{gone}.json"), 1, now - HOUR),
        ];
        assert!(plan(&state(&files), &keep(1), now).is_empty());
    }

    /// An incident record of `pid`, `age_h` hours old.
    fn incident(pid: u32, age_h: u32, now: SystemTime) -> Entry {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_717_554);
        let name = super::super::naming::incident_name("mysqld", pid as i32, when, None);
        entry(&name, 1, now - HOUR * age_h)
    }

    fn incidents_deleted(plan: &[Deletion]) -> Vec<String> {
        plan.iter()
            .filter(|d| d.what == What::Incident)
            .map(|d| {
                format!(
                    "pid {} {}",
                    d.name.split('.').nth(1).unwrap_or(""),
                    d.reason
                )
            })
            .collect()
    }

    #[test]
    fn incidents_go_with_the_dumps_of_their_time() {
        let now = whole(SystemTime::now());
        let heap =
            |pid: u32, age_h: u32| entry(&format!("mysqld.{pid}.1.i1.heap"), 1, now - HOUR * age_h);
        // pid 1's dumps remain; pid 2 has none, but dumps older than it remain; pid 3 is
        // newer than every dump; pid 4 is too old.
        let incidents = [
            incident(1, 50, now),
            incident(2, 30, now),
            incident(3, 5, now),
            incident(4, 400, now),
        ];
        let mut files = vec![heap(1, 60), heap(9, 40), heap(8, 10)];
        files.extend(incidents.iter().cloned());
        let week = Policy {
            keep: 0,
            max_total_bytes: 0,
            max_age: HOUR * 168,
        };
        assert_eq!(
            incidents_deleted(&plan(&state(&files), &week, now)),
            ["pid 4 older than max_age_h = 168"]
        );
        // pid 1's dumps deleted by this very plan, and only newer dumps left: its record
        // goes too, with every record older than the oldest dump kept.
        let p = plan(&state(&files), &keep(1), now);
        assert_eq!(
            incidents_deleted(&p),
            [
                "pid 4 the dumps of its time are gone",
                "pid 1 the dumps of its time are gone",
                "pid 2 the dumps of its time are gone",
            ]
        );
        // Without any dump, only age removes them.
        assert!(plan(&state(&incidents), &keep(1), now).is_empty());
    }

    /// The defect of issue 24: the cap held only when a heap file was deleted in the same
    /// pass. Here no heap file goes, and the cap holds all the same.
    #[test]
    fn the_incident_cap_holds_when_no_dump_is_deleted() {
        let now = whole(SystemTime::now());
        let mut files: Vec<Entry> = (0..MAX_INCIDENTS as u32 + 2)
            .map(|pid| incident(pid + 10, 1, now))
            .collect();
        files.push(file(0, 1, 2, now));
        let p = plan(&state(&files), &keep(0), now);
        assert_eq!(
            incidents_deleted(&p),
            [
                // Oldest first; within one time, by name.
                "pid 10 more than 100 incident records",
                "pid 100 more than 100 incident records"
            ]
        );
        assert!(p.iter().all(|d| d.what == What::Incident));
    }

    #[test]
    fn the_timeline_is_known_and_kept_and_its_stale_rewrites_go_after_a_minute() {
        let now = whole(SystemTime::now());
        assert_eq!(Kind::of("mysqld", "mysqld.timeline"), Some(Kind::Timeline));
        let staged = jemsafe_report::create::temp_name("mysqld.timeline", 0xab);
        let other = jemsafe_report::create::temp_name("page.html", 0xab);
        assert_eq!(Kind::of("mysqld", &other), None);
        let files = [
            entry("mysqld.timeline", 1 << 40, now - 1000 * HOUR),
            entry(&staged, 1, now - 2 * ORPHAN_AGE),
        ];
        let strict = Policy {
            keep: 1,
            max_total_bytes: 1,
            max_age: HOUR,
        };
        let p = plan(&state(&files), &strict, now);
        assert_eq!(names(&p), [staged.as_str()]);
        assert_eq!(p[0].what, What::Staged);
        let fresh = [entry(&staged, 1, now - S)];
        assert!(plan(&state(&fresh), &strict, now).is_empty());
    }
}
