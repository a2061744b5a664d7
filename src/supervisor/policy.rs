//! The supervisor's decisions, as pure functions of state and time: what a signal to
//! jemsafe means, whether and when to restart mysqld, whether a dump request runs now or
//! is coalesced, when growth calls for a dump. The event loop only gathers events and
//! carries these out.

use crate::config::RestartMode;
use crate::dumpdir::Trigger;
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a signal to jemsafe means: the README's signal table, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEffect {
    /// A child exited: reap it (and decide about mysqld).
    Reap,
    /// Send `to_mysqld` on; `stops`: mysqld's coming exit is final, not a crash.
    Forward { to_mysqld: Signal, stops: bool },
    /// The configured `[signals]` action; never forwarded (SIGUSR1 is MariaDB's internal
    /// thread-alarm signal, SIGUSR2 restarts MySQL 8).
    Action(Trigger),
}

/// The effect of `sig`, for every signal jemsafe handles; None for any other.
pub fn signal_effect(sig: Signal) -> Option<SignalEffect> {
    use SignalEffect::*;
    Some(match sig {
        Signal::SIGCHLD => Reap,
        Signal::SIGTERM => Forward {
            to_mysqld: Signal::SIGTERM,
            stops: true,
        },
        // mysqld and mariadbd ignore SIGINT, but whoever pressed ^C wants the server
        // stopped.
        Signal::SIGINT => Forward {
            to_mysqld: Signal::SIGTERM,
            stops: true,
        },
        Signal::SIGQUIT => Forward {
            to_mysqld: Signal::SIGQUIT,
            stops: true,
        },
        // mysqld reloads (flushes logs, MariaDB prints its status): it keeps running.
        Signal::SIGHUP => Forward {
            to_mysqld: Signal::SIGHUP,
            stops: false,
        },
        Signal::SIGUSR1 => Action(Trigger::Usr1),
        Signal::SIGUSR2 => Action(Trigger::Usr2),
        _ => return None,
    })
}

/// `[supervise] restart*`.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    pub delay: Duration,
    pub delay_max: Duration,
    pub max_restarts: u64,
    pub window: Duration,
}

/// How mysqld ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// Exit code, or 128+N for death by signal N.
    pub status: i32,
    pub signaled: bool,
    /// How long this run lasted.
    pub ran_for: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// jemsafe exits with this status.
    Exit(i32),
    /// Start mysqld again after this delay.
    Restart(Duration),
    /// Too many restarts: jemsafe exits with this status, for this reason.
    GiveUp(i32, String),
}

/// Restarts so far, for the window and the backoff.
#[derive(Debug, Default)]
pub struct RestartHistory {
    recent: VecDeque<Instant>,
    quick_failures: u32,
    pub total: u64,
}

impl RestartPolicy {
    pub fn decide(
        &self,
        history: &mut RestartHistory,
        end: Ending,
        stop_requested: bool,
        now: Instant,
    ) -> Decision {
        if stop_requested {
            return Decision::Exit(end.status);
        }
        // 16 is mysqld asking for a restart (RESTART statement): always honoured at once.
        if end.status == super::RESTART_STATUS && !end.signaled {
            history.total += 1;
            return Decision::Restart(Duration::ZERO);
        }
        let crashed = end.signaled || end.status != 0;
        let wanted = match self.mode {
            RestartMode::Never => false,
            RestartMode::OnCrash => crashed,
            RestartMode::Always => true,
        };
        if !wanted {
            return Decision::Exit(end.status);
        }
        while history
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            history.recent.pop_front();
        }
        if history.recent.len() as u64 >= self.max_restarts {
            return Decision::GiveUp(
                if end.status == 0 { 1 } else { end.status },
                format!(
                    "giving up: mysqld was restarted {} times within {} s (max_restarts = {}); \
                     fix the cause (see mysqld's log above), then start jemsafe again",
                    history.recent.len(),
                    self.window.as_secs(),
                    self.max_restarts
                ),
            );
        }
        // A run shorter than the window is a quick failure: back off exponentially.
        if end.ran_for < self.window {
            history.quick_failures += 1;
        } else {
            history.quick_failures = 1;
        }
        let factor = 1u32
            .checked_shl(history.quick_failures - 1)
            .unwrap_or(u32::MAX);
        let delay = self.delay.saturating_mul(factor).min(self.delay_max);
        history.recent.push_back(now);
        history.total += 1;
        Decision::Restart(delay)
    }
}

