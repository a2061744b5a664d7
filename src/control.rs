//! The control socket: `run` listens on `<runtime_dir>/jemsafe.sock`; `dump`, `status`,
//! `memory`, `prof` and the HTTP server's threads are its clients.
//!
//! One JSON request line per connection, one JSON reply, then the connection closes.
//! Only root and jemsafe's own uid may use it: the socket is mode 0600, and the server
//! checks the peer's uid (SO_PEERCRED) and answers anyone else with a refusal.

use crate::config::profile::LgSample;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SOCKET_NAME: &str = "jemsafe.sock";

pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Dump {
        /// Who asks: the command line (the default) or the HTTP server.
        #[serde(default)]
        via: DumpVia,
    },
    Status,
    /// mysqld's RSS broken down, now.
    Memory,
    Prof {
        op: ProfOp,
        lg_sample: Option<u32>,
    },
}

/// Who asks for a dump; part of the file name as its trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpVia {
    #[default]
    Cli,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProfOp {
    /// prof.active = true
    On,
    /// prof.active = false
    Off,
    /// prof.reset: forget the samples so far (optionally with a new lg_prof_sample)
    Reset,
}

/// `status`'s answer: the server fills it, `jemsafe status` prints it, and `--json`
/// shows it as it travels (with `"ok": true`). Field names are stable for monitoring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub jemsafe_pid: u32,
    pub profile: String,
    pub malloc_conf: String,
    pub mysqld_pid: Option<i32>,
    pub mysqld_uptime_s: Option<u64>,
    pub restarts: u64,
    /// mysqld's last exit status (128+N for signal N), None before the first exit.
    pub last_exit_status: Option<i32>,
    /// Why the jemalloc figures are missing although mysqld runs (it did not answer).
    pub mysqld_not_answering: Option<String>,
    pub last_exit: Option<String>,
    pub verification: Option<Verification>,
    pub jemalloc: JemallocStatus,
    pub stats: JemallocStats,
    pub dumps: DumpsStatus,
    pub last_dump: Option<LastDump>,
    /// mysqld's RSS broken down (`jemsafe memory`); None when the shim did not answer.
    pub memory: Option<jemsafe_report::memory::Breakdown>,
    /// Whether mysqld's last exit was a kill by the kernel's OOM killer.
    #[serde(default)]
    pub last_exit_oom_killed: bool,
    /// The memory limit that applies to mysqld, and where it comes from.
    #[serde(default)]
    pub memory_limit: Option<MemoryLimit>,
    /// mysqld's RSS at the last memory check (/proc/PID/statm), in bytes.
    #[serde(default)]
    pub rss_at_last_check: Option<u64>,
    /// The PSI file `[triggers] pressure` reads, in words (None without a pressure rule).
    #[serde(default)]
    pub pressure_source: Option<String>,
}

/// The memory limit that applies to mysqld (a cgroup's, else the machine's memory).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryLimit {
    pub bytes: u64,
    /// Where it is set: `memory.max of /sys/fs/cgroup/system.slice/mariadb.service (cgroup v2)`.
    pub source: String,
    /// "cgroup v2", "cgroup v1" or "MemTotal".
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub message: String,
}

/// What the shim's `hello` said; all None when it did not answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JemallocStatus {
    pub version: Option<String>,
    pub opt_prof: Option<bool>,
    pub prof_active: Option<bool>,
    pub lg_prof_sample: Option<u32>,
    pub prof_prefix: Option<String>,
    /// What this jemalloc can do (`check`'s table).
    #[serde(default)]
    pub capabilities: Option<crate::capabilities::Table>,
}

/// jemalloc's `stats.*` in bytes; all None when the shim did not answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JemallocStats {
    pub allocated: Option<u64>,
    pub active: Option<u64>,
    pub resident: Option<u64>,
    pub mapped: Option<u64>,
    pub retained: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpsStatus {
    pub dir: String,
    pub files: usize,
    pub bytes: u64,
    pub free_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastDump {
    pub path: String,
    /// RFC 3339, UTC.
    pub time: String,
}

impl Status {
    /// As a reply on the socket.
    pub fn reply(&self) -> Reply {
        body_reply(self)
    }

    /// From a reply on the socket.
    pub fn from_reply(reply: Reply) -> Result<Status> {
        from_reply(reply, "status")
    }
}

/// The answer to `dump`: the file, its size, and the round trip to the shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dumped {
    pub path: String,
    pub bytes: u64,
    pub round_trip_ms: f64,
}

