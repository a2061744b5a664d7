//! `jemsafe run`: start mysqld under the profiling allocator, prove it, and stay with it.
//!
//! One poll loop, asleep unless something happens: the signal wake-up socket, the
//! channel to the shim, the control socket, inotify on the dump directory, and timers
//! (verification deadline, restart delay, trailing dump, growth check). What to do is
//! decided by the pure functions in [`policy`] and [`crate::dumps::retention`]; this
//! module gathers events and carries the decisions out.

pub mod notify;
pub mod policy;
pub mod signals;
pub mod spawn;
pub mod stale;

use crate::config::{SignalAction, VerifyMode};
use crate::control::{self, ProfOp, Request};
use crate::dumps::{self, retention, Trigger};
use crate::error::{Error, Result};
use crate::shim_link::{Received, ShimLink};
use crate::verify::{self, Expectation};
use crate::{debug, error, info, warn};
use jemsafe_proto::{Command, Reply};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use policy::{Admit, Decision, Ending, Growth, RestartHistory, RestartPolicy, Throttle};
use serde_json::json;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signals::Signals;
use spawn::Launch;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// mysqld's exit status asking for a restart (MySQL's `RESTART` statement, SIGUSR2).
pub const RESTART_STATUS: i32 = 16;
/// jemsafe's exit status when `verify = "require"` stopped mysqld (sysexits.h's
/// EX_SOFTWARE: the profiling allocator is not working in mysqld as configured).
pub const VERIFY_FAILED_STATUS: i32 = 70;

/// Everything `run` decided before starting anything.
#[derive(Debug, Clone)]
pub struct Plan {
    pub launch: Launch,
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
}

impl Plan {
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

/// A request in flight to the shim, and who waits for its answer.
enum Pending {
    Hello,
    Dump {
        trigger: Trigger,
        path: PathBuf,
        sent: Instant,
        waiters: Vec<UnixStream>,
    },
    Prof {
        what: &'static str,
        waiter: Option<UnixStream>,
    },
    StatusHello(UnixStream),
    StatusStats(UnixStream, Reply),
    GrowthStats,
}

/// The mysqld currently running.
struct Child {
    pid: Pid,
    started: Instant,
    link: ShimLink,
    link_open: bool,
    pending: HashMap<u64, Pending>,
    /// Until when the handshake may take; None once verification is over.
    verify_deadline: Option<Instant>,
    /// The verification's one-line outcome.
    verification: Option<std::result::Result<String, String>>,
}

struct Supervisor<'a> {
    plan: &'a Plan,
    signals: Signals,
    control: control::Server,
    inotify: Option<nix::sys::inotify::Inotify>,
    child: Option<Child>,
    restart_at: Option<Instant>,
    history: RestartHistory,
    /// A stop signal was forwarded (or verification failed): mysqld's exit is final.
    stopping: bool,
    last_exit: Option<String>,
    dump_seq: u64,
    throttle: Throttle,
    trailing: Vec<UnixStream>,
    trailing_trigger: Option<Trigger>,
    growth: Growth,
    next_growth_check: Option<Instant>,
    last_dump: Option<(PathBuf, SystemTime)>,
    /// sd_notify relay, when jemsafe runs under systemd.
    relay: Option<notify::Relay>,
    ready_gate: notify::ReadyGate,
    mysqld_status: String,
}

/// Runs mysqld until it exits for good; returns jemsafe's exit status.
pub fn run(plan: &Plan) -> Result<i32> {
    let _pid_file = PidFile::acquire(&plan.runtime_dir)?;
    let control = control::Server::bind(&plan.runtime_dir)?;
    let signals = Signals::install().map_err(Error::io("cannot install signal handlers"))?;
    let mut sup = Supervisor {
        plan,
        signals,
        control,
        inotify: watch_dumps(plan),
        child: None,
        restart_at: None,
        history: RestartHistory::default(),
        stopping: false,
        last_exit: None,
        dump_seq: 0,
        throttle: Throttle::new(plan.min_dump_interval),
        trailing: Vec::new(),
        trailing_trigger: None,
        growth: Growth::new(plan.growth_step_bytes),
        next_growth_check: None,
        last_dump: None,
        // Under Type=notify a missing relay means a start that times out after many
        // minutes; better to fail now, with the reason.
        relay: notify::Relay::new(&plan.runtime_dir).map_err(Error::io(format!(
            "NOTIFY_SOCKET is set but the sd_notify relay socket cannot be created in {}",
            plan.runtime_dir.display()
        )))?,
        ready_gate: notify::ReadyGate::default(),
        mysqld_status: String::new(),
    };
    sup.apply_retention();
    sup.start()?;
    sup.serve()
}

