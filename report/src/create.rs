//! The one way jemsafe creates a file where others may write (mysqld's dump directory,
//! /tmp, a debuginfod cache): relative to the directory's descriptor, with
//! `O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK`. A name planted in advance (a file, a
//! symlink, a FIFO) makes it fail rather than write through or block.
//!
//! - [`create_new`]: a new file under a given name.
//! - [`write_new`]: a new file with its bytes, synced, removed again if writing fails.
//! - [`Staged`]: a new file under an unguessable hidden name, renamed over its final
//!   name when complete ([`Staged::publish`]), removed if dropped before.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// How a new file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Write,
    ReadWrite,
    /// Read and write, every write at the end.
    Append,
}

/// Creates `name` in `dir` with `mode` (before the umask): never an existing name, never
/// through a symlink, never blocking on a FIFO.
pub fn create_new(dir: impl AsFd, name: &str, access: Access, mode: u32) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let access = match access {
        Access::Write => OFlag::O_WRONLY,
        Access::ReadWrite => OFlag::O_RDWR,
        Access::Append => OFlag::O_RDWR | OFlag::O_APPEND,
    };
    let fd = nix::fcntl::openat(
        Some(dir.as_fd().as_raw_fd()),
        name,
        access
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Removes the entry `name` from `dir` (a symlink is removed, not followed).
pub fn remove(dir: impl AsFd, name: &str) -> io::Result<()> {
    nix::unistd::unlinkat(
        Some(dir.as_fd().as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    )
    .map_err(io::Error::from)
}

/// Who a new file belongs to: its mode exactly (whatever the umask), and an owner and a
/// group to give it (None: the creator's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Ownership {
    /// `mode`, the creator's owner and group.
    pub fn mode(mode: u32) -> Ownership {
        Ownership {
            mode,
            uid: None,
            gid: None,
        }
    }

    /// Gives `file` this mode, owner and group.
    pub fn apply(&self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::fchown(file, self.uid, self.gid)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
    }
}

/// Why [`write_new`] failed: the name could not be created (it exists, or the directory
/// refuses), or the new file could not be written (it is gone again).
#[derive(Debug, thiserror::Error)]
pub enum WriteNewError {
    #[error("cannot create {name}: {source}")]
    Create { name: String, source: io::Error },
    #[error("cannot write {name}: {source}")]
    Write { name: String, source: io::Error },
}

impl WriteNewError {
    pub fn source_kind(&self) -> io::ErrorKind {
        match self {
            WriteNewError::Create { source, .. } | WriteNewError::Write { source, .. } => {
                source.kind()
            }
        }
    }

    /// The I/O error alone, for a caller that says the context itself.
    pub fn into_source(self) -> io::Error {
        match self {
            WriteNewError::Create { source, .. } | WriteNewError::Write { source, .. } => source,
        }
    }
}

/// Writes `bytes` as the new file `name` in `dir` ([`create_new`]), with `ownership`,
/// synced to disk; the name is removed again if anything after its creation fails.
pub fn write_new(
    dir: impl AsFd,
    name: &str,
    bytes: &[u8],
    ownership: Ownership,
) -> Result<(), WriteNewError> {
    let mut file =
        create_new(dir.as_fd(), name, Access::Write, ownership.mode).map_err(|source| {
            WriteNewError::Create {
                name: name.to_owned(),
                source,
            }
        })?;
    let written = ownership
        .apply(&file)
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_data());
    written.map_err(|source| {
        let _ = remove(dir.as_fd(), name);
        WriteNewError::Write {
            name: name.to_owned(),
            source,
        }
    })
}

