//! Watching mysqld's memory between dumps (the effects; the decisions are in
//! [`crate::triggers`], [`crate::oom`] and [`crate::timeline`]): every `check_ms` one
//! read of /proc/PID/statm and, where they exist, of mysqld's cgroup files; a dump when a
//! `[triggers]` level is crossed. Nothing is asked of mysqld unless a level is crossed.
//! Every `[timeline] interval_s` (at a check's wake-up, so no extra one), a sample for the
//! timeline: RSS and its parts from /proc/PID/status (counters, no page-table walk) and
//! one memory request to the shim through the ledger, with a deadline; without an answer
//! in time the sample has RSS alone.

use super::Supervisor;
use crate::dumps::Trigger;
use crate::memlimit::{self, Group, Limit};
use crate::triggers::{Reading, Triggers};
use crate::{debug, info, warn};
use std::time::{Duration, Instant, SystemTime};

/// How often the limit is read again (it changes with `systemctl set-property`).
const LIMIT_REFRESH: Duration = Duration::from_secs(10);

/// The last check's readings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Check {
    pub at: SystemTime,
    pub rss: u64,
    /// The cgroup's usage (page cache included), when mysqld has a memory cgroup.
    pub usage: Option<u64>,
}

/// What the supervisor keeps for watching memory.
pub(super) struct Moment {
    pub triggers: Triggers,
    /// mysqld's memory cgroup, opened at its start.
    pub group: Option<Group>,
    /// The PSI file the pressure rule reads (mysqld's v2 group's, else the machine's).
    pub pressure: Option<memlimit::PressureSource>,
    pub limit: Option<Limit>,
    limit_read: Option<Instant>,
    pub last: Option<Check>,
    pub next_check: Option<Instant>,
    /// A budget refusal is logged once until a dump is admitted again.
    refused_logged: bool,
    /// The kernel log, read from where it stood when mysqld started.
    kmsg: Option<crate::oom::Kmsg>,
    /// OOM-kill counters before the kill, to tell an OOM kill from a `kill -9`.
    oom_base: crate::oom::Baseline,
    timeline: Option<crate::timeline::file::Writer>,
    sample_every: Duration,
    next_sample: Option<Instant>,
    sample_in_flight: bool,
    /// When the sample in flight was asked for (its round trip is logged at debug).
    sample_sent: Option<Instant>,
    next_maintain: Option<Instant>,
    timeline_failing: bool,
    /// The running (or last) mysqld: timeline records name the process by both.
    pid: u32,
    start_ticks: u64,
    starts: u64,
}

impl Moment {
    pub fn new(settings: crate::triggers::Settings) -> Moment {
        Moment {
            triggers: Triggers::new(settings),
            group: None,
            pressure: None,
            limit: None,
            limit_read: None,
            last: None,
            next_check: None,
            refused_logged: false,
            kmsg: crate::oom::Kmsg::open(),
            oom_base: crate::oom::Baseline::default(),
            timeline: None,
            sample_every: Duration::from_secs(10),
            next_sample: None,
            sample_in_flight: false,
            sample_sent: None,
            next_maintain: None,
            timeline_failing: false,
            pid: 0,
            start_ticks: 0,
            starts: 0,
        }
    }

    /// Records the timeline with `writer`, a sample every `every`.
    pub fn set_timeline(&mut self, writer: crate::timeline::file::Writer, every: Duration) {
        self.timeline = Some(writer);
        self.sample_every = every;
    }

    /// The next moment a check or a timeline sample is due (None: neither is configured).
    pub fn due(&self) -> Option<Instant> {
        crate::triggers::next_wakeup(self.next_check, self.next_sample)
    }

    fn refresh_limit(&mut self, now: Instant) {
        if self.limit_read.is_some_and(|t| now < t + LIMIT_REFRESH) {
            return;
        }
        self.limit_read = Some(now);
        let limit = memlimit::limit_for(self.group.as_ref());
        if limit != self.limit {
            if let (Some(old), Some(new)) = (&self.limit, &limit) {
                info!(
                    "mysqld's memory limit changed from {} to {}",
                    old.describe(),
                    new.describe()
                );
            }
            self.limit = limit;
        }
    }

    fn oom_counters(&self) -> crate::oom::Counters {
        let group = self.group.as_ref().and_then(Group::oom_kills);
        crate::oom::Counters {
            group,
            // The machine's counter matters only where the group keeps none.
            vmstat: group.is_none().then(memlimit::vmstat_oom_kills).flatten(),
        }
    }
}

