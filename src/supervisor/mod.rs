//! `jemsafe run`: start mysqld under the profiling allocator, prove it, and stay with it.
//!
//! One poll loop, asleep unless something happens: the signal wake-up socket, the
//! channel to the shim, the control socket, inotify on the dump directory, and timers
//! (verification deadline, restart delay, trailing dump, growth check). What to do is
//! decided by the pure functions in [`policy`] and [`crate::dumpdir::retention`]; this
//! module gathers events and carries the decisions out.
//!
//! **A panic never stops the supervisor.** Each event's handler runs under
//! `catch_unwind` ([`Supervisor::contained`]): a panic in it (a bug, or input no check
//! foresaw) is logged at error priority with where it happened, counted in
//! `jemsafe_contained_panics_total`, and that one event is abandoned; the loop goes on and
//! mysqld keeps running. Within mysqld's exit, what records the end (incident record,
//! timeline) is contained on its own, so that the restart decision is still carried out;
//! should a panic still leave no mysqld and no restart scheduled, the loop notices and
//! restarts mysqld (or exits, when stopping or `restart = "never"`).
//! A panic outside every handler (start-up, starting mysqld, the poll) aborts jemsafe (SIGABRT,
//! in `main`): the units' `Restart=on-abnormal` restarts it, which it does not after the
//! default exit status 101. The workspace never sets `panic = "abort"`: unwinding is what
//! makes containment possible.

mod dir_events;
mod dumping;
mod ledger;
pub mod notify;
mod panics;
mod pidfile;
pub mod policy;
mod recording;
mod shim_requests;
pub mod signals;
mod sql_requests;
pub mod stale;
mod status;
mod watching;

pub use pidfile::PidFile;

use crate::config::{SignalAction, VerifyMode};
use crate::control::{self, ProfOp, Request};
use crate::dumpdir::{self, retention, Trigger};
use crate::error::{Error, Result};
use crate::launch::{self, Launch};
use crate::shim_link::ShimLink;
use crate::verify::Expectation;
use crate::{debug, error, info, warn};
use dir_events::DumpWatch;
use jemsafe_proto::Command;
use ledger::Ledger;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use policy::{Decision, Ending, Growth, RestartHistory, RestartPolicy, SignalEffect};
use shim_requests::{waiters_of, Pending, SHIM_DEADLINE, STATUS_DEADLINE};
use signal_hook::consts::SIGCHLD;
use signals::Signals;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// mysqld's exit status asking for a restart (MySQL's `RESTART` statement, SIGUSR2).
pub const RESTART_STATUS: i32 = 16;
/// jemsafe's exit status when `verify = "require"` stopped mysqld.
pub const VERIFY_FAILED_STATUS: i32 = crate::error::EX_SOFTWARE;

/// Everything `run` decided before starting anything.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub launch: Launch,
    /// `[sql]`: what calls from SQL may do.
    pub sql: crate::config::sql::SqlSection,
    pub extra_args: Vec<String>,
    pub expectation: Expectation,
    pub verify: VerifyMode,
    pub verify_timeout: Duration,
    pub usr1: SignalAction,
    pub usr2: SignalAction,
    pub dump_dir: PathBuf,
    pub dump_prefix: String,
    pub runtime_dir: PathBuf,
    pub restart: RestartPolicy,
    pub retention: retention::Policy,
    pub min_dump_interval: Duration,
    pub min_free_bytes: u64,
    pub growth_step_bytes: u64,
    pub growth_check: Duration,
    /// `[http]`, when `listen` is set.
    pub http: Option<crate::http::HttpSettings>,
    /// `[triggers]`.
    pub triggers: crate::config::TriggerSettings,
    /// `[timeline]`: seconds between samples (None = off) and the file's bound in bytes.
    pub timeline: Option<(Duration, u64)>,
}

impl RunPlan {
    /// mysqld's whole command line after the program: config args, then `--` args.
    pub fn all_args(&self) -> Vec<String> {
        self.launch
            .args
            .iter()
            .chain(&self.extra_args)
            .cloned()
            .collect()
    }
}

