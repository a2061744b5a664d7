//! /debug/pprof/heap's rendering, in a short-lived child process (`jemsafe __pprof DUMP`,
//! the running binary through /proc/self/exe).
//!
//! Why a child: the analyzer keeps what it maps and reads (objects, debug files) for the
//! life of its process, which suits a one-shot command; inside the supervisor every
//! request would add it again (16 MB and a dozen mappings a request on MariaDB). A child
//! gives all of it back when it exits, whatever the analyzer does, and a hostile or huge
//! dump costs the child, not the supervisor.
//!
//! The supervisor's loop reaps every child (`waitpid(-1)`, as PID 1 must), so this side
//! never relies on the exit status and never signals a bare pid: the child frames its
//! output (length, then the bytes), and the child is known by a pidfd, which cannot name
//! another process once this one is gone. An alarm set before exec ends the child by
//! itself should the parent fail to.

use super::budget::Budget;
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__pprof";
/// A pprof rendering of a large dump with DWARF takes seconds; this bounds a stuck one.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest profile returned (gzipped profile.proto is a fraction of the dump).
pub const MAX_PROFILE: usize = 256 << 20;
/// What is kept of the child's standard error, for the reason of a failure.
const MAX_STDERR: usize = 4096;

/// The child's side: renders `dump` as gzipped profile.proto and writes it framed (its
/// length as 8 bytes little-endian, then the bytes) to standard output.
pub fn child_main(dump: &Path) -> Result<i32> {
    // The dump the server just took, read as `jemsafe report DUMP` reads a dump from the
    // dump directory (no symbolic link followed).
    // Within the dump bytes the server's budget allows.
    let max_mb =
        super::budget::dump_bytes_from_env(jemsafe_report::DEFAULT_MAX_DUMP_MB << 20) >> 20;
    let limits = jemsafe_report::DumpLimits::new(max_mb.max(1), false);
    let loaded = crate::read::load(dump, &limits)?;
    let options = jemsafe_report::render::ReportOptions {
        metric: jemsafe_report::Metric::InuseSpace,
        format: jemsafe_report::render::Format::Pprof,
        by: jemsafe_report::render::By::Function,
        top: 0,
        exact: false,
        symbolize: jemsafe_report::SymbolizeOptions::default(),
    };
    let rendered = jemsafe_report::render::report(loaded, None, &options)?;
    write_framed(&rendered.data)
        .map_err(Error::io("cannot write the profile to the HTTP server"))?;
    Ok(0)
}

/// A child's answer on standard output: its length as 8 bytes little-endian, then it.
pub fn write_framed(data: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&(data.len() as u64).to_le_bytes())?;
    out.write_all(data)?;
    out.flush()
}

/// A rendering child: this program as `jemsafe SUBCOMMAND`, its log to this side (plain
/// lines, read for the reason of a failure), and not the service systemd waits for.
pub fn child_command(subcommand: &str) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("jemsafe")
        .arg(subcommand)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

/// The parent's side: `dump` rendered by a child within [`RENDER_TIMEOUT`], its memory
/// budget and [`MAX_PROFILE`] bytes; Err is the reason, for a 500.
pub fn render(dump: &Path, memory_mb: u64) -> std::result::Result<Vec<u8>, String> {
    let mut cmd = child_command(SUBCOMMAND);
    cmd.arg("--").arg(dump);
    run_framed(cmd, &Budget::new(memory_mb, RENDER_TIMEOUT), MAX_PROFILE)
}

/// Runs `cmd` within `budget` (see [`super::budget`]) with standard output and error read
/// within its deadline, standard output a frame of at most `max` bytes; the child is
/// killed and reaped on timeout or excess.
pub fn run_framed(
    mut cmd: Command,
    budget: &Budget,
    max: usize,
) -> std::result::Result<Vec<u8>, String> {
    let deadline = budget.deadline;
    cmd.env(
        super::budget::DUMP_BYTES_ENV,
        budget.dump_bytes().to_string(),
    );
    // Held open until the child is spawned: it joins that group between fork and exec.
    let group = super::budget::open_render_group().ok();
    super::budget::confine(
        &mut cmd,
        budget,
        group.as_ref().map(|(fd, _)| fd.as_raw_fd()),
    );
    // Standard input is the child's leash: it stays alive (its output closed) until this
    // side drops it, so that its pidfd is taken before the supervisor's loop could reap it
    // (waitpid(-1), for orphans as PID 1): a child that exited fast was reaped first, and
    // its pid was no longer there to open.
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::launch::close_inherited_fds(&mut cmd);
    // The backstop: SIGALRM ends the child a little after the deadline even if this side
    // could not kill it.
    crate::launch::alarm_after(&mut cmd, deadline.as_secs().saturating_add(5));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the renderer: {e}"))?;
    drop(group);
    let pidfd = pidfd_open(child.id());
    let leash = child.stdin.take();
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("the renderer's pipes are missing".into());
    };
    let outcome = read_both(&mut stdout, &mut stderr, started, deadline, max);
    drop((stdout, stderr, leash));
    let Ok(pidfd) = pidfd else {
        // Cannot name the child safely: the alarm ends it; the supervisor reaps it.
        return Err("cannot watch the renderer (pidfd_open failed)".into());
    };
    let (out, err, problem) = outcome;
    if problem.is_some() {
        kill(&pidfd);
    }
    // It exits once its output is read (or it is killed); reap it, unless the
    // supervisor's loop did first.
    let _ = crate::shim_link::wait_readable(pidfd.as_fd(), Duration::from_secs(5));
    reap(&pidfd);
    if let Some(problem) = problem {
        return Err(problem);
    }
    unframe(&out).ok_or_else(|| {
        let said = String::from_utf8_lossy(&err);
        if let Some(why) = super::budget::failure(&said, budget) {
            return why;
        }
        // The child's last log line, without its time and pid.
        let last = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let said = last.split_once("] error: ").map_or(last, |(_, m)| m).trim();
        format!(
            "the renderer failed{}",
            if said.is_empty() {
                // Killed, most likely: by the OOM killer, which takes renderers first
                // (oom_score_adj 1000), or at its CPU-time limit.
                " without saying why (killed?)".to_owned()
            } else {
                format!(": {}", jemsafe_report::safe::escape(said))
            }
        )
    })
}

