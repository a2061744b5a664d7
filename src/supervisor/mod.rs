//! `jemsafe run`: start mysqld under the profiling allocator, prove it, and stay with it.
//!
//! One poll loop over two sources: the signal wake-up socket and the channel to the shim.
//! Signals become actions (forward, dump, toggle...), replies from the shim become log
//! lines, and mysqld's exit becomes jemsafe's exit (or a restart after status 16).

pub mod signals;
pub mod spawn;

use crate::config::{SignalAction, VerifyMode};
use crate::dumps::{self, Trigger};
use crate::error::{Error, Result};
use crate::shim_link::{Received, ShimLink};
use crate::verify::{self, Expectation};
use crate::{debug, error, info, warn};
use jemsafe_proto::{Command, Reply};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signals::Signals;
use spawn::Launch;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// mysqld's exit status asking for a restart (MySQL's `RESTART` statement, SIGUSR2).
pub const RESTART_STATUS: i32 = 16;
/// jemsafe's exit status when `verify = "require"` stopped mysqld.
pub const VERIFY_FAILED_STATUS: i32 = 3;

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
}

/// A request in flight to the shim.
#[derive(Debug)]
enum Pending {
    Hello,
    Action {
        action: SignalAction,
        path: Option<PathBuf>,
        sent: Instant,
    },
}

/// The mysqld currently running.
struct Child {
    pid: Pid,
    link: ShimLink,
    link_open: bool,
    pending: HashMap<u64, Pending>,
    /// Until when the handshake may take; None once verification is over.
    verify_deadline: Option<Instant>,
}

/// State that lives across restarts.
struct Supervisor<'a> {
    plan: &'a Plan,
    signals: Signals,
    /// A stop signal was forwarded (or verification failed): mysqld's exit is final.
    stopping: bool,
    verify_failure: Option<String>,
    dump_seq: u64,
}

/// Runs mysqld until it exits for good; returns jemsafe's exit status.
pub fn run(plan: &Plan) -> Result<i32> {
    let _pid_file = PidFile::acquire(&plan.runtime_dir)?;
    let signals = Signals::install().map_err(Error::io("cannot install signal handlers"))?;
    let mut sup = Supervisor {
        plan,
        signals,
        stopping: false,
        verify_failure: None,
        dump_seq: 0,
    };
    loop {
        let mut child = sup.start()?;
        let status = sup.watch(&mut child)?;
        let code = exit_code(status);
        if let Some(reason) = &sup.verify_failure {
            error!("mysqld stopped because verification failed: {reason}");
            return Ok(VERIFY_FAILED_STATUS);
        }
        if code == RESTART_STATUS && !sup.stopping {
            info!(
                "mysqld pid {} exited with status 16 (restart requested): starting it again",
                child.pid
            );
            continue;
        }
        info!(
            "mysqld pid {} {}; jemsafe exits with status {code}",
            child.pid,
            describe(status)
        );
        return Ok(code);
    }
}

