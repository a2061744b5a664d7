//! The timeline file on disk. jemsafe (root) appends to it in mysqld's dump directory,
//! which mysqld's user owns and can fill with symlinks, FIFOs or hard links: so it is
//! opened relative to the directory's descriptor with `O_NOFOLLOW | O_NONBLOCK`, and
//! written only when `fstat` shows a regular file with one link that jemsafe owns;
//! anything else in its place is removed (the entry, never what it points at) and the
//! file made anew. It is bounded by rewriting its newest part to a new file that is
//! renamed over it. Every read is bounded.

use super::{header, keep_from, parse, Parsed};
use crate::dumps::files;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct Writer {
    dir: PathBuf,
    name: String,
    max_bytes: u64,
    max_age: Duration,
    /// The group the file is given (the dump directory's: mysqld's group may read it).
    group: Option<u32>,
}

impl Writer {
    pub fn new(
        dir: &Path,
        prefix: &str,
        max_bytes: u64,
        max_age: Duration,
        group: Option<u32>,
    ) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            name: super::file_name(prefix),
            max_bytes,
            max_age,
            group,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Appends `lines` (whole lines) in one write; rewrites the file when it has grown past
    /// its bound. A note for the log when something was wrong with what was there.
    pub fn append(&self, lines: &[u8]) -> Result<Option<String>, String> {
        let dir_fd = files::open_dir(&self.dir)
            .map_err(|e| format!("cannot open {}: {e}", self.dir.display()))?;
        let (mut file, note) = self.open(&dir_fd)?;
        let size = file
            .metadata()
            .map_err(|e| format!("cannot inspect {}: {e}", self.name))?
            .len();
        let mut out = Vec::with_capacity(lines.len() + 32);
        if size == 0 {
            out.extend(header());
        } else {
            // A write cut short (a crash, a full disk) must not swallow the next line.
            let mut last = [0u8; 1];
            if file.read_at(&mut last, size - 1).is_ok() && last[0] != b'\n' {
                out.push(b'\n');
            }
        }
        out.extend_from_slice(lines);
        file.write_all(&out)
            .map_err(|e| format!("cannot write {}: {e}", self.path().display()))?;
        if size + out.len() as u64 > self.max_bytes {
            drop(file);
            self.rewrite(&dir_fd, SystemTime::now())?;
        }
        Ok(note)
    }

    /// Drops what is older than `max_age` (and what is over the size bound): a rewrite
    /// only when there is something to drop.
    pub fn maintain(&self, now: SystemTime) -> Result<(), String> {
        let dir_fd = files::open_dir(&self.dir)
            .map_err(|e| format!("cannot open {}: {e}", self.dir.display()))?;
        self.rewrite(&dir_fd, now)
    }

    /// Opens the file for appending, checked; makes it anew when what is there is not a
    /// file of jemsafe's.
    fn open(&self, dir: &OwnedFd) -> Result<(std::fs::File, Option<String>), String> {
        let (file, note) = match open_checked(dir, &self.name, false) {
            Ok(f) => (f, None),
            Err(why) => {
                let note = format!(
                    "{}: {why}; removed it and started a new timeline",
                    self.path().display()
                );
                let _ = files::remove(dir, &self.name);
                let f = open_checked(dir, &self.name, true)
                    .map_err(|e| format!("cannot create {}: {e}", self.path().display()))?;
                (f, Some(note))
            }
        };
        if file.metadata().is_ok_and(|m| m.len() == 0) {
            self.give_group(&file);
        }
        Ok((file, note))
    }

    fn give_group(&self, f: &std::fs::File) {
        if let Some(gid) = self.group {
            let _ = std::os::unix::fs::fchown(f, None, Some(gid));
        }
    }

