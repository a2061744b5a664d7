//! `[triggers]`: a heap dump the moment mysqld's memory rises past a level, so that the
//! dump that explains an OOM kill exists before the kill. Pure decisions: which levels a
//! reading crosses, when a level is armed again, and whether the hourly budget allows
//! another dump. The supervisor reads /proc and the cgroup files and carries them out.
//!
//! A level fires once when the reading rises past it and is armed again only when the
//! reading falls 10% below it, so a reading that hovers at a level dumps once, not at
//! every check.
//!
//! `per_hour` counts dumps taken, not crossings, and all of it is here: a crossing asks
//! whether the hour has room ([`Triggers::observe`]), and the budget is charged when a
//! dump sent to mysqld is a level's ([`Triggers::sent`]: the supervisor hands the dumps
//! it sent in with the watch's next readings, [`Triggers::wake`], and a storm's trailing
//! dump bears the newest level's name). Crossings coalesced into one dump cost one, and
//! a dump dropped because mysqld ended first costs nothing. Crossings the budget refused
//! are counted per mysqld, for the OOM line ([`Triggers::refusal_words`]).

use crate::dumpdir::Trigger;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A level is armed again once the reading is below this share of it.
const REARM: f64 = 0.9;

/// `limit_percent` when the file leaves it out and a cgroup sets the limit.
pub const DEFAULT_LIMIT_PERCENT: &[u8] = &[90];

pub use crate::watch::memlimit::PressureRule;

/// `[triggers]` as the supervisor uses it: typed once, by the config's validation.
pub use crate::config::TriggerSettings;

impl TriggerSettings {
    /// `[triggers]` of a config, as its validation typed it.
    pub fn of(config: &crate::config::Config) -> TriggerSettings {
        config.triggers.clone()
    }
}

impl TriggerSettings {
    /// The limit levels that apply when the limit comes from a cgroup or not.
    pub fn limit_levels(&self, cgroup_limit: bool) -> Vec<u8> {
        match &self.limit_percent {
            Some(levels) => levels.clone(),
            None if cgroup_limit => DEFAULT_LIMIT_PERCENT.to_vec(),
            None => Vec::new(),
        }
    }

    /// Trigger names in force, for messages: `limit90, rss2048, pressure (some avg10 > 20)`.
    pub fn describe(&self, cgroup_limit: bool) -> String {
        let mut names: Vec<String> = self
            .limit_levels(cgroup_limit)
            .into_iter()
            .map(|p| Trigger::limit(p).as_str().to_owned())
            .collect();
        names.extend(
            self.rss_mb
                .iter()
                .map(|m| Trigger::rss(*m).as_str().to_owned()),
        );
        if let Some(p) = &self.pressure {
            names.push(format!("pressure ({})", p.describe()));
        }
        if names.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{}; at most {} an hour, checked every {} ms",
                names.join(", "),
                self.per_hour,
                self.check.as_millis()
            )
        }
    }
}

/// One check's readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub rss: u64,
    /// The memory limit in bytes, when known, and whether a cgroup sets it.
    pub limit: Option<u64>,
    pub cgroup_limit: bool,
    /// The pressure rule's value, when there is a rule and the file was readable.
    pub pressure: Option<f64>,
}

/// A level crossed: the dump to take (or the reason none is), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The highest level crossed by this reading (its name goes into the dump's name).
    pub trigger: Trigger,
    /// Every level this reading crossed, highest first (names only).
    pub crossed: Vec<String>,
    pub reason: String,
    /// The reading that fired it, short, for the dump's sidecar:
    /// `limit90: RSS 691 MiB of 768 MiB`, `pressure: some avg10=31.50 > 20`.
    pub reading: String,
    /// Whether `per_hour` allows the dump.
    pub admitted: bool,
}

#[derive(Debug)]
pub struct Triggers {
    settings: TriggerSettings,
    rss: Vec<(u64, bool)>,
    limit: Vec<(u8, bool)>,
    pressure_armed: bool,
    /// When each trigger dump of the last hour was sent to mysqld.
    budget: VecDeque<Instant>,
    /// Crossings of the current mysqld that the budget refused.
    refused: u32,
}

impl Triggers {
    pub fn new(settings: TriggerSettings) -> Triggers {
        let mut levels = settings
            .limit_percent
            .clone()
            .unwrap_or_else(|| DEFAULT_LIMIT_PERCENT.to_vec());
        levels.sort_unstable();
        levels.dedup();
        let mut rss = settings.rss_mb.clone();
        rss.sort_unstable();
        rss.dedup();
        Triggers {
            rss: rss
                .into_iter()
                .map(|m| (m.saturating_mul(1 << 20), true))
                .collect(),
            limit: levels.into_iter().map(|p| (p, true)).collect(),
            pressure_armed: true,
            budget: VecDeque::new(),
            refused: 0,
            settings,
        }
    }

