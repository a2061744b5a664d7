//! Signals as events for the poll loop.
//!
//! signal-hook's handlers do two async-signal-safe things: set a per-signal flag, then
//! write a byte to a socket that the event loop polls. The loop drains the socket first
//! and reads the flags second, so a signal that arrives in between is never lost.

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::SigId;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Every signal the supervisor reacts to.
pub const HANDLED: [i32; 7] = [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD];

pub struct Signals {
    wake: UnixStream,
    flags: Vec<(i32, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for sig in HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                write.try_clone()?,
            )?);
            flags.push((sig, flag));
        }
        Ok(Signals { wake, flags, ids })
    }

    /// Empties the wake-up socket; call before `take`.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Whether `sig` arrived since the last call (several arrivals count as one).
    pub fn take(&self, sig: i32) -> bool {
        self.flags
            .iter()
            .find(|(s, _)| *s == sig)
            .is_some_and(|(_, flag)| flag.swap(false, Ordering::SeqCst))
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// "SIGTERM" for 15.
pub fn name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}
