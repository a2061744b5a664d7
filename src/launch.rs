//! Starting mysqld (and the probe, and `mysqld --version`): environment, preload order,
//! inherited channel, inherited descriptors closed, clean signal state.

use crate::locate::{Located, Preload};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Everything needed to start mysqld, decided before the first start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub mysqld: std::path::PathBuf,
    pub args: Vec<String>,
    /// `[mysqld] env` from the config.
    pub env: Vec<(String, String)>,
    pub preload: Preload,
    pub malloc_conf: String,
}

impl Launch {
    pub fn new(
        located: &Located,
        args: Vec<String>,
        env: Vec<(String, String)>,
        malloc_conf: String,
    ) -> Launch {
        Launch {
            mysqld: located.mysqld.clone(),
            args,
            env,
            preload: located.preload.clone(),
            malloc_conf,
        }
    }
}

/// jemsafe's objects (libjemalloc first: it must win malloc; then the shim), then whatever
/// was already in LD_PRELOAD (jemsafe's own environment, then `[mysqld] env`).
pub fn preload_value(ours: &[&Path], existing: &[&OsStr]) -> OsString {
    let mut out = OsString::new();
    for (i, object) in ours.iter().enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(object.as_os_str());
    }
    for value in existing {
        for entry in value
            .as_bytes()
            .split(|b| *b == b':' || *b == b' ')
            .filter(|e| !e.is_empty())
        {
            let entry = OsStr::from_bytes(entry);
            if !ours.iter().any(|o| o.as_os_str() == entry) {
                out.push(":");
                out.push(entry);
            }
        }
    }
    out
}

