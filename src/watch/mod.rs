//! The memory watch as a decision, like [`crate::supervisor::policy`]: readings in,
//! actions out. At each wake-up ([`Next::wakeup`]) the supervisor reads
//! /proc/PID/statm, mysqld's cgroup files, the PSI file and the OOM counters, and hands
//! them in with the dumps it sent since the last decision, in one call to
//! [`Watch::decide`]; it carries out what comes back: a dump with the reading that
//! fired it, a timeline sample, the kernel log's outlived kills forgotten, log lines.
//! Nothing here reads a file or asks mysqld anything, so every rule is a unit test.
//!
//! What fires a dump is [`crate::watch::triggers`]' (levels, re-arming, `per_hour`); what an OOM
//! kill is, [`crate::watch::oom`]'s. This module holds the clock (checks, samples, the limit's
//! refresh, the timeline's upkeep) and turns their answers into actions.

pub mod memlimit;
pub mod oom;
pub mod triggers;

use crate::dumpdir::Trigger;
use crate::timeline::EventKind;
use crate::watch::memlimit::Limit;
use crate::watch::oom::{Baseline, Counters};
use crate::watch::triggers::{Reading, TriggerSettings, Triggers};
use std::time::{Duration, Instant};

/// How often the limit is read again (it changes with `systemctl set-property`).
pub const LIMIT_REFRESH: Duration = Duration::from_secs(10);
/// How often the timeline file is trimmed to its age.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// What the supervisor carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A heap dump of `trigger`; `reason`: the reading that fired it, for the sidecar
    /// (`limit90: RSS 691 MiB of 768 MiB`).
    Dump {
        trigger: Trigger,
        reason: String,
    },
    /// Ask the shim for a timeline sample (its answer, or its deadline, writes it).
    Sample,
    /// Trim the timeline file to its age.
    MaintainTimeline,
    /// An event on the timeline.
    Record(EventKind),
    /// OOM kills that mysqld outlived explain no later SIGKILL: the kernel log skips them.
    ForgetKills,
    Log(Level, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// What was due at a wake-up: what [`Watch::decide`] took from the readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// A memory check: RSS, the cgroup's usage, the PSI file.
    pub check: bool,
    /// The limit is to be read again.
    pub limit: bool,
    /// A timeline sample (and maybe the timeline's upkeep).
    pub sample: bool,
}

impl Due {
    /// Whether the OOM counters are read: at every wake-up that does anything, so that
    /// the baseline stays current with or without checks.
    pub fn any(&self) -> bool {
        self.check || self.sample
    }
}

/// One wake-up's readings; each is None when it was not readable. What was not due is
/// not used: the limit only every [`LIMIT_REFRESH`], RSS and PSI only at a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// RSS from /proc/PID/statm (0 is no reading: mysqld's memory is gone).
    pub rss: Option<u64>,
    /// The limit read again: Some(None) when none is known now.
    pub limit: Option<Option<Limit>>,
    /// The pressure rule's value in the pressure source's PSI file (with a rule: the
    /// supervisor reads and parses it, so the file's format is [`memlimit`]'s alone).
    pub pressure: Option<f64>,
    pub oom: Counters,
    /// The dumps the supervisor sent to mysqld since the last decision, and when: a
    /// level's counts against `per_hour` (a dump coalesced into another, or never sent,
    /// is not in it, so it costs nothing; each is handed in once).
    pub sent: Vec<(Trigger, Instant)>,
}

/// What a start or a wake-up decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What was due (a check: the readings were this check's).
    pub due: Due,
    pub actions: Vec<Action>,
    pub next: Next,
}

/// When the supervisor wakes the watch next, and what it reads then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Next {
    /// The next wake-up (None: no check or sample is scheduled).
    pub wakeup: Option<Instant>,
    /// The limit is read again at a wake-up from this moment on (its files are several,
    /// up the cgroup tree: read every [`LIMIT_REFRESH`], not at every check).
    pub limit_from: Option<Instant>,
}