    pub fn settings(&self) -> &TriggerSettings {
        &self.settings
    }

    /// Whether anything is to be checked at all (with or without a cgroup limit): when
    /// not, no check is scheduled.
    pub fn any(&self, cgroup_limit: bool) -> bool {
        !self.rss.is_empty()
            || self.settings.pressure.is_some()
            || !self.settings.limit_levels(cgroup_limit).is_empty()
    }

    /// A new mysqld starts from nothing: every level is armed again, and its refusals
    /// start at 0 (the budget stays).
    pub fn rearm_all(&mut self) {
        self.rss.iter_mut().for_each(|l| l.1 = true);
        self.limit.iter_mut().for_each(|l| l.1 = true);
        self.pressure_armed = true;
        self.refused = 0;
    }

    /// A dump of `trigger` was sent to mysqld at `now`: a level's counts against
    /// `per_hour` (a person's, growth's or jemalloc's do not).
    pub fn sent(&mut self, trigger: &Trigger, now: Instant) {
        if matches!(trigger, Trigger::Level(_)) {
            self.budget.push_back(now);
        }
    }

    /// For the OOM line when the killed mysqld has no dump: that the budget refused its
    /// trigger dumps, when it did (None otherwise).
    pub fn refusal_words(&self) -> Option<String> {
        (self.refused > 0).then(|| {
            format!(
                "no dump of this process before it: {} trigger dump{} refused by per_hour = {}",
                self.refused,
                if self.refused == 1 { "" } else { "s" },
                self.settings.per_hour
            )
        })
    }

    /// One wake-up of the watch at `now`: the dumps sent since the last one charged
    /// ([`Triggers::sent`]), then this check's readings fed, when a check was due
    /// ([`Triggers::observe`]); Some when a level was crossed.
    pub fn wake(
        &mut self,
        sent: &[(Trigger, Instant)],
        check: Option<&Reading>,
        now: Instant,
    ) -> Option<Fired> {
        for (trigger, at) in sent {
            self.sent(trigger, *at);
        }
        self.observe(check?, now)
    }

    /// Feeds one check's readings; Some when a level was crossed.
    pub fn observe(&mut self, r: &Reading, now: Instant) -> Option<Fired> {
        let rss = r.rss as f64;
        // (threshold in bytes, trigger, words, reading) of every level crossed now.
        let mut crossed: Vec<(f64, Trigger, String, String)> = Vec::new();
        for (bytes, armed) in &mut self.rss {
            let level = *bytes as f64;
            if *armed && rss >= level {
                *armed = false;
                let trigger = Trigger::rss(*bytes >> 20);
                crossed.push((
                    level,
                    trigger,
                    format!("RSS {} rose past {} MiB", human(r.rss), *bytes >> 20),
                    format!(
                        "{}: RSS {} > {} MiB",
                        trigger.as_str(),
                        human(r.rss),
                        *bytes >> 20
                    ),
                ));
            } else if !*armed && rss < level * REARM {
                *armed = true;
            }
        }
        let limit_applies = self.settings.limit_percent.is_some() || r.cgroup_limit;
        if let (Some(limit), true) = (r.limit, limit_applies) {
            for (pct, armed) in &mut self.limit {
                let level = limit as f64 * f64::from(*pct) / 100.0;
                if *armed && rss >= level {
                    *armed = false;
                    crossed.push((
                        level,
                        Trigger::limit(*pct),
                        format!(
                            "RSS {} rose past {pct}% of the memory limit {} ({})",
                            human(r.rss),
                            human(limit),
                            human(level as u64)
                        ),
                        format!("limit{pct}: RSS {} of {}", human(r.rss), human(limit)),
                    ));
                } else if !*armed && rss < level * REARM {
                    *armed = true;
                }
            }
        }
        // Pressure only when no memory level fired: one dump per check at most.
        if let (Some(rule), Some(value)) = (&self.settings.pressure, r.pressure) {
            if self.pressure_armed && value > rule.above {
                self.pressure_armed = false;
                let line = if rule.full { "full" } else { "some" };
                crossed.push((
                    -1.0,
                    Trigger::pressure(),
                    format!(
                        "memory pressure {line} avg{} = {value:.2} is above {}",
                        rule.window, rule.above
                    ),
                    format!(
                        "pressure: {line} avg{}={value:.2} > {}",
                        rule.window, rule.above
                    ),
                ));
            } else if !self.pressure_armed && value < rule.above * REARM {
                self.pressure_armed = true;
            }
        }
        crossed.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let (_, trigger, reason, reading) = crossed.first()?.clone();
        let admitted = self.has_room(now);
        if !admitted {
            self.refused = self.refused.saturating_add(1);
        }
        Some(Fired {
            trigger,
            crossed: crossed.iter().map(|c| c.1.as_str().to_owned()).collect(),
            reason,
            reading,
            admitted,
        })
    }

