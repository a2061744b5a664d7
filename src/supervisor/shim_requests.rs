//! Requests to the shim inside mysqld: sent with a deadline, answered (or not) through
//! the ledger, and carried out when the answer comes; the handshake's verification.

use super::Supervisor;
use crate::config::VerifyMode;
use crate::control;
use crate::dumpdir::Trigger;
use crate::shim_link::Received;
use crate::verify;
use crate::{debug, error, info, warn};
use jemsafe_proto::{Command, Hello, Memory, ProfState, Reply, ResetDone, Stats};
use nix::sys::signal::{kill, Signal};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long the shim may take to answer a dump before its waiters hear that mysqld is
/// not answering: a dump of a very large heap takes seconds, a stopped mysqld forever.
pub(super) const DUMP_DEADLINE: Duration = Duration::from_secs(60);

/// Whether a dump sent at `sent` is past [`DUMP_DEADLINE`] (its waiters heard so).
pub(super) fn dump_overdue(sent: Instant) -> bool {
    sent.elapsed() >= DUMP_DEADLINE
}

/// Whether a prof change sent at `sent` is past [`SHIM_DEADLINE`] (its waiter heard it
/// is unconfirmed; its answer is logged as late).
fn prof_overdue(sent: Instant) -> bool {
    sent.elapsed() >= SHIM_DEADLINE
}
/// For the shim's other answers (hello, stats, prof.*), which take microseconds.
pub(super) const SHIM_DEADLINE: Duration = Duration::from_secs(5);
/// `status` waits this long for the shim's part, then answers from jemsafe's own state.
pub(super) const STATUS_DEADLINE: Duration = Duration::from_secs(1);

/// A request in flight to the shim, and who waits for its answer.
pub(super) enum Pending {
    Hello,
    Dump {
        trigger: Trigger,
        /// The reading that fired a level (`limit90: RSS 691 MiB of 768 MiB`).
        reason: Option<String>,
        /// The final file name in the dump directory; the shim writes a temporary one.
        name: String,
        sent: Instant,
        waiters: Vec<UnixStream>,
    },
    Prof {
        what: &'static str,
        waiter: Option<UnixStream>,
        sent: Instant,
    },
    StatusHello(UnixStream),
    /// The hello, when the shim's answer to it was readable.
    StatusMemory(UnixStream, Option<Hello>),
    /// `jemsafe memory`, and when it was asked (the snapshot's round trip is logged).
    Memory(UnixStream, Instant),
    /// A timeline sample's jemalloc reading.
    TimelineSample,
    /// The memory snapshot for the sidecar of jemalloc's own dump `name` (of kind
    /// "interval", "gdump", "final"), closed at `closed`.
    AutoSnapshot {
        name: String,
        kind: &'static str,
        closed: std::time::SystemTime,
        /// The dump's own copy of mysqld's maps.
        maps: Vec<jemsafe_report::maps::MapEntry>,
    },
    GrowthStats,
}

impl Pending {
    /// A dump that was never sent (refused, or mysqld unreachable): only its waiters
    /// remain to be answered.
    pub(super) fn untaken(
        trigger: Trigger,
        reason: Option<String>,
        waiters: Vec<UnixStream>,
    ) -> Pending {
        Pending::Dump {
            trigger,
            reason,
            name: String::new(),
            sent: Instant::now(),
            waiters,
        }
    }
}

