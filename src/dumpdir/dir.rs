//! The dump directory as the supervisor holds it: its path, its prefix and one
//! descriptor, opened once and again only when the directory was made anew. Every file
//! operation of a dump goes through it (check, finalize, sidecar, incident record,
//! removal), and one scan a pass feeds the one retention plan over every kind of file
//! there ([`super::retention`]).

use super::files::{self, FileError, Incomplete};
use super::retention::{self, Entry, Kind};
use super::HeapFile;
use crate::{debug, info, warn};
use jemsafe_report::maps::MapEntry;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// The dump directory of one supervisor.
pub struct DumpDir {
    path: PathBuf,
    prefix: String,
    /// The descriptor, once opened.
    opened: RefCell<Option<Held>>,
}

/// A descriptor of the directory, with its (device, inode) when it was opened.
struct Held {
    fd: Rc<OwnedFd>,
    id: (u64, u64),
}

/// A heap file found whole: what the rest of the pipeline needs from it.
pub struct CheckedDump {
    pub size: u64,
    /// The dump's own copy of mysqld's maps, taken by jemalloc as it dumped: the sidecar
    /// lists its objects from it (no second read of /proc).
    pub maps: Vec<MapEntry>,
    /// When jemalloc last wrote it.
    pub modified: SystemTime,
}

/// Why a heap file is not kept as a dump.
#[derive(Debug, thiserror::Error)]
pub enum HeapFileError {
    /// Cut short (a full disk): removed, since it cannot be read. `free`: the bytes free
    /// on its filesystem then, when known.
    #[error("the file is incomplete: {why}{}", free_words(*free))]
    Incomplete { why: Incomplete, free: Option<u64> },
    /// Not a file root should touch (a symlink, another owner, several links), or
    /// unreadable: left alone.
    #[error(transparent)]
    Unusable(#[from] FileError),
}

/// "; 3 MiB free on its filesystem", when known.
fn free_words(free: Option<u64>) -> String {
    free.map(|f| format!("; {} free on its filesystem", super::human_space(f)))
        .unwrap_or_default()
}

/// Why a dump did not reach its final name.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("cannot open {dir}: {source}")]
    Dir { dir: String, source: io::Error },
    #[error(transparent)]
    Checked(#[from] HeapFileError),
    #[error("cannot rename {temp} to {name}: {source}")]
    Rename {
        temp: String,
        name: String,
        source: io::Error,
    },
}

/// What retention needs besides the directory's entries.
pub struct RetentionInputs<'a> {
    pub policy: &'a retention::Policy,
    /// The running mysqld's pid, if one runs.
    pub running: Option<u32>,
    /// Final names of the on-demand dumps in flight.
    pub in_flight: &'a [String],
    /// Who may own a heap file (a partial file recovered must be theirs).
    pub heap_owner: u32,
}