/// At most one on-demand dump per interval, plus one trailing dump for everything that
/// asked in between.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last_start: Option<Instant>,
    trailing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Now,
    /// A trailing dump is now scheduled for this moment.
    At(Instant),
    /// Joins the trailing dump already scheduled.
    Joined,
    /// Joins the dump in flight (the throttle is not asked: mysqld is busy or stopped,
    /// and another file would only queue behind it).
    InFlight,
}

/// What one dump request does: the trailing dump renamed or not, and how it is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub renames_trailing: bool,
    pub admit: Admit,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last_start: None,
            trailing: false,
        }
    }

    pub fn request(&mut self, now: Instant) -> Admit {
        if self.trailing {
            return Admit::Joined;
        }
        match self.last_start {
            Some(t) if now < t + self.interval => {
                self.trailing = true;
                Admit::At(t + self.interval)
            }
            _ => {
                self.last_start = Some(now);
                Admit::Now
            }
        }
    }

    /// A dump request of `asked` at `now` ([`Throttle::request`] unless a dump is in
    /// flight), with `scheduled`, the trailing dump's trigger ([`renames_trailing`],
    /// whether or not it joins the one in flight): one decision for the supervisor.
    pub fn ask(
        &mut self,
        asked: &Trigger,
        scheduled: Option<&Trigger>,
        in_flight: bool,
        now: Instant,
    ) -> Asked {
        Asked {
            renames_trailing: renames_trailing(scheduled, asked),
            admit: if in_flight {
                Admit::InFlight
            } else {
                self.request(now)
            },
        }
    }

    /// When the trailing dump is due, if one is scheduled.
    pub fn due(&self) -> Option<Instant> {
        match (self.trailing, self.last_start) {
            (true, Some(t)) => Some(t + self.interval),
            _ => None,
        }
    }

    /// The trailing dump starts now.
    pub fn fire(&mut self, now: Instant) {
        self.trailing = false;
        self.last_start = Some(now);
    }

    /// mysqld ended: a trailing dump scheduled for it cannot happen, and the next mysqld's
    /// first dump is not held back by this one's storm. Whether one was scheduled.
    pub fn forget(&mut self) -> bool {
        self.last_start = None;
        std::mem::take(&mut self.trailing)
    }
}

/// Whether a dump asked for by level `asked` renames the trailing dump `scheduled`: a
/// trailing dump scheduled for another level takes the newest level's name and reading,
/// since it shows the memory as it is when it runs.
pub fn renames_trailing(scheduled: Option<&Trigger>, asked: &Trigger) -> bool {
    matches!(scheduled, Some(Trigger::Level(_))) && matches!(asked, Trigger::Level(_))
}

/// `[dumps] on_growth_mb`: a dump each time allocated memory passes the highest level
/// already dumped by one step. A level counts as dumped only once its dump succeeded.
#[derive(Debug)]
pub struct Growth {
    step: u64,
    highest_dumped: u64,
    in_flight: Option<u64>,
}

impl Growth {
    pub fn new(step_bytes: u64) -> Growth {
        Growth {
            step: step_bytes,
            highest_dumped: 0,
            in_flight: None,
        }
    }

    /// Whether `allocated` calls for a dump (none while one is in flight).
    pub fn observe(&mut self, allocated: u64) -> bool {
        if self.step == 0
            || self.in_flight.is_some()
            || allocated < self.highest_dumped.saturating_add(self.step)
        {
            return false;
        }
        self.in_flight = Some(allocated);
        true
    }

