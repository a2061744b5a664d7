//! Whether the kernel's OOM killer ended mysqld, and the incident record that explains it.
//!
//! A SIGKILL alone says nothing: an admin's `kill -9` looks the same. The kernel counts
//! OOM kills in the victim's memory cgroup (v2 `memory.events`, v1 `memory.oom_control`:
//! `oom_kill N`) before it sends the signal, and system-wide in /proc/vmstat; it logs
//! "Killed process PID (mariadbd)" to /dev/kmsg. [`verdict`] weighs these (a pure
//! function); [`Kmsg`] reads the kernel log from where it stood when mysqld started.
//!
//! The incident record `<prefix>.<pid>.<UTC time>.oom.json` goes next to the dumps,
//! created relative to the dump directory's descriptor (`O_EXCL | O_NOFOLLOW`), and is
//! deleted by the dump directory's retention together with the dumps of its time
//! ([`crate::dumpdir::retention::plan`]).

use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime};

/// The format version of [`Incident`].
pub const VERSION: u32 = 1;

/// OOM-kill counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `oom_kill` of mysqld's own memory cgroup (None: the root group, or none).
    pub group: Option<u64>,
    /// /proc/vmstat `oom_kill`.
    pub vmstat: Option<u64>,
}

/// The counters an OOM kill is measured against. The kernel counts the kill before the
/// victim dies, so a check can see the new count while mysqld is still being reaped: a
/// rise is kept out of the baseline for [`Baseline::SETTLE`], and taken in only when
/// mysqld outlives it (the kill was another process's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Baseline {
    base: Counters,
    rise_seen: Option<std::time::Instant>,
}

impl Baseline {
    pub const SETTLE: Duration = Duration::from_secs(10);

    pub fn new(now: Counters) -> Baseline {
        Baseline {
            base: now,
            rise_seen: None,
        }
    }

    /// A check read `now` (mysqld alive); true when a rise was taken into the baseline
    /// (the kernel log's kills so far are then no longer evidence).
    pub fn observe(&mut self, now: Counters, at: std::time::Instant) -> bool {
        if now == self.base {
            self.rise_seen = None;
            return false;
        }
        match self.rise_seen {
            None => self.rise_seen = Some(at),
            Some(t) if at.duration_since(t) >= Self::SETTLE => {
                self.base = now;
                self.rise_seen = None;
                return true;
            }
            Some(_) => {}
        }
        false
    }

    /// The counters before any rise that mysqld has not outlived.
    pub fn before(&self) -> Counters {
        self.base
    }
}

/// What the kernel log says since mysqld started (or since the last OOM kill that
/// mysqld outlived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelLog {
    /// /dev/kmsg could not be read (not root, or `dmesg_restrict`).
    Unreadable,
    Read {
        /// The kernel's "Killed process PID (...)" line for mysqld's pid.
        line: Option<String>,
        /// The OOM kills of other processes in mysqld's group (or in a group the kernel
        /// did not name), oldest first (the newest [`MAX_VICTIMS`]).
        others: Vec<Victim>,
    },
}

/// At most this many other victims are remembered between two looks at the kernel log.
pub const MAX_VICTIMS: usize = 16;

/// Another process the kernel's OOM killer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    pub pid: i32,
    /// Its command name, escaped for a terminal.
    pub comm: String,
    /// Its memory cgroup as the kernel logs it (`task_memcg=`), when the kernel says.
    pub memcg: Option<String>,
    /// When the kernel logged the kill.
    pub at: Option<SystemTime>,
}

/// What mysqld's SIGKILL was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel's OOM killer: the evidence, in words.
    OomKill(String),
    /// Not the OOM killer; what to add to "killed by SIGKILL", when there is something
    /// to say (the group's OOM kill was another process's).
    NotOomKill(Option<String>),
}