/// The answer to `prof on|off|toggle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfChanged {
    pub prof_active: bool,
    pub was_active: bool,
}

/// The answer to `prof reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfReset {
    pub lg_prof_sample: u32,
}

/// `body`'s fields with `ok: true`: the one way a typed answer goes on the socket.
pub fn body_reply<T: Serialize>(body: &T) -> Reply {
    match serde_json::to_value(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("ok".into(), true.into());
            map
        }
        _ => error_reply("cannot encode the answer"),
    }
}

/// A typed answer read back from a reply (`what` names it in the error).
pub fn from_reply<T: serde::de::DeserializeOwned>(reply: Reply, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(reply))
        .map_err(|e| Error::Refused(format!("unreadable {what} answer from jemsafe: {e}")))
}

/// A reply: `ok`, and either `error` or the command's fields.
pub type Reply = serde_json::Map<String, serde_json::Value>;

pub fn error_reply(message: impl Into<String>) -> Reply {
    let mut r = Reply::new();
    r.insert("ok".into(), false.into());
    r.insert("error".into(), message.into().into());
    r
}

/// A request that is not done yet, for now (a change delivered to a stopped mysqld and
/// not confirmed, a dump while mysqld is still starting): the client exits with
/// EX_TEMPFAIL (75), not as for a refusal.
pub fn temporary_reply(message: impl Into<String>) -> Reply {
    let mut r = error_reply(message);
    r.insert("temporary".into(), true.into());
    r
}

/// Runs `f` (a bind) under `mask`, so that the socket file is born with its final mode:
/// a chmod by path afterwards could be redirected through a symlink swapped in between.
/// The umask is process-wide and other threads may run meanwhile (the HTTP server's is
/// started before notify.sock is bound): whatever they or the children they fork create
/// in that moment gets a narrower mode, never a wider one.
pub fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask cannot fail.
    let old = unsafe { libc::umask(mask) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    result
}

/// How long a client has to send its whole request line, from its connection.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The longest request line accepted; real ones are under 100 bytes.
pub const MAX_REQUEST: usize = 4096;
/// Clients still sending their request at once; more are answered "busy" and closed.
pub const MAX_READING: usize = 32;
/// After an accept error such as EMFILE the listener is left alone this long, so a
/// condition that persists cannot make the poll loop spin.
pub const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

