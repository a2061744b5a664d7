//! Watching mysqld's memory between dumps (the effects; the decisions are in
//! [`crate::triggers`], [`crate::oom`] and [`crate::timeline`]): every `check_ms` one
//! read of /proc/PID/statm and, where they exist, of mysqld's cgroup files; a dump when a
//! `[triggers]` level is crossed. Nothing is asked of mysqld unless a level is crossed.

use super::Supervisor;
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
    /// mysqld's v2 group for `memory.pressure` (hybrid layouts have one beside v1).
    pressure_group: Option<Group>,
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
}

impl Moment {
    pub fn new(settings: crate::triggers::Settings) -> Moment {
        Moment {
            triggers: Triggers::new(settings),
            group: None,
            pressure_group: None,
            limit: None,
            limit_read: None,
            last: None,
            next_check: None,
            refused_logged: false,
            kmsg: crate::oom::Kmsg::open(),
            oom_base: crate::oom::Baseline::default(),
        }
    }

    /// The next moment a check is due.
    pub fn due(&self) -> Option<Instant> {
        self.next_check
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

    /// The PSI text the pressure rule reads: mysqld's v2 group's, else the machine's.
    fn pressure_text(&self) -> Option<String> {
        self.pressure_group
            .as_ref()
            .and_then(Group::pressure)
            .or_else(|| memlimit::read_file(std::path::Path::new("/proc/pressure/memory")).ok())
    }
}

impl Supervisor<'_> {
    /// mysqld `pid` started: find its cgroup and limit, arm the levels, start checking.
    pub(super) fn watch_started(&mut self, pid: i32) {
        let m = &mut self.moment;
        m.group = Group::of(pid);
        m.pressure_group = crate::procfs::read(pid, "cgroup")
            .ok()
            .zip(crate::procfs::read(std::process::id() as i32, "mountinfo").ok())
            .and_then(|(c, mi)| memlimit::unified(&c, &mi))
            .and_then(|l| Group::open(&l).ok());
        m.limit_read = None;
        m.refresh_limit(Instant::now());
        m.last = None;
        m.triggers.rearm_all();
        m.oom_base = crate::oom::Baseline::new(m.oom_counters());
        if let Some(k) = m.kmsg.as_mut() {
            k.skip_to_end();
        }
        let cgroup_limit = m.limit.as_ref().is_some_and(Limit::from_cgroup);
        info!(
            "memory limit {}; dump triggers: {}",
            m.limit
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), Limit::describe),
            m.triggers.settings().describe(cgroup_limit)
        );
        m.next_check = Some(Instant::now() + m.triggers.settings().check);
    }

    /// mysqld is gone: no more checks until the next one starts.
    pub(super) fn watch_stopped(&mut self) {
        self.moment.next_check = None;
    }

    pub(super) fn watch_timers(&mut self, now: Instant) {
        if self.moment.next_check.is_some_and(|t| now >= t) {
            let every = self.moment.triggers.settings().check;
            // From now, not from the due time: a late wake-up never makes a burst.
            self.moment.next_check = Some(now + every);
            self.check_memory(now);
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
        m.oom_base.observe(counters, now);
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
            .and_then(|rule| rule.reading(&m.pressure_text()?));
        let reading = Reading {
            rss,
            limit: m.limit.as_ref().map(|l| l.bytes),
            cgroup_limit: m.limit.as_ref().is_some_and(Limit::from_cgroup),
            pressure,
        };
        let Some(fired) = m.triggers.observe(&reading, now) else {
            return;
        };
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
        if matches!(self.trailing_trigger, Some(crate::dumps::Trigger::Level(_))) {
            self.trailing_trigger = Some(fired.trigger);
        }
    }

    /// Whether mysqld `pid`, just dead of SIGKILL, was killed by the kernel's OOM killer:
    /// the evidence, or None.
    pub(super) fn oom_verdict(&mut self, pid: i32) -> Option<String> {
        let m = &mut self.moment;
        let after = m.oom_counters();
        let log = m
            .kmsg
            .as_mut()
            .map_or(crate::oom::KernelLog::Unreadable, |k| k.find_kill(pid));
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
        crate::oom::verdict(&m.oom_base.before(), &after, &log, &counter)
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
            .map(|f| DumpRecord {
                file: f
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                time: humantime::format_rfc3339_seconds(f.modified).to_string(),
                age_s: now.duration_since(f.modified).unwrap_or_default().as_secs(),
                trigger: f.name.trigger().to_owned(),
                rss: jemsafe_report::sidecar::read_for(&f.path, false)
                    .ok()
                    .flatten()
                    .and_then(|s| s.memory_snapshot()?.ok())
                    .map(|snap| snap.proc.rss),
            })
            .collect();
        let limit = self.limit_status();
        let incident = Incident {
            version: crate::oom::VERSION,
            kind: "oom_kill".into(),
            time: humantime::format_rfc3339_seconds(now).to_string(),
            pid,
            ran_for_s: started.elapsed().as_secs(),
            evidence: evidence.to_owned(),
            limit: limit.clone(),
            last_check: self.moment.last.map(|c| LastCheck {
                time: humantime::format_rfc3339_millis(c.at).to_string(),
                age_s: now.duration_since(c.at).unwrap_or_default().as_secs_f64(),
                rss: c.rss,
                cgroup_usage: c.usage,
            }),
            dumps: records,
        };
        let name = crate::oom::incident_name(&plan.dump_prefix, pid, now);
        let written = crate::dumps::files::open_dir(&plan.dump_dir)
            .map_err(|e| format!("cannot open {}: {e}", plan.dump_dir.display()))
            .and_then(|fd| crate::oom::write(&fd, &name, &incident, Some(self.file_owner)));
        let record = match written {
            Ok(()) => format!("incident record {}", plan.dump_dir.join(&name).display()),
            Err(why) => format!("no incident record: {why}"),
        };
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
            crate::oom::last_dump_words(&incident)
        );
    }

    /// jemalloc wrote dump `name` of its own (interval, gdump, final): its sidecar waits
    /// for a memory snapshot, asked now (never blocking: the answer comes through the
    /// ledger, and without one in time the sidecar is written without it).
    pub(super) fn snapshot_auto_dump(&mut self, name: &str, kind: &'static str) {
        let closed = std::fs::symlink_metadata(self.plan.dump_dir.join(name))
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        self.send(
            jemsafe_proto::Command::Memory,
            super::Pending::AutoSnapshot {
                name: name.to_owned(),
                kind,
                closed,
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
        self.write_sidecar(name, kind, snapshot);
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
        for (path, reason) in crate::oom::retire(
            &incidents,
            &heaps,
            plan.retention.max_age,
            SystemTime::now(),
        ) {
            match std::fs::remove_file(&path) {
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