/// Whether mysqld's SIGKILL was an OOM kill. mysqld's own group counting a kill is
/// decisive (the kernel counts it in the victim's group before it signals) unless the
/// kernel log is readable and its kills of other processes in that group account for
/// the whole rise; the system-wide counter is, when the kernel log does not name another
/// process. `group`: mysqld's memory cgroup directory, to tell its victims from others'.
pub fn verdict(
    before: &Counters,
    after: &Counters,
    log: &KernelLog,
    counter_name: &str,
    group: Option<&std::path::Path>,
) -> Verdict {
    let named = match log {
        KernelLog::Read {
            line: Some(line), ..
        } => Some(format!("the kernel log: \"{line}\"")),
        _ => None,
    };
    let rose = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > a => Some((a, b)),
        _ => None,
    };
    if let Some((a, b)) = rose(before.group, after.group) {
        let counted = format!("{counter_name} oom_kill {a} -> {b}");
        if let Some(n) = named {
            return Verdict::OomKill(format!("{counted}; {n}"));
        }
        if let KernelLog::Read { others, .. } = log {
            // A victim whose group the kernel did not log may be in mysqld's.
            let in_group: Vec<&Victim> = others
                .iter()
                .filter(|v| v.memcg.as_deref().map_or(true, |m| same_group(m, group)))
                .collect();
            if !in_group.is_empty() && in_group.len() as u64 >= b - a {
                return Verdict::NotOomKill(Some(others_words(&in_group, &counted)));
            }
        }
        return Verdict::OomKill(counted);
    }
    if let Some(n) = named {
        return Verdict::OomKill(n);
    }
    let Some((a, b)) = rose(before.vmstat, after.vmstat) else {
        return Verdict::NotOomKill(None);
    };
    match log {
        KernelLog::Unreadable => Verdict::OomKill(format!(
            "/proc/vmstat oom_kill {a} -> {b} (the kernel log could not be read to confirm \
             that the victim was mysqld)"
        )),
        KernelLog::Read { .. } => Verdict::NotOomKill(None), // it names another victim
    }
}

/// Whether the kernel's `task_memcg=` path is the group at `group` (a directory under
/// the hierarchy's mount point). The root group is never mysqld's own.
fn same_group(memcg: &str, group: Option<&std::path::Path>) -> bool {
    let relative = memcg.trim_matches('/');
    !relative.is_empty() && group.is_some_and(|g| g.ends_with(relative))
}

/// "the kernel's OOM kill in this group at T was pid N (comm)"; several are listed.
fn others_words(victims: &[&Victim], counted: &str) -> String {
    let one = |v: &Victim| {
        let at = v.at.map_or_else(String::new, |t| {
            format!(" at {}", jemsafe_report::clock::rfc3339_millis(t))
        });
        (at, format!("pid {} ({})", v.pid, v.comm))
    };
    match victims {
        [v] => {
            let (at, who) = one(v);
            format!("the kernel's OOM kill in this group{at} was {who}; {counted}")
        }
        _ => {
            let list: Vec<String> = victims
                .iter()
                .map(|v| {
                    let (at, who) = one(v);
                    format!("{who}{at}")
                })
                .collect();
            format!(
                "the kernel's OOM kills in this group were {}; {counted}",
                list.join(", ")
            )
        }
    }
}

/// The kernel's OOM line for `pid` in a /dev/kmsg record (`prio,seq,usec,flags;text`).
pub fn kill_line(record: &str, pid: i32) -> Option<String> {
    let text = record_text(record)?;
    text.contains(&format!("Killed process {pid} ("))
        .then(|| jemsafe_report::safe::escape(text.trim()).into_owned())
}

/// The text of a /dev/kmsg record's first line.
fn record_text(record: &str) -> Option<&str> {
    record.split_once(';')?.1.lines().next()
}

/// The microseconds since boot at which a /dev/kmsg record was logged.
fn record_usec(record: &str) -> Option<u64> {
    record.split(';').next()?.split(',').nth(2)?.parse().ok()
}

/// Pid and command name of the process a "Killed process PID (COMM) ..." record names.
pub fn killed_process(record: &str) -> Option<(i32, String)> {
    let text = record_text(record)?;
    let rest = &text[text.find("Killed process ")? + "Killed process ".len()..];
    let (pid, rest) = rest.split_once(" (")?;
    // A command name may hold ") "; the kernel follows it with " total-vm:".
    let comm = rest
        .find(") total-vm")
        .or_else(|| rest.rfind(')'))
        .map(|end| &rest[..end])?;
    Some((
        pid.parse().ok()?,
        jemsafe_report::safe::escape(comm).into_owned(),
    ))
}

/// Pid and memory cgroup of the kernel's "oom-kill:...,task_memcg=/x,task=c,pid=N,..."
/// summary line.
pub fn oom_kill_summary(record: &str) -> Option<(i32, String)> {
    let text = record_text(record)?.strip_prefix("oom-kill:")?;
    let field = |key: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    // The command name (`task=`, any 15 bytes a process chose) stands before `pid=` and
    // after `task_memcg=`: a name such as "x,pid=1" must not give the pid, so the pid is
    // the last one, the group the first.
    let pid = text.rsplit(',').find_map(|f| f.strip_prefix("pid="))?;
    Some((pid.parse().ok()?, field("task_memcg")?.to_owned()))
}