impl Supervisor<'_> {
    /// Requests the shim did not answer in time: their waiters hear so now. An overdue
    /// dump stays on the ledger, so that a late answer still finalises its file; an
    /// overdue prof change too, so that its late confirmation is logged.
    pub(super) fn overdue(&mut self, now: Instant) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = child.pid.as_raw();
        let mut late = Vec::new();
        for id in child.pending.overdue(now) {
            if let Some(Pending::Dump { waiters, sent, .. }) = child.pending.get_mut(id) {
                // Not counted yet: a dump is counted once, when its outcome is known (a
                // file, or `timeout` if mysqld ends before writing it).
                let why = format!(
                    "no heap dump within {} s: {}; the dump is still pending and will be kept if it completes",
                    sent.elapsed().as_secs(),
                    crate::procfs::not_answering(pid)
                );
                warn!("{why}");
                for w in waiters.drain(..) {
                    control::respond(w, &control::error_reply(why.clone()));
                }
            } else if let Some(Pending::Prof { what, waiter, .. }) = child.pending.get_mut(id) {
                // Written into mysqld's channel, so it happens when the shim reads it:
                // unconfirmed, not failed. It stays on the ledger for its late answer.
                let why = format!(
                    "{what} ({}) was delivered to mysqld pid {pid} and is not confirmed within {} s: {}; \
                     it takes effect when mysqld runs again, and jemsafe logs the confirmation",
                    prof_change(what),
                    SHIM_DEADLINE.as_secs(),
                    crate::procfs::not_answering(pid)
                );
                warn!("{why}");
                if let Some(w) = waiter.take() {
                    control::respond(w, &control::temporary_reply(why));
                }
            } else if !matches!(child.pending.get_mut(id), Some(Pending::Hello)) {
                late.extend(child.pending.take(id));
            }
        }
        for pending in late {
            let why = crate::procfs::not_answering(pid);
            match pending {
                Pending::StatusHello(stream) => {
                    let reply = self.status(None, None, Some(why));
                    control::respond(stream, &reply);
                }
                Pending::StatusMemory(stream, hello) => {
                    let reply = self.status(hello.as_ref(), None, Some(why));
                    control::respond(stream, &reply);
                }
                Pending::GrowthStats => debug!("growth check: {why}"),
                Pending::AutoSnapshot {
                    name, kind, maps, ..
                } => self.write_sidecar(&name, kind, None, None, &maps, self.heap_owner()),
                Pending::TimelineSample => self.timeline_sampled(None),
                other => self.fail(
                    other,
                    &format!("{why}: no answer within {} s", SHIM_DEADLINE.as_secs()),
                ),
            }
        }
    }

    /// The shim never answered its handshake: nothing will come from it, so requests
    /// fail at once instead of waiting for an answer that cannot come.
    pub(super) fn abandon_link(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        child.link_open = false;
        let why = format!("the shim in mysqld pid {} never answered", child.pid);
        let pending: Vec<Pending> = child.pending.drain();
        for p in pending {
            self.fail(p, &why);
        }
    }

    /// Why requests cannot reach the shim right now.
    pub(super) fn unreachable_reason(&self) -> String {
        match &self.child {
            None => "mysqld is not running (jemsafe is between restarts)".to_owned(),
            Some(c) => format!(
                "the shim in mysqld pid {} is not reachable (it never answered, or its channel closed)",
                c.pid
            ),
        }
    }

    /// Sends `command` to the shim; on failure, answers whoever waits.
    pub(super) fn send(&mut self, command: Command, pending: Pending, deadline: Duration) {
        if !self.child.as_ref().is_some_and(|c| c.link_open) {
            let why = self.unreachable_reason();
            self.fail(pending, &why);
            return;
        }
        let Some(child) = self.child.as_mut() else {
            return;
        };
        match child.link.send(command) {
            Ok(id) => {
                if matches!(pending, Pending::Dump { .. }) {
                    debug!(
                        "dump request {id} sent to the shim in mysqld pid {}",
                        child.pid
                    );
                }
                child.pending.insert(id, Instant::now() + deadline, pending);
            }
            Err(e) => {
                warn!("cannot send to the shim in mysqld pid {}: {e}", child.pid);
                self.fail(pending, &format!("cannot reach the shim: {e}"));
            }
        }
    }

    /// A request that will get no answer: tell whoever waits, and let a growth dump go.
    pub(super) fn fail(&mut self, pending: Pending, why: &str) {
        self.fail_with(pending, &control::error_reply(why));
    }

    /// [`Supervisor::fail`] with this reply to whoever waits.
    pub(super) fn fail_with(&mut self, pending: Pending, reply: &control::Reply) {
        if let Pending::AutoSnapshot {
            name, kind, maps, ..
        } = &pending
        {
            self.write_sidecar(name, kind, None, None, maps, self.heap_owner());
        }
        if matches!(pending, Pending::TimelineSample) {
            self.timeline_sampled(None);
        }
        if matches!(
            pending,
            Pending::Dump {
                trigger: Trigger::Growth,
                ..
            }
        ) {
            self.dumping.growth.finished(false);
        }
        for waiter in waiters_of(pending) {
            control::respond(waiter, reply);
        }
    }

    pub(super) fn read_replies(&mut self) {
        loop {
            let Some(child) = self.child.as_mut() else {
                return;
            };
            let reply = match child.link.receive() {
                Ok(Received::Reply(reply)) => reply,
                Ok(Received::Ask(ask)) => {
                    self.sql_ask(ask);
                    continue;
                }
                Ok(Received::Nothing) => return,
                Ok(Received::Closed) => {
                    child.link_open = false;
                    return;
                }
                Err(e) => {
                    warn!("unreadable message from the shim: {e}");
                    return;
                }
            };
            let Some(pending) = child.pending.take(reply.id) else {
                debug!("dropping an unexpected reply from the shim: {reply:?}");
                continue;
            };
            self.replied(pending, reply);
        }
    }

    pub(super) fn replied(&mut self, pending: Pending, reply: Reply) {
        match pending {
            Pending::Hello => self.hello(reply),
            Pending::Dump {
                trigger,
                reason,
                name,
                sent,
                waiters,
            } => self.dumped(trigger, reason, name, sent, waiters, &reply),
            Pending::Prof { what, waiter, sent } => {
                let when = if prof_overdue(sent) {
                    format!("; confirmed {} s late", sent.elapsed().as_secs())
                } else {
                    String::new()
                };
                let answer = if what == "reset" {
                    reply.body::<ResetDone>().map(|r| {
                        info!(
                            "{what}: profile data reset, lg_prof_sample = {}{when}",
                            r.lg_prof_sample
                        );
                        control::body_reply(&control::ProfReset {
                            lg_prof_sample: r.lg_prof_sample,
                        })
                    })
                } else {
                    reply.body::<ProfState>().map(|p| {
                        info!(
                            "{what}: prof.active is now {} (was {}{when})",
                            p.prof_active, p.was_active
                        );
                        self.timeline_event(crate::timeline::EventKind::Prof {
                            active: p.prof_active,
                        });
                        control::body_reply(&control::ProfChanged {
                            prof_active: p.prof_active,
                            was_active: p.was_active,
                        })
                    })
                };
                let answer = answer.unwrap_or_else(|failure| {
                    error!("{what} failed: {failure}{when}");
                    control::error_reply(failure.to_string())
                });
                if let Some(w) = waiter {
                    control::respond(w, &answer);
                }
            }
            Pending::StatusHello(stream) => {
                self.send(
                    Command::Memory,
                    Pending::StatusMemory(stream, reply.body().ok()),
                    STATUS_DEADLINE,
                );
            }
            Pending::StatusMemory(stream, hello) => {
                let status = self.status(hello.as_ref(), reply.body().ok().as_ref(), None);
                control::respond(stream, &status);
            }
            Pending::AutoSnapshot {
                name,
                kind,
                closed,
                maps,
            } => self.auto_snapshot_came(&name, kind, closed, &maps, &reply),
            Pending::TimelineSample => self.timeline_sampled(Some(&reply)),
            Pending::Memory(stream, sent) => {
                debug!(
                    "memory snapshot: the shim answered in {} us",
                    sent.elapsed().as_micros()
                );
                let answer = match reply.body::<Memory>() {
                    Ok(jem) => match self.memory_breakdown(&jem) {
                        Ok(b) => serde_json::to_value(&b)
                            .ok()
                            .and_then(|v| match v {
                                serde_json::Value::Object(mut map) => {
                                    map.insert("ok".into(), true.into());
                                    Some(map)
                                }
                                _ => None,
                            })
                            .unwrap_or_else(|| control::error_reply("cannot encode the breakdown")),
                        Err(why) => control::error_reply(why),
                    },
                    Err(failure) => control::error_reply(failure.to_string()),
                };
                control::respond(stream, &answer);
            }
            Pending::GrowthStats => {
                let allocated = match reply.body::<Stats>() {
                    Ok(stats) => stats.allocated,
                    Err(failure) => {
                        debug!("growth check: no stats ({failure})");
                        return;
                    }
                };
                if self.dumping.growth.observe(allocated) {
                    info!(
                        "stats.allocated = {} MiB, {} MiB above the last growth dump: dumping",
                        allocated >> 20,
                        self.plan.growth_step_bytes >> 20
                    );
                    self.send_dump(Trigger::Growth, None, Vec::new());
                }
            }
        }
    }

    pub(super) fn hello(&mut self, reply: Reply) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(hello) = reply.body::<jemsafe_proto::Hello>() {
            child.jemalloc = hello.bound().map(|b| jemsafe_report::sidecar::Jemalloc {
                version: Some(b.version.clone()),
                path: Some(b.path.clone()),
                lg_prof_sample: b.lg_prof_sample,
            });
        }
        let pid = child.pid.as_raw();
        let result = match verify::Facts::gather(pid, &reply, &self.plan.expectation) {
            Ok(facts) => {
                let verdict = verify::judge(pid, &facts, &reply, &self.plan.expectation);
                if verdict.ok() {
                    Ok(verdict.summary)
                } else {
                    Err(verdict.problems.join("; "))
                }
            }
            Err(e) => Err(format!("cannot read /proc/{pid}/maps: {e}")),
        };
        self.verified(result);
    }

    /// Ends verification: one log line, and with `require` a clean stop on failure.
    pub(super) fn verified(&mut self, result: std::result::Result<String, String>) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if child.verify_deadline.take().is_none() {
            return;
        }
        child.verification = Some(result.clone());
        let passed = result.is_ok() || self.plan.verify == VerifyMode::Warn;
        match result {
            Ok(summary) => info!("{summary}"),
            Err(why) => match self.plan.verify {
                VerifyMode::Warn => warn!(
                    "verification FAILED for mysqld pid {} (verify = \"warn\": mysqld keeps running without working profiling): {why}",
                    child.pid
                ),
                VerifyMode::Require => {
                    error!(
                        "verification FAILED for mysqld pid {} (verify = \"require\": stopping it with SIGTERM): {why}",
                        child.pid
                    );
                    self.stopping = true;
                    if let Err(e) = kill(child.pid, Signal::SIGTERM) {
                        warn!("cannot signal mysqld pid {}: {e}", child.pid);
                    }
                }
            },
        }
        if passed && self.ready_gate.verified() {
            self.ready();
        }
    }
}

/// What a prof request changes, in jemalloc's terms.
fn prof_change(what: &str) -> &'static str {
    match what {
        "activate" => "prof.active = true",
        "deactivate" => "prof.active = false",
        "reset" => "prof.reset",
        _ => "prof.active toggled",
    }
}

/// The connections waiting on `pending`.
pub(super) fn waiters_of(pending: Pending) -> Vec<UnixStream> {
    match pending {
        Pending::Dump { waiters, .. } => waiters,
        Pending::Prof { waiter, .. } => waiter.into_iter().collect(),
        Pending::StatusHello(s) | Pending::StatusMemory(s, _) | Pending::Memory(s, _) => vec![s],
        Pending::Hello
        | Pending::GrowthStats
        | Pending::AutoSnapshot { .. }
        | Pending::TimelineSample => Vec::new(),
    }
}