/// Makes `cmd`'s child inherit `fd` (the shim's end of the channel) and name it in
/// `JEMSAFE_SHIM_FD`; every other descriptor above stderr, including any jemsafe itself
/// inherited without close-on-exec, is closed at exec.
pub fn pass_shim_end(cmd: &mut Command, fd: std::os::fd::RawFd) {
    cmd.env(jemsafe_proto::ENV_SHIM_FD, fd.to_string());
    // SAFETY: only system calls between fork and exec, on descriptor numbers.
    unsafe {
        cmd.pre_exec(move || {
            cloexec_above_stderr()?;
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s child inherit nothing but its stdin, stdout and stderr.
pub fn close_inherited_fds(cmd: &mut Command) {
    // SAFETY: only system calls between fork and exec.
    unsafe {
        cmd.pre_exec(cloexec_above_stderr);
    }
}

/// Marks every descriptor from 3 up close-on-exec. Runs between fork and exec, so it only
/// makes system calls (async-signal-safe): close_range(2) with CLOSE_RANGE_CLOEXEC (Linux
/// 5.11), else fcntl on every number below RLIMIT_NOFILE. Marking instead of closing keeps
/// std's own exec-error pipe working until exec.
fn cloexec_above_stderr() -> io::Result<()> {
    // SAFETY: plain system calls with no pointers but to a local rlimit.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
            return Err(err);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur != libc::RLIM_INFINITY
        {
            limit.rlim_cur.min(libc::c_int::MAX as libc::rlim_t) as libc::c_int
        } else {
            1 << 20
        };
        cloexec_each(3, max);
    }
    Ok(())
}

/// close_range's fallback: marks each open descriptor in `from..to` close-on-exec.
fn cloexec_each(from: libc::c_int, to: libc::c_int) {
    for fd in from..to {
        // SAFETY: fcntl on a descriptor number; a closed one just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags != -1 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

impl Launch {
    /// The process mysqld runs as: `[mysqld] env`, LD_PRELOAD (libjemalloc, the shim, or
    /// the bundled library alone; then what jemsafe's environment and `[mysqld] env`
    /// already preload), MALLOC_CONF (`_RJEM_MALLOC_CONF` for the bundled library; an
    /// inherited value of either is removed),
    /// MYSQLD_PARENT_PID, the shim's end of the channel and no other inherited
    /// descriptor, default signal dispositions, an empty mask and a process group of its
    /// own. The probe is this same process with jemsafe in mysqld's place (`program`) and
    /// its own `malloc_conf`, so `check` proves exactly the environment `run` launches.
    /// `notify_socket`: mysqld's NOTIFY_SOCKET (jemsafe's relay); None removes it, so that
    /// mysqld never talks to systemd behind jemsafe's back.
    pub fn command(
        &self,
        program: &Path,
        malloc_conf: &str,
        shim_end: &OwnedFd,
        notify_socket: Option<&str>,
    ) -> Command {
        let inherited = std::env::var_os("LD_PRELOAD");
        let configured: Option<OsString> = self
            .env
            .iter()
            .find(|(k, _)| k == "LD_PRELOAD")
            .map(|(_, v)| v.into());
        let existing: Vec<&OsStr> = inherited
            .iter()
            .chain(configured.iter())
            .map(|v| v.as_os_str())
            .collect();

        let mut cmd = Command::new(program);
        cmd.env_remove("MALLOC_CONF")
            .env_remove(crate::locate::BUNDLED_CONF_VAR)
            .env_remove("NOTIFY_SOCKET");
        if let Some(socket) = notify_socket {
            cmd.env("NOTIFY_SOCKET", socket);
        }
        for (k, v) in &self.env {
            if k != "LD_PRELOAD" {
                cmd.env(k, v);
            }
        }
        cmd.env(
            "LD_PRELOAD",
            preload_value(&self.preload.objects(), &existing),
        )
        .env(self.preload.conf_var(), malloc_conf)
        .env("MYSQLD_PARENT_PID", std::process::id().to_string());
        pass_shim_end(&mut cmd, shim_end.as_raw_fd());
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls on memory it owns.
        unsafe {
            cmd.pre_exec(move || {
                // Default dispositions (an ignored signal would stay ignored across exec)
                // and an empty mask: mysqld expects to set up its signals from a clean state.
                for sig in 1..libc::SIGRTMAX() {
                    if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                        libc::signal(sig, libc::SIG_DFL);
                    }
                }
                let mut empty = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut empty);
                libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // A process group of its own: a terminal's ^C reaches jemsafe only, which
                // decides what mysqld gets (mysqld_safe does the same by backgrounding it).
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        cmd
    }
}

/// Starts mysqld with the shim's end of the channel inherited as `JEMSAFE_SHIM_FD`.
pub fn spawn(
    launch: &Launch,
    extra_args: &[String],
    shim_end: &OwnedFd,
    notify_socket: Option<&str>,
) -> io::Result<u32> {
    let mut cmd = launch.command(&launch.mysqld, &launch.malloc_conf, shim_end, notify_socket);
    cmd.args(&launch.args).args(extra_args).stdin(Stdio::null());
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// `mysqld --version`, first line, or None if it does not answer within 10 s.
pub fn mysqld_version(mysqld: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut cmd = std::process::Command::new(mysqld);
    cmd.arg("--version")
        // MariaDB tells systemd "server is down" on exit, even after --version.
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    close_inherited_fds(&mut cmd);
    let mut child = cmd.spawn().ok()?;
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        if crate::shim_link::wait_readable(out.as_fd(), std::time::Duration::from_secs(10))
            .unwrap_or(false)
        {
            let mut buf = [0u8; 512];
            let n = out.read(&mut buf).unwrap_or(0);
            text = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text.lines().next().map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_then_shim_then_existing_without_duplicates() {
        let v = preload_value(
            &[
                Path::new("/lib/libjemalloc.so.2"),
                Path::new("/lib/shim.so"),
            ],
            &[
                OsStr::new("/opt/a.so /lib/libjemalloc.so.2"),
                OsStr::new("/opt/b.so:"),
            ],
        );
        assert_eq!(v, "/lib/libjemalloc.so.2:/lib/shim.so:/opt/a.so:/opt/b.so");
        let bundled = preload_value(
            &[Path::new("/usr/lib/jemsafe/libjemsafe_jemalloc.so")],
            &[OsStr::new(
                "/usr/lib/jemsafe/libjemsafe_jemalloc.so:/opt/a.so",
            )],
        );
        assert_eq!(bundled, "/usr/lib/jemsafe/libjemsafe_jemalloc.so:/opt/a.so");
    }

    #[test]
    fn the_fallback_marks_inherited_descriptors_close_on_exec() {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();
        let cloexec = || unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC;
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        assert_eq!(cloexec(), 0);
        cloexec_each(fd, fd + 1);
        assert_eq!(cloexec(), libc::FD_CLOEXEC);
    }
}
