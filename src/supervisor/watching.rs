//! Watching mysqld's memory between dumps, the effects: at each wake-up the watch asked
//! for (every `check_ms`, or a timeline sample) one read of /proc/PID/statm and, where
//! they exist, of mysqld's cgroup and PSI files, handed to [`crate::watch`] in one call
//! with the dumps sent since the last one; what it decides carried out (a dump when a
//! `[triggers]` level is crossed, with the reading that fired it; a timeline sample,
//! written by [`super::recording`]). Nothing is asked of mysqld unless a level is
//! crossed or a sample is due.

use super::Supervisor;
use crate::watch::memlimit::{self, Group, Placement, PressureSource};
use crate::watch::{Action, Level, Next, Readings, Start, Watch};
use crate::{debug, info, warn};
use std::time::{Duration, Instant, SystemTime};

/// The last check's readings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Check {
    pub at: SystemTime,
    pub rss: u64,
    /// The cgroup's usage (page cache included), when mysqld has a memory cgroup.
    pub usage: Option<u64>,
}

/// What the supervisor holds for watching memory: the decisions' state, and the files
/// and descriptors they are read from.
pub(super) struct Watching {
    pub watch: Watch,
    /// mysqld's memory cgroup, opened at its start.
    pub group: Option<Group>,
    /// The PSI file the pressure rule reads (mysqld's v2 group's, else the machine's).
    pub pressure: Option<PressureSource>,
    /// `[triggers] pressure`: its value is read from that file with the other readings.
    pressure_rule: Option<memlimit::PressureRule>,
    pub last: Option<Check>,
    /// When the watch is woken next, and from when the limit is read again: as its last
    /// decision said.
    next: Next,
    /// The kernel log, read from where it stood when mysqld started.
    kmsg: Option<crate::watch::oom::Kmsg>,
    /// The timeline file and the process its records name.
    pub record: super::recording::Recorder,
}

impl Watching {
    pub fn new(settings: crate::config::TriggerSettings) -> Watching {
        Watching {
            pressure_rule: settings.pressure.clone(),
            watch: Watch::new(settings, None),
            group: None,
            pressure: None,
            last: None,
            next: Next::default(),
            kmsg: crate::watch::oom::Kmsg::open(),
            record: super::recording::Recorder::default(),
        }
    }

    /// Records the timeline with `writer`, a sample every `every`.
    pub fn set_timeline(&mut self, writer: crate::timeline::file::Writer, every: Duration) {
        self.record.set_writer(writer);
        self.watch.set_sampling(every);
    }

    /// The next moment a check or a timeline sample is due (None: neither is configured).
    pub fn due(&self) -> Option<Instant> {
        self.next.wakeup
    }

    fn oom_counters(&self) -> crate::watch::oom::Counters {
        let group = self.group.as_ref().and_then(Group::oom_kills);
        crate::watch::oom::Counters {
            group,
            // The machine's counter matters only where the group keeps none.
            vmstat: group.is_none().then(memlimit::vmstat_oom_kills).flatten(),
        }
    }
}