/// A random number for a name that must be unguessable and new, from the standard
/// library's per-process hash keys: no other source is needed.
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The hidden name a file is written under before it is renamed to `name`: beside it (a
/// rename does not cross directories), unpredictable (a name planted in advance cannot
/// be the one used).
pub fn temp_name(name: &str, random: u64) -> String {
    format!(".{name}.jemsafe-{random:016x}.tmp")
}

/// A file being written under a temporary name in its directory `D` (owned or
/// borrowed), not yet under its final name.
pub struct Staged<D: AsFd> {
    dir: D,
    temp: String,
    file: File,
    published: bool,
}

impl<D: AsFd> Staged<D> {
    /// A new, empty file in `dir` that will be called `name`; with `ownership`. The
    /// error names the temporary name.
    pub fn create(
        dir: D,
        name: &str,
        access: Access,
        ownership: Ownership,
    ) -> Result<Self, WriteNewError> {
        // A clash with an existing name is all but impossible; a few tries make it so.
        let mut tries = 0;
        loop {
            let temp = temp_name(name, random());
            match create_new(dir.as_fd(), &temp, access, ownership.mode) {
                Ok(file) => {
                    let staged = Staged {
                        dir,
                        temp,
                        file,
                        published: false,
                    };
                    return match ownership.apply(&staged.file) {
                        Ok(()) => Ok(staged),
                        Err(source) => Err(WriteNewError::Write {
                            name: staged.temp.clone(),
                            source,
                        }),
                    };
                }
                Err(source) if tries == 3 || source.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(WriteNewError::Create { name: temp, source })
                }
                Err(_) => tries += 1,
            }
        }
    }

    /// Where to write the file's bytes.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Its temporary name in the directory.
    pub fn temp(&self) -> &str {
        &self.temp
    }

    pub fn dir(&self) -> &D {
        &self.dir
    }

    /// Flushes the file to disk and renames it over `to` (replacing whatever was there:
    /// a file, a symbolic link). The file and directory stay at hand, for a check of what
    /// the name now holds.
    pub fn publish(&mut self, to: &str) -> io::Result<()> {
        self.file.sync_all()?;
        let dir = self.dir.as_fd().as_raw_fd();
        nix::fcntl::renameat(Some(dir), self.temp.as_str(), Some(dir), to)?;
        self.published = true;
        Ok(())
    }
}

impl<D: AsFd> Drop for Staged<D> {
    fn drop(&mut self) {
        if !self.published {
            let _ = remove(self.dir.as_fd(), &self.temp);
        }
    }
}

/// Opens a directory descriptor of `path` for [`create_new`] (a symlink at its last
/// component is followed only when `follow`).
pub fn open_dir(path: &std::path::Path, follow: bool) -> io::Result<OwnedFd> {
    crate::safe::open_dir(None, path, follow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        nix::unistd::mkdtemp(format!("/tmp/jemsafe-create-{tag}.XXXXXX").as_str()).unwrap()
    }

    #[test]
    fn a_planted_name_symlink_or_fifo_is_never_written_through() {
        let d = scratch("planted");
        let dir = open_dir(&d, false).unwrap();
        let target = d.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, d.join("link")).unwrap();
        nix::unistd::mkfifo(
            &d.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
        for name in ["target", "link", "fifo"] {
            let e = write_new(&dir, name, b"x", Ownership::mode(0o640)).unwrap_err();
            assert_eq!(e.source_kind(), io::ErrorKind::AlreadyExists, "{name}");
            assert!(e.to_string().starts_with("cannot create "), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        write_new(&dir, "new", b"data", Ownership::mode(0o640)).unwrap();
        let meta = std::fs::metadata(d.join("new")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(d.join("new")).unwrap(), b"data");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_staged_file_has_no_final_name_until_published_and_none_if_dropped() {
        let d = scratch("staged");
        let dir = open_dir(&d, false).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("out")).unwrap();
        let names = || {
            let mut n: Vec<String> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        };
        let dropped = Staged::create(&dir, "out", Access::Write, Ownership::mode(0o600)).unwrap();
        assert!(dropped.temp().starts_with(".out.jemsafe-"));
        assert_eq!(names().len(), 2);
        drop(dropped);
        assert_eq!(names(), ["out"]);
        let mut staged =
            Staged::create(&dir, "out", Access::Write, Ownership::mode(0o600)).unwrap();
        staged.file().write_all(b"new").unwrap();
        staged.publish("out").unwrap();
        assert_eq!(names(), ["out"]);
        let meta = std::fs::symlink_metadata(d.join("out")).unwrap();
        assert!(meta.is_file() && meta.mode() & 0o7777 == 0o600);
        assert_eq!(std::fs::read(d.join("out")).unwrap(), b"new");
        assert_ne!(temp_name("a", 1), temp_name("a", 2));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
