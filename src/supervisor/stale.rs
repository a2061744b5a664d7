//! Before each start, like mysqld_safe: a pid file or socket left by a dead mysqld is
//! removed (never through a symlink); a live mysqld holding them means "do not start".

use crate::error::{Error, Result};
use crate::{info, warn};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// The value of `--NAME=VALUE` or `--NAME VALUE` in mysqld's arguments (last one wins,
/// as with mysqld's own option parsing); dashes and underscores are interchangeable.
pub fn option(args: &[String], name: &str) -> Option<String> {
    let norm = |s: &str| s.replace('_', "-");
    let want = format!("--{}", norm(name));
    let mut found = None;
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (norm(k), Some(v.to_owned())),
            None => (norm(arg), None),
        };
        if key == want {
            found = value.or_else(|| iter.next().cloned());
        }
    }
    found
}

/// uid/gid of `--user=NAME` in mysqld's arguments, when jemsafe is root (only then can
/// and must it hand the dump directory and the notify socket to that user).
pub fn mysqld_user(args: &[String]) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let name = option(args, "user")?;
    let user = nix::unistd::User::from_name(&name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// Removes what a dead mysqld left at `--pid-file` and `--socket`, or refuses to start
/// when a live one holds them. Relative paths (resolved by mysqld against its datadir)
/// are left to mysqld.
///
/// mysqld's user can put anything at these paths, so nothing here can block: the pid
/// file is opened with O_NOFOLLOW | O_NONBLOCK and read only if it is a regular file,
/// and only so many bytes; the socket is probed with a non-blocking connect. A path that
/// is not what it should be is left alone with a warning (mysqld will say why it cannot
/// use it).
pub fn clear(args: &[String], mysqld: &Path) -> Result<()> {
    let absolute = |o: Option<String>| o.map(PathBuf::from).filter(|p| p.is_absolute());
    let pid_file = absolute(option(args, "pid-file"));
    let socket = absolute(option(args, "socket"));
    if let Some(pid_file) = &pid_file {
        match read_pid_file(pid_file) {
            PidFile::Absent => {}
            PidFile::Odd(why) => warn!("leaving pid file {} alone: {why}", pid_file.display()),
            PidFile::Pid(pid) if is_live_mysqld(pid, mysqld) => {
                return Err(Error::Refused(format!(
                    "a live mysqld (pid {pid}) holds {}: stop it first; jemsafe will not start a second server on the same files",
                    pid_file.display()
                )));
            }
            PidFile::Pid(_) | PidFile::Unreadable => remove_stale(pid_file, "pid file"),
        }
    }
    if let Some(socket) = &socket {
        match socket.symlink_metadata() {
            Err(_) => {}
            Ok(meta) if meta.file_type().is_symlink() => warn!(
                "leaving socket {} alone: it is a symbolic link",
                socket.display()
            ),
            Ok(meta) if !meta.file_type().is_socket() => warn!(
                "leaving {} alone: mysqld's --socket names something that is not a socket",
                socket.display()
            ),
            Ok(_) => match probe_socket(socket) {
                SocketProbe::Listening => {
                    return Err(Error::Refused(format!(
                        "something is accepting connections on {}: another server is running there",
                        socket.display()
                    )))
                }
                SocketProbe::Busy => {
                    return Err(Error::Refused(format!(
                        "something listens on {} but does not accept connections (a full backlog): \
                         another server is running there, or a stuck one; stop it first",
                        socket.display()
                    )))
                }
                SocketProbe::Dead => remove_stale(socket, "socket"),
            },
        }
    }
    Ok(())
}

/// What is at `--pid-file`.
#[derive(Debug, PartialEq, Eq)]
enum PidFile {
    Absent,
    Pid(i32),
    /// A regular file without a pid in it.
    Unreadable,
    /// Not a regular file (a symlink, a FIFO, a device): why.
    Odd(String),
}

/// A pid file is a number and a newline; this bounds what root reads.
const MAX_PID_FILE: u64 = 64;

fn read_pid_file(path: &Path) -> PidFile {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidFile::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return PidFile::Odd("it is a symbolic link".into())
        }
        Err(e) => return PidFile::Odd(format!("cannot open it: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            return PidFile::Odd(format!(
                "it is not a regular file ({})",
                file_kind(m.file_type())
            ))
        }
        Err(e) => return PidFile::Odd(format!("cannot inspect it: {e}")),
    }
    let mut text = String::new();
    if file.take(MAX_PID_FILE).read_to_string(&mut text).is_err() {
        return PidFile::Unreadable;
    }
    text.trim()
        .parse()
        .ok()
        .filter(|pid: &i32| *pid > 0)
        .map_or(PidFile::Unreadable, PidFile::Pid)
}

fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Whether `pid` is alive and is a mysqld: named mysqld or mariadbd, or running the
/// very binary jemsafe would start.
fn is_live_mysqld(pid: i32, mysqld: &Path) -> bool {
    let comm = crate::procfs::comm(pid).unwrap_or_default();
    let exe = crate::procfs::exe(pid);
    let ours = std::fs::canonicalize(mysqld).ok();
    matches!(comm.as_str(), "mysqld" | "mariadbd") || (exe.is_some() && exe == ours)
}