/// What mysqld's start brought: its limit, its OOM counters, where PSI is read.
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub limit: Option<Limit>,
    pub oom: Counters,
    /// The PSI source in words, and its file (for the dump's reason), with a rule.
    pub pressure: Option<(String, String)>,
}

/// The watch's state between wake-ups.
#[derive(Debug)]
pub struct Watch {
    triggers: Triggers,
    /// `[timeline] interval_s`, when the timeline is on.
    sample_every: Option<Duration>,
    limit: Option<Limit>,
    limit_read: Option<Instant>,
    pressure: Option<(String, String)>,
    next_check: Option<Instant>,
    next_sample: Option<Instant>,
    next_maintain: Option<Instant>,
    sample_in_flight: bool,
    /// A budget refusal is logged once until a dump is admitted again.
    refused_logged: bool,
    oom_base: Baseline,
    starts: u64,
}

impl Watch {
    pub fn new(settings: TriggerSettings, sample_every: Option<Duration>) -> Watch {
        Watch {
            triggers: Triggers::new(settings),
            sample_every,
            limit: None,
            limit_read: None,
            pressure: None,
            next_check: None,
            next_sample: None,
            next_maintain: None,
            sample_in_flight: false,
            refused_logged: false,
            oom_base: Baseline::default(),
            starts: 0,
        }
    }

    /// Samples the timeline every `every` from mysqld's next start.
    pub fn set_sampling(&mut self, every: Duration) {
        self.sample_every = Some(every);
    }

    /// `[timeline] interval_s`, when the timeline is on.
    pub fn sample_every(&self) -> Option<Duration> {
        self.sample_every
    }

    pub fn triggers(&self) -> &Triggers {
        &self.triggers
    }

    /// The limit that applies now.
    pub fn limit(&self) -> Option<&Limit> {
        self.limit.as_ref()
    }

    /// The OOM counters before any rise mysqld has not outlived.
    pub fn oom_before(&self) -> Counters {
        self.oom_base.before()
    }

