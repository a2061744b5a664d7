//! Before each start, like mysqld_safe: a pid file or socket left by a dead mysqld is
//! removed (never through a symlink); a live mysqld holding them means "do not start".

use crate::error::{Error, Result};
use crate::{info, warn};
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

/// Removes what a dead mysqld left at `--pid-file` and `--socket`, or refuses to start
/// when a live one holds them. Relative paths (resolved by mysqld against its datadir)
/// are left to mysqld.
pub fn clear(args: &[String], mysqld: &Path) -> Result<()> {
    let absolute = |o: Option<String>| o.map(PathBuf::from).filter(|p| p.is_absolute());
    let pid_file = absolute(option(args, "pid-file"));
    let socket = absolute(option(args, "socket"));
    if let Some(pid_file) = &pid_file {
        if let Some(pid) = live_mysqld(pid_file, mysqld) {
            return Err(Error::Refused(format!(
                "a live mysqld (pid {pid}) holds {}: stop it first; jemsafe will not start a second server on the same files",
                pid_file.display()
            )));
        }
        remove_stale(pid_file, "pid file");
    }
    if let Some(socket) = &socket {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Error::Refused(format!(
                "something is accepting connections on {}: another server is running there",
                socket.display()
            )));
        }
        remove_stale(socket, "socket");
    }
    Ok(())
}

/// The pid in `pid_file` if that process is alive and is a mysqld: named mysqld or
/// mariadbd, or running the very binary jemsafe would start.
fn live_mysqld(pid_file: &Path, mysqld: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let ours = std::fs::canonicalize(mysqld).ok();
    (matches!(comm.trim(), "mysqld" | "mariadbd") || (exe.is_some() && exe == ours)).then_some(pid)
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
        std::fs::write(&sock, "").unwrap();
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
}
