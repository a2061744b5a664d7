//! Heap dump files: where they go, what they are called, which ones are kept.

pub mod files;
pub mod naming;
pub mod retention;
pub mod sidecar;

pub use naming::{on_demand_name, HeapName, Trigger};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Creates the dump directory if missing: mode 0750, and owned by mysqld's user when
/// jemsafe runs as root, since mysqld (not jemsafe) writes the files.
pub fn prepare_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(Error::io(format!(
                "cannot create dump directory {}",
                dir.display()
            )))?;
        // The umask may have taken bits away; the mode is part of the contract.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(
            Error::io(format!("cannot chmod dump directory {}", dir.display())),
        )?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(Error::io(format!(
                "cannot give dump directory {} to uid {uid}",
                dir.display()
            )))?;
        }
    } else if !dir.is_dir() {
        return Err(Error::Refused(format!(
            "dump directory {} exists but is not a directory",
            dir.display()
        )));
    } else if let Some((uid, _)) = owner {
        // An existing directory is left as it is, but a wrong owner is said at once
        // rather than at the first failed dump.
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            if meta.uid() != uid && meta.mode() & 0o002 == 0 {
                crate::warn!(
                    "dump directory {} belongs to uid {}, but mysqld runs as uid {uid} and writes the \
                     dumps: dumps will fail; fix: chown {uid} {}",
                    dir.display(),
                    meta.uid(),
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// A heap file in the dump directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapFile {
    pub path: PathBuf,
    pub name: HeapName,
    pub size: u64,
    pub modified: SystemTime,
}

/// The entries of `dir` named like files of `prefix` (heap files of any pid, their
/// sidecars, partial files), with what `lstat` says of each. Other names are not
/// listed, so nothing else can ever be deleted.
pub fn scan(dir: &Path, prefix: &str) -> std::io::Result<Vec<retention::Entry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(kind) = retention::Kind::of(prefix, &name) else {
            continue;
        };
        // Not followed: a symlink is not a file of ours, whatever its name.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        entries.push(retention::Entry {
            name,
            kind,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            regular: meta.is_file(),
        });
    }
    Ok(entries)
}

/// The heap files of `prefix` in `dir` (jemsafe's and jemalloc's names, any pid, regular
/// files only), oldest first in [`retention::chronological`]'s order.
pub fn list(dir: &Path, prefix: &str) -> std::io::Result<Vec<HeapFile>> {
    let entries = scan(dir, prefix)?;
    Ok(retention::chronological(&entries, None, SystemTime::now())
        .into_iter()
        .map(|(e, name, _)| HeapFile {
            path: dir.join(&e.name),
            name: name.clone(),
            size: e.size,
            modified: e.modified,
        })
        .collect())
}

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}