    /// Keeps the lines [`keep_from`] says, through a new file renamed over the old.
    fn rewrite(&self, dir: &OwnedFd, now: SystemTime) -> Result<(), String> {
        let file = match open_checked(dir, &self.name, false) {
            Ok(f) => f,
            Err(_) => return Ok(()), // nothing of ours to bound
        };
        let (bytes, mid) = read_bounded(file, self.max_bytes.saturating_mul(2) + (1 << 20))
            .map_err(|e| format!("cannot read {}: {e}", self.path().display()))?;
        let lines: Vec<&[u8]> = bytes
            .split_inclusive(|b| *b == b'\n')
            .skip(usize::from(mid))
            .filter(|l| l.ends_with(b"\n"))
            .collect();
        let stamped: Vec<(Option<SystemTime>, usize)> =
            lines.iter().map(|l| (line_time(l), l.len())).collect();
        let from = keep_from(&stamped, self.max_bytes, self.max_age, now);
        if from == 0 && !mid {
            return Ok(());
        }
        let temp = format!(".{}.{}.tmp", self.name, std::process::id());
        let _ = files::remove(dir, &temp);
        let fd = nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            temp.as_str(),
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .map_err(|e| format!("cannot create {temp}: {e}"))?;
        // SAFETY: openat just returned this descriptor; nothing else owns it.
        let mut out = unsafe { std::fs::File::from_raw_fd(fd) };
        self.give_group(&out);
        let mut text = header();
        for l in &lines[from..] {
            if line_time(l).is_some() {
                text.extend_from_slice(l);
            }
        }
        let written = out
            .write_all(&text)
            .and_then(|()| out.sync_data())
            .and_then(|()| {
                nix::fcntl::renameat(
                    Some(dir.as_raw_fd()),
                    temp.as_str(),
                    Some(dir.as_raw_fd()),
                    self.name.as_str(),
                )
                .map_err(std::io::Error::from)
            });
        if let Err(e) = written {
            let _ = files::remove(dir, &temp);
            return Err(format!("cannot rewrite {}: {e}", self.path().display()));
        }
        Ok(())
    }
}

/// `name` in `dir` opened for reading and appending: a regular file with one link that
/// jemsafe owns, or why not. `create`: a new file, never an existing name.
fn open_checked(dir: &OwnedFd, name: &str, create: bool) -> Result<std::fs::File, String> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR
        | OFlag::O_APPEND
        | if create {
            OFlag::O_CREAT | OFlag::O_EXCL
        } else {
            OFlag::O_CREAT
        };
    let me = nix::unistd::geteuid().as_raw();
    files::open_checked(dir, name, flags, Some((me, "jemsafe's")))
}

/// At most `limit` bytes of `file`: all of it, or its end (and then true: the first line
/// is partial).
fn read_bounded(mut file: std::fs::File, limit: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let size = file.metadata()?.len();
    let mid = size > limit;
    if mid {
        file.seek(SeekFrom::Start(size - limit))?;
    } else {
        file.rewind()?;
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok((bytes, mid))
}

/// A line's time, without decoding all of it; None for the header or a damaged line.
fn line_time(line: &[u8]) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct T {
        t: u64,
    }
    let t: T = serde_json::from_slice(line).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(t.t))
}