/// The wall-clock time of a kernel log record stamped `usec` after boot, seen at `now`
/// when the monotonic clock said `mono_now_usec`.
pub fn record_time(usec: u64, mono_now_usec: u64, now: SystemTime) -> SystemTime {
    now.checked_sub(Duration::from_micros(mono_now_usec.saturating_sub(usec)))
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .unwrap_or(now)
}

fn monotonic_usec() -> Option<u64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return None;
    }
    u64::try_from(t.tv_sec)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(u64::try_from(t.tv_nsec).ok()? / 1000)
}

/// /dev/kmsg, positioned at its end when mysqld starts.
pub struct Kmsg {
    file: std::fs::File,
}

impl Kmsg {
    /// None when jemsafe may not read the kernel log.
    pub fn open() -> Option<Kmsg> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/kmsg")
            .ok()?;
        let mut k = Kmsg { file };
        k.skip_to_end();
        Some(k)
    }

    /// Forgets everything logged so far.
    pub fn skip_to_end(&mut self) {
        // SAFETY: lseek on a descriptor this struct owns.
        unsafe { libc::lseek(self.file.as_raw_fd(), 0, libc::SEEK_END) };
    }

    /// Reads what was logged since the last look (one record per read; bounded by the
    /// kernel's ring buffer and a count) for the OOM kills: `pid`'s, and others' in its
    /// memory cgroup `group` (or in a group the kernel did not log): kills elsewhere on a
    /// busy machine cannot push them out of the [`MAX_VICTIMS`] kept.
    pub fn read_kills(&mut self, pid: i32, group: Option<&std::path::Path>) -> KernelLog {
        use std::io::Read;
        let mut buf = vec![0u8; 16 << 10];
        let mut line = None;
        let mut others: std::collections::VecDeque<Victim> = Default::default();
        // The summary line comes just before the "Killed process" line: a few suffice.
        let mut memcgs: std::collections::VecDeque<(i32, String)> = Default::default();
        let (mono_now, now) = (monotonic_usec(), SystemTime::now());
        for _ in 0..200_000 {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    if let Some(found) = kill_line(&record, pid) {
                        line = Some(found);
                    } else if let Some(summary) = oom_kill_summary(&record) {
                        if memcgs.len() == MAX_VICTIMS {
                            memcgs.pop_front();
                        }
                        memcgs.push_back(summary);
                    } else if let Some((victim, comm)) = killed_process(&record) {
                        let memcg = memcgs
                            .iter()
                            .rev()
                            .find(|(p, _)| *p == victim)
                            .map(|(_, m)| m.clone());
                        if memcg.as_deref().is_some_and(|m| !same_group(m, group)) {
                            continue;
                        }
                        if others.len() == MAX_VICTIMS {
                            others.pop_front();
                        }
                        others.push_back(Victim {
                            pid: victim,
                            comm,
                            memcg: memcg.map(|m| jemsafe_report::safe::escape(&m).into_owned()),
                            at: record_usec(&record)
                                .zip(mono_now)
                                .map(|(usec, mono)| record_time(usec, mono, now)),
                        });
                    }
                }
                // Overwritten before it was read: reading goes on from the oldest kept.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // EAGAIN: nothing more
            }
        }
        KernelLog::Read {
            line,
            others: others.into(),
        }
    }
}

/// The incident record of an OOM kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub version: u32,
    /// "oom_kill".
    pub kind: String,
    /// When jemsafe saw mysqld die (RFC 3339, UTC).
    pub time: String,
    pub pid: i32,
    /// How long this mysqld had run.
    pub ran_for_s: u64,
    /// Why this was the OOM killer (counters, the kernel's line).
    pub evidence: String,
    pub limit: Option<crate::control::MemoryLimit>,
    /// The last memory check before the kill.
    pub last_check: Option<LastCheck>,
    /// The dumps of this process, newest first.
    pub dumps: Vec<DumpRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    pub time: String,
    /// Seconds before the kill.
    pub age_s: f64,
    pub rss: u64,
    pub cgroup_usage: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    pub file: String,
    pub time: String,
    /// Seconds before the kill.
    pub age_s: u64,
    pub trigger: String,
    /// RSS when it was taken, from its sidecar's memory snapshot (read for the newest
    /// [`SIDECARS_READ`] dumps only).
    pub rss: Option<u64>,
}