/// The mysqld currently running.
struct Child {
    pid: Pid,
    started: Instant,
    link: ShimLink,
    link_open: bool,
    pending: Ledger<Pending>,
    /// Until when the handshake may take; None once verification is over.
    verify_deadline: Option<Instant>,
    /// The verification's one-line outcome.
    verification: Option<std::result::Result<String, String>>,
    /// The jemalloc the shim said it is bound to (for sidecars).
    jemalloc: Option<jemsafe_report::sidecar::Jemalloc>,
}

struct Supervisor<'a> {
    plan: &'a RunPlan,
    signals: Signals,
    control: control::Server,
    dir_events: DumpWatch,
    /// The dump directory, through one descriptor a pass (shared with the timeline).
    dump_dir: std::rc::Rc<dumpdir::DumpDir>,
    /// mysqld's user and group (`--user=`), when jemsafe is root: the dump directory's.
    dump_owner: Option<(u32, u32)>,
    /// Who owns the heap files when mysqld's own uid cannot be read: `--user`'s, or
    /// jemsafe's when it does not switch users.
    file_owner: u32,
    child: Option<Child>,
    restart_at: Option<Instant>,
    history: RestartHistory,
    /// A stop signal was forwarded (or verification failed): mysqld's exit is final.
    stopping: bool,
    last_exit: Option<String>,
    last_exit_status: Option<i32>,
    /// The last exit was a kill by the kernel's OOM killer.
    last_exit_oom_killed: bool,
    /// What Prometheus sees; shared with the HTTP server's thread.
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    dumping: dumping::DumpState,
    /// sd_notify relay, when jemsafe runs under systemd.
    relay: Option<notify::Relay>,
    ready_gate: notify::ReadyGate,
    mysqld_status: String,
    /// `mysqld --version`, asked once at start-up (for sidecars).
    mysqld_version: Option<String>,
    /// mysqld's memory between dumps: checks, triggers, limit.
    watching: watching::Watching,
    /// systemd's sockets (socket activation), handed to every mysqld started.
    activation: Option<crate::socket_activation::Activation>,
}

/// Runs mysqld until it exits for good; returns jemsafe's exit status.
pub fn run(plan: &RunPlan) -> Result<i32> {
    panics::log_panics();
    let _pid_file = PidFile::acquire(&plan.runtime_dir)?;
    let dump_owner = stale::mysqld_user(&plan.all_args());
    dumpdir::prepare_dir(&plan.dump_dir, dump_owner)?;
    let control = control::Server::bind(&plan.runtime_dir)?;
    let signals = Signals::install().map_err(Error::io("cannot install signal handlers"))?;
    let activation = crate::socket_activation::Activation::claim()?;
    if let Some(a) = &activation {
        info!("socket activation: {}, passed to mysqld", a.describe());
    }
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    if let Some(http) = &plan.http {
        crate::http::start(http, &plan.runtime_dir, std::sync::Arc::clone(&metrics))?;
    }
    let mut sup = Supervisor {
        plan,
        signals,
        control,
        dir_events: DumpWatch::new(&plan.dump_dir),
        dump_dir: std::rc::Rc::new(dumpdir::DumpDir::new(&plan.dump_dir, &plan.dump_prefix)),
        dump_owner,
        file_owner: dump_owner.map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _)| uid),
        child: None,
        restart_at: None,
        history: RestartHistory::default(),
        stopping: false,
        last_exit: None,
        last_exit_status: None,
        last_exit_oom_killed: false,
        metrics,
        dumping: dumping::DumpState::new(plan),
        // Under Type=notify a missing relay means a start that times out after many
        // minutes; better to fail now, with the reason.
        relay: notify::Relay::new(&plan.runtime_dir, dump_owner).map_err(Error::io(format!(
            "NOTIFY_SOCKET is set but the sd_notify relay socket cannot be created in {}",
            plan.runtime_dir.display()
        )))?,
        ready_gate: notify::ReadyGate::default(),
        mysqld_status: String::new(),
        mysqld_version: launch::mysqld_version(&plan.launch.mysqld),
        watching: watching::Watching::new(plan.triggers.clone()),
        activation,
    };
    if let Some((every, max_bytes)) = plan.timeline {
        let writer = crate::timeline::file::Writer::new(
            std::rc::Rc::clone(&sup.dump_dir),
            max_bytes,
            plan.retention.max_age,
            dump_owner.map(|(_, gid)| gid),
        );
        sup.watching.set_timeline(writer, every);
    }
    sup.apply_retention();
    sup.start()?;
    sup.serve()
}