/// Why a timeline file could not be read: a missing file is normal where jemsafe never
/// ran with a timeline (the page leaves it out, `jemsafe timeline` says where it comes
/// from); anything else is an I/O failure (its exit status follows the error's kind).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "{shown} does not exist: jemsafe writes it while it runs mysqld with \
         [timeline] interval_s > 0 (the default, 10)"
    )]
    Missing { shown: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl From<ReadError> for crate::error::Error {
    fn from(e: ReadError) -> crate::error::Error {
        match e {
            ReadError::Missing { .. } => crate::error::Error::NotFound(e.to_string()),
            ReadError::Io { context, source } => crate::error::Error::Io { context, source },
        }
    }
}

/// Reads the timeline at `path` (at most `limit` bytes: its newest part when longer),
/// without following a symlink unless `follow`.
pub fn read(path: &Path, follow: bool, limit: u64) -> Result<Parsed, ReadError> {
    let shown = jemsafe_report::safe::shown(path);
    let opened = jemsafe_report::safe::open_regular(path, follow).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ReadError::Missing {
                shown: shown.clone(),
            }
        } else {
            ReadError::Io {
                context: shown.clone(),
                source,
            }
        }
    })?;
    let (bytes, mid) = read_bounded(opened.file, limit).map_err(|source| ReadError::Io {
        context: format!("cannot read {shown}"),
        source,
    })?;
    Ok(parse(&bytes, mid))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, sample};
    use super::super::{encode, Record};
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dir(tag: &str) -> PathBuf {
        nix::unistd::mkdtemp(format!("/tmp/jemsafe-timeline-{tag}.XXXXXX").as_str()).unwrap()
    }

    fn lines(records: &[Record]) -> Vec<u8> {
        records.iter().flat_map(encode).collect()
    }

    #[test]
    fn appends_survive_a_new_writer_and_are_read_back() {
        let d = dir("append");
        let w = Writer::new(&d, "mysqld", 1 << 20, Duration::ZERO, None);
        w.append(&lines(&[sample(1, 7, 100)])).unwrap();
        // A crash left half a line: the next append starts on a line of its own.
        std::fs::OpenOptions::new()
            .append(true)
            .open(w.path())
            .unwrap()
            .write_all(b"{\"t\":2,\"pid\"")
            .unwrap();
        let w = Writer::new(&d, "mysqld", 1 << 20, Duration::ZERO, None);
        w.append(&lines(&[sample(3, 7, 120)])).unwrap();
        let parsed = read(&w.path(), false, 1 << 20).unwrap();
        assert_eq!(parsed.records, [sample(1, 7, 100), sample(3, 7, 120)]);
        assert_eq!(parsed.damage.unwrap().lines, 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_file_stays_within_its_bound_keeping_the_newest() {
        let d = dir("bound");
        let w = Writer::new(&d, "mysqld", 20_000, Duration::ZERO, None);
        for i in 0..1000 {
            w.append(&lines(&[sample(i, 7, 100 + i)])).unwrap();
            assert!(std::fs::metadata(w.path()).unwrap().len() <= 20_000 + 300);
        }
        let parsed = read(&w.path(), false, 1 << 20).unwrap();
        assert_eq!(parsed.damage, None);
        assert_eq!(parsed.records.last(), Some(&sample(999, 7, 1099)));
        assert!(parsed.records.len() > 50, "{}", parsed.records.len());
        // Age: everything older than 100 s before the last record goes.
        let w = Writer::new(&d, "mysqld", 1 << 20, Duration::from_secs(100), None);
        w.maintain(at(1000)).unwrap();
        let parsed = read(&w.path(), false, 1 << 20).unwrap();
        assert!(parsed.records.iter().all(|r| r.time() >= at(900)));
        assert!(parsed.records.len() > 10 && parsed.records.len() <= 100);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn planted_symlinks_hard_links_and_fifos_are_replaced_not_written_through() {
        let d = dir("planted");
        let w = Writer::new(&d, "mysqld", 1 << 20, Duration::ZERO, None);
        let target = d.join("target");
        std::fs::write(&target, "keep").unwrap();
        for plant in ["symlink", "hardlink", "fifo"] {
            let _ = std::fs::remove_file(w.path());
            match plant {
                "symlink" => std::os::unix::fs::symlink(&target, w.path()).unwrap(),
                "hardlink" => std::fs::hard_link(&target, w.path()).unwrap(),
                _ => {
                    nix::unistd::mkfifo(&w.path(), nix::sys::stat::Mode::from_bits_truncate(0o666))
                        .unwrap()
                }
            }
            let note = w.append(&lines(&[sample(1, 7, 100)])).unwrap();
            assert!(note.unwrap().contains("started a new timeline"), "{plant}");
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep", "{plant}");
            let meta = std::fs::symlink_metadata(w.path()).unwrap();
            assert!(meta.is_file() && meta.nlink() == 1, "{plant}");
            assert_eq!(read(&w.path(), false, 1 << 20).unwrap().records.len(), 1);
        }
        // The reader refuses a symlink at the default path too.
        std::fs::remove_file(w.path()).unwrap();
        std::os::unix::fs::symlink(&target, w.path()).unwrap();
        assert!(read(&w.path(), false, 1 << 20).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_longer_than_the_bound_is_read_from_its_newest_part() {
        let d = dir("long");
        let path = d.join("t");
        let mut bytes = header();
        for i in 0..100 {
            bytes.extend(encode(&sample(i, 7, 100)));
        }
        std::fs::write(&path, &bytes).unwrap();
        let parsed = read(&path, false, 2000).unwrap();
        assert!(parsed.started_mid_file && parsed.damage.is_none());
        assert!(parsed.records.len() < 100 && parsed.records.len() > 5);
        assert_eq!(parsed.records.last(), Some(&sample(99, 7, 100)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