    /// mysqld started at `now`: the levels armed again, checks and samples scheduled
    /// (only what is configured: no level, no check and no wake-up).
    pub fn started(&mut self, start: Start, now: Instant) -> Decision {
        self.limit = start.limit;
        self.limit_read = Some(now);
        self.pressure = start.pressure;
        self.triggers.rearm_all();
        self.oom_base = Baseline::new(start.oom);
        let cgroup_limit = self.limit.as_ref().is_some_and(Limit::from_cgroup);
        let checking = self.triggers.any(cgroup_limit);
        let settings = self.triggers.settings();
        let line = format!(
            "memory limit {}; dump triggers: {}{}{}",
            self.limit
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), Limit::describe),
            settings.describe(cgroup_limit),
            self.pressure
                .as_ref()
                .map(|(words, _)| format!("; pressure read from {words}"))
                .unwrap_or_default(),
            if checking {
                ""
            } else {
                " (no memory check is scheduled; a limit set later applies from mysqld's next start)"
            }
        );
        self.next_check = checking.then(|| now + settings.check);
        // The first sample at the first check; the file trimmed to its age now.
        self.next_sample = self.sample_every.map(|_| now);
        self.next_maintain = self.sample_every.map(|_| now);
        self.sample_in_flight = false;
        self.starts += 1;
        Decision {
            due: Due::default(),
            actions: vec![
                Action::Log(Level::Info, line),
                Action::Record(EventKind::Start {
                    restart: self.starts > 1,
                }),
            ],
            next: self.next(),
        }
    }

    /// mysqld is gone: no more checks or samples until the next one starts.
    pub fn stopped(&mut self) -> Next {
        self.next_check = None;
        self.next_sample = None;
        self.sample_in_flight = false;
        self.next()
    }

    /// The sample asked for was written (with or without the shim's reading).
    pub fn sampled(&mut self) {
        self.sample_in_flight = false;
    }

    /// The next wake-up (a check or a timeline sample, whichever is first; None: neither
    /// is configured), and from when the limit is read again.
    fn next(&self) -> Next {
        Next {
            wakeup: next_wakeup(self.next_check, self.next_sample),
            limit_from: self.limit_read.map(|t| t + LIMIT_REFRESH),
        }
    }

    /// What is due at `now`; the timers move on (from now, not from the due time: a late
    /// wake-up never makes a burst).
    fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        if self.next_check.is_some_and(|t| now >= t) {
            self.next_check = Some(now + self.triggers.settings().check);
            due.check = true;
            due.limit = !self.limit_read.is_some_and(|t| now < t + LIMIT_REFRESH);
        }
        if sample_now(self.next_sample, now, self.next_check) {
            self.next_sample = self.sample_every.map(|every| now + every);
            due.sample = true;
        }
        due
    }

    /// One wake-up at `now`: the dumps sent since the last one charged, what is due
    /// decided on `r` (nothing when nothing is due; what is not due is not used), and
    /// when to wake next.
    pub fn decide(&mut self, r: &Readings, now: Instant) -> Decision {
        let due = self.due(now);
        let actions = self.decide_due(due, r, now);
        Decision {
            due,
            actions,
            next: self.next(),
        }
    }

    fn decide_due(&mut self, due: Due, r: &Readings, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if due.any() && self.oom_base.observe(r.oom, now) {
            actions.push(Action::ForgetKills);
        }
        if let (true, Some(limit)) = (due.limit, &r.limit) {
            self.limit_read = Some(now);
            actions.extend(self.limit_now(limit.clone()));
        }
        // The dumps sent are charged at every wake-up, a check or not.
        let rss = r.rss.filter(|rss| due.check && *rss > 0);
        actions.extend(self.check(rss, r.pressure, &r.sent, now));
        if due.sample {
            if self.next_maintain.is_some_and(|t| now >= t) {
                self.next_maintain = Some(now + MAINTAIN_EVERY);
                actions.push(Action::MaintainTimeline);
            }
            // The last one still unanswered: its deadline writes it.
            if !self.sample_in_flight {
                self.sample_in_flight = true;
                actions.push(Action::Sample);
            }
        }
        actions
    }

    fn limit_now(&mut self, limit: Option<Limit>) -> Option<Action> {
        if limit == self.limit {
            return None;
        }
        let line = match (&self.limit, &limit) {
            (Some(old), Some(new)) => Some(format!(
                "mysqld's memory limit changed from {} to {}",
                old.describe(),
                new.describe()
            )),
            _ => None,
        };
        self.limit = limit;
        line.map(|l| Action::Log(Level::Info, l))
    }

    /// The dumps `sent` charged, and a check's RSS (None: no check now) and pressure
    /// value against the levels.
    fn check(
        &mut self,
        rss: Option<u64>,
        pressure: Option<f64>,
        sent: &[(Trigger, Instant)],
        now: Instant,
    ) -> Vec<Action> {
        let reading = rss.map(|rss| Reading {
            rss,
            limit: self.limit.as_ref().map(|l| l.bytes),
            cgroup_limit: self.limit.as_ref().is_some_and(Limit::from_cgroup),
            pressure,
        });
        let Some(mut fired) = self.triggers.wake(sent, reading.as_ref(), now) else {
            return Vec::new();
        };
        if let (true, Some((words, file))) = (fired.trigger == Trigger::pressure(), &self.pressure)
        {
            fired.reason = format!("{} in {words}", fired.reason);
            fired.reading = format!("{} in {file}", fired.reading);
        }
        let also = if fired.crossed.len() > 1 {
            format!(" (crossed together: {})", fired.crossed.join(", "))
        } else {
            String::new()
        };
        if !fired.admitted {
            if self.refused_logged {
                return Vec::new();
            }
            self.refused_logged = true;
            return vec![Action::Log(
                Level::Warn,
                format!(
                    "{}{also}: no dump, [triggers] per_hour = {} reached (trigger dumps resume when the hour allows)",
                    fired.reason,
                    self.triggers.settings().per_hour
                ),
            )];
        }
        self.refused_logged = false;
        vec![
            Action::Log(
                Level::Info,
                format!(
                    "{}{also}: dumping (trigger {})",
                    fired.reason,
                    fired.trigger.as_str()
                ),
            ),
            Action::Dump {
                trigger: fired.trigger,
                reason: fired.reading,
            },
        ]
    }
}