/// What the poll loop watches, in the order of its descriptor list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Signals,
    Listener,
    /// A control client still sending its request: index in the server's list.
    Client(usize),
    Inotify,
    Relay,
    Link,
}

impl Supervisor<'_> {
    fn start(&mut self) -> Result<()> {
        panics::fault_point("start");
        let plan = self.plan;
        stale::clear(&plan.all_args(), &plan.launch.mysqld)?;
        let (mut link, shim_end) =
            ShimLink::pair().map_err(Error::io("cannot create the shim channel"))?;
        let notify_socket = self.relay.as_ref().map(|r| r.child_value.as_str());
        let pid = launch::spawn(
            &plan.launch,
            &plan.extra_args,
            &shim_end,
            notify_socket,
            self.activation.as_ref(),
        )
        .map_err(Error::io(format!(
            "cannot start {}",
            plan.launch.mysqld.display()
        )))?;
        drop(shim_end); // only mysqld holds it now, so its exit closes the channel
        let pid = Pid::from_raw(pid as i32);
        info!(
            "started mysqld pid {pid}: {} with profile {:?}, {}={}",
            plan.launch.mysqld.display(),
            plan.expectation.profile.name,
            plan.launch.preload.conf_var(),
            plan.launch.malloc_conf
        );
        let mut pending = Ledger::default();
        let mut link_open = true;
        match link.send(Command::Hello) {
            Ok(id) => {
                pending.insert(id, Instant::now() + plan.verify_timeout, Pending::Hello);
            }
            Err(e) => {
                warn!("cannot send the handshake to the shim: {e}");
                link_open = false;
            }
        }
        self.ready_gate = notify::ReadyGate::default();
        self.child = Some(Child {
            pid,
            started: Instant::now(),
            link,
            link_open,
            pending,
            verify_deadline: Some(Instant::now() + plan.verify_timeout),
            verification: None,
            jemalloc: None,
        });
        self.dumping.next_growth_check =
            (plan.growth_step_bytes > 0).then(|| Instant::now() + plan.growth_check);
        // A new process starts from nothing: its growth is measured afresh.
        self.dumping.growth = Growth::new(plan.growth_step_bytes);
        self.watch_started(pid.as_raw());
        Ok(())
    }

    /// The next moment a timer is due.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.child.as_ref().and_then(|c| c.verify_deadline),
            self.child.as_ref().and_then(|c| c.pending.next_deadline()),
            self.control.next_deadline(),
            self.restart_at,
            self.dumping.throttle.due(),
            self.dumping.next_growth_check,
            self.watching.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn serve(&mut self) -> Result<i32> {
        use nix::poll::PollTimeout;
        loop {
            let timeout = match self.next_deadline() {
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            // One descriptor of the dump directory a pass, none while asleep.
            self.dump_dir.release();
            let ready = self.wait(timeout)?;
            self.signals.drain();

            if let Some(code) = self.contained("signals", Self::signals_arrived).flatten() {
                return Ok(code);
            }
            let clients: Vec<usize> = ready
                .iter()
                .filter_map(|s| match s {
                    Source::Client(i) => Some(*i),
                    _ => None,
                })
                .collect();
            let requests = self
                .contained("control clients", |s| s.control.read_ready(&clients))
                .unwrap_or_default();
            for (stream, request) in requests {
                self.contained("a control request", |s| s.control_request(stream, request));
            }
            if ready.contains(&Source::Listener) {
                self.contained("a control connection", |s| {
                    s.control.accept_ready(Instant::now())
                });
            }
            if ready.contains(&Source::Inotify) {
                self.contained("the dump directory's events", Self::dump_dir_changed);
            }
            if ready.contains(&Source::Link) {
                self.contained("the shim's replies", Self::read_replies);
            }
            if ready.contains(&Source::Relay) {
                self.contained("mysqld's sd_notify messages", Self::relay_messages);
            }
            self.restart_when_due()?;
            self.contained("timers", Self::timers).transpose()?;
            if let Some(code) = self.unsupervised() {
                return Ok(code);
            }
        }
    }

    /// Sleeps in poll until a source is ready or `timeout` passes; returns the ready ones.
    fn wait(&self, timeout: nix::poll::PollTimeout) -> Result<Vec<Source>> {
        use nix::poll::{poll, PollFd, PollFlags};
        let mut sources: Vec<(Source, BorrowedFd<'_>)> =
            vec![(Source::Signals, self.signals.as_fd())];
        let (listener, clients) = self.control.poll_fds();
        sources.extend(listener.map(|fd| (Source::Listener, fd)));
        sources.extend(
            clients
                .into_iter()
                .enumerate()
                .map(|(i, fd)| (Source::Client(i), fd)),
        );
        sources.extend(
            self.dir_events
                .inotify()
                .map(|i| (Source::Inotify, i.as_fd())),
        );
        sources.extend(self.relay.as_ref().map(|r| (Source::Relay, r.as_fd())));
        if let Some(child) = self.child.as_ref().filter(|c| c.link_open) {
            sources.push((Source::Link, child.link.as_fd()));
        }
        let mut fds: Vec<PollFd> = sources
            .iter()
            .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::io("poll failed")(e.into())),
        }
        Ok(fds
            .iter()
            .zip(&sources)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, (source, _))| *source)
            .collect())
    }

    /// Carries out what each signal that arrived means ([`policy::signal_effect`]);
    /// children first, so that a stop signal finds mysqld's state current. Some(status)
    /// means jemsafe exits.
    fn signals_arrived(&mut self) -> Option<i32> {
        let mut order = signals::HANDLED;
        order.sort_by_key(|s| *s != SIGCHLD);
        for sig in order {
            if !self.signals.take(sig) {
                continue;
            }
            let Some(effect) = Signal::try_from(sig).ok().and_then(policy::signal_effect) else {
                continue;
            };
            match effect {
                SignalEffect::Reap => {
                    if let Some(code) = self.reap() {
                        return Some(code);
                    }
                }
                SignalEffect::Forward { to_mysqld, stops } => {
                    if let Some(code) = self.forward(sig, to_mysqld, stops) {
                        return Some(code);
                    }
                }
                SignalEffect::Action(trigger) => {
                    let action = match trigger {
                        Trigger::Usr2 => self.plan.usr2,
                        _ => self.plan.usr1,
                    };
                    self.signal_action(action, trigger, &signals::name(sig));
                }
            }
        }
        None
    }

    /// Sends `to_mysqld` on; during a restart delay a stop signal ends jemsafe at once.
    fn forward(&mut self, got: i32, send: Signal, stops: bool) -> Option<i32> {
        self.stopping |= stops;
        if stops {
            self.tell(&[sd_notify::NotifyState::Stopping]);
        }
        match &self.child {
            Some(child) => {
                info!(
                    "received {}: sending {} to mysqld pid {}",
                    signals::name(got),
                    send.as_str(),
                    child.pid
                );
                if let Err(e) = kill(child.pid, send) {
                    warn!("cannot signal mysqld pid {}: {e}", child.pid);
                }
                None
            }
            None if stops => {
                info!(
                    "received {} during the restart delay: not restarting mysqld; jemsafe exits with status 0",
                    signals::name(got)
                );
                Some(0)
            }
            None => None,
        }
    }

    /// Reaps exited children (jemsafe may be PID 1 in a container); when mysqld is among
    /// them, decides what comes next. Some(status) means jemsafe exits.
    fn reap(&mut self) -> Option<i32> {
        let mysqld = self.child.as_ref().map(|c| c.pid);
        let mut ended = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(status) if status.pid().is_some() && status.pid() == mysqld => {
                    ended = Some(status)
                }
                Ok(status) => debug!("reaped orphan process {:?}", status.pid()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!("waitpid failed: {e}");
                    break;
                }
            }
        }
        let status = ended?;
        let child = self.child.take()?;
        self.mysqld_ended(child, status)
    }

    fn mysqld_ended(&mut self, child: Child, status: WaitStatus) -> Option<i32> {
        if child.verify_deadline.is_some() {
            warn!(
                "mysqld pid {} exited before verification finished",
                child.pid
            );
        }
        let mut pending = child.pending;
        for p in pending.drain() {
            if let Pending::Dump {
                trigger,
                name,
                sent,
                ..
            } = &p
            {
                self.dump_lost(child.pid, trigger, name, *sent);
            }
            for waiter in waiters_of(p) {
                control::respond(
                    waiter,
                    &control::error_reply("mysqld exited before answering"),
                );
            }
        }
        self.dumping.next_growth_check = None;
        self.drop_trailing_dump(child.pid);
        self.watch_stopped();
        // What records the end is a helper: a panic in it must not cost the restart.
        let pid = child.pid.as_raw();
        let (oom, how) = self
            .contained("recording mysqld's end", |s| {
                s.record_ending(pid, child.started, status)
            })
            .unwrap_or_else(|| (None, describe(status)));
        self.last_exit_oom_killed = oom.is_some();
        self.last_exit = Some(format!("pid {} {how}", child.pid));
        self.last_exit_status = Some(exit_code(status));
        if let (VerifyMode::Require, Some(Err(reason))) = (self.plan.verify, &child.verification) {
            error!("mysqld stopped because verification failed: {reason}");
            return Some(VERIFY_FAILED_STATUS);
        }
        panics::fault_point("ending_decision");
        let end = Ending {
            status: exit_code(status),
            signaled: matches!(status, WaitStatus::Signaled(..)),
            ran_for: child.started.elapsed(),
        };
        match self
            .plan
            .restart
            .decide(&mut self.history, end, self.stopping, Instant::now())
        {
            Decision::Exit(code) => {
                info!(
                    "mysqld pid {} {how}; jemsafe exits with status {code}",
                    child.pid
                );
                Some(code)
            }
            Decision::GiveUp(code, why) => {
                error!("mysqld pid {} {how}; {why}", child.pid);
                Some(code)
            }
            Decision::Restart(delay) => {
                if end.status == RESTART_STATUS && !end.signaled {
                    info!(
                        "mysqld pid {} exited with status 16 (restart requested): starting it again",
                        child.pid
                    );
                } else {
                    warn!(
                        "mysqld pid {} {how}: restarting it in {} ms (restart #{}{})",
                        child.pid,
                        delay.as_millis(),
                        self.history.total,
                        if oom.is_some() {
                            "; an OOM kill is a crash for [supervise] restart, with its back-off"
                        } else {
                            ""
                        }
                    );
                }
                self.restart_at = Some(Instant::now() + delay);
                self.metrics.restarted();
                let status = format!("mysqld pid {} {how}; restarting it", child.pid);
                let mut states = vec![sd_notify::NotifyState::Reloading];
                states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                states.push(sd_notify::NotifyState::Status(&status));
                self.tell(&states);
                None
            }
        }
    }

    /// The OOM verdict on mysqld's end, its explanation and incident record, and the
    /// timeline's exit event; the verdict's evidence when it was an OOM kill.
    fn record_ending(
        &mut self,
        pid: i32,
        started: Instant,
        status: WaitStatus,
    ) -> (Option<String>, String) {
        panics::fault_point("record_ending");
        let verdict = match status {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => self.oom_verdict(pid),
            _ => crate::watch::oom::Verdict::NotOomKill(None),
        };
        let mut how = describe(status);
        let oom = match verdict {
            crate::watch::oom::Verdict::OomKill(evidence) => Some(evidence),
            crate::watch::oom::Verdict::NotOomKill(note) => {
                if let Some(note) = note {
                    how.push_str(&format!(", not by the OOM killer ({note})"));
                }
                None
            }
        };
        if let Some(evidence) = &oom {
            how.push_str(" (the kernel's OOM killer)");
            self.explain_oom(pid, started, evidence);
        }
        self.timeline_event(crate::timeline::EventKind::Exit {
            how: how.clone(),
            oom: oom.is_some(),
        });
        (oom, how)
    }

    /// Starts mysqld again when its restart is due. Not a contained helper: a panic in
    /// starting mysqld aborts jemsafe, for systemd to start it afresh.
    fn restart_when_due(&mut self) -> Result<()> {
        if self.restart_at.is_some_and(|t| Instant::now() >= t) {
            self.restart_at = None;
            self.start()?;
        }
        Ok(())
    }

    fn timers(&mut self) -> Result<()> {
        let now = Instant::now();
        if let Some(child) = self.child.as_mut() {
            if child.verify_deadline.is_some_and(|d| now >= d) {
                let why = format!(
                    "the shim did not answer within {}s: it is not loaded in mysqld (look for an \
                     ld.so \"cannot be preloaded\" line in mysqld's output) or mysqld is stuck starting",
                    self.plan.verify_timeout.as_secs()
                );
                self.verified(Err(why));
                self.abandon_link();
            }
        }
        self.control.expire(now);
        self.overdue(now);
        if self.dumping.throttle.due().is_some_and(|t| now >= t) {
            self.dumping.throttle.fire(now);
            let waiters = std::mem::take(&mut self.dumping.trailing);
            let trigger = self
                .dumping
                .trailing_trigger
                .take()
                .unwrap_or(Trigger::Usr1);
            let reason = self.dumping.trailing_reason.take();
            self.send_dump(trigger, reason, waiters);
        }
        if self.dumping.next_growth_check.is_some_and(|t| now >= t) {
            self.dumping.next_growth_check = Some(now + self.plan.growth_check);
            self.send(Command::Stats, Pending::GrowthStats, SHIM_DEADLINE);
        }
        self.watch_timers(now);
        Ok(())
    }

    fn signal_action(&mut self, action: SignalAction, trigger: Trigger, from: &str) {
        panics::fault_point("signal_action");
        match action {
            SignalAction::Ignore => debug!("{from} ignored as configured"),
            SignalAction::Dump => self.request_dump(trigger, None, None),
            SignalAction::Activate => self.prof(ProfOp::On, None, None),
            SignalAction::Deactivate => self.prof(ProfOp::Off, None, None),
            SignalAction::Reset => self.prof(ProfOp::Reset, None, None),
            SignalAction::Toggle => self.send(
                Command::Toggle,
                Pending::Prof {
                    what: "toggle",
                    waiter: None,
                    sent: Instant::now(),
                },
                SHIM_DEADLINE,
            ),
        }
    }

    fn prof(&mut self, op: ProfOp, lg_sample: Option<u32>, waiter: Option<UnixStream>) {
        let (command, what) = match op {
            ProfOp::On => (Command::Activate, "activate"),
            ProfOp::Off => (Command::Deactivate, "deactivate"),
            ProfOp::Reset => (Command::Reset(lg_sample), "reset"),
        };
        let pending = Pending::Prof {
            what,
            waiter,
            sent: Instant::now(),
        };
        self.send(command, pending, SHIM_DEADLINE);
    }

    fn control_request(&mut self, stream: UnixStream, request: Request) {
        debug!("control request: {request:?}");
        match request {
            Request::Dump { via } => self.request_dump(
                match via {
                    control::DumpVia::Cli => Trigger::Cli,
                    control::DumpVia::Http => Trigger::Http,
                },
                None,
                Some(stream),
            ),
            Request::Prof { op, lg_sample } => self.prof(op, lg_sample, Some(stream)),
            Request::Memory => self.send(
                Command::Memory,
                Pending::Memory(stream, Instant::now()),
                STATUS_DEADLINE,
            ),
            Request::Status => {
                if self.child.as_ref().is_some_and(|c| c.link_open) {
                    self.send(
                        Command::Hello,
                        Pending::StatusHello(stream),
                        STATUS_DEADLINE,
                    );
                } else {
                    let reply = self.status(None, None, None);
                    control::respond(stream, &reply);
                }
            }
        }
    }
}

/// mysqld's status as a shell would report it: the exit code, or 128+N for signal N.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 1,
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, core) => format!(
            "was killed by {}{}",
            sig.as_str(),
            if core { " (core dumped)" } else { "" }
        ),
        other => format!("ended ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn panics_unwind_so_that_the_supervisor_can_contain_them() {
        // `panic = "abort"` in any profile would make every contained panic fatal.
        let manifest = include_str!("../../Cargo.toml");
        let settings: Vec<&str> = manifest
            .lines()
            .filter(|l| l.split('#').next().unwrap_or("").contains("panic"))
            .collect();
        assert!(settings.is_empty(), "{settings:?}");
    }
}