impl DumpDir {
    pub fn new(path: &Path, prefix: &str) -> DumpDir {
        DumpDir {
            path: path.to_path_buf(),
            prefix: prefix.to_owned(),
            opened: RefCell::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name`'s path in the directory, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The directory's descriptor: the one held, while the path still names that
    /// directory (one `lstat`); else opened again (it was removed and made anew). Held
    /// until [`DumpDir::release`].
    pub fn fd(&self) -> io::Result<Rc<OwnedFd>> {
        let now = nix::sys::stat::lstat(&self.path)
            .ok()
            .map(|st| (st.st_dev, st.st_ino));
        if let Some(held) = self.opened.borrow().as_ref() {
            if now == Some(held.id) {
                return Ok(Rc::clone(&held.fd));
            }
        }
        let fd = Rc::new(files::open_dir(&self.path)?);
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
        *self.opened.borrow_mut() = Some(Held {
            fd: Rc::clone(&fd),
            id: (st.st_dev, st.st_ino),
        });
        Ok(fd)
    }

    /// Closes the descriptor held (the next [`DumpDir::fd`] opens the directory again).
    /// The supervisor holds it for one pass of its loop, never while it sleeps: an open
    /// descriptor keeps the kernel from sending inotify's `IN_DELETE_SELF` when the
    /// directory is removed, and the watch would not learn of it.
    pub fn release(&self) {
        self.opened.borrow_mut().take();
    }

    /// The directory's entries that carry one of the prefix's names (heap files,
    /// sidecars, partial files, incident records, the timeline), with what `lstat` says
    /// of each: one listing through the held descriptor. Other names are not listed, so
    /// nothing else can ever be deleted.
    pub fn scan(&self) -> io::Result<Vec<Entry>> {
        scan_fd(&*self.fd()?, &self.prefix)
    }

    /// Bytes available to unprivileged writers on the directory's filesystem.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let st = nix::sys::statvfs::fstatvfs(&*self.fd()?).map_err(io::Error::from)?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Opens `name` with the checks root needs in mysqld's directory (owned by `owner`),
    /// verifies that it is a whole dump (its maps copy ending as `last_mapping`, the
    /// process's last mapping, when it runs), and takes its world-read bit away; what it
    /// found, or why the file is not a dump.
    pub fn check_heap_file(
        &self,
        name: &str,
        owner: u32,
        last_mapping: Option<&MapEntry>,
    ) -> Result<CheckedDump, HeapFileError> {
        let dir = self.fd().map_err(FileError::io("open the directory of"))?;
        let mut file = files::open_heap_file(&dir, name, Some(owner))?;
        let (size, tail) = files::read_tail(&mut file).map_err(FileError::io("read"))?;
        let maps = files::completeness(size, &tail, last_mapping).map_err(|why| {
            HeapFileError::Incomplete {
                why,
                free: self.free_bytes().ok(),
            }
        })?;
        files::restrict_file(&file).map_err(FileError::io("chmod"))?;
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        Ok(CheckedDump {
            size,
            maps,
            modified,
        })
    }

    /// Checks the on-demand dump `name` under its temporary name and gives it its final
    /// name; anything less is removed.
    pub fn finalize(
        &self,
        name: &str,
        owner: u32,
        last_mapping: Option<&MapEntry>,
    ) -> Result<CheckedDump, FinalizeError> {
        let dir = self.fd().map_err(|source| FinalizeError::Dir {
            dir: self.path.display().to_string(),
            source,
        })?;
        let temp = files::temp_name(name);
        let checked = self
            .check_heap_file(&temp, owner, last_mapping)
            .inspect_err(|_| {
                let _ = files::remove(&dir, &temp);
            })?;
        files::rename_new(&dir, &temp, name).map_err(|source| {
            let _ = files::remove(&dir, &temp);
            FinalizeError::Rename {
                temp: temp.clone(),
                name: name.to_owned(),
                source,
            }
        })?;
        Ok(checked)
    }

    /// Removes what a failed or abandoned dump `name` left under its temporary name.
    pub fn discard_partial(&self, name: &str) {
        if let Ok(dir) = self.fd() {
            let _ = files::remove(&dir, &files::temp_name(name));
        }
    }

    /// Removes `name` (the entry itself: a symlink is removed, not followed).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        files::remove(&*self.fd()?, name)
    }

    /// Writes `bytes` as the new file `name` ([`files::write_new`]), owned by `owner`.
    pub fn write_new(&self, name: &str, bytes: &[u8], owner: Option<u32>) -> Result<(), FileError> {
        let dir = self.fd().map_err(FileError::io("open the directory of"))?;
        files::write_new(&dir, name, bytes, owner)
    }

    /// Retention over every kind of file: one scan, the plan, the deletions (a partial
    /// file that holds a whole dump is given its final name instead), each logged.
    pub fn apply_retention(&self, inputs: &RetentionInputs, now: SystemTime) {
        let entries = match self.scan() {
            Ok(e) => e,
            Err(e) => {
                warn!("retention: cannot list {}: {e}", self.path.display());
                return;
            }
        };
        let state = retention::State {
            entries: &entries,
            running: inputs.running,
            in_flight: inputs.in_flight,
        };
        let deletions = retention::plan(&state, inputs.policy, now);
        if deletions.is_empty() {
            return;
        }
        let dir = match self.fd() {
            Ok(fd) => fd,
            Err(e) => {
                warn!("retention: cannot open {}: {e}", self.path.display());
                return;
            }
        };
        for mut d in deletions {
            let path = self.join(&d.name);
            if d.what == retention::What::Partial {
                // Its writer may have finished it after jemsafe stopped waiting.
                let final_name = d.name.strip_prefix(files::TEMP_PREFIX).unwrap_or_default();
                match files::recover_partial(&dir, &d.name, final_name, Some(inputs.heap_owner)) {
                    Ok(size) => {
                        info!(
                            "retention: {} holds a whole dump ({size} bytes; its writer finished it after jemsafe stopped waiting): kept as {final_name}",
                            path.display()
                        );
                        continue;
                    }
                    Err(why) => d.reason.push_str(&format!("; {why}")),
                }
            }
            // The entry itself, by its name in the directory: a symlink swapped in since
            // the listing is removed, never followed.
            match files::remove(&dir, &d.name) {
                Ok(()) if d.what == retention::What::Sidecar => {
                    debug!("retention: deleted {} ({})", path.display(), d.reason)
                }
                Ok(()) => info!("retention: deleted {} ({})", path.display(), d.reason),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!("retention: cannot delete {}: {e}", path.display()),
            }
        }
    }
}

/// [`DumpDir::scan`] of the directory `dir`: read through a duplicate of the descriptor,
/// from its start (a duplicate shares the offset, which the last listing left at the end).
pub fn scan_fd(dir: &OwnedFd, prefix: &str) -> io::Result<Vec<Entry>> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::SFlag;
    let dup = nix::unistd::dup(dir.as_raw_fd())?;
    if let Err(e) = nix::unistd::lseek(dup, 0, nix::unistd::Whence::SeekSet) {
        let _ = nix::unistd::close(dup);
        return Err(e.into());
    }
    let mut listing = nix::dir::Dir::from_fd(dup)?;
    let mut entries = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        let Some(kind) = Kind::of(prefix, name) else {
            continue;
        };
        // Not followed: a symlink is not a file of ours, whatever its name.
        let Ok(st) =
            nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        let modified = jemsafe_report::clock::from_stat(st.st_mtime, st.st_mtime_nsec);
        entries.push(Entry {
            name: name.to_owned(),
            kind,
            size: u64::try_from(st.st_size).unwrap_or(0),
            modified,
            regular: SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG,
        });
    }
    Ok(entries)
}

/// The heap files among `entries` (regular files only), oldest first in
/// [`retention::chronological`]'s order.
pub fn heap_files(dir: &Path, entries: &[Entry]) -> Vec<HeapFile> {
    retention::chronological(entries, None, SystemTime::now())
        .into_iter()
        .map(|(e, name, _)| HeapFile {
            path: dir.join(&e.name),
            name: name.clone(),
            size: e.size,
            modified: e.modified,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        nix::unistd::mkdtemp(format!("/tmp/jemsafe-dumpdir-{tag}.XXXXXX").as_str()).unwrap()
    }

    #[test]
    fn one_descriptor_serves_every_scan_until_the_directory_is_made_anew() {
        let d = scratch("fd");
        let dir = DumpDir::new(&d, "mysqld");
        std::fs::write(d.join("mysqld.1.0.i0.heap"), "x").unwrap();
        std::fs::write(d.join("mysqld.timeline"), "x").unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let first = dir.fd().unwrap();
        let names = |dir: &DumpDir| {
            let mut n: Vec<String> = dir.scan().unwrap().into_iter().map(|e| e.name).collect();
            n.sort();
            n
        };
        // Twice through the same descriptor: the second listing starts from the start.
        assert_eq!(names(&dir), ["mysqld.1.0.i0.heap", "mysqld.timeline"]);
        assert_eq!(names(&dir), ["mysqld.1.0.i0.heap", "mysqld.timeline"]);
        assert!(Rc::ptr_eq(&first, &dir.fd().unwrap()));
        // Removed and made again: a new descriptor, on the new directory.
        std::fs::remove_dir_all(&d).unwrap();
        assert!(dir.scan().is_err());
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("mysqld.2.0.i0.heap"), "x").unwrap();
        assert_eq!(names(&dir), ["mysqld.2.0.i0.heap"]);
        assert!(!Rc::ptr_eq(&first, &dir.fd().unwrap()));
        let held = dir.fd().unwrap();
        dir.release();
        assert!(!Rc::ptr_eq(&held, &dir.fd().unwrap()));
        let heaps = heap_files(dir.path(), &dir.scan().unwrap());
        assert_eq!(heaps.len(), 1);
        assert_eq!(heaps[0].path, d.join("mysqld.2.0.i0.heap"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cut_dump_is_removed_and_a_whole_one_gets_its_final_name() {
        let d = scratch("finalize");
        let dir = DumpDir::new(&d, "mysqld");
        let me = nix::unistd::geteuid().as_raw();
        let name = "mysqld.1.20261127T000000.0001.cli.heap";
        let whole = "heap_v2/524288\nMAPPED_LIBRARIES:\n\
            7ffd1f5e4000-7ffd1f605000 rw-p 00000000 00:00 0 [stack]\n";
        std::fs::write(d.join(files::temp_name(name)), &whole[..whole.len() - 3]).unwrap();
        let e = dir.finalize(name, me, None).err().unwrap().to_string();
        assert!(
            e.starts_with("the file is incomplete: its last line is cut short; "),
            "{e}"
        );
        assert!(e.ends_with(" free on its filesystem"), "{e}");
        assert!(dir.scan().unwrap().is_empty(), "removed");
        std::fs::write(d.join(files::temp_name(name)), whole).unwrap();
        let checked = dir.finalize(name, me, None).unwrap();
        assert_eq!((checked.size, checked.maps.len()), (whole.len() as u64, 1));
        assert_eq!(std::fs::read_to_string(d.join(name)).unwrap(), whole);
        // Another owner's file is left alone, and said so.
        std::fs::write(d.join(files::temp_name(name)), whole).unwrap();
        let e = dir.finalize(name, me + 1, None).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("it belongs to uid {me}, not to mysqld's uid")),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