/// inotify on the dump directory, so retention runs whenever a heap file appears.
fn watch_dumps(plan: &Plan) -> Option<nix::sys::inotify::Inotify> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let result = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|ino| {
        ino.add_watch(
            &plan.dump_dir,
            AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO,
        )?;
        Ok(ino)
    });
    match result {
        Ok(ino) => Some(ino),
        Err(e) => {
            warn!(
                "cannot watch {} ({e}): retention will run only at start-up",
                plan.dump_dir.display()
            );
            None
        }
    }
}

impl Supervisor<'_> {
    fn start(&mut self) -> Result<()> {
        let plan = self.plan;
        stale::clear(&plan.all_args(), &plan.launch.mysqld)?;
        let (mut link, shim_end) =
            ShimLink::pair().map_err(Error::io("cannot create the shim channel"))?;
        let notify_socket = self.relay.as_ref().map(|r| r.child_value.as_str());
        let pid = spawn::spawn(&plan.launch, &plan.extra_args, &shim_end, notify_socket).map_err(
            Error::io(format!("cannot start {}", plan.launch.mysqld.display())),
        )?;
        drop(shim_end); // only mysqld holds it now, so its exit closes the channel
        let pid = Pid::from_raw(pid as i32);
        info!(
            "started mysqld pid {pid}: {} with profile {:?}, MALLOC_CONF={}",
            plan.launch.mysqld.display(),
            plan.expectation.profile.name,
            plan.launch.malloc_conf
        );
        let mut pending = HashMap::new();
        let mut link_open = true;
        match link.send(Command::Hello) {
            Ok(id) => {
                pending.insert(id, Pending::Hello);
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
        });
        self.next_growth_check =
            (plan.growth_step_bytes > 0).then(|| Instant::now() + plan.growth_check);
        // A new process starts from nothing: its growth is measured afresh.
        self.growth = Growth::new(plan.growth_step_bytes);
        Ok(())
    }

    /// The next moment a timer is due.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.child.as_ref().and_then(|c| c.verify_deadline),
            self.restart_at,
            self.throttle.due(),
            self.next_growth_check,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn serve(&mut self) -> Result<i32> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let timeout = match self.next_deadline() {
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let (control_ready, inotify_ready, relay_ready, link_ready) = {
                let mut fds = vec![
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.control.listener.as_fd(), PollFlags::POLLIN),
                ];
                if let Some(ino) = &self.inotify {
                    fds.push(PollFd::new(ino.as_fd(), PollFlags::POLLIN));
                }
                let relay_at = fds.len();
                if let Some(relay) = &self.relay {
                    fds.push(PollFd::new(relay.as_fd(), PollFlags::POLLIN));
                }
                let link_at = fds.len();
                if let Some(child) = self.child.as_ref().filter(|c| c.link_open) {
                    fds.push(PollFd::new(child.link.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(Error::io("poll failed")(e.into())),
                }
                let ready = |i: usize| {
                    fds.get(i)
                        .and_then(|f| f.revents())
                        .is_some_and(|r| !r.is_empty())
                };
                (
                    ready(1),
                    self.inotify.is_some() && ready(2),
                    self.relay.is_some() && ready(relay_at),
                    link_at < fds.len() && ready(link_at),
                )
            };
            self.signals.drain();

            if self.signals.take(SIGCHLD) {
                if let Some(code) = self.reap() {
                    return Ok(code);
                }
            }
            if let Some(code) = self.stop_signals() {
                return Ok(code);
            }
            for (sig, action, trigger) in [
                (SIGUSR1, self.plan.usr1, Trigger::Usr1),
                (SIGUSR2, self.plan.usr2, Trigger::Usr2),
            ] {
                if self.signals.take(sig) {
                    self.signal_action(action, trigger, &signals::name(sig));
                }
            }
            if control_ready {
                while let Some((stream, request)) = self.control.accept() {
                    self.control_request(stream, request);
                }
            }
            if inotify_ready {
                self.dump_dir_changed();
            }
            if link_ready {
                self.read_replies();
            }
            if relay_ready {
                self.relay_messages();
            }
            self.timers()?;
        }
    }

    /// Forwards stop signals; during a restart delay a stop signal ends jemsafe at once.
    fn stop_signals(&mut self) -> Option<i32> {
        // SIGINT becomes SIGTERM: mysqld and mariadbd ignore SIGINT, but whoever pressed
        // ^C on jemsafe wants the server stopped.
        for (got, send, stops) in [
            (SIGTERM, Signal::SIGTERM, true),
            (SIGINT, Signal::SIGTERM, true),
            (SIGQUIT, Signal::SIGQUIT, true),
            (SIGHUP, Signal::SIGHUP, false),
        ] {
            if !self.signals.take(got) {
                continue;
            }
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
                }
                None if stops => {
                    info!(
                        "received {} during the restart delay: not restarting mysqld; jemsafe exits with status 0",
                        signals::name(got)
                    );
                    return Some(0);
                }
                None => {}
            }
        }
        None
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
        for (_, pending) in child.pending {
            for waiter in waiters_of(pending) {
                control::respond(
                    waiter,
                    &control::error_reply("mysqld exited before answering"),
                );
            }
        }
        self.next_growth_check = None;
        let how = describe(status);
        self.last_exit = Some(format!("pid {} {how}", child.pid));
        if let (VerifyMode::Require, Some(Err(reason))) = (self.plan.verify, &child.verification) {
            error!("mysqld stopped because verification failed: {reason}");
            return Some(VERIFY_FAILED_STATUS);
        }
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
                        "mysqld pid {} {how}: restarting it in {} ms (restart #{})",
                        child.pid,
                        delay.as_millis(),
                        self.history.total
                    );
                }
                self.restart_at = Some(Instant::now() + delay);
                let status = format!("mysqld pid {} {how}; restarting it", child.pid);
                let mut states = vec![sd_notify::NotifyState::Reloading];
                states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                states.push(sd_notify::NotifyState::Status(&status));
                self.tell(&states);
                None
            }
        }
    }

    fn timers(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.restart_at.is_some_and(|t| now >= t) {
            self.restart_at = None;
            self.start()?;
        }
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
        if self.throttle.due().is_some_and(|t| now >= t) {
            self.throttle.fire(now);
            let waiters = std::mem::take(&mut self.trailing);
            let trigger = self.trailing_trigger.take().unwrap_or(Trigger::Usr1);
            self.send_dump(trigger, waiters);
        }
        if self.next_growth_check.is_some_and(|t| now >= t) {
            self.next_growth_check = Some(now + self.plan.growth_check);
            self.send(Command::Stats, Pending::GrowthStats);
        }
        Ok(())
    }

    /// The shim never answered its handshake: nothing will come from it, so requests
    /// fail at once instead of waiting for an answer that cannot come.
    fn abandon_link(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        child.link_open = false;
        let why = format!("the shim in mysqld pid {} never answered", child.pid);
        let pending: Vec<Pending> = child.pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            self.fail(p, &why);
        }
    }

    /// Why requests cannot reach the shim right now.
    fn unreachable_reason(&self) -> String {
        match &self.child {
            None => "mysqld is not running (jemsafe is between restarts)".to_owned(),
            Some(c) => format!(
                "the shim in mysqld pid {} is not reachable (it never answered, or its channel closed)",
                c.pid
            ),
        }
    }

    /// Sends `command` to the shim; on failure, answers whoever waits.
    fn send(&mut self, command: Command, pending: Pending) {
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
                child.pending.insert(id, pending);
            }
            Err(e) => {
                warn!("cannot send to the shim in mysqld pid {}: {e}", child.pid);
                self.fail(pending, &format!("cannot reach the shim: {e}"));
            }
        }
    }

    /// A request that will get no answer: tell whoever waits, and let a growth dump go.
    fn fail(&mut self, pending: Pending, why: &str) {
        if matches!(
            pending,
            Pending::Dump {
                trigger: Trigger::Growth,
                ..
            }
        ) {
            self.growth.finished(false);
        }
        for waiter in waiters_of(pending) {
            control::respond(waiter, &control::error_reply(why));
        }
    }

    fn signal_action(&mut self, action: SignalAction, trigger: Trigger, from: &str) {
        match action {
            SignalAction::Ignore => debug!("{from} ignored as configured"),
            SignalAction::Dump => self.request_dump(trigger, None),
            SignalAction::Activate => self.prof(ProfOp::On, None, None),
            SignalAction::Deactivate => self.prof(ProfOp::Off, None, None),
            SignalAction::Reset => self.prof(ProfOp::Reset, None, None),
            SignalAction::Toggle => self.send(
                Command::Toggle,
                Pending::Prof {
                    what: "toggle",
                    waiter: None,
                },
            ),
        }
    }

    fn prof(&mut self, op: ProfOp, lg_sample: Option<u32>, waiter: Option<UnixStream>) {
        let (command, what) = match op {
            ProfOp::On => (Command::Activate, "activate"),
            ProfOp::Off => (Command::Deactivate, "deactivate"),
            ProfOp::Reset => (Command::Reset(lg_sample), "reset"),
        };
        self.send(command, Pending::Prof { what, waiter });
    }

    fn control_request(&mut self, stream: UnixStream, request: Request) {
        debug!("control request: {request:?}");
        match request {
            Request::Dump => self.request_dump(Trigger::Cli, Some(stream)),
            Request::Prof { op, lg_sample } => self.prof(op, lg_sample, Some(stream)),
            Request::Status => {
                if self.child.as_ref().is_some_and(|c| c.link_open) {
                    self.send(Command::Hello, Pending::StatusHello(stream));
                } else {
                    let reply = self.status(None, None);
                    control::respond(stream, &reply);
                }
            }
        }
    }

    /// An on-demand dump, through the storm throttle.
    fn request_dump(&mut self, trigger: Trigger, waiter: Option<UnixStream>) {
        match self.throttle.request(Instant::now()) {
            Admit::Now => self.send_dump(trigger, waiter.into_iter().collect()),
            Admit::At(_) | Admit::Joined => {
                debug!(
                    "dump request ({}) coalesced into the next dump",
                    trigger.as_str()
                );
                self.trailing_trigger.get_or_insert(trigger);
                self.trailing.extend(waiter);
            }
        }
    }

    fn send_dump(&mut self, trigger: Trigger, waiters: Vec<UnixStream>) {
        let plan = self.plan;
        let refusal = match dumps::free_bytes(&plan.dump_dir) {
            Ok(free) if free < plan.min_free_bytes => Some(format!(
                "dump refused: only {} MiB free on the filesystem of {} (min_free_mb = {})",
                free >> 20,
                plan.dump_dir.display(),
                plan.min_free_bytes >> 20
            )),
            Ok(_) => None,
            Err(e) => {
                warn!(
                    "cannot measure free space in {}: {e}",
                    plan.dump_dir.display()
                );
                None
            }
        };
        let pid = self.child.as_ref().map(|c| c.pid);
        let (Some(pid), None) = (pid, &refusal) else {
            let why = refusal.unwrap_or_else(|| self.unreachable_reason());
            error!("{} dump not taken: {why}", trigger.as_str());
            let pending = Pending::Dump {
                trigger,
                path: PathBuf::new(),
                sent: Instant::now(),
                waiters,
            };
            self.fail(pending, &why);
            return;
        };
        self.dump_seq += 1;
        let name = dumps::on_demand_name(
            &plan.dump_prefix,
            pid.as_raw(),
            SystemTime::now(),
            self.dump_seq,
            trigger,
        );
        let path = plan.dump_dir.join(name);
        self.send(
            Command::Dump(Some(path.to_string_lossy().into_owned())),
            Pending::Dump {
                trigger,
                path,
                sent: Instant::now(),
                waiters,
            },
        );
    }

    fn read_replies(&mut self) {
        loop {
            let Some(child) = self.child.as_mut() else {
                return;
            };
            let reply = match child.link.receive() {
                Ok(Received::Reply(reply)) => reply,
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
            let Some(pending) = child.pending.remove(&reply.id) else {
                debug!("dropping an unexpected reply from the shim: {reply:?}");
                continue;
            };
            self.replied(pending, reply);
        }
    }

    fn replied(&mut self, pending: Pending, reply: Reply) {
        match pending {
            Pending::Hello => self.hello(reply),
            Pending::Dump {
                trigger,
                path,
                sent,
                waiters,
            } => self.dumped(trigger, path, sent, waiters, &reply),
            Pending::Prof { what, waiter } => {
                match (reply.ok, reply.get("was_active")) {
                    (true, Some(was)) => info!(
                        "{what}: prof.active is now {} (was {was})",
                        reply.get("prof_active").unwrap_or("?")
                    ),
                    (true, None) => info!(
                        "{what}: profile data reset, lg_prof_sample = {}",
                        reply.get("lg_prof_sample").unwrap_or("?")
                    ),
                    (false, _) => error!("{what} failed: {}", reply.error_text()),
                }
                if let Some(w) = waiter {
                    control::respond(w, &shim_reply_json(&reply));
                }
            }
            Pending::StatusHello(stream) => {
                self.send(Command::Stats, Pending::StatusStats(stream, reply));
            }
            Pending::StatusStats(stream, hello) => {
                let status = self.status(Some(&hello), Some(&reply));
                control::respond(stream, &status);
            }
            Pending::GrowthStats => {
                let Some(allocated) = reply.get_u64("allocated") else {
                    debug!("growth check: no stats ({})", reply.error_text());
                    return;
                };
                if self.growth.observe(allocated) {
                    info!(
                        "stats.allocated = {} MiB, {} MiB above the last growth dump: dumping",
                        allocated >> 20,
                        self.plan.growth_step_bytes >> 20
                    );
                    self.send_dump(Trigger::Growth, Vec::new());
                }
            }
        }
    }

    fn dumped(
        &mut self,
        trigger: Trigger,
        path: PathBuf,
        sent: Instant,
        waiters: Vec<UnixStream>,
        reply: &Reply,
    ) {
        let round_trip_ms = sent.elapsed().as_secs_f64() * 1000.0;
        if trigger == Trigger::Growth {
            self.growth.finished(reply.ok);
        }
        if !reply.ok {
            let why = format!(
                "heap dump to {} failed: {}",
                path.display(),
                reply.error_text()
            );
            error!("{why}");
            for w in waiters {
                control::respond(w, &control::error_reply(why.clone()));
            }
            return;
        }
        dumps::restrict(&path);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        info!(
            "heap dump written: {} ({size} bytes; {}; prof.dump {} us, round trip {round_trip_ms:.2} ms)",
            path.display(),
            trigger.as_str(),
            reply.get("dump_us").unwrap_or("?")
        );
        self.last_dump = Some((path.clone(), SystemTime::now()));
        let line = self.status_line();
        self.tell(&[sd_notify::NotifyState::Status(&line)]);
        let mut answer = control::ok_reply();
        answer.insert("path".into(), path.display().to_string().into());
        answer.insert("bytes".into(), size.into());
        answer.insert("round_trip_ms".into(), json!(round_trip_ms));
        for w in waiters {
            control::respond(w, &answer);
        }
    }

    fn hello(&mut self, reply: Reply) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let pid = child.pid.as_raw();
        let result = match verify::read_maps(pid) {
            Ok(maps) => {
                let verdict = verify::judge(pid, &maps, &reply, &self.plan.expectation);
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
    fn verified(&mut self, result: std::result::Result<String, String>) {
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

    /// Sends to systemd when jemsafe runs under it.
    fn tell(&self, states: &[sd_notify::NotifyState]) {
        if self.relay.is_some() {
            notify::tell(states);
        }
    }

    /// jemsafe's STATUS line: mysqld's own, then profile, verification and last dump.
    fn status_line(&self) -> String {
        let verification = match self.child.as_ref().and_then(|c| c.verification.as_ref()) {
            Some(Ok(_)) => "verified",
            Some(Err(_)) => "verification FAILED",
            None => "verifying",
        };
        let dump = self
            .last_dump
            .as_ref()
            .and_then(|(p, _)| p.file_name())
            .map(|n| format!(", last dump {}", n.to_string_lossy()))
            .unwrap_or_default();
        let mysqld = if self.mysqld_status.is_empty() {
            String::new()
        } else {
            format!("{}; ", self.mysqld_status)
        };
        format!(
            "{mysqld}jemsafe: profile {}, {verification}{dump}",
            self.plan.expectation.profile.name
        )
    }

    fn ready(&self) {
        let status = self.status_line();
        self.tell(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        if self.relay.is_some() {
            info!("told systemd READY=1 (mysqld is ready and verification is over)");
        }
    }

    fn relay_messages(&mut self) {
        let Some(relay) = &self.relay else {
            return;
        };
        let pid = self.child.as_ref().map(|c| c.pid.as_raw());
        let mut messages = relay.receive(pid);
        // READY last, so that the STATUS sent with it already has mysqld's own words.
        messages.sort_by_key(|m| *m == notify::Message::Ready);
        for message in messages {
            debug!("mysqld sent {message:?}");
            match message {
                notify::Message::Ready => {
                    info!("mysqld reports READY=1");
                    if self.ready_gate.mysqld_ready() {
                        self.ready();
                    }
                }
                notify::Message::Status(text) => {
                    self.mysqld_status = text;
                    let line = self.status_line();
                    self.tell(&[sd_notify::NotifyState::Status(&line)]);
                }
                notify::Message::Stopping => self.tell(&[sd_notify::NotifyState::Stopping]),
                notify::Message::ExtendTimeoutUsec(usec) => {
                    self.tell(&[sd_notify::NotifyState::ExtendTimeoutUsec(usec)])
                }
            }
        }
    }

    fn dump_dir_changed(&mut self) {
        let Some(ino) = &self.inotify else {
            return;
        };
        let mut ours = false;
        while let Ok(events) = ino.read_events() {
            if events.is_empty() {
                break;
            }
            for name in events.iter().filter_map(|e| e.name.as_ref()?.to_str()) {
                if dumps::HeapName::parse(&self.plan.dump_prefix, name).is_some() {
                    // jemalloc's automatic dumps too: not world-readable.
                    dumps::restrict(&self.plan.dump_dir.join(name));
                    ours = true;
                }
            }
        }
        if ours {
            self.apply_retention();
        }
    }

    fn apply_retention(&self) {
        let plan = self.plan;
        let files = match dumps::list(&plan.dump_dir, &plan.dump_prefix) {
            Ok(f) => f,
            Err(e) => {
                warn!("retention: cannot list {}: {e}", plan.dump_dir.display());
                return;
            }
        };
        for (path, reason) in retention::plan(&files, &plan.retention, SystemTime::now()) {
            match std::fs::remove_file(&path) {
                Ok(()) => info!("retention: deleted {} ({reason})", path.display()),
                Err(e) => warn!("retention: cannot delete {}: {e}", path.display()),
            }
        }
    }

    /// The `status` answer; `hello` and `stats` come from the shim when mysqld runs.
    fn status(&self, hello: Option<&Reply>, stats: Option<&Reply>) -> control::Reply {
        let plan = self.plan;
        let child = self.child.as_ref();
        let field = |r: Option<&Reply>, k: &str| {
            r.and_then(|r| r.get(k))
                .map(shim_value)
                .unwrap_or(serde_json::Value::Null)
        };
        let files = dumps::list(&plan.dump_dir, &plan.dump_prefix).unwrap_or_default();
        let mut r = control::ok_reply();
        r.insert("jemsafe_pid".into(), std::process::id().into());
        r.insert(
            "profile".into(),
            plan.expectation.profile.name.clone().into(),
        );
        r.insert("malloc_conf".into(), plan.launch.malloc_conf.clone().into());
        r.insert("mysqld_pid".into(), json!(child.map(|c| c.pid.as_raw())));
        r.insert(
            "mysqld_uptime_s".into(),
            json!(child.map(|c| c.started.elapsed().as_secs())),
        );
        r.insert("restarts".into(), self.history.total.into());
        r.insert("last_exit".into(), json!(self.last_exit));
        r.insert(
            "verification".into(),
            json!(child
                .and_then(|c| c.verification.as_ref())
                .map(|v| match v {
                    Ok(s) => json!({"ok": true, "message": s}),
                    Err(s) => json!({"ok": false, "message": s}),
                })),
        );
        r.insert(
            "jemalloc".into(),
            json!({
                "version": field(hello, "version"),
                "opt_prof": field(hello, "opt_prof"),
                "prof_active": field(hello, "prof_active"),
                "lg_prof_sample": field(hello, "lg_prof_sample"),
                "prof_prefix": field(hello, "prof_prefix"),
            }),
        );
        r.insert(
            "stats".into(),
            json!({
                "allocated": field(stats, "allocated"),
                "active": field(stats, "active"),
                "resident": field(stats, "resident"),
                "mapped": field(stats, "mapped"),
                "retained": field(stats, "retained"),
            }),
        );
        r.insert(
            "dumps".into(),
            json!({
                "dir": plan.dump_dir.display().to_string(),
                "files": files.len(),
                "bytes": files.iter().map(|f| f.size).sum::<u64>(),
                "free_bytes": dumps::free_bytes(&plan.dump_dir).ok(),
            }),
        );
        r.insert(
            "last_dump".into(),
            json!(self.last_dump.as_ref().map(|(p, t)| json!({
                "path": p.display().to_string(),
                "time": humantime::format_rfc3339_seconds(*t).to_string(),
            }))),
        );
        r
    }
}

/// The connections waiting on `pending`.
fn waiters_of(pending: Pending) -> Vec<UnixStream> {
    match pending {
        Pending::Dump { waiters, .. } => waiters,
        Pending::Prof { waiter, .. } => waiter.into_iter().collect(),
        Pending::StatusHello(s) | Pending::StatusStats(s, _) => vec![s],
        Pending::Hello | Pending::GrowthStats => Vec::new(),
    }
}

/// A shim reply as a control reply: its fields, typed where they look like numbers.
fn shim_reply_json(reply: &Reply) -> control::Reply {
    if !reply.ok {
        return control::error_reply(reply.error_text());
    }
    let mut r = control::ok_reply();
    for (k, v) in &reply.fields {
        r.insert(k.clone(), shim_value(v));
    }
    r
}

/// A shim field as JSON: booleans and counts typed, the rest strings.
fn shim_value(v: &str) -> serde_json::Value {
    match v {
        "true" => true.into(),
        "false" => false.into(),
        s => s
            .parse::<u64>()
            .map(Into::into)
            .unwrap_or_else(|_| s.into()),
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

/// `<runtime_dir>/jemsafe.pid`, held with an exclusive lock for jemsafe's lifetime: the
/// lock, not the pid, says whether another jemsafe is alive, so a stale file left by a
/// crash (or a pid reused by another process) never blocks a start.
pub struct PidFile {
    path: PathBuf,
    _file: std::fs::File,
}

impl PidFile {
    pub fn acquire(runtime_dir: &std::path::Path) -> Result<PidFile> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(runtime_dir)
            .map_err(Error::io(format!(
                "cannot create runtime_dir {}",
                runtime_dir.display()
            )))?;
        let path = runtime_dir.join("jemsafe.pid");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(Error::io(format!(
                "cannot open pid file {}",
                path.display()
            )))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut other = String::new();
            let _ = file.read_to_string(&mut other);
            return Err(Error::Refused(format!(
                "another jemsafe (pid {}) is running with runtime_dir {}: stop it first, or give \
                 this instance its own [supervise] runtime_dir",
                other.trim(),
                runtime_dir.display()
            )));
        }
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        if !previous.trim().is_empty() {
            info!(
                "removing stale pid file {} (pid {} is gone)",
                path.display(),
                previous.trim()
            );
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(Error::io(format!(
                "cannot write pid file {}",
                path.display()
            )))?;
        Ok(PidFile { path, _file: file })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