impl Request {
    /// Requests the server refuses whatever their JSON form allows.
    pub fn check(&self) -> std::result::Result<(), String> {
        if let Request::Prof {
            op,
            lg_sample: Some(lg),
        } = self
        {
            LgSample::new(i64::from(*lg)).map_err(|e| e.to_string())?;
            if *op != ProfOp::Reset {
                return Err(
                    "lg_sample goes with op = reset (the sample rate changes only on a reset)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// A client whose request line has not arrived yet.
struct Reading {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// The listening socket and the clients it is reading from, all non-blocking: the
/// supervisor's poll loop asks for their descriptors, and a slow, silent or hostile
/// client costs it nothing but a slot until its deadline.
pub struct Server {
    pub listener: UnixListener,
    path: PathBuf,
    reading: Vec<Reading>,
    paused_until: Option<Instant>,
}

impl Server {
    /// Binds the socket. The caller holds the pid-file lock, so an existing socket file is
    /// a leftover of a dead jemsafe (never a symlink: that is refused).
    pub fn bind(runtime_dir: &Path) -> Result<Server> {
        let path = socket_path(runtime_dir);
        if let Ok(meta) = path.symlink_metadata() {
            if meta.file_type().is_symlink() {
                return Err(Error::Refused(format!(
                    "{} is a symbolic link: remove it (jemsafe will not follow it)",
                    path.display()
                )));
            }
            std::fs::remove_file(&path)
                .map_err(Error::io(format!("cannot remove stale {}", path.display())))?;
        }
        let listener = with_umask(0o177, || UnixListener::bind(&path))
            .map_err(Error::io(format!("cannot listen on {}", path.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("cannot make the control socket non-blocking"))?;
        Ok(Server {
            listener,
            path,
            reading: Vec::new(),
            paused_until: None,
        })
    }

    /// The descriptors to poll for reading: the listener (unless paused), then each
    /// client still sending, in the order [`Server::read_ready`] expects.
    pub fn poll_fds(&self) -> (Option<BorrowedFd<'_>>, Vec<BorrowedFd<'_>>) {
        (
            self.paused_until.is_none().then(|| self.listener.as_fd()),
            self.reading.iter().map(|r| r.stream.as_fd()).collect(),
        )
    }

    /// The next moment something is due: a client's deadline, or the end of a pause.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.reading
            .iter()
            .map(|r| r.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// Accepts every waiting client. Clients that may not control jemsafe are answered
    /// and dropped here.
    pub fn accept_ready(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    crate::warn!(
                        "control socket: cannot accept a client ({e}); not accepting for {} s",
                        ACCEPT_PAUSE.as_secs()
                    );
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if let Err(why) = peer_allowed(&stream) {
                crate::warn!("control socket: {why}");
                respond(stream, &error_reply(why));
                continue;
            }
            if self.reading.len() >= MAX_READING {
                respond(
                    stream,
                    &error_reply(format!(
                        "busy: {MAX_READING} clients are already sending requests; try again"
                    )),
                );
                continue;
            }
            self.reading.push(Reading {
                stream,
                buf: Vec::new(),
                deadline: now + REQUEST_DEADLINE,
            });
        }
    }

    /// Reads from the clients whose descriptors polled readable (indices into the list
    /// [`Server::poll_fds`] returned); returns the complete requests. Malformed ones are
    /// answered with the reason and closed.
    pub fn read_ready(&mut self, ready: &[usize]) -> Vec<(UnixStream, Request)> {
        let mut done = Vec::new();
        for &i in ready {
            let Some(client) = self.reading.get_mut(i) else {
                continue;
            };
            match read_some(client) {
                Progress::More => {}
                Progress::Line(line) => done.push((i, Some(line))),
                Progress::Closed => done.push((i, None)),
                Progress::TooLong => {
                    done.push((i, None));
                    respond_to(
                        &client.stream,
                        &error_reply(format!(
                            "request longer than {MAX_REQUEST} bytes without a newline: refused"
                        )),
                    );
                }
            }
        }
        // Highest index first, so that removing one does not move the others.
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        let mut out = Vec::new();
        for (i, line) in done {
            let client = self.reading.swap_remove(i);
            let Some(line) = line else { continue };
            match parse_request(&line) {
                Ok(request) => out.push((client.stream, request)),
                Err(why) => respond(client.stream, &error_reply(why)),
            }
        }
        out
    }

    /// Answers and drops clients past their deadline; ends an accept pause that is over.
    pub fn expire(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
        }
        let (late, keep): (Vec<Reading>, Vec<Reading>) =
            self.reading.drain(..).partition(|r| now >= r.deadline);
        self.reading = keep;
        for client in late {
            crate::debug!("control socket: a client sent no complete request in time");
            respond(
                client.stream,
                &error_reply(format!(
                    "no complete request line within {} s: closed",
                    REQUEST_DEADLINE.as_secs()
                )),
            );
        }
    }
}

/// Only root and jemsafe's own uid may control it.
fn peer_allowed(stream: &UnixStream) -> std::result::Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    let peer = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.uid())
        .ok();
    match peer {
        Some(uid) if uid == 0 || uid == me => Ok(()),
        _ => Err(format!(
            "refused: uid {} may not control jemsafe (only root and uid {me})",
            peer.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
        )),
    }
}

enum Progress {
    More,
    Line(Vec<u8>),
    Closed,
    TooLong,
}

/// Reads what is there without blocking: a whole line, not yet, or the end.
fn read_some(client: &mut Reading) -> Progress {
    let mut chunk = [0u8; 1024];
    loop {
        match (&client.stream).read(&mut chunk) {
            Ok(0) if client.buf.is_empty() => return Progress::Closed,
            // The end without a newline: what came is the request.
            Ok(0) => return Progress::Line(std::mem::take(&mut client.buf)),
            Ok(n) => {
                client.buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = client.buf.iter().position(|b| *b == b'\n') {
                    client.buf.truncate(at);
                    return Progress::Line(std::mem::take(&mut client.buf));
                }
                if client.buf.len() > MAX_REQUEST {
                    return Progress::TooLong;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Progress::More,
            Err(_) => return Progress::Closed,
        }
    }
}

/// A request line as a request, or what is wrong with it.
fn parse_request(line: &[u8]) -> std::result::Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("bad request: not UTF-8 ({e})"))?;
    let request: Request =
        serde_json::from_str(text.trim()).map_err(|e| format!("bad request: {e}"))?;
    request.check().map_err(|e| format!("bad request: {e}"))?;
    Ok(request)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends `reply` and closes the connection; a client that went away is not an error.
pub fn respond(stream: UnixStream, reply: &Reply) {
    respond_to(&stream, reply);
}

/// Sends `reply` without blocking: replies are small, so a socket whose buffer cannot
/// take one belongs to a client that stopped reading, and it is dropped.
fn respond_to(stream: &UnixStream, reply: &Reply) {
    if let Ok(mut text) = serde_json::to_string(reply) {
        text.push('\n');
        let _ = stream.set_nonblocking(true);
        let _ = (&*stream).write_all(text.as_bytes());
    }
}

/// Client side: sends `req` to the jemsafe whose runtime_dir is given and waits for
/// the reply (a dump of a large heap may take a while).
pub fn call(runtime_dir: &Path, req: &Request, timeout: Duration) -> Result<Reply> {
    let path = socket_path(runtime_dir);
    let stream = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => Error::Refused(format!(
            "no jemsafe is running with runtime_dir {} (nothing listens on {}); start one with `jemsafe run`",
            runtime_dir.display(),
            path.display()
        )),
        std::io::ErrorKind::PermissionDenied => Error::Refused(format!(
            "permission denied on {}: only root and the user jemsafe runs as may control it",
            path.display()
        )),
        _ => Error::io(format!("cannot connect to {}", path.display()))(e),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(Error::io("cannot set a timeout"))?;
    let mut text = serde_json::to_string(req).map_err(|e| Error::Refused(e.to_string()))?;
    text.push('\n');
    // A refusal may already be waiting (the server answers before reading), so a failed
    // write is only reported if there is no answer to read either.
    let written = (&stream).write_all(text.as_bytes());
    let mut line = String::new();
    // A bound, not a size: replies are a few KiB.
    let read = BufReader::new((&stream).take(1 << 20)).read_line(&mut line);
    if line.trim().is_empty() {
        let e = written.err().or(read.err()).unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
        });
        return Err(Error::io(format!(
            "no answer from jemsafe on {}",
            path.display()
        ))(e));
    }
    let reply: Reply = serde_json::from_str(line.trim()).map_err(|e| {
        Error::Refused(format!(
            "unreadable answer from jemsafe on {}: {e}",
            path.display()
        ))
    })?;
    if reply.get("ok") == Some(&serde_json::Value::Bool(true)) {
        return Ok(reply);
    }
    let message = reply
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or("jemsafe refused the request")
        .to_owned();
    if reply.get("temporary") == Some(&serde_json::Value::Bool(true)) {
        Err(Error::Temporary(message))
    } else {
        Err(Error::Refused(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_answers_round_trip_with_their_wire_names() {
        let d = Dumped {
            path: "/d/m.1.heap".into(),
            bytes: 42,
            round_trip_ms: 1.5,
        };
        let reply = body_reply(&d);
        assert_eq!(reply["ok"], true);
        assert_eq!(reply["path"], "/d/m.1.heap");
        assert_eq!(from_reply::<Dumped>(reply, "dump").unwrap(), d);
        let e = from_reply::<ProfChanged>(error_reply("no"), "prof").unwrap_err();
        assert!(e.to_string().contains("unreadable prof answer"), "{e}");
    }

    #[test]
    fn status_round_trips_with_its_field_names() {
        let status = Status {
            jemsafe_pid: 1,
            mysqld_pid: Some(2),
            stats: JemallocStats {
                allocated: Some(3),
                ..Default::default()
            },
            ..Default::default()
        };
        let reply = status.reply();
        assert_eq!(reply.get("ok"), Some(&serde_json::Value::Bool(true)));
        assert_eq!(reply["stats"]["allocated"], 3);
        assert!(reply.contains_key("mysqld_not_answering"));
        assert_eq!(Status::from_reply(reply).unwrap(), status);
    }

    #[test]
    fn bad_requests_are_named() {
        assert!(parse_request(b"\xff\n").unwrap_err().contains("not UTF-8"));
        let e = parse_request(br#"{"cmd":"prof","op":"reset","lg_sample":64}"#).unwrap_err();
        assert!(e.contains("allowed 0..=63"), "{e}");
        let e = parse_request(br#"{"cmd":"prof","op":"on","lg_sample":3}"#).unwrap_err();
        assert!(e.contains("goes with op = reset"), "{e}");
        assert_eq!(parse_request(br#"{"cmd":"status"}"#), Ok(Request::Status));
    }

    #[test]
    fn requests_have_a_stable_json_form() {
        let r = Request::Prof {
            op: ProfOp::Reset,
            lg_sample: Some(17),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cmd":"prof","op":"reset","lg_sample":17}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"dump"}"#).unwrap(),
            Request::Dump { via: DumpVia::Cli }
        );
    }
}