#[derive(Debug, PartialEq, Eq)]
enum SocketProbe {
    Listening,
    /// A listener whose backlog is full: a blocking connect would wait for it.
    Busy,
    Dead,
}

/// How long a connect to mysqld's socket may take before it counts as busy.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Connects without blocking: a listener with a full backlog cannot hold jemsafe up.
fn probe_socket(path: &Path) -> SocketProbe {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let Ok(addr) = UnixAddr::new(path) else {
        return SocketProbe::Dead;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return SocketProbe::Dead;
    };
    use std::os::fd::{AsFd, AsRawFd};
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => SocketProbe::Listening,
        // Unix sockets say EAGAIN when the backlog is full; EINPROGRESS is not used for
        // them, but a wait for writability covers it.
        Err(nix::errno::Errno::EAGAIN) => SocketProbe::Busy,
        Err(nix::errno::Errno::EINPROGRESS) => {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
            let ms = CONNECT_TIMEOUT.as_millis() as u16;
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => SocketProbe::Listening,
                _ => SocketProbe::Busy,
            }
        }
        Err(_) => SocketProbe::Dead,
    }
}

fn remove_stale(path: &Path, what: &str) {
    match path.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            warn!(
                "leaving {what} {} alone: it is a symbolic link",
                path.display()
            )
        }
        Ok(_) => match std::fs::remove_file(path) {
            Ok(()) => info!("removed stale {what} {}", path.display()),
            Err(e) => warn!("cannot remove stale {what} {}: {e}", path.display()),
        },
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_in_both_forms_last_wins() {
        let a = args(&[
            "--socket=/a",
            "--pid_file",
            "/p",
            "--socket",
            "/b",
            "--user=mysql",
        ]);
        assert_eq!(option(&a, "socket").as_deref(), Some("/b"));
        assert_eq!(option(&a, "pid-file").as_deref(), Some("/p"));
        assert_eq!(option(&a, "datadir"), None);
    }

    #[test]
    fn stale_files_go_symlinks_stay_live_servers_block() {
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-stale.XXXXXX").unwrap();
        let pid_file = dir.join("m.pid");
        let sock = dir.join("m.sock");
        let link = dir.join("link.sock");
        std::fs::write(&pid_file, "999999999\n").unwrap();
        // A socket whose server is gone: its file stays behind.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let a = args(&[
            &format!("--pid-file={}", pid_file.display()),
            &format!("--socket={}", sock.display()),
        ]);
        clear(&a, Path::new("/usr/sbin/mysqld")).unwrap();
        assert!(!pid_file.exists() && !sock.exists());
        clear(
            &args(&[&format!("--socket={}", link.display())]),
            Path::new("/usr/sbin/mysqld"),
        )
        .unwrap();
        assert!(
            link.symlink_metadata().is_ok(),
            "a symlink is never removed"
        );

        let listening = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = clear(
            &args(&[&format!("--socket={}", sock.display())]),
            Path::new("/usr/sbin/mysqld"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("another server"), "{e}");
        drop(listening);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whatever mysqld's user puts at --pid-file or --socket, `clear` returns at once.
    #[test]
    fn planted_fifos_devices_and_full_backlogs_never_block() {
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-stale.XXXXXX").unwrap();
        let fifo = dir.join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(read_pid_file(&fifo), PidFile::Odd(w) if w.contains("FIFO")));
        let zero = dir.join("zero.pid");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(read_pid_file(&zero), PidFile::Odd(w) if w.contains("symbolic link")));
        let big = dir.join("big.pid");
        std::fs::write(&big, "1".repeat(1 << 20)).unwrap();
        assert_eq!(
            read_pid_file(&big),
            PidFile::Unreadable,
            "read with a bound"
        );
        let a = args(&[
            &format!("--pid-file={}", fifo.display()),
            "--socket=/dev/null",
        ]);
        clear(&a, Path::new("/usr/sbin/mysqld")).unwrap();
        assert!(fifo.exists(), "a FIFO is left alone");

        // A listener with backlog 0 and one connection waiting: the next blocking
        // connect would wait forever.
        use nix::sys::socket::*;
        let sock = dir.join("full.sock");
        let listener = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        let addr = UnixAddr::new(&sock).unwrap();
        bind(std::os::fd::AsRawFd::as_raw_fd(&listener), &addr).unwrap();
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        let mut queued = Vec::new();
        while probe_socket(&sock) == SocketProbe::Listening {
            let c = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            let _ = connect(std::os::fd::AsRawFd::as_raw_fd(&c), &addr);
            queued.push(c);
            assert!(queued.len() < 10, "the backlog never filled");
        }
        let e = clear(
            &args(&[&format!("--socket={}", sock.display())]),
            Path::new("/usr/sbin/mysqld"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("full backlog"), "{e}");
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
