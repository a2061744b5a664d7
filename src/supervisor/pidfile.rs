//! `<runtime_dir>/jemsafe.pid`: one jemsafe per runtime_dir.

use crate::error::{Error, Result};
use crate::info;
use std::path::PathBuf;

/// `<runtime_dir>/jemsafe.pid`, held with an exclusive lock for jemsafe's lifetime: the
/// lock, not the pid, says whether another jemsafe is alive, so a stale file left by a
/// crash (or a pid reused by another process) never blocks a start.
pub struct PidFile {
    path: PathBuf,
    _file: std::fs::File,
}

impl PidFile {
    pub fn acquire(runtime_dir: &std::path::Path) -> Result<PidFile> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(runtime_dir)
            .map_err(Error::io(format!(
                "cannot create runtime_dir {}",
                runtime_dir.display()
            )))?;
        let path = runtime_dir.join("jemsafe.pid");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(Error::io(format!(
                "cannot open pid file {}",
                path.display()
            )))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut other = String::new();
            let _ = file.read_to_string(&mut other);
            return Err(Error::Refused(format!(
                "another jemsafe (pid {}) is running with runtime_dir {}: stop it first, or give \
                 this instance its own [supervise] runtime_dir",
                other.trim(),
                runtime_dir.display()
            )));
        }
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        if !previous.trim().is_empty() {
            info!(
                "removing stale pid file {} (pid {} is gone)",
                path.display(),
                previous.trim()
            );
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(Error::io(format!(
                "cannot write pid file {}",
                path.display()
            )))?;
        Ok(PidFile { path, _file: file })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
