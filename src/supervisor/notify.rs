//! The sd_notify relay: systemd hears from jemsafe, jemsafe hears from mysqld.
//!
//! Under `Type=notify` with the default `NotifyAccess=main`, systemd drops messages from
//! any pid but the main one, so mysqld's own READY=1 would be lost and the start would
//! time out. When NOTIFY_SOCKET is set, mysqld gets a private socket of jemsafe's instead
//! (accepting only mysqld's pid, via SO_PASSCRED); jemsafe relays READY, STATUS,
//! STOPPING and EXTEND_TIMEOUT_USEC from its own pid, and sends READY=1 only once mysqld
//! said it and verification is over. Without NOTIFY_SOCKET none of this exists.

use crate::debug;
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, UnixCredentials};
use sd_notify::NotifyState;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Datagrams handled per wake-up of the poll loop.
pub const MAX_PER_WAKEUP: usize = 64;

pub struct Relay {
    sock: UnixDatagram,
    path: PathBuf,
    /// What mysqld gets as NOTIFY_SOCKET.
    pub child_value: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One message from mysqld, as the relay understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ready,
    Status(String),
    Stopping,
    ExtendTimeoutUsec(u32),
}

/// Parses a datagram (newline-separated `KEY=VALUE`); keys the relay does not pass on
/// (MAINPID, WATCHDOG...) are dropped.
pub fn parse(datagram: &str) -> Vec<Message> {
    datagram
        .lines()
        .filter_map(|line| match line.split_once('=')? {
            ("READY", "1") => Some(Message::Ready),
            ("STATUS", s) => Some(Message::Status(s.to_owned())),
            ("STOPPING", "1") => Some(Message::Stopping),
            ("EXTEND_TIMEOUT_USEC", n) => n.parse().ok().map(Message::ExtendTimeoutUsec),
            _ => None,
        })
        .collect()
}

impl Relay {
    /// A relay when jemsafe itself runs under a service manager (NOTIFY_SOCKET set).
    /// The socket is `<runtime_dir>/notify.sock`, mode 0600 and owned by mysqld's user
    /// (`owner`, when jemsafe is root and mysqld drops to a `--user`), so that mysqld can
    /// reach it after dropping privileges and no one else can; only mysqld's pid is
    /// listened to (SO_PASSCRED). The caller holds the pid-file lock, so an existing file
    /// is a dead jemsafe's; runtime_dir passed the trust checks, so its names are root's.
    pub fn new(runtime_dir: &Path, owner: Option<(u32, u32)>) -> io::Result<Option<Relay>> {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Ok(None);
        }
        let path = runtime_dir.join("notify.sock");
        if path
            .symlink_metadata()
            .is_ok_and(|m| !m.file_type().is_symlink())
        {
            std::fs::remove_file(&path)?;
        }
        let sock = crate::control::with_umask(0o177, || UnixDatagram::bind(&path))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
        sock.set_nonblocking(true)?;
        socket::setsockopt(&sock, sockopt::PassCred, &true).map_err(io::Error::from)?;
        Ok(Some(Relay {
            sock,
            child_value: path.to_string_lossy().into_owned(),
            path,
        }))
    }

    /// Messages waiting from `mysqld` (anything from another pid is dropped), at most
    /// [`MAX_PER_WAKEUP`] datagrams: the poll loop comes back for the rest after it has
    /// served everything else, so a flood cannot starve signals or dumps.
    pub fn receive(&self, mysqld: Option<i32>) -> Vec<Message> {
        let mut out = Vec::new();
        for _ in 0..MAX_PER_WAKEUP {
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let (n, sender) = match socket::recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => {
                    let sender = msg.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|m| match m {
                            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                            _ => None,
                        })
                    });
                    (msg.bytes, sender)
                }
                Err(_) => return out,
            };
            if sender.is_none() || sender != mysqld {
                debug!("notify relay: dropped a message from pid {sender:?}");
                continue;
            }
            out.extend(parse(&String::from_utf8_lossy(&buf[..n])));
        }
        out
    }
}

impl AsFd for Relay {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Sends to systemd from jemsafe's own pid; failures are logged, never fatal.
pub fn tell(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!("sd_notify failed: {e}");
    }
}

/// READY=1 goes out once per start, when mysqld is ready and verification is over.
#[derive(Debug, Default)]
pub struct ReadyGate {
    mysqld_ready: bool,
    verified: bool,
    sent: bool,
}

impl ReadyGate {
    pub fn mysqld_ready(&mut self) -> bool {
        self.mysqld_ready = true;
        self.open()
    }

    pub fn verified(&mut self) -> bool {
        self.verified = true;
        self.open()
    }

    fn open(&mut self) -> bool {
        let now = self.mysqld_ready && self.verified && !self.sent;
        self.sent |= now;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_mysqld_sends() {
        assert_eq!(
            parse("READY=1\nSTATUS=Taking your SQL requests now...\nMAINPID=7\nEXTEND_TIMEOUT_USEC=30000000\nSTOPPING=1"),
            [
                Message::Ready,
                Message::Status("Taking your SQL requests now...".into()),
                Message::ExtendTimeoutUsec(30_000_000),
                Message::Stopping
            ]
        );
    }

    #[test]
    fn ready_waits_for_both_and_goes_once() {
        let mut g = ReadyGate::default();
        assert!(!g.mysqld_ready());
        assert!(g.verified());
        assert!(!g.mysqld_ready());
        let mut g = ReadyGate::default();
        assert!(!g.verified());
        assert!(g.mysqld_ready());
    }
}