/// Whether the timeline's sample, due at `sample_due`, is taken at this wake-up (`now`):
/// when it is due, or due before the next memory check (`next_check`, None when no check
/// is scheduled), so that checks and samples share their wake-ups.
fn sample_now(sample_due: Option<Instant>, now: Instant, next_check: Option<Instant>) -> bool {
    sample_due.is_some_and(|due| due <= now || next_check.is_some_and(|check| due < check))
}

/// When the memory watch must wake next: the check or the sample, whichever is first
/// (after [`sample_now`] a sample is never due before the next check).
fn next_wakeup(next_check: Option<Instant>, sample_due: Option<Instant>) -> Option<Instant> {
    next_check.into_iter().chain(sample_due).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::memlimit::{PressureRule, Source, Version};

    const MIB: u64 = 1 << 20;

    fn cgroup_limit(mib: u64) -> Limit {
        Limit {
            bytes: mib * MIB,
            source: Source::Cgroup {
                version: Version::V2,
                file: "/sys/fs/cgroup/db/memory.max".into(),
            },
        }
    }

    fn started(settings: TriggerSettings, sample_every: Option<Duration>, start: Start) -> Watch {
        let mut w = Watch::new(settings, sample_every);
        w.started(start, Instant::now());
        w
    }

    fn check_at(w: &mut Watch, now: Instant, r: Readings) -> Vec<Action> {
        let decision = w.decide(&r, now);
        assert!(decision.due.check, "a check is due at {now:?}");
        decision.actions
    }

    fn dumps(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dump { trigger, reason } => {
                    Some((trigger.as_str().to_owned(), reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_crossed_limit_is_a_dump_with_the_reading_that_fired_it() {
        let t0 = Instant::now();
        let mut w = Watch::new(TriggerSettings::default(), None);
        let said = w.started(
            Start {
                limit: Some(cgroup_limit(768)),
                ..Default::default()
            },
            t0,
        );
        assert!(
            matches!(&said.actions[0], Action::Log(Level::Info, l) if l.contains("dump triggers: limit90")),
            "{said:?}"
        );
        let second = Duration::from_secs(1);
        assert_eq!(said.next.wakeup, Some(t0 + second), "the first check");
        let r = |mib| Readings {
            rss: Some(mib * MIB),
            ..Default::default()
        };
        assert_eq!(dumps(&check_at(&mut w, t0 + second, r(600))), []);
        let fired = check_at(&mut w, t0 + 2 * second, r(700));
        assert_eq!(
            dumps(&fired),
            [(
                "limit90".to_owned(),
                "limit90: RSS 700 MiB of 768 MiB".to_owned()
            )]
        );
        assert!(
            matches!(&fired[0], Action::Log(Level::Info, l) if l.contains("dumping (trigger limit90)"))
        );
        // Not due yet: nothing is used, nothing decided.
        let early = w.decide(&r(760), t0 + 2 * second);
        assert_eq!(
            (early.due, early.actions, early.next.wakeup),
            (Due::default(), vec![], Some(t0 + 3 * second))
        );
    }

    #[test]
    fn a_pressure_dump_says_its_value_and_its_file() {
        let settings = TriggerSettings {
            limit_percent: Some(vec![]),
            pressure: Some(PressureRule::parse("some avg10 > 20").unwrap()),
            ..Default::default()
        };
        let start = Start {
            pressure: Some((
                "/proc/pressure/memory, system-wide".into(),
                "/proc/pressure/memory".into(),
            )),
            ..Default::default()
        };
        let mut w = started(settings, None, start);
        let now = Instant::now() + Duration::from_secs(1);
        let actions = check_at(
            &mut w,
            now,
            Readings {
                rss: Some(100 * MIB),
                pressure: Some(31.5),
                ..Default::default()
            },
        );
        assert_eq!(
            dumps(&actions),
            [(
                "pressure".to_owned(),
                "pressure: some avg10=31.50 > 20 in /proc/pressure/memory".to_owned()
            )]
        );
        assert!(
            matches!(&actions[0], Action::Log(_, l) if l.ends_with("in /proc/pressure/memory, system-wide: dumping (trigger pressure)")),
            "{actions:?}"
        );
    }

    #[test]
    fn a_refusal_is_said_once_until_a_dump_is_admitted_again() {
        let settings = TriggerSettings {
            rss_mb: vec![100],
            per_hour: 1,
            ..Default::default()
        };
        let mut w = started(settings, None, Start::default());
        let t0 = Instant::now();
        let r = |mib| Readings {
            rss: Some(mib * MIB),
            ..Default::default()
        };
        let mut said = Vec::new();
        let mut sent = Vec::new();
        for i in 1..=6u64 {
            let now = t0 + Duration::from_secs(i);
            let readings = Readings {
                sent: std::mem::take(&mut sent),
                ..r(if i % 2 == 1 { 120 } else { 50 })
            };
            let actions = check_at(&mut w, now, readings);
            for action in &actions {
                if let Action::Dump { trigger, .. } = action {
                    sent.push((*trigger, now)); // the supervisor sent it
                }
            }
            said.extend(actions.into_iter().map(|a| match a {
                Action::Dump { .. } => "dump",
                Action::Log(Level::Warn, _) => "refused",
                _ => "",
            }));
        }
        assert_eq!(
            said.into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>(),
            ["dump", "refused"]
        );
    }

    #[test]
    fn samples_are_asked_once_in_flight_and_the_file_kept_hourly() {
        let every = Duration::from_secs(10);
        let mut w = started(TriggerSettings::default(), Some(every), Start::default());
        let t0 = Instant::now();
        let first = w.decide(&Readings::default(), t0);
        assert_eq!(
            first.due,
            Due {
                sample: true,
                ..Default::default()
            },
            "no level applies without a cgroup limit: samples alone"
        );
        assert_eq!(first.actions, [Action::MaintainTimeline, Action::Sample]);
        assert_eq!(first.next.wakeup, Some(t0 + every));
        let second = w.decide(&Readings::default(), t0 + every);
        assert_eq!(second.actions, []);
        w.sampled();
        assert_eq!(
            w.decide(&Readings::default(), t0 + 2 * every).actions,
            [Action::Sample]
        );
        assert_eq!(w.stopped().wakeup, None);
    }

    #[test]
    fn a_limit_read_again_is_said_when_it_changed_and_used_at_once() {
        let mut w = started(
            TriggerSettings::default(),
            None,
            Start {
                limit: Some(cgroup_limit(1024)),
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        let lower = Readings {
            rss: Some(700 * MIB),
            limit: Some(Some(cgroup_limit(768))),
            ..Default::default()
        };
        let early = w.decide(&lower, t0 + Duration::from_secs(1));
        assert!(
            early.due.check && !early.due.limit && early.actions.is_empty(),
            "read at the start, not again yet: a limit read early is not used ({early:?})"
        );
        assert!(early
            .next
            .limit_from
            .is_some_and(|t| t > t0 + Duration::from_secs(1)));
        let later = w.decide(&lower, t0 + LIMIT_REFRESH + Duration::from_secs(1));
        assert!(later.due.limit);
        let actions = later.actions;
        assert!(
            matches!(&actions[0], Action::Log(Level::Info, l) if l.starts_with("mysqld's memory limit changed from 1.0 GiB")),
            "{actions:?}"
        );
        assert_eq!(dumps(&actions)[0].0, "limit90");
        assert_eq!(w.limit().map(|l| l.bytes), Some(768 * MIB));
    }

    #[test]
    fn kills_mysqld_outlived_are_forgotten_once_settled() {
        let mut w = started(
            TriggerSettings::default(),
            Some(Duration::from_secs(1)),
            Start::default(),
        );
        let t0 = Instant::now();
        let risen = Readings {
            oom: Counters {
                group: Some(1),
                vmstat: None,
            },
            ..Default::default()
        };
        let mut forgot = Vec::new();
        for s in [0u64, 5, 11] {
            let now = t0 + Duration::from_secs(s);
            let actions = w.decide(&risen, now).actions;
            forgot.push(actions.contains(&Action::ForgetKills));
            w.sampled();
        }
        assert_eq!(forgot, [false, false, true]);
        assert_eq!(w.oom_before().group, Some(1));
    }

    #[test]
    fn per_hour_is_charged_by_the_dumps_handed_in_once_and_not_by_crossings() {
        let settings = TriggerSettings {
            rss_mb: vec![100],
            per_hour: 1,
            ..Default::default()
        };
        let mut w = started(settings, None, Start::default());
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let r = |mib, sent: &[(Trigger, Instant)]| Readings {
            rss: Some(mib * MIB),
            sent: sent.to_vec(),
            ..Default::default()
        };
        let fired = |actions: &[Action]| dumps(actions).len();
        // A crossing whose dump was coalesced (or dropped: mysqld ended) is not handed
        // in: the next crossing is admitted.
        assert_eq!(fired(&check_at(&mut w, at(1), r(120, &[]))), 1);
        assert_eq!(fired(&check_at(&mut w, at(2), r(50, &[]))), 0);
        assert_eq!(fired(&check_at(&mut w, at(3), r(120, &[]))), 1);
        // A person's dump sent costs nothing; the level's dump sent, handed in once
        // (even at a wake-up that crosses nothing), spends the hour's one.
        let usr1 = [(Trigger::Usr1, at(3))];
        assert_eq!(fired(&check_at(&mut w, at(4), r(50, &usr1))), 0);
        assert_eq!(fired(&check_at(&mut w, at(5), r(120, &[]))), 1);
        let level = [(Trigger::rss(100), at(5))];
        assert_eq!(fired(&check_at(&mut w, at(6), r(50, &level))), 0);
        let refused = check_at(&mut w, at(7), r(120, &[]));
        assert_eq!(fired(&refused), 0);
        assert!(
            matches!(&refused[..], [Action::Log(Level::Warn, l)] if l.contains("per_hour = 1 reached")),
            "{refused:?}"
        );
        // The hour after that dump was sent, not after it was handed in.
        assert_eq!(fired(&check_at(&mut w, at(8), r(50, &[]))), 0);
        let hour = Duration::from_secs(3600);
        assert_eq!(fired(&check_at(&mut w, at(5) + hour, r(120, &[]))), 1);
    }

    #[test]
    fn samples_ride_on_checks_and_wake_alone_without_them() {
        let now = Instant::now();
        let s = Duration::from_secs(1);
        // Nothing configured: no wake-up at all.
        assert_eq!(next_wakeup(None, None), None);
        assert!(!sample_now(None, now, Some(now + s)));
        // Timeline alone: its own timer, taken when due.
        assert_eq!(next_wakeup(None, Some(now + 10 * s)), Some(now + 10 * s));
        assert!(!sample_now(Some(now + s), now, None));
        assert!(sample_now(Some(now), now, None));
        // Both: a sample due before the next check is taken at this one's wake-up...
        assert!(sample_now(Some(now + s / 2), now, Some(now + s)));
        assert!(!sample_now(Some(now + 2 * s), now, Some(now + s)));
        // ...so the check alone decides the next wake-up.
        assert_eq!(
            next_wakeup(Some(now + s), Some(now + 10 * s)),
            Some(now + s)
        );
    }

    #[test]
    fn a_restart_is_recorded_as_one() {
        let mut w = Watch::new(TriggerSettings::default(), None);
        let now = Instant::now();
        let restarts: Vec<bool> = (0..2)
            .map(|_| {
                w.started(Start::default(), now)
                    .actions
                    .into_iter()
                    .find_map(|a| match a {
                        Action::Record(EventKind::Start { restart }) => Some(restart),
                        _ => None,
                    })
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(restarts, [false, true]);
    }
}