impl Supervisor<'_> {
    /// mysqld `pid` started: find its cgroup (one read of where it is) and limit, arm the
    /// levels, start checking.
    pub(super) fn watch_started(&mut self, pid: i32) {
        let m = &mut self.watching;
        let placement = Placement::of(pid);
        m.group = Group::at(&placement);
        m.pressure = m
            .pressure_rule
            .is_some()
            .then(|| PressureSource::at(&placement));
        m.last = None;
        if let Some(k) = m.kmsg.as_mut() {
            k.skip_to_end();
        }
        m.record.started(pid);
        let start = Start {
            limit: memlimit::limit_for(m.group.as_ref()),
            oom: m.oom_counters(),
            pressure: m.pressure.as_ref().map(|p| (p.describe(), p.file())),
        };
        let decision = m.watch.started(start, Instant::now());
        m.next = decision.next;
        self.carry_out(decision.actions);
    }

    /// mysqld is gone: no more checks until the next one starts.
    pub(super) fn watch_stopped(&mut self) {
        self.watching.next = self.watching.watch.stopped();
    }

    /// A wake-up: read, then do what the watch decides (one call: it knows what is due,
    /// and uses only that).
    pub(super) fn watch_timers(&mut self, now: Instant) {
        if !self.watching.next.wakeup.is_some_and(|t| now >= t) {
            return;
        }
        let (readings, check) = self.read_memory(now);
        let m = &mut self.watching;
        let decision = m.watch.decide(&readings, now);
        m.next = decision.next;
        if decision.due.check && check.is_some() {
            m.last = check;
        }
        self.carry_out(decision.actions);
    }

    /// A wake-up's readings: the OOM counters and the dumps sent since the last one
    /// always; statm, and only with an RSS (0 is a process whose memory is already
    /// gone: exiting, the OOM killer's victim perhaps) the cgroup's usage, the pressure
    /// rule's value and, once [`Next::limit_from`] has come, the limit. These cheap files
    /// are read at every wake-up, a sample's too, so that the watch is asked once and
    /// uses what was due; the check they make, kept as the last one when one was.
    fn read_memory(&mut self, now: Instant) -> (Readings, Option<Check>) {
        let m = &mut self.watching;
        let mut r = Readings {
            oom: m.oom_counters(),
            sent: std::mem::take(&mut self.dumping.sent),
            ..Default::default()
        };
        let Some(pid) = self.child.as_ref().map(|c| c.pid.as_raw()) else {
            return (r, None);
        };
        r.rss = memlimit::statm_rss(pid).filter(|r| *r > 0);
        let Some(rss) = r.rss else {
            debug!("memory check: no RSS in /proc/{pid}/statm");
            return (r, None);
        };
        r.limit = m
            .next
            .limit_from
            .is_some_and(|t| now >= t)
            .then(|| memlimit::limit_for(m.group.as_ref()));
        if let (Some(source), Some(rule)) = (&m.pressure, &m.pressure_rule) {
            r.pressure = source.read().and_then(|psi| rule.reading(&psi));
        }
        let check = Check {
            at: SystemTime::now(),
            rss,
            usage: m.group.as_ref().and_then(Group::usage),
        };
        (r, Some(check))
    }

    /// Carries out the watch's decisions.
    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Log(Level::Info, line) => info!("{line}"),
                Action::Log(Level::Warn, line) => warn!("{line}"),
                Action::ForgetKills => {
                    if let Some(k) = self.watching.kmsg.as_mut() {
                        k.skip_to_end();
                    }
                }
                Action::Record(kind) => self.timeline_event(kind),
                Action::MaintainTimeline => self.watching.record.maintain(),
                Action::Sample => self.ask_sample(),
                Action::Dump { trigger, reason } => self.request_dump(trigger, Some(reason), None),
            }
        }
    }

    /// Whether mysqld `pid`, just dead of SIGKILL, was killed by the kernel's OOM killer.
    pub(super) fn oom_verdict(&mut self, pid: i32) -> crate::watch::oom::Verdict {
        let m = &mut self.watching;
        let after = m.oom_counters();
        let group = m.group.as_ref().map(Group::path);
        let log = m
            .kmsg
            .as_mut()
            .map_or(crate::watch::oom::KernelLog::Unreadable, |k| {
                k.read_kills(pid, group)
            });
        let counter = m
            .group
            .as_ref()
            .map(|g| g.events_path().display().to_string())
            .unwrap_or_default();
        crate::watch::oom::verdict(&m.watch.oom_before(), &after, &log, &counter, group)
    }

    /// mysqld `pid` (started at `started`) was OOM-killed: one error line with the limit,
    /// the last reading and the last dump; the incident record beside the dumps.
    pub(super) fn explain_oom(&mut self, pid: i32, started: Instant, evidence: &str) {
        use crate::watch::oom::{DumpRecord, Incident, LastCheck};
        self.metrics.oom_killed();
        let now = SystemTime::now();
        let plan = self.plan;
        let entries = self.dump_dir.scan().unwrap_or_default();
        let mut dumps: Vec<crate::dumpdir::HeapFile> =
            crate::dumpdir::dir::heap_files(self.dump_dir.path(), &entries)
                .into_iter()
                .filter(|f| f.name.pid == pid as u32)
                .collect();
        dumps.reverse(); // newest first
        let records: Vec<DumpRecord> = dumps
            .iter()
            .take(50)
            .enumerate()
            .map(|(i, f)| DumpRecord {
                file: f
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                time: jemsafe_report::clock::rfc3339_or_why(f.modified),
                age_s: now.duration_since(f.modified).unwrap_or_default().as_secs(),
                trigger: f.name.trigger().to_owned(),
                rss: (i < crate::watch::oom::SIDECARS_READ)
                    .then(|| {
                        jemsafe_report::sidecar::read_within(
                            &f.path,
                            false,
                            crate::watch::oom::SIDECAR_BYTES,
                        )
                    })
                    .and_then(Result::ok)
                    .flatten()
                    .and_then(|s| s.memory_snapshot()?.ok())
                    .map(|snap| snap.proc.rss),
            })
            .collect();
        let limit = self.limit_status();
        let incident = Incident {
            version: crate::watch::oom::VERSION,
            kind: "oom_kill".into(),
            time: jemsafe_report::clock::rfc3339_seconds(now),
            pid,
            ran_for_s: started.elapsed().as_secs(),
            evidence: evidence.to_owned(),
            limit: limit.clone(),
            last_check: self.watching.last.map(|c| LastCheck {
                time: jemsafe_report::clock::rfc3339_millis(c.at),
                age_s: now.duration_since(c.at).unwrap_or_default().as_secs_f64(),
                rss: c.rss,
                cgroup_usage: c.usage,
            }),
            dumps: records,
        };
        let written = self
            .dump_dir
            .fd()
            .map_err(|e| format!("cannot open {}: {e}", plan.dump_dir.display()))
            .and_then(|fd| {
                crate::watch::oom::write(
                    &fd,
                    &plan.dump_prefix,
                    &incident,
                    now,
                    Some(self.file_owner),
                )
            });
        let record = match written {
            Ok((name, taken)) => {
                if let Some(taken) = taken {
                    warn!(
                        "incident record {} already existed, not written by jemsafe (mysqld's user can create names there); \
                         this one is {name}",
                        plan.dump_dir.join(taken).display()
                    );
                }
                format!("incident record {}", plan.dump_dir.join(&name).display())
            }
            Err(why) => format!("no incident record: {why}"),
        };
        // An OOM loop writes one a kill: the cap holds after each.
        self.apply_retention();
        let limit_words = limit.as_ref().map_or_else(
            || "unknown".to_owned(),
            |l| format!("{} ({})", memlimit::human(l.bytes), l.source),
        );
        let last = incident.last_check.as_ref().map_or_else(
            || "no memory check before it".to_owned(),
            |c| {
                let of = limit
                    .as_ref()
                    .map(|l| {
                        format!(
                            ", {:.0}% of the limit",
                            100.0 * c.rss as f64 / l.bytes.max(1) as f64
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "RSS at the last check {} ({:.1} s before{of})",
                    memlimit::human(c.rss),
                    c.age_s
                )
            },
        );
        crate::error!(
            "mysqld pid {pid} was killed by the kernel's OOM killer ({evidence}); memory limit {limit_words}; \
             {last}; {}; {record}",
            // Without a dump, say whether per_hour was why.
            incident
                .dumps
                .is_empty()
                .then(|| self.watching.watch.triggers().refusal_words())
                .flatten()
                .unwrap_or_else(|| crate::watch::oom::last_dump_words(&incident))
        );
    }

    /// jemalloc wrote dump `name` of its own (interval, gdump, final): its sidecar waits
    /// for a memory snapshot, asked now (never blocking: the answer comes through the
    /// ledger, and without one in time the sidecar is written without it).
    pub(super) fn snapshot_auto_dump(
        &mut self,
        name: &str,
        kind: &'static str,
        checked: super::dumping::CheckedDump,
    ) {
        self.timeline_dump(name, kind);
        self.send(
            jemsafe_proto::Command::Memory,
            super::Pending::AutoSnapshot {
                name: name.to_owned(),
                kind,
                closed: checked.modified,
                maps: checked.maps,
            },
            super::shim_requests::SHIM_DEADLINE,
        );
    }

    /// The shim answered the snapshot for jemalloc's dump `name`: the sidecar, with it.
    pub(super) fn auto_snapshot_came(
        &mut self,
        name: &str,
        kind: &'static str,
        closed: SystemTime,
        maps: &[jemsafe_report::maps::MapEntry],
        reply: &jemsafe_proto::Reply,
    ) {
        let snapshot = self.child.as_ref().and_then(|c| {
            let m = reply.body::<jemsafe_proto::Memory>().ok()?;
            super::status::memory_snapshot(c.pid.as_raw(), &m).ok()
        });
        let snapshot = snapshot.map(|mut s| {
            let after = SystemTime::now().duration_since(closed).unwrap_or_default();
            s.after_close_ms = Some(after.as_millis() as u64);
            s
        });
        if snapshot.is_none() {
            debug!("no memory snapshot for jemalloc's dump {name}");
        }
        self.write_sidecar(name, kind, None, snapshot, maps, self.heap_owner());
    }

    /// For `status`: the limit that applies and where it comes from.
    pub(super) fn limit_status(&self) -> Option<crate::control::MemoryLimit> {
        let l = self.watching.watch.limit()?;
        Some(crate::control::MemoryLimit {
            bytes: l.bytes,
            source: l.source.describe(),
            kind: l.source.kind().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_counters_give_rss_and_its_kinds() {
        let status = "Name:\tmariadbd\nVmRSS:\t  204800 kB\nRssAnon:\t  150000 kB\nRssFile:\t   50000 kB\nRssShmem:\t    4800 kB\nVmSwap:\t       8 kB\n";
        let p = jemsafe_report::memory::ProcMemory::from_status(status);
        assert_eq!(
            (p.rss, p.anonymous, p.shmem, p.swap, p.lazy_free),
            (204800 << 10, 150000 << 10, 4800 << 10, 8 << 10, 0)
        );
        let me = crate::procfs::read(std::process::id() as i32, "status").unwrap();
        assert!(jemsafe_report::memory::ProcMemory::from_status(&me).rss > 0);
    }
}