/// The bytes of a whole frame, None if `out` is not exactly one (the child failed or
/// was cut short).
fn unframe(out: &[u8]) -> Option<Vec<u8>> {
    let len = u64::from_le_bytes(out.get(..8)?.try_into().ok()?);
    (out.len() as u64 - 8 == len).then(|| out[8..].to_vec())
}

/// Reads both pipes to their end; (stdout, stderr, why it stopped early).
fn read_both(
    stdout: &mut impl ReadFd,
    stderr: &mut impl ReadFd,
    started: Instant,
    deadline: Duration,
    max: usize,
) -> (Vec<u8>, Vec<u8>, Option<String>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let mut chunk = vec![0u8; 64 << 10];
    while out_open || err_open {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            let why = format!("the renderer took longer than {deadline:?} (killed)");
            return (out, err, Some(why));
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let (so, se) = (stdout.as_fd(), stderr.as_fd());
        let mut fds = Vec::with_capacity(2);
        if out_open {
            fds.push(PollFd::new(so, PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(se, PollFlags::POLLIN));
        }
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return (out, err, Some(format!("cannot wait for the renderer: {e}"))),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 0;
        if out_open {
            if ready[i] {
                match stdout.read(&mut chunk) {
                    Ok(0) => out_open = false,
                    Ok(n) if out.len() + n > max.saturating_add(8) => {
                        return (
                            out,
                            err,
                            Some(format!(
                                "the profile is larger than {} MiB (killed)",
                                max >> 20
                            )),
                        )
                    }
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return (out, err, Some(format!("cannot read the renderer: {e}"))),
                }
            }
            i += 1;
        }
        if err_open && ready[i] {
            match stderr.read(&mut chunk) {
                Ok(0) => err_open = false,
                // Beyond MAX_STDERR it is drained and dropped, so the child never blocks.
                Ok(n) => {
                    let room = MAX_STDERR.saturating_sub(err.len());
                    err.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => err_open = false,
            }
        }
    }
    (out, err, None)
}

/// A pipe end that can be polled and read.
trait ReadFd: Read + AsFd {}
impl<T: Read + AsFd> ReadFd for T {}

/// The end of a renderer child (`__pprof`, `__page`): its output closed, it waits until
/// the server lets go of its standard input (see [`run_framed`]), bounded by its alarm.
pub fn release_when_read() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: closing our own standard output and error, which nothing uses after this.
    unsafe {
        libc::close(1);
        libc::close(2);
    }
    let mut byte = [0u8; 64];
    while matches!(std::io::stdin().read(&mut byte), Ok(n) if n > 0) {}
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain system call; the fd it returns is ours alone.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILL through the pidfd: a no-op (ESRCH) once the child is gone, never another process.
fn kill(pidfd: &OwnedFd) {
    // SAFETY: a plain system call on a descriptor we own.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Reaps the child if it has exited and nobody reaped it yet (ECHILD otherwise: fine).
fn reap(pidfd: &OwnedFd) {
    // SAFETY: waitid writes only into the local siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn frames_are_whole_or_refused() {
        let mut framed = 3u64.to_le_bytes().to_vec();
        framed.extend_from_slice(b"abc");
        assert_eq!(unframe(&framed).as_deref(), Some(&b"abc"[..]));
        assert_eq!(unframe(&framed[..10]), None);
        assert_eq!(unframe(b"abc"), None);
        assert_eq!(unframe(b""), None);
    }

    #[test]
    fn a_child_that_writes_a_frame_is_read_and_reaped() {
        let got = run_framed(
            sh(r"printf '\005\000\000\000\000\000\000\000hello'; echo noise >&2"),
            &Budget::new(256, Duration::from_secs(10)),
            1024,
        );
        assert_eq!(got.as_deref(), Ok(&b"hello"[..]));
    }

    #[test]
    fn a_failing_child_says_why() {
        let got = run_framed(
            sh("echo 'no such dump' >&2; exit 3"),
            &Budget::new(256, Duration::from_secs(10)),
            1024,
        );
        assert_eq!(got, Err("the renderer failed: no such dump".into()));
    }

    #[test]
    fn a_stuck_child_is_killed_and_reaped_at_the_deadline() {
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-render.XXXXXX").unwrap();
        let pid_file = dir.join("pid");
        let t0 = Instant::now();
        let got = run_framed(
            sh(&format!("echo $$ > {}; exec sleep 30", pid_file.display())),
            &Budget::new(256, Duration::from_millis(500)),
            1024,
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(got.unwrap_err().contains("longer than 500ms"));
        // Neither running nor a zombie: killed and reaped.
        assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
    }

    #[test]
    fn a_child_writing_too_much_is_killed() {
        let got = run_framed(
            sh("exec cat /dev/zero"),
            &Budget::new(256, Duration::from_secs(10)),
            1 << 20,
        );
        assert!(got.unwrap_err().contains("larger than 1 MiB"));
    }
}
