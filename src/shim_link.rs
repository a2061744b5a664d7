//! jemsafe's end of the channel to the shim inside mysqld.
//!
//! A `SOCK_SEQPACKET` socketpair made before each start: jemsafe keeps one end, the child
//! inherits the other (its fd number travels in `JEMSAFE_SHIM_FD`). Each request and each
//! reply is one packet; ids pair them, so a reply that arrives after its request timed out
//! is recognised and dropped instead of being taken for the answer to the next one.

use jemsafe_proto::{Ask, Command, Reply, Request, MAX_PACKET};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

pub struct ShimLink {
    fd: OwnedFd,
    next_id: u64,
}

/// What a non-blocking read found.
pub enum Received {
    Reply(Reply),
    /// A call from SQL, asked by the shim on its own.
    Ask(Ask),
    Nothing,
    /// The shim's end is closed: mysqld exited (or never loaded the shim and exited).
    Closed,
}

impl ShimLink {
    /// Returns jemsafe's end and the end for the child. Both are close-on-exec; the
    /// spawner clears that flag on the child's copy between fork and exec.
    pub fn pair() -> io::Result<(ShimLink, OwnedFd)> {
        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        Ok((
            ShimLink {
                fd: ours,
                next_id: 1,
            },
            theirs,
        ))
    }

    /// Sends `command` without blocking; returns the request id.
    pub fn send(&mut self, command: Command) -> io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let packet = Request { id, command }.encode();
        socket::send(
            self.fd.as_raw_fd(),
            &packet,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(io::Error::from)?;
        Ok(id)
    }

    /// Reads one reply if one is waiting.
    pub fn receive(&self) -> io::Result<Received> {
        let mut buf = [0u8; MAX_PACKET];
        match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => Ok(Received::Closed),
            Ok(n) => match Ask::decode(&buf[..n]) {
                Some(ask) => ask.map(Received::Ask),
                None => Reply::decode(&buf[..n]).map(Received::Reply),
            }
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(nix::errno::Errno::EAGAIN) => Ok(Received::Nothing),
            Err(nix::errno::Errno::ECONNRESET) => Ok(Received::Closed),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `command` and waits up to `timeout` for its reply (for one-shot callers such
    /// as the `check` probe; the supervisor uses `send`/`receive` from its event loop).
    pub fn request(&mut self, command: Command, timeout: Duration) -> io::Result<Reply> {
        let id = self.send(command)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from the shim within {timeout:?}"),
                ));
            }
            if !wait_readable(self.as_fd(), left)? {
                continue;
            }
            match self.receive()? {
                Received::Reply(reply) if reply.id == id => return Ok(reply),
                Received::Reply(_) | Received::Ask(_) | Received::Nothing => continue,
                Received::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the process holding the shim's end exited",
                    ))
                }
            }
        }
    }
}

impl AsFd for ShimLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until `fd` is readable (or hung up); false on timeout.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    loop {
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