impl Supervisor<'_> {
    fn start(&mut self) -> Result<Child> {
        let (mut link, shim_end) =
            ShimLink::pair().map_err(Error::io("cannot create the shim channel"))?;
        let plan = self.plan;
        let pid = spawn::spawn(&plan.launch, &plan.extra_args, &shim_end).map_err(Error::io(
            format!("cannot start {}", plan.launch.mysqld.display()),
        ))?;
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
        Ok(Child {
            pid,
            link,
            link_open,
            pending,
            verify_deadline: Some(Instant::now() + plan.verify_timeout),
        })
    }

    /// Serves events until mysqld exits; returns its wait status.
    fn watch(&mut self, child: &mut Child) -> Result<WaitStatus> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let timeout = match child.verify_deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let link_ready = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                if child.link_open {
                    fds.push(PollFd::new(child.link.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(Error::io("poll failed")(e.into())),
                }
                fds.get(1)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            self.signals.drain();

            if self.signals.take(SIGCHLD) {
                if let Some(status) = reap(child.pid) {
                    if child.verify_deadline.is_some() {
                        warn!(
                            "mysqld pid {} exited before verification finished",
                            child.pid
                        );
                    }
                    return Ok(status);
                }
            }
            // SIGINT becomes SIGTERM: mysqld and mariadbd ignore SIGINT, but whoever
            // pressed ^C on jemsafe wants the server stopped.
            for (got, send, stops) in [
                (SIGTERM, Signal::SIGTERM, true),
                (SIGINT, Signal::SIGTERM, true),
                (SIGQUIT, Signal::SIGQUIT, true),
                (SIGHUP, Signal::SIGHUP, false),
            ] {
                if self.signals.take(got) {
                    self.stopping |= stops;
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
            }
            for (sig, action, trigger) in [
                (SIGUSR1, self.plan.usr1, Trigger::Usr1),
                (SIGUSR2, self.plan.usr2, Trigger::Usr2),
            ] {
                if self.signals.take(sig) {
                    self.act(child, action, trigger, &signals::name(sig));
                }
            }
            if link_ready {
                self.read_replies(child);
            }
            if child.verify_deadline.is_some_and(|d| Instant::now() >= d) {
                let why = format!(
                    "the shim did not answer within {}s: it is not loaded in mysqld (look for an \
                     ld.so \"cannot be preloaded\" line in mysqld's output) or mysqld is stuck starting",
                    self.plan.verify_timeout.as_secs()
                );
                self.verified(child, Err(why));
            }
        }
    }

    /// Carries out a USR1/USR2 action through the shim.
    fn act(&mut self, child: &mut Child, action: SignalAction, trigger: Trigger, from: &str) {
        let command = match action {
            SignalAction::Ignore => {
                debug!("{from} ignored as configured");
                return;
            }
            SignalAction::Dump => None,
            SignalAction::Activate => Some(Command::Activate),
            SignalAction::Deactivate => Some(Command::Deactivate),
            SignalAction::Toggle => Some(Command::Toggle),
            SignalAction::Reset => Some(Command::Reset(None)),
        };
        if !child.link_open {
            warn!(
                "{from}: cannot reach the shim in mysqld pid {} (channel closed); nothing done",
                child.pid
            );
            return;
        }
        let (command, path) = match command {
            Some(c) => (c, None),
            None => {
                self.dump_seq += 1;
                let name = dumps::on_demand_name(
                    &self.plan.dump_prefix,
                    child.pid.as_raw(),
                    SystemTime::now(),
                    self.dump_seq,
                    trigger,
                );
                let path = dumps::path_for(&self.plan.dump_dir, &name);
                (
                    Command::Dump(Some(path.to_string_lossy().into_owned())),
                    Some(path),
                )
            }
        };
        match child.link.send(command) {
            Ok(id) => {
                child.pending.insert(
                    id,
                    Pending::Action {
                        action,
                        path,
                        sent: Instant::now(),
                    },
                );
            }
            Err(e) => warn!(
                "{from}: cannot send to the shim in mysqld pid {}: {e}",
                child.pid
            ),
        }
    }

    fn read_replies(&mut self, child: &mut Child) {
        loop {
            match child.link.receive() {
                Ok(Received::Reply(reply)) => match child.pending.remove(&reply.id) {
                    Some(Pending::Hello) => self.hello(child, reply),
                    Some(Pending::Action { action, path, sent }) => {
                        report_action(action, path, sent, &reply)
                    }
                    None => debug!("dropping an unexpected reply from the shim: {reply:?}"),
                },
                Ok(Received::Nothing) => return,
                Ok(Received::Closed) => {
                    child.link_open = false;
                    return;
                }
                Err(e) => {
                    warn!("unreadable message from the shim: {e}");
                    return;
                }
            }
        }
    }

    fn hello(&mut self, child: &mut Child, reply: Reply) {
        let pid = child.pid.as_raw();
        let verdict = match verify::read_maps(pid) {
            Ok(maps) => verify::judge(pid, &maps, &reply, &self.plan.expectation),
            Err(e) => {
                self.verified(child, Err(format!("cannot read /proc/{pid}/maps: {e}")));
                return;
            }
        };
        if verdict.ok() {
            self.verified(child, Ok(verdict.summary));
        } else {
            self.verified(child, Err(verdict.problems.join("; ")));
        }
    }

    /// Ends verification: one log line, and with `require` a clean stop on failure.
    fn verified(&mut self, child: &mut Child, result: std::result::Result<String, String>) {
        if child.verify_deadline.take().is_none() {
            return;
        }
        match result {
            Ok(summary) => info!("{summary}"),
            Err(why) => match self.plan.verify {
                VerifyMode::Warn => {
                    warn!("verification FAILED for mysqld pid {} (verify = \"warn\": mysqld keeps running without working profiling): {why}", child.pid)
                }
                VerifyMode::Require => {
                    error!("verification FAILED for mysqld pid {} (verify = \"require\": stopping it with SIGTERM): {why}", child.pid);
                    self.stopping = true;
                    self.verify_failure = Some(why);
                    if let Err(e) = kill(child.pid, Signal::SIGTERM) {
                        warn!("cannot signal mysqld pid {}: {e}", child.pid);
                    }
                }
            },
        }
    }
}

fn report_action(action: SignalAction, path: Option<PathBuf>, sent: Instant, reply: &Reply) {
    let round_trip_ms = sent.elapsed().as_secs_f64() * 1000.0;
    match (action, reply.ok) {
        (SignalAction::Dump, true) => {
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            info!(
                "heap dump written: {path} ({size} bytes; prof.dump {} us, round trip {round_trip_ms:.2} ms)",
                reply.get("dump_us").unwrap_or("?")
            );
        }
        (SignalAction::Dump, false) => {
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            error!("heap dump to {path} failed: {}", reply.error_text());
        }
        (SignalAction::Reset, true) => info!(
            "profile data reset (prof.reset); lg_prof_sample={}",
            reply.get("lg_prof_sample").unwrap_or("?")
        ),
        (_, true) => info!(
            "prof.active is now {} (was {})",
            reply.get("prof_active").unwrap_or("?"),
            reply.get("was_active").unwrap_or("?")
        ),
        (_, false) => error!("{action:?} failed: {}", reply.error_text()),
    }
}

/// Reaps every exited child (jemsafe may be PID 1 in a container); returns mysqld's status
/// if mysqld is among them.
fn reap(mysqld: Pid) -> Option<WaitStatus> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return found,
            Ok(status) if status.pid() == Some(mysqld) => found = Some(status),
            Ok(status) => debug!("reaped process {:?}", status.pid()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                warn!("waitpid failed: {e}");
                return found;
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
