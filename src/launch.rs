//! Starting mysqld (and the probe, and `mysqld --version`): environment, preload order,
//! inherited channel, systemd's sockets, inherited descriptors closed, clean signal state.

use crate::locate::{Located, Preload};
use crate::socket_activation::Activation;
use std::ffi::{CString, OsStr, OsString};
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

/// Has the kernel end `cmd`'s child with SIGALRM `seconds` after it starts: alarms
/// survive exec and the programs jemsafe runs this way do not catch SIGALRM, so the bound
/// holds even if jemsafe could not kill the child itself.
pub fn alarm_after(cmd: &mut Command, seconds: u64) {
    let seconds = u32::try_from(seconds).unwrap_or(u32::MAX);
    // SAFETY: alarm(2) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(move || {
            libc::alarm(seconds);
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
        // systemd's sockets are jemsafe's; `spawn` passes them to mysqld alone.
        for var in LISTEN_VARS {
            cmd.env_remove(var);
        }
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

/// Starts mysqld with the shim's end of the channel inherited as `JEMSAFE_SHIM_FD`, and
/// systemd's sockets, when jemsafe was socket-activated.
pub fn spawn(
    launch: &Launch,
    extra_args: &[String],
    shim_end: &OwnedFd,
    notify_socket: Option<&str>,
    activation: Option<&Activation>,
) -> io::Result<u32> {
    let mut cmd = launch.command(&launch.mysqld, &launch.malloc_conf, shim_end, notify_socket);
    cmd.args(&launch.args).args(extra_args).stdin(Stdio::null());
    // Last before spawn: its pre_exec step execs itself, so nothing registered after it
    // would run.
    if let Some(activation) = activation {
        pass_listen_fds(&mut cmd, activation)?;
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// The variables of sd_listen_fds(3).
const LISTEN_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Makes `cmd` (complete: program, arguments, environment) hand systemd's sockets to its
/// child: descriptors 3 … 3+LISTEN_FDS−1 stay open across exec, LISTEN_FDS and
/// LISTEN_FDNAMES are kept, and LISTEN_PID is the child's own pid, which only exists
/// after fork. std builds the environment before fork and offers no hook after it, so
/// the last pre_exec step execs itself, from an image prepared here with a fixed-size
/// slot for the pid: the child writes digits and calls execve, nothing else. It must be
/// the last change made to `cmd`: a pre_exec step added after it never runs.
pub fn pass_listen_fds(cmd: &mut Command, activation: &Activation) -> io::Result<()> {
    let mut env = merged_environment(std::env::vars_os(), cmd.get_envs());
    env.insert("LISTEN_FDS".into(), activation.count.to_string().into());
    match &activation.names {
        Some(names) => env.insert("LISTEN_FDNAMES".into(), names.into()),
        None => env.remove(OsStr::new("LISTEN_FDNAMES")),
    };
    env.remove(OsStr::new("LISTEN_PID"));
    let mut image = ExecImage::new(cmd.get_program(), cmd.get_args(), env)?;
    let fds = activation.fds();
    // SAFETY: the closure runs between fork and exec; it makes system calls on
    // descriptor numbers and writes into memory the image allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds.clone() {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            image.exec_with_listen_pid(libc::getpid())
        });
    }
    Ok(())
}

/// The environment a Command's child gets: `base` (the parent's) with `changes` applied
/// (Some = set, None = removed), as std computes it.
pub fn merged_environment<'a>(
    base: impl Iterator<Item = (OsString, OsString)>,
    changes: impl Iterator<Item = (&'a OsStr, Option<&'a OsStr>)>,
) -> std::collections::BTreeMap<OsString, OsString> {
    let mut env: std::collections::BTreeMap<OsString, OsString> = base.collect();
    for (key, value) in changes {
        match value {
            Some(v) => env.insert(key.to_owned(), v.to_owned()),
            None => env.remove(key),
        };
    }
    env
}

/// `LISTEN_PID=` and room for any pid's digits and the NUL.
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";
const PID_DIGITS: usize = 10;

