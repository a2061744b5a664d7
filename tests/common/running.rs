//! A running `jemsafe` with its output lines, and what /proc says about its mysqld.

use super::{jemsafe_bin, shim};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Lines from a child's pipe, delivered through a channel so waits can be bounded.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(pipe: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line containing {needle:?} within {timeout:?}; got:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "stream ended without a line containing {needle:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until `n` lines containing `needle` have been seen; returns the n-th.
    pub fn wait_for_nth(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<&String> = self.seen.iter().filter(|l| l.contains(needle)).collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "fewer than {n} lines containing {needle:?} within {timeout:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything until the stream closes (bounded).
    pub fn drain(&mut self, timeout: Duration) -> &[String] {
        let deadline = Instant::now() + timeout;
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        &self.seen
    }
}

/// A running `jemsafe` with its stdout and stderr lines; killed with its mysqld on drop.
pub struct Running {
    pid: i32,
    exited: Receiver<std::process::ExitStatus>,
    exit_code: Option<i32>,
    pub out: Lines,
    pub err: Lines,
    pub mysqld_pid: Option<i32>,
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        Running::start_with(args, |_| {})
    }

    /// `jemsafe --log-level debug run -c config`.
    pub fn run_debug(config: &std::path::Path) -> Running {
        let config = config.to_str().expect("a UTF-8 config path");
        Running::start(&["--log-level", "debug", "run", "-c", config])
    }

    pub fn start_with(args: &[&str], tweak: impl FnOnce(&mut Command)) -> Running {
        let mut cmd = Command::new(jemsafe_bin());
        cmd.args(args);
        Running::start_command(cmd, tweak)
    }

    /// Starts `cmd` (jemsafe, or something that runs it) with piped output.
    pub fn start_command(mut cmd: Command, tweak: impl FnOnce(&mut Command)) -> Running {
        // jemsafe finds the shim next to itself; `cargo test` does not build it.
        shim();
        cmd.env_remove("MALLOC_CONF")
            .env_remove("LD_PRELOAD")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tweak(&mut cmd);
        // Own process group, so that cleanup can signal jemsafe without touching the harness.
        cmd.process_group(0);
        let mut child = cmd.spawn().expect("start jemsafe");
        let out = Lines::new(child.stdout.take().expect("stdout"));
        let err = Lines::new(child.stderr.take().expect("stderr"));
        let pid = child.id() as i32;
        // A waiter thread turns the exit into an event that can be awaited with a bound.
        let (tx, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        });
        Running {
            pid,
            exited,
            exit_code: None,
            out,
            err,
            mysqld_pid: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the `n`-th "started mysqld pid N" line; returns N and keeps it for
    /// cleanup.
    pub fn wait_started(&mut self, n: usize, timeout: Duration) -> i32 {
        let line = self.err.wait_for_nth("started mysqld pid ", n, timeout);
        let pid = line
            .split("started mysqld pid ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .expect("pid in the start line");
        self.mysqld_pid = Some(pid);
        pid
    }

    /// Waits for the first start and then the verification line; returns mysqld's pid.
    pub fn wait_verified(&mut self, timeout: Duration) -> i32 {
        let pid = self.wait_started(1, timeout);
        self.err.wait_for("verif", timeout);
        pid
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig).expect("signal jemsafe");
    }

    /// Waits (bounded) for jemsafe to exit; returns its exit code (128+N for signal N).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        if let Some(code) = self.exit_code {
            return code;
        }
        let status = match self.exited.recv_timeout(timeout) {
            Ok(status) => status,
            Err(_) => panic!(
                "jemsafe did not exit within {timeout:?}; log:\n{}",
                self.err.drain(Duration::from_millis(200)).join("\n")
            ),
        };
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        self.exit_code = Some(code);
        self.err.drain(Duration::from_millis(500));
        code
    }
}

impl Drop for Running {
    /// A test that failed half-way still leaves nothing behind: jemsafe is asked to stop
    /// (it stops its mysqld), and killed if it does not within 20 s.
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if self.exit_code.is_none() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            if self.exited.recv_timeout(Duration::from_secs(20)).is_err() {
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            }
        }
        if let Some(pid) = self.mysqld_pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `KEY=value` entries of /proc/<pid>/environ.
pub fn environ(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn env_value(pid: i32, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    environ(pid)
        .into_iter()
        .find_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
}

/// The file name in a "heap dump written: PATH (" log line.
pub fn dump_path(line: &str) -> PathBuf {
    let rest = line.split("heap dump written: ").nth(1).expect("dump line");
    PathBuf::from(rest.split(" (").next().expect("path"))
}