    /// The growth dump finished: on success its level becomes the new mark.
    pub fn finished(&mut self, ok: bool) {
        if let (true, Some(level)) = (ok, self.in_flight) {
            self.highest_dumped = level;
        }
        self.in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_level_dump_takes_the_newest_levels_name_and_nothing_else_does() {
        let (limit80, limit90) = (Trigger::limit(80), Trigger::limit(90));
        assert!(renames_trailing(Some(&limit80), &limit90));
        assert!(renames_trailing(Some(&limit90), &Trigger::pressure()));
        // A person's dump keeps its name; a person's request renames nothing; nothing
        // scheduled, nothing to rename.
        assert!(!renames_trailing(Some(&Trigger::Usr1), &limit90));
        assert!(!renames_trailing(Some(&limit80), &Trigger::Cli));
        assert!(!renames_trailing(None, &limit90));
    }

    #[test]
    fn usr1_and_usr2_are_never_forwarded_and_int_stops_with_term() {
        for sig in [Signal::SIGUSR1, Signal::SIGUSR2] {
            assert!(matches!(signal_effect(sig), Some(SignalEffect::Action(_))));
        }
        assert_eq!(
            signal_effect(Signal::SIGINT),
            Some(SignalEffect::Forward {
                to_mysqld: Signal::SIGTERM,
                stops: true
            })
        );
        assert_eq!(
            signal_effect(Signal::SIGHUP),
            Some(SignalEffect::Forward {
                to_mysqld: Signal::SIGHUP,
                stops: false
            })
        );
        // Every signal the loop installs a handler for has a meaning.
        for sig in crate::supervisor::signals::HANDLED {
            let sig = Signal::try_from(sig).unwrap();
            assert!(signal_effect(sig).is_some(), "{sig}");
        }
        assert_eq!(signal_effect(Signal::SIGALRM), None);
    }

    const S: Duration = Duration::from_secs(1);

    fn policy(mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            mode,
            delay: S,
            delay_max: 5 * S,
            max_restarts: 3,
            window: 300 * S,
        }
    }

    fn crash(ran: u64) -> Ending {
        Ending {
            status: 137,
            signaled: true,
            ran_for: S * ran as u32,
        }
    }

