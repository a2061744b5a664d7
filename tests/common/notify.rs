//! A stand-in for systemd's notify socket.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A stand-in for systemd's notify socket: a datagram socket with SO_PASSCRED, so that
/// every message comes with its sender's pid. A thread reads it all the time, as systemd
/// does (a full socket queue would block the sender).
pub struct NotifyListener {
    rx: Receiver<(i32, String)>,
    pub path: PathBuf,
    /// (sender pid, message) in arrival order.
    pub seen: Vec<(i32, String)>,
}

impl NotifyListener {
    pub fn bind(path: PathBuf) -> NotifyListener {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
        use std::os::fd::AsRawFd;
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) else {
                continue;
            };
            let pid = msg
                .cmsgs()
                .ok()
                .and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmCredentials(c) => Some(c.pid()),
                        _ => None,
                    })
                })
                .unwrap_or(-1);
            let n = msg.bytes;
            if tx
                .send((pid, String::from_utf8_lossy(&buf[..n]).into_owned()))
                .is_err()
            {
                return;
            }
        });
        NotifyListener {
            rx,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a message containing `needle`; returns (pid, message).
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> (i32, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(hit) = self.seen.iter().find(|(_, m)| m.contains(needle)) {
                return hit.clone();
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(m) => self.seen.push(m),
                Err(_) => panic!(
                    "no notify message with {needle:?} in {timeout:?}: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Asserts that everything that arrived so far came from `pid`.
    pub fn assert_all_from(&mut self, pid: i32) {
        let seen = self.all();
        assert!(
            seen.iter().all(|(p, _)| *p == pid),
            "not all from pid {pid}: {seen:?}"
        );
    }

    /// Everything that arrived so far.
    pub fn all(&mut self) -> &[(i32, String)] {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
        &self.seen
    }
}
