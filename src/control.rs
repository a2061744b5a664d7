//! The control socket: `run` listens on `<runtime_dir>/jemsafe.sock`; `dump`, `status`
//! and `prof` are its clients.
//!
//! One JSON request line per connection, one JSON reply, then the connection closes.
//! Only root and jemsafe's own uid may use it: the socket is mode 0600, and the server
//! checks the peer's uid (SO_PEERCRED) and answers anyone else with a refusal.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SOCKET_NAME: &str = "jemsafe.sock";

pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Dump,
    Status,
    Prof { op: ProfOp, lg_sample: Option<u32> },
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

/// A reply: `ok`, and either `error` or the command's fields.
pub type Reply = serde_json::Map<String, serde_json::Value>;

pub fn ok_reply() -> Reply {
    let mut r = Reply::new();
    r.insert("ok".into(), true.into());
    r
}

pub fn error_reply(message: impl Into<String>) -> Reply {
    let mut r = Reply::new();
    r.insert("ok".into(), false.into());
    r.insert("error".into(), message.into().into());
    r
}

/// Runs `f` (a bind) under `mask`, so that the socket file is born with its final mode:
/// a chmod by path afterwards could be redirected through a symlink swapped in between.
/// jemsafe is single-threaded here, so the process-wide umask is ours to borrow.
pub fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask cannot fail.
    let old = unsafe { libc::umask(mask) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    result
}

/// The listening socket, removed when dropped.
pub struct Server {
    pub listener: UnixListener,
    path: PathBuf,
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
        Ok(Server { listener, path })
    }

    /// Accepts one waiting client and reads its request. Clients that may not control
    /// jemsafe, or that send nonsense, are answered and dropped here (None).
    pub fn accept(&self) -> Option<(UnixStream, Request)> {
        let (stream, _) = self.listener.accept().ok()?;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let me = nix::unistd::geteuid().as_raw();
        let peer =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map(|c| c.uid())
                .ok();
        if !matches!(peer, Some(uid) if uid == 0 || uid == me) {
            crate::warn!("control socket: refused a client with uid {peer:?}");
            respond(
                stream,
                &error_reply(format!(
                    "refused: uid {} may not control jemsafe (only root and uid {me})",
                    peer.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
                )),
            );
            return None;
        }
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            return None;
        }
        match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => Some((stream, req)),
            Err(e) => {
                respond(stream, &error_reply(format!("bad request: {e}")));
                None
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends `reply` and closes the connection; a client that went away is not an error.
pub fn respond(mut stream: UnixStream, reply: &Reply) {
    if let Ok(mut text) = serde_json::to_string(reply) {
        text.push('\n');
        let _ = stream.write_all(text.as_bytes());
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
    let read = BufReader::new(&stream).read_line(&mut line);
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
        Ok(reply)
    } else {
        Err(Error::Refused(
            reply
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("jemsafe refused the request")
                .to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Request::Dump
        );
    }
}