/// execve's arguments, allocated before fork; only `listen_pid`'s digits change after.
struct ExecImage {
    program: CString,
    _strings: Vec<CString>,
    listen_pid: Box<[u8]>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into strings the image owns (heap memory that does not
// move with the image); it is used only by the forked child, in one thread.
unsafe impl Send for ExecImage {}
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn new<'a>(
        program: &OsStr,
        args: impl Iterator<Item = &'a OsStr>,
        env: std::collections::BTreeMap<OsString, OsString>,
    ) -> io::Result<ExecImage> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a NUL byte in mysqld's command line or environment",
                )
            })
        };
        if !program.as_bytes().contains(&b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{program:?} is not a path: execve needs one"),
            ));
        }
        let program = c(program.as_bytes())?;
        let mut arg_strings = vec![program.clone()];
        for arg in args {
            arg_strings.push(c(arg.as_bytes())?);
        }
        let mut env_strings = Vec::new();
        for (k, v) in &env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env_strings.push(c(&kv)?);
        }
        let mut listen_pid = vec![0u8; LISTEN_PID_PREFIX.len() + PID_DIGITS + 1];
        listen_pid[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
        let mut listen_pid = listen_pid.into_boxed_slice();
        let nul_terminated = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect::<Vec<_>>()
        };
        let argv = nul_terminated(&arg_strings);
        let mut envp = nul_terminated(&env_strings);
        envp.insert(envp.len() - 1, listen_pid.as_mut_ptr().cast_const().cast());
        arg_strings.extend(env_strings);
        Ok(ExecImage {
            program,
            _strings: arg_strings,
            listen_pid,
            argv,
            envp,
        })
    }

    /// Writes `pid` into the LISTEN_PID slot and execs; returns only on failure.
    /// Async-signal-safe: no allocation, no lock.
    fn exec_with_listen_pid(&mut self, pid: libc::pid_t) -> io::Result<()> {
        write_decimal(&mut self.listen_pid[LISTEN_PID_PREFIX.len()..], pid as u32);
        // SAFETY: program, argv and envp are NUL-terminated and owned by self.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

/// Writes `n` in decimal followed by a NUL into `out` (PID_DIGITS + 1 bytes), in place.
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; PID_DIGITS];
    let mut len = 0;
    loop {
        digits[PID_DIGITS - 1 - len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == PID_DIGITS {
            break;
        }
    }
    out[..len].copy_from_slice(&digits[PID_DIGITS - len..]);
    out[len] = 0;
}

/// `mysqld --version`, first line, or None if it does not answer within 10 s.
pub fn mysqld_version(mysqld: &Path) -> Option<String> {
    let text = mysqld_output(mysqld, &["--version".to_owned()], 512)?;
    text.lines().next().map(|l| l.trim().to_owned())
}

/// What `mysqld <args>` writes to stdout (an informational run: `--version`,
/// `--verbose --help`), at most `max` bytes and within 10 s; None when it cannot be
/// started. Its stderr and stdin are closed, it inherits no descriptor, and it is not
/// told about systemd's notify socket (MariaDB says "server is down" on exit, even
/// after `--version`).
pub fn mysqld_output(mysqld: &Path, args: &[String], max: usize) -> Option<String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut cmd = std::process::Command::new(mysqld);
    cmd.args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    close_inherited_fds(&mut cmd);
    let mut child = cmd.spawn().ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 16384];
        while text.len() < max {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero()
                || !crate::shim_link::wait_readable(out.as_fd(), left).unwrap_or(false)
            {
                break;
            }
            let want = buf.len().min(max - text.len());
            match out.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Some(String::from_utf8_lossy(&text).into_owned())
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
    fn decimal_in_place() {
        let mut buf = [b'x'; PID_DIGITS + 1];
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
        write_decimal(&mut buf, 4_294_967_295);
        assert_eq!(&buf, b"4294967295\0");
        write_decimal(&mut buf, 31337);
        assert_eq!(&buf[..6], b"31337\0");
    }

    #[test]
    fn the_childs_environment_is_the_parents_with_the_commands_changes() {
        let env = merged_environment(
            [("A", "1"), ("B", "2")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into())),
            [
                (OsStr::new("B"), None),
                (OsStr::new("C"), Some(OsStr::new("3"))),
            ]
            .into_iter(),
        );
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            [("A".into(), "1".into()), ("C".into(), "3".into())]
        );
    }

    #[test]
    fn the_child_gets_the_sockets_and_its_own_listen_pid() {
        // A socket at fd 3..: whatever is there in this test process is re-pointed to a
        // fresh socket for the child only (dup2 in the child), like systemd's.
        let (mine, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let raw = mine.as_raw_fd();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("echo \"$LISTEN_PID $$ $LISTEN_FDS $LISTEN_FDNAMES\"; test -S /proc/self/fd/3 && echo open")
            .env("LISTEN_PID", "1")
            .stdout(Stdio::piped());
        // SAFETY: dup2 between fork and exec, then the descriptor is left inheritable
        // for the step under test to find.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 3) == -1 {
                    return Err(io::Error::last_os_error());
                }
                libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC);
                Ok(())
            });
        }
        let activation = Activation {
            count: 1,
            names: Some("mysqld".into()),
        };
        pass_listen_fds(&mut cmd, &activation).unwrap();
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let fields: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(
            fields[0], fields[1],
            "LISTEN_PID is the child's pid: {text}"
        );
        assert_eq!(&fields[2..], ["1", "mysqld"], "{text}");
        assert_eq!(lines.next(), Some("open"), "fd 3 is inherited: {text}");
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