    /// `per_hour`: whether one more trigger dump fits in the last hour (charged only
    /// when it is sent: [`Triggers::sent`]).
    fn has_room(&mut self, now: Instant) -> bool {
        const HOUR: Duration = Duration::from_secs(3600);
        while self
            .budget
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            self.budget.pop_front();
        }
        self.budget.len() < self.settings.per_hour as usize
    }
}

fn human(bytes: u64) -> String {
    jemsafe_report::units::bytes(bytes as f64, jemsafe_report::units::WHOLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn limits(levels: &[u8]) -> Triggers {
        Triggers::new(TriggerSettings {
            limit_percent: Some(levels.to_vec()),
            ..Default::default()
        })
    }

    fn at(rss_mib: u64, limit_mib: u64) -> Reading {
        Reading {
            rss: rss_mib * MIB,
            limit: Some(limit_mib * MIB),
            cgroup_limit: true,
            pressure: None,
        }
    }

    fn rss(mib: u64) -> Reading {
        Reading {
            rss: mib * MIB,
            ..Default::default()
        }
    }

    fn fired(t: &mut Triggers, r: Reading, now: Instant) -> Option<String> {
        t.observe(&r, now).map(|f| f.trigger.as_str().to_owned())
    }

    #[test]
    fn each_level_fires_once_on_the_way_up_and_again_only_after_falling_10_percent() {
        let mut t = limits(&[80, 90, 95]);
        let now = Instant::now();
        let mut names = Vec::new();
        for rss in (100..=500).step_by(4) {
            names.extend(fired(&mut t, at(rss, 512), now));
        }
        assert_eq!(names, ["limit80", "limit90", "limit95"]);
        // Hovering around 95% does not dump again; down to 84% (below 90% of 95%) re-arms
        // 95 but not 90 (84% is not below 81%).
        assert_eq!(fired(&mut t, at(480, 512), now), None);
        assert_eq!(fired(&mut t, at(430, 512), now), None);
        assert_eq!(fired(&mut t, at(490, 512), now).as_deref(), Some("limit95"));
        assert_eq!(
            fired(&mut t, at(470, 512), now),
            None,
            "90 was never re-armed"
        );
    }

    #[test]
    fn a_jump_past_several_levels_is_one_dump_named_for_the_highest() {
        let mut t = limits(&[80, 90, 95]);
        let f = t.observe(&at(500, 512), Instant::now()).unwrap();
        assert_eq!(f.trigger.as_str(), "limit95");
        assert_eq!(f.crossed, ["limit95", "limit90", "limit80"]);
        assert!(
            f.reason.contains("95% of the memory limit 512 MiB"),
            "{}",
            f.reason
        );
        assert_eq!(f.reading, "limit95: RSS 500 MiB of 512 MiB");
        assert!(f.admitted);
        assert_eq!(t.observe(&at(510, 512), Instant::now()), None);
        let mut t = Triggers::new(TriggerSettings {
            rss_mb: vec![1024],
            ..Default::default()
        });
        let f = t.observe(&rss(1030), Instant::now()).unwrap();
        assert_eq!(f.reading, "rss1024: RSS 1.0 GiB > 1024 MiB");
    }

    #[test]
    fn rss_levels_and_the_default_limit_level() {
        let mut t = Triggers::new(TriggerSettings {
            rss_mb: vec![2048, 1024],
            ..Default::default()
        });
        let now = Instant::now();
        let no_cgroup = |rss| Reading {
            rss: rss * MIB,
            limit: Some(4096 * MIB),
            cgroup_limit: false,
            pressure: None,
        };
        assert_eq!(fired(&mut t, no_cgroup(1000), now), None);
        assert_eq!(
            fired(&mut t, no_cgroup(1030), now).as_deref(),
            Some("rss1024")
        );
        // Against MemTotal the default [90] does not apply: 95% of it fires nothing more.
        assert_eq!(
            fired(&mut t, no_cgroup(3900), now).as_deref(),
            Some("rss2048")
        );
        let mut t = Triggers::new(TriggerSettings::default());
        assert!(!t.any(false) && t.any(true));
        assert_eq!(fired(&mut t, at(470, 512), now).as_deref(), Some("limit90"));
        assert_eq!(
            TriggerSettings::default().describe(true),
            "limit90; at most 12 an hour, checked every 1000 ms"
        );
        assert_eq!(TriggerSettings::default().describe(false), "none");
    }

    #[test]
    fn the_hourly_budget_refuses_dumps_beyond_per_hour_and_recovers() {
        let mut t = Triggers::new(TriggerSettings {
            rss_mb: vec![100],
            per_hour: 2,
            ..Default::default()
        });
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        for i in 0..4u64 {
            let now = t0 + Duration::from_secs(60 * i);
            let fired = t.observe(&rss(120), now).unwrap();
            if fired.admitted {
                t.sent(&fired.trigger, now); // the supervisor sent the dump
            }
            admitted.push(fired.admitted);
            assert_eq!(t.observe(&rss(50), now), None); // re-arms
        }
        assert_eq!(admitted, [true, true, false, false]);
        assert_eq!(
            t.refusal_words().as_deref(),
            Some("no dump of this process before it: 2 trigger dumps refused by per_hour = 2")
        );
        let later = t0 + Duration::from_secs(3600);
        assert!(t.observe(&rss(120), later).unwrap().admitted);
        t.rearm_all();
        assert_eq!(t.refusal_words(), None, "a new mysqld has refused nothing");
    }

    #[test]
    fn only_dumps_sent_count_against_per_hour() {
        let mut t = Triggers::new(TriggerSettings {
            rss_mb: vec![100],
            per_hour: 1,
            ..Default::default()
        });
        let t0 = Instant::now();
        // Twelve admitted crossings whose dumps were coalesced, or dropped when mysqld
        // ended first, spend nothing...
        for i in 0..12u64 {
            let now = t0 + Duration::from_secs(i);
            assert!(t.observe(&rss(120), now).unwrap().admitted, "crossing {i}");
            assert_eq!(t.observe(&rss(50), now), None);
        }
        assert_eq!(t.refusal_words(), None);
        // ...one dump sent spends the hour's one.
        // A person's dump costs nothing; a level's spends the hour's one.
        t.sent(&Trigger::Usr1, t0 + Duration::from_secs(20));
        assert!(
            t.observe(&rss(120), t0 + Duration::from_secs(25))
                .unwrap()
                .admitted
        );
        assert_eq!(t.observe(&rss(50), t0 + Duration::from_secs(25)), None);
        t.sent(&Trigger::rss(100), t0 + Duration::from_secs(20));
        let fired = t.observe(&rss(120), t0 + Duration::from_secs(30)).unwrap();
        assert!(!fired.admitted);
        assert_eq!(
            t.refusal_words().as_deref(),
            Some("no dump of this process before it: 1 trigger dump refused by per_hour = 1")
        );
    }

    #[test]
    fn pressure_rules_parse_read_and_fire() {
        let rule = PressureRule::parse("some avg10 > 20").unwrap();
        assert_eq!(rule.describe(), "some avg10 > 20");
        let psi = "some avg10=31.50 avg60=2.00 avg300=0.10 total=9\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=1\n";
        assert_eq!(rule.reading(psi), Some(31.5));
        assert_eq!(
            PressureRule::parse("full avg60 > 5").unwrap().reading(psi),
            Some(0.0)
        );
        for bad in [
            "some avg10 >",
            "most avg10 > 2",
            "some avg5 > 2",
            "some avg10 >= 2",
            "some avg10 > 100",
            "some avg10 > x",
        ] {
            let e = PressureRule::parse(bad).unwrap_err();
            assert!(e.contains("some avg10 > 20"), "{bad}: {e}");
        }
        let mut t = Triggers::new(TriggerSettings {
            limit_percent: Some(vec![]),
            pressure: Some(rule),
            ..Default::default()
        });
        let now = Instant::now();
        let p = |v| Reading {
            pressure: Some(v),
            ..Default::default()
        };
        assert_eq!(fired(&mut t, p(10.0), now), None);
        assert_eq!(fired(&mut t, p(25.0), now).as_deref(), Some("pressure"));
        assert_eq!(fired(&mut t, p(19.0), now), None, "not yet below 18");
        assert_eq!(fired(&mut t, p(21.0), now), None);
        assert_eq!(fired(&mut t, p(17.0), now), None);
        assert_eq!(fired(&mut t, p(21.0), now).as_deref(), Some("pressure"));
    }

    #[test]
    fn a_new_mysqld_arms_every_level_again() {
        let mut t = limits(&[80]);
        let now = Instant::now();
        assert!(t.observe(&at(450, 512), now).is_some());
        t.rearm_all();
        assert!(t.observe(&at(450, 512), now).is_some());
    }
}
