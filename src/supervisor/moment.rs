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
#[allow(dead_code)] // read by the OOM explanation
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
        let Some(rss) = memlimit::statm_rss(pid) else {
            debug!("memory check: /proc/{pid}/statm is unreadable");
            return;
        };
        let m = &mut self.moment;
        m.refresh_limit(now);
        let usage = m.group.as_ref().and_then(Group::usage);
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