pub use crate::dumpdir::naming::{incident_name, parse_incident_name, MAX_INCIDENTS};

/// The incident record needs from the sidecars only the RSS of the newest dumps; at
/// most this many are read, each within [`SIDECAR_BYTES`] (a sidecar of MariaDB's is
/// tens of KiB): 4 MiB in all while mysqld is being restarted, not 50 of 16 MiB.
pub const SIDECARS_READ: usize = 4;
pub const SIDECAR_BYTES: u64 = 1 << 20;

/// "last dump: FILE, 41 s before, RSS then 7.6 GiB of 8 GiB", or that there was none.
pub fn last_dump_words(incident: &Incident) -> String {
    let Some(d) = incident.dumps.first() else {
        return "no dump of this process before it (a [triggers] limit_percent level dumps as memory nears the limit)".to_owned();
    };
    let of = incident
        .limit
        .as_ref()
        .map(|l| format!(" of {}", crate::watch::memlimit::human(l.bytes)))
        .unwrap_or_default();
    let rss = d
        .rss
        .map(|r| format!(", RSS then {}{of}", crate::watch::memlimit::human(r)))
        .unwrap_or_default();
    format!("last dump: {}, {} s before{rss}", d.file, d.age_s)
}

/// Writes `incident` in the directory `dir` as `<prefix>.<pid>.<time>.oom.json`, never
/// over an existing name or through a symlink; owned by `owner` (the dumps' owner) and
/// mode 0640, like a sidecar. The name is predictable, so mysqld's user can take it
/// first: then a random suffix is added. The name written, and the one found taken.
pub fn write(
    dir: &OwnedFd,
    prefix: &str,
    incident: &Incident,
    when: SystemTime,
    owner: Option<u32>,
) -> Result<(String, Option<String>), String> {
    let mut text = serde_json::to_vec_pretty(incident)
        .map_err(|e| format!("cannot encode the incident record: {e}"))?;
    text.push(b'\n');
    let first = incident_name(prefix, incident.pid, when, None);
    let mut name = first.clone();
    for _ in 0..3 {
        match crate::dumpdir::files::write_new(dir, &name, &text, owner) {
            Ok(()) => return Ok((name.clone(), (name != first).then_some(first))),
            Err(why) if !crate::dumpdir::files::exists(dir, &name) => return Err(why.to_string()),
            Err(_) => {
                name = incident_name(
                    prefix,
                    incident.pid,
                    when,
                    Some(crate::dumpdir::files::random()),
                )
            }
        }
    }
    Err(format!(
        "cannot create {first}: it and every other name tried exist"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(group: Option<u64>, vmstat: u64) -> Counters {
        Counters {
            group,
            vmstat: Some(vmstat),
        }
    }

    fn named(line: &str) -> KernelLog {
        KernelLog::Read {
            line: Some(line.into()),
            others: vec![],
        }
    }

    fn silent() -> KernelLog {
        KernelLog::Read {
            line: None,
            others: vec![],
        }
    }

    fn oom(v: Verdict) -> Option<String> {
        match v {
            Verdict::OomKill(e) => Some(e),
            Verdict::NotOomKill(_) => None,
        }
    }

    #[test]
    fn the_groups_counter_decides_and_the_kernel_line_is_quoted() {
        let line = "Memory cgroup out of memory: Killed process 42 (mariadbd) total-vm:1kB";
        let v = verdict(
            &counters(Some(0), 3),
            &counters(Some(1), 4),
            &named(line),
            "memory.oom_control",
            None,
        );
        assert_eq!(
            oom(v).unwrap(),
            format!("memory.oom_control oom_kill 0 -> 1; the kernel log: \"{line}\"")
        );
        let v = verdict(
            &counters(Some(0), 3),
            &counters(Some(1), 3),
            &silent(),
            "memory.events",
            None,
        );
        assert_eq!(oom(v).as_deref(), Some("memory.events oom_kill 0 -> 1"));
    }

    fn victim(pid: i32, memcg: Option<&str>) -> Victim {
        Victim {
            pid,
            comm: "render".into(),
            memcg: memcg.map(str::to_owned),
            at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_717_554_250)),
        }
    }

    #[test]
    fn a_rise_the_kernel_log_gives_to_another_process_in_the_group_is_not_mysqlds() {
        let group = std::path::Path::new("/sys/fs/cgroup/memory/system.slice/mariadb.service");
        let log = |others| KernelLog::Read { line: None, others };
        let (before, after) = (counters(Some(3), 0), counters(Some(4), 0));
        let v = verdict(
            &before,
            &after,
            &log(vec![victim(77, Some("/system.slice/mariadb.service"))]),
            "memory.oom_control",
            Some(group),
        );
        assert_eq!(
            v,
            Verdict::NotOomKill(Some(
                "the kernel's OOM kill in this group at 2026-11-26T18:25:54.250Z was pid 77 \
                 (render); memory.oom_control oom_kill 3 -> 4"
                    .into()
            ))
        );
        // A victim whose group the kernel did not log may be in mysqld's.
        let v = verdict(
            &before,
            &after,
            &log(vec![victim(77, None)]),
            "x",
            Some(group),
        );
        assert!(matches!(v, Verdict::NotOomKill(Some(_))), "{v:?}");
        // Victims in other groups explain nothing: the rise is mysqld's.
        for other in ["/system.slice/other.service", "/", "/mariadb.service/child"] {
            let v = verdict(
                &before,
                &after,
                &log(vec![victim(77, Some(other))]),
                "x",
                Some(group),
            );
            assert_eq!(oom(v).as_deref(), Some("x oom_kill 3 -> 4"), "{other}");
        }
        // Two kills counted, one victim logged: the other may be mysqld's, its line not
        // yet written (the kernel signals before it logs).
        let v = verdict(
            &before,
            &counters(Some(5), 0),
            &log(vec![victim(77, None)]),
            "x",
            Some(group),
        );
        assert!(oom(v).is_some());
        // Two victims for two kills: both named.
        let v = verdict(
            &before,
            &counters(Some(5), 0),
            &log(vec![victim(77, None), victim(78, None)]),
            "x",
            Some(group),
        );
        let Verdict::NotOomKill(Some(words)) = v else {
            panic!("{v:?}")
        };
        assert!(
            words.starts_with("the kernel's OOM kills in this group were pid 77 (render) at ")
                && words.contains(", pid 78 (render) at "),
            "{words}"
        );
    }

    #[test]
    fn outside_a_group_the_machines_counter_needs_the_kernel_log_not_to_disagree() {
        let before = counters(None, 3);
        let after = counters(None, 4);
        let line = named("Out of memory: Killed process 42 (mariadbd)");
        assert!(oom(verdict(&before, &after, &line, "x", None))
            .unwrap()
            .contains("Killed process 42"));
        let unconfirmed = oom(verdict(&before, &after, &KernelLog::Unreadable, "x", None)).unwrap();
        assert!(
            unconfirmed.contains("could not be read to confirm"),
            "{unconfirmed}"
        );
        assert_eq!(
            verdict(&before, &after, &silent(), "x", None),
            Verdict::NotOomKill(None)
        );
    }

    #[test]
    fn a_plain_kill_9_is_not_an_oom_kill() {
        for log in [silent(), KernelLog::Unreadable] {
            assert_eq!(
                verdict(
                    &counters(Some(2), 5),
                    &counters(Some(2), 5),
                    &log,
                    "x",
                    None
                ),
                Verdict::NotOomKill(None)
            );
        }
        // Counters that could not be read at one end decide nothing.
        assert_eq!(
            verdict(
                &Counters::default(),
                &counters(Some(9), 9),
                &silent(),
                "x",
                None
            ),
            Verdict::NotOomKill(None)
        );
    }

    #[test]
    fn kernel_records_give_the_victim_its_group_and_its_time() {
        let summary = "6,812,5000000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/t/g,task_memcg=/t/g,task=workload,pid=4242,uid=0";
        assert_eq!(oom_kill_summary(summary), Some((4242, "/t/g".into())));
        let killed = "3,813,5000100,-;Memory cgroup out of memory: Killed process 4242 (my) comm) total-vm:2kB, anon-rss:1kB";
        assert_eq!(killed_process(killed), Some((4242, "my) comm".into())));
        assert_eq!(record_usec(killed), Some(5_000_100));
        assert_eq!(killed_process("3,1,1,-;Killed process x (y)"), None);
        assert_eq!(oom_kill_summary("3,1,1,-;something else"), None);
        // A command name chosen to carry a pid does not give it.
        let forged = "6,814,5000200,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/t/g,task_memcg=/t/h,task=x,pid=1,pid=777,uid=0";
        assert_eq!(oom_kill_summary(forged), Some((777, "/t/h".into())));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(
            record_time(5_000_000, 7_000_000, now),
            now - Duration::from_secs(2)
        );
        // A stamp after "now" (clocks apart) is now; one before the epoch, too.
        assert_eq!(record_time(9_000_000, 7_000_000, now), now);
        assert_eq!(record_time(0, u64::MAX, now), now);
    }

    #[test]
    fn a_rise_seen_while_mysqld_dies_stays_out_of_the_baseline() {
        let t0 = std::time::Instant::now();
        let mut b = Baseline::new(counters(Some(0), 0));
        assert!(!b.observe(counters(Some(0), 0), t0));
        assert!(!b.observe(counters(Some(1), 0), t0 + Duration::from_millis(200)));
        assert_eq!(b.before(), counters(Some(0), 0), "the kill's own rise");
        // mysqld lived on past the settling time: another process was killed.
        assert!(b.observe(counters(Some(1), 0), t0 + Baseline::SETTLE * 2));
        assert_eq!(b.before(), counters(Some(1), 0));
        b.observe(counters(Some(1), 0), t0 + Baseline::SETTLE * 3);
        assert_eq!(b.before(), counters(Some(1), 0));
    }

    #[test]
    fn kernel_lines_are_matched_on_the_exact_pid() {
        let rec = "3,1234,99,-;Memory cgroup out of memory: Killed process 4242 (mariadbd) total-vm:2kB, anon-rss:1kB\n SUBSYSTEM=x\n";
        assert!(kill_line(rec, 4242)
            .unwrap()
            .starts_with("Memory cgroup out of memory"));
        assert_eq!(kill_line(rec, 424), None);
        assert_eq!(kill_line(rec, 42421), None);
        assert_eq!(kill_line("no separator", 4242), None);
        let esc = "3,1,1,-;Out of memory: Killed process 7 (evil\u{1b}[2J)";
        assert!(!kill_line(esc, 7).unwrap().contains('\u{1b}'));
    }

    #[test]
    fn incident_names_round_trip_and_foreign_names_are_not_ours() {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_717_554);
        let name = incident_name("mysqld", 4242, when, None);
        assert_eq!(name, "mysqld.4242.20261126T182554.oom.json");
        assert_eq!(parse_incident_name("mysqld", &name), Some(4242));
        let unique = incident_name("mysqld", 4242, when, Some(0xab));
        assert_eq!(
            unique,
            "mysqld.4242.20261126T182554.00000000000000ab.oom.json"
        );
        assert_eq!(parse_incident_name("mysqld", &unique), Some(4242));
        for bad in [
            "mysqld.4242.20261126T182554.ab.oom.json",
            "mysqld.4242.20261126T182554.00000000000000ag.oom.json",
            "mysqld.4242.20261126T182554.oom.json.tmp",
            "mysqld.x.20261126T182554.oom.json",
            "mysqld.4242.2026112T182554.oom.json",
            "other.4242.20261126T182554.oom.json",
            "mysqld.4242.20261126T182554.0001.usr1.heap.json",
        ] {
            assert_eq!(parse_incident_name("mysqld", bad), None, "{bad}");
        }
    }

    #[test]
    fn the_last_dump_is_said_with_its_age_and_rss_of_the_limit() {
        let mut i = Incident {
            version: VERSION,
            kind: "oom_kill".into(),
            time: "t".into(),
            pid: 1,
            ran_for_s: 1,
            evidence: "e".into(),
            limit: Some(crate::control::MemoryLimit {
                bytes: 8 << 30,
                source: "s".into(),
                kind: "cgroup v2".into(),
            }),
            last_check: None,
            dumps: vec![DumpRecord {
                file: "mysqld.1.x.limit95.heap".into(),
                time: "t".into(),
                age_s: 41,
                trigger: "limit95".into(),
                rss: Some(7_600 << 20),
            }],
        };
        assert_eq!(
            last_dump_words(&i),
            "last dump: mysqld.1.x.limit95.heap, 41 s before, RSS then 7.4 GiB of 8.0 GiB"
        );
        i.dumps.clear();
        assert!(last_dump_words(&i).starts_with("no dump of this process"));
    }
}