impl Supervisor<'_> {
    /// mysqld `pid` started: find its cgroup and limit, arm the levels, start checking.
    pub(super) fn watch_started(&mut self, pid: i32) {
        let m = &mut self.moment;
        m.group = Group::of(pid);
        m.pressure = m
            .triggers
            .settings()
            .pressure
            .is_some()
            .then(|| memlimit::PressureSource::of(pid));
        m.limit_read = None;
        m.refresh_limit(Instant::now());
        m.last = None;
        m.triggers.rearm_all();
        m.oom_base = crate::oom::Baseline::new(m.oom_counters());
        if let Some(k) = m.kmsg.as_mut() {
            k.skip_to_end();
        }
        let cgroup_limit = m.limit.as_ref().is_some_and(Limit::from_cgroup);
        // Only what is configured is scheduled: no level, no check (and no wake-up).
        let checking = m.triggers.any(cgroup_limit);
        info!(
            "memory limit {}; dump triggers: {}{}{}",
            m.limit
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), Limit::describe),
            m.triggers.settings().describe(cgroup_limit),
            m.pressure
                .as_ref()
                .map(|p| format!("; pressure read from {}", p.describe()))
                .unwrap_or_default(),
            if checking {
                ""
            } else {
                " (no memory check is scheduled; a limit set later applies from mysqld's next start)"
            }
        );
        m.next_check = checking.then(|| Instant::now() + m.triggers.settings().check);
        m.pid = pid as u32;
        m.start_ticks = crate::procfs::stat_fields(pid)
            .and_then(|f| f.get(19)?.parse().ok())
            .unwrap_or(0);
        m.starts += 1;
        if m.timeline.is_some() {
            // The first sample at the first check; the file trimmed to its age now.
            m.next_sample = Some(Instant::now());
            m.next_maintain = Some(Instant::now());
        }
        let restart = m.starts > 1;
        self.timeline_event(crate::timeline::EventKind::Start { restart });
    }

    /// mysqld is gone: no more checks until the next one starts.
    pub(super) fn watch_stopped(&mut self) {
        self.moment.next_check = None;
        self.moment.next_sample = None;
        self.moment.sample_in_flight = false;
    }

    pub(super) fn watch_timers(&mut self, now: Instant) {
        if self.moment.next_check.is_some_and(|t| now >= t) {
            let every = self.moment.triggers.settings().check;
            // From now, not from the due time: a late wake-up never makes a burst.
            self.moment.next_check = Some(now + every);
            self.check_memory(now);
        }
        let m = &self.moment;
        if crate::triggers::sample_now(m.next_sample, now, m.next_check) {
            self.timeline_tick(now);
        }
    }

    /// Time for a timeline sample: ask the shim (or write RSS alone if it cannot answer).
    fn timeline_tick(&mut self, now: Instant) {
        let m = &mut self.moment;
        m.next_sample = Some(now + m.sample_every);
        if m.next_check.is_none() {
            // No checks keep the OOM counters' baseline current: the samples do.
            let counters = m.oom_counters();
            m.oom_base.observe(counters, now);
        }
        if m.next_maintain.is_some_and(|t| now >= t) {
            m.next_maintain = Some(now + Duration::from_secs(3600));
            if let Some(Err(why)) = m.timeline.as_ref().map(|w| w.maintain(SystemTime::now())) {
                warn!("timeline: {why}");
            }
        }
        if m.sample_in_flight {
            return; // the last one is still unanswered; its deadline will write it
        }
        m.sample_in_flight = true;
        m.sample_sent = Some(Instant::now());
        let deadline = m.sample_every.min(super::shim_requests::STATUS_DEADLINE);
        self.send(
            jemsafe_proto::Command::Memory,
            super::Pending::TimelineSample,
            deadline,
        );
    }

    /// A timeline sample: the shim's reading when it came, the kernel's now.
    pub(super) fn timeline_sampled(&mut self, reply: Option<&jemsafe_proto::Reply>) {
        use crate::timeline::{Parts, Record, Sample};
        self.moment.sample_in_flight = false;
        let Some(pid) = self.child.as_ref().map(|c| c.pid.as_raw()) else {
            return;
        };
        let jem = reply.and_then(|r| r.body::<jemsafe_proto::Memory>().ok());
        let proc = crate::procfs::read(pid, "status")
            .ok()
            .map(|t| jemsafe_report::memory::ProcMemory::from_status(&t))
            .filter(|p| p.rss > 0);
        let (rss, parts, allocated) = match (jem, proc) {
            (Some(j), Some(p)) => {
                let b = jemsafe_report::memory::breakdown(&p, &j);
                (b.rss, Some(Parts::from_breakdown(&b)), Some(j.allocated))
            }
            (None, Some(p)) => (p.rss, None, None),
            (_, None) => match memlimit::statm_rss(pid).filter(|r| *r > 0) {
                Some(r) => (r, None, None),
                None => return,
            },
        };
        let m = &self.moment;
        let sample = Sample {
            time: SystemTime::now(),
            pid: m.pid,
            start: m.start_ticks,
            rss,
            parts,
            allocated,
            cgroup_usage: m.group.as_ref().and_then(Group::usage),
            limit: m.limit.as_ref().map(|l| l.bytes),
        };
        self.timeline_write(&Record::Sample(sample));
        if let Some(sent) = self.moment.sample_sent.take() {
            debug!(
                "timeline sample: {} us from the request to the record ({})",
                sent.elapsed().as_micros(),
                if parts.is_some() {
                    "with the shim's reading"
                } else {
                    "RSS alone"
                }
            );
        }
    }

    /// An event of the current (or just ended) mysqld on the timeline.
    pub(super) fn timeline_event(&mut self, kind: crate::timeline::EventKind) {
        let m = &self.moment;
        if m.timeline.is_none() || m.pid == 0 {
            return;
        }
        let event = crate::timeline::Event {
            time: SystemTime::now(),
            pid: m.pid,
            start: m.start_ticks,
            kind,
        };
        self.timeline_write(&crate::timeline::Record::Event(event));
    }

    /// A dump on the timeline.
    pub(super) fn timeline_dump(&mut self, file: &str, trigger: &str) {
        self.timeline_event(crate::timeline::EventKind::Dump {
            file: file.to_owned(),
            trigger: trigger.to_owned(),
        });
    }

    fn timeline_write(&mut self, record: &crate::timeline::Record) {
        let m = &mut self.moment;
        let Some(writer) = m.timeline.as_ref() else {
            return;
        };
        match writer.append(&crate::timeline::encode(record)) {
            Ok(note) => {
                if let Some(note) = note {
                    warn!("timeline: {note}");
                }
                if m.timeline_failing {
                    info!("timeline: {} is written again", writer.path().display());
                    m.timeline_failing = false;
                }
            }
            Err(why) => {
                if !m.timeline_failing {
                    warn!("timeline: {why} (said once until it works again)");
                    m.timeline_failing = true;
                }
            }
        }
    }

    /// One check: statm (and the cgroup), then what the levels say.
    fn check_memory(&mut self, now: Instant) {
        let Some(pid) = self.child.as_ref().map(|c| c.pid.as_raw()) else {
            return;
        };
        // A process always has some RSS: 0 is one whose memory is already gone (it is
        // exiting; the OOM killer's victim, perhaps), not a reading.
        let Some(rss) = memlimit::statm_rss(pid).filter(|r| *r > 0) else {
            debug!("memory check: no RSS in /proc/{pid}/statm");
            return;
        };
        let m = &mut self.moment;
        m.refresh_limit(now);
        let usage = m.group.as_ref().and_then(Group::usage);
        let counters = m.oom_counters();
        if m.oom_base.observe(counters, now) {
            // mysqld outlived those kills: they explain no later SIGKILL.
            if let Some(k) = m.kmsg.as_mut() {
                k.skip_to_end();
            }
        }
        m.last = Some(Check {
            at: SystemTime::now(),
            rss,
            usage,
        });
        let pressure = m
            .triggers
            .settings()
            .pressure
            .clone()
            .and_then(|rule| rule.reading(&m.pressure.as_ref()?.read()?));
        let reading = Reading {
            rss,
            limit: m.limit.as_ref().map(|l| l.bytes),
            cgroup_limit: m.limit.as_ref().is_some_and(Limit::from_cgroup),
            pressure,
        };
        let Some(mut fired) = m.triggers.observe(&reading, now) else {
            return;
        };
        if let (true, Some(source)) = (fired.trigger == Trigger::pressure(), &m.pressure) {
            fired.reason = format!("{} in {}", fired.reason, source.describe());
        }
        let also = if fired.crossed.len() > 1 {
            format!(" (crossed together: {})", fired.crossed.join(", "))
        } else {
            String::new()
        };
        if !fired.admitted {
            if !m.refused_logged {
                warn!(
                    "{}{also}: no dump, [triggers] per_hour = {} reached (trigger dumps resume when the hour allows)",
                    fired.reason,
                    m.triggers.settings().per_hour
                );
                m.refused_logged = true;
            }
            return;
        }
        m.refused_logged = false;
        info!(
            "{}{also}: dumping (trigger {})",
            fired.reason,
            fired.trigger.as_str()
        );
        self.request_dump(fired.trigger, None);
        // A trailing dump already scheduled for another level takes the newest level's
        // name: it shows the memory as it is when it runs.
        if matches!(
            self.dumping.trailing_trigger,
            Some(crate::dumps::Trigger::Level(_))
        ) {
            self.dumping.trailing_trigger = Some(fired.trigger);
        }
    }

    /// Whether mysqld `pid`, just dead of SIGKILL, was killed by the kernel's OOM killer.
    pub(super) fn oom_verdict(&mut self, pid: i32) -> crate::oom::Verdict {
        let m = &mut self.moment;
        let after = m.oom_counters();
        let group = m.group.as_ref().map(Group::path);
        let log = m
            .kmsg
            .as_mut()
            .map_or(crate::oom::KernelLog::Unreadable, |k| {
                k.read_kills(pid, group)
            });
        let counter = m
            .group
            .as_ref()
            .map(|g| {
                g.path()
                    .join(match g.version() {
                        memlimit::Version::V1 => "memory.oom_control",
                        memlimit::Version::V2 => "memory.events",
                    })
                    .display()
                    .to_string()
            })
            .unwrap_or_default();
        crate::oom::verdict(&m.oom_base.before(), &after, &log, &counter, group)
    }

    /// mysqld `pid` (started at `started`) was OOM-killed: one error line with the limit,
    /// the last reading and the last dump; the incident record beside the dumps.
    pub(super) fn explain_oom(&mut self, pid: i32, started: Instant, evidence: &str) {
        use crate::oom::{DumpRecord, Incident, LastCheck};
        self.metrics.oom_killed();
        let now = SystemTime::now();
        let plan = self.plan;
        let mut dumps: Vec<crate::dumps::HeapFile> =
            crate::dumps::list(&plan.dump_dir, &plan.dump_prefix)
                .unwrap_or_default()
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
                rss: (i < crate::oom::SIDECARS_READ)
                    .then(|| {
                        jemsafe_report::sidecar::read_within(
                            &f.path,
                            false,
                            crate::oom::SIDECAR_BYTES,
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
            version: crate::oom::VERSION,
            kind: "oom_kill".into(),
            time: jemsafe_report::clock::rfc3339_seconds(now),
            pid,
            ran_for_s: started.elapsed().as_secs(),
            evidence: evidence.to_owned(),
            limit: limit.clone(),
            last_check: self.moment.last.map(|c| LastCheck {
                time: jemsafe_report::clock::rfc3339_millis(c.at),
                age_s: now.duration_since(c.at).unwrap_or_default().as_secs_f64(),
                rss: c.rss,
                cgroup_usage: c.usage,
            }),
            dumps: records,
        };
        let written = crate::dumps::files::open_dir(&plan.dump_dir)
            .map_err(|e| format!("cannot open {}: {e}", plan.dump_dir.display()))
            .and_then(|fd| {
                crate::oom::write(
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
        self.retire_incidents();
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
                .then(|| self.moment.triggers.refusal_words())
                .flatten()
                .unwrap_or_else(|| crate::oom::last_dump_words(&incident))
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
        self.write_sidecar(name, kind, snapshot, maps);
    }

    /// Retention for incident records: they go with the dumps of their time.
    pub(super) fn retire_incidents(&self) {
        let plan = self.plan;
        let (Ok(incidents), Ok(heaps)) = (
            crate::oom::list(&plan.dump_dir, &plan.dump_prefix),
            crate::dumps::list(&plan.dump_dir, &plan.dump_prefix),
        ) else {
            return;
        };
        // Through the directory's descriptor, as every deletion there: never by a path
        // whose directories could be swapped.
        let Ok(dir_fd) = crate::dumps::files::open_dir(&plan.dump_dir) else {
            return;
        };
        for (path, reason) in crate::oom::retire(
            &incidents,
            &heaps,
            plan.retention.max_age,
            SystemTime::now(),
        ) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            match crate::dumps::files::remove(&dir_fd, name) {
                Ok(()) => info!("retention: deleted {} ({reason})", path.display()),
                Err(e) => warn!("retention: cannot delete {}: {e}", path.display()),
            }
        }
    }

    /// For `status`: the limit that applies and where it comes from.
    pub(super) fn limit_status(&self) -> Option<crate::control::MemoryLimit> {
        let l = self.moment.limit.as_ref()?;
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