    #[test]
    fn on_crash_restarts_crashes_with_backoff_then_gives_up() {
        let p = policy(RestartMode::OnCrash);
        let mut h = RestartHistory::default();
        let t0 = Instant::now();
        assert_eq!(p.decide(&mut h, crash(1), false, t0), Decision::Restart(S));
        assert_eq!(
            p.decide(&mut h, crash(1), false, t0 + 2 * S),
            Decision::Restart(2 * S)
        );
        assert_eq!(
            p.decide(&mut h, crash(1), false, t0 + 5 * S),
            Decision::Restart(4 * S)
        );
        match p.decide(&mut h, crash(1), false, t0 + 10 * S) {
            Decision::GiveUp(137, why) => assert!(why.contains("max_restarts = 3"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_is_capped_and_old_restarts_leave_the_window() {
        let mut p = policy(RestartMode::OnCrash);
        p.max_restarts = 100;
        let mut h = RestartHistory::default();
        let t0 = Instant::now();
        let mut last = Decision::Exit(0);
        for i in 0..6 {
            last = p.decide(&mut h, crash(1), false, t0 + S * i);
        }
        assert_eq!(last, Decision::Restart(5 * S));
        // A long healthy run resets the backoff.
        assert_eq!(
            p.decide(&mut h, crash(1000), false, t0 + 7 * S),
            Decision::Restart(S)
        );

        let p = policy(RestartMode::OnCrash);
        let mut h = RestartHistory::default();
        for i in 0..3 {
            p.decide(&mut h, crash(1), false, t0 + S * i);
        }
        let later = t0 + 400 * S;
        assert!(matches!(
            p.decide(&mut h, crash(1), false, later),
            Decision::Restart(_)
        ));
    }

    #[test]
    fn clean_exits_and_requested_stops_are_final() {
        let p = policy(RestartMode::OnCrash);
        let mut h = RestartHistory::default();
        let now = Instant::now();
        let clean = Ending {
            status: 0,
            signaled: false,
            ran_for: S,
        };
        assert_eq!(p.decide(&mut h, clean, false, now), Decision::Exit(0));
        assert_eq!(p.decide(&mut h, crash(1), true, now), Decision::Exit(137));
        let failed = Ending {
            status: 1,
            signaled: false,
            ran_for: S,
        };
        assert_eq!(
            policy(RestartMode::Never).decide(&mut h, failed, false, now),
            Decision::Exit(1)
        );
        assert_eq!(
            policy(RestartMode::Always).decide(&mut h, clean, false, now),
            Decision::Restart(S)
        );
    }

    #[test]
    fn status_16_restarts_at_once_without_counting() {
        let p = policy(RestartMode::Never);
        let mut h = RestartHistory::default();
        let end = Ending {
            status: 16,
            signaled: false,
            ran_for: S,
        };
        for _ in 0..10 {
            assert_eq!(
                p.decide(&mut h, end, false, Instant::now()),
                Decision::Restart(Duration::ZERO)
            );
        }
        assert_eq!(
            p.decide(&mut h, end, true, Instant::now()),
            Decision::Exit(16)
        );
    }

    #[test]
    fn a_storm_of_requests_is_one_dump_now_and_one_trailing() {
        let mut t = Throttle::new(S);
        let t0 = Instant::now();
        assert_eq!(t.request(t0), Admit::Now);
        assert_eq!(t.request(t0 + S / 10), Admit::At(t0 + S));
        for i in 2..200 {
            assert_eq!(t.request(t0 + S / 200 * i), Admit::Joined);
        }
        assert_eq!(t.due(), Some(t0 + S));
        t.fire(t0 + S);
        assert_eq!(t.due(), None);
        assert_eq!(t.request(t0 + S + S / 2), Admit::At(t0 + 2 * S));
        t.fire(t0 + 2 * S);
        assert_eq!(t.request(t0 + 4 * S), Admit::Now);
    }

    #[test]
    fn a_request_joins_the_dump_in_flight_without_the_throttle_and_still_renames() {
        let mut t = Throttle::new(S);
        let t0 = Instant::now();
        let (limit80, limit90) = (Trigger::limit(80), Trigger::limit(90));
        let asked = t.ask(&limit90, Some(&limit80), true, t0);
        assert_eq!(
            asked,
            Asked {
                renames_trailing: true,
                admit: Admit::InFlight
            }
        );
        assert_eq!(t.due(), None, "the throttle was not asked");
        assert_eq!(t.ask(&Trigger::Usr1, None, false, t0).admit, Admit::Now);
        let storm = t.ask(&limit90, Some(&Trigger::Usr1), false, t0 + S / 2);
        assert_eq!(
            (storm.renames_trailing, storm.admit),
            (false, Admit::At(t0 + S))
        );
    }

    #[test]
    fn mysqlds_end_drops_its_trailing_dump_and_its_storm() {
        let mut t = Throttle::new(S);
        let t0 = Instant::now();
        assert_eq!(t.request(t0), Admit::Now);
        assert_eq!(t.request(t0 + S / 10), Admit::At(t0 + S));
        assert!(t.forget());
        assert_eq!(t.due(), None, "no trailing dump of a mysqld that is gone");
        assert!(!t.forget());
        assert_eq!(
            t.request(t0 + S / 5),
            Admit::Now,
            "the next mysqld dumps at once"
        );
    }

    #[test]
    fn growth_dumps_once_per_step_above_the_highest_dumped() {
        let mut g = Growth::new(100);
        assert!(!g.observe(99));
        assert!(g.observe(150));
        assert!(!g.observe(400), "one growth dump at a time");
        g.finished(true);
        assert!(!g.observe(249));
        assert!(!g.observe(120)); // shrinking never dumps
        assert!(g.observe(250));
        g.finished(false); // a failed dump does not raise the mark
        assert!(g.observe(250));
        assert!(!Growth::new(0).observe(u64::MAX));
    }
}
