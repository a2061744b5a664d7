//! The timeline file on disk. jemsafe (root) appends to it in mysqld's dump directory,
//! which mysqld's user owns and can fill with symlinks, FIFOs or hard links: so it is
//! opened relative to the directory's descriptor with `O_NOFOLLOW | O_NONBLOCK`, and
//! written only when `fstat` shows a regular file with one link that jemsafe owns;
//! anything else in its place is removed (the entry, never what it points at) and the
//! file made anew. It is bounded by rewriting its newest part to a new file that is
//! renamed over it. Every read is bounded.

use super::{header, keep_from, parse, Dropped, Parsed};
use crate::dumpdir::files::{self, FileError};
use crate::dumpdir::DumpDir;
use jemsafe_report::create::{self, Access, Ownership, Staged, WriteNewError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// Why the timeline could not be written or bounded.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// `doing`: "open", "inspect", "create", "write", "read", "rewrite"; `shown`: the
    /// file or directory.
    #[error("cannot {doing} {shown}: {source}")]
    Io {
        doing: &'static str,
        shown: String,
        source: std::io::Error,
    },
    /// The rewrite's new file.
    #[error(transparent)]
    New(#[from] WriteNewError),
}

pub struct Writer {
    /// The dump directory: the supervisor's handle, whose descriptor serves every file
    /// of a pass.
    dir: Rc<DumpDir>,
    name: String,
    max_bytes: u64,
    max_age: Duration,
    /// The group the file is given (the dump directory's: mysqld's group may read it).
    group: Option<u32>,
}

impl Writer {
    pub fn new(dir: Rc<DumpDir>, max_bytes: u64, max_age: Duration, group: Option<u32>) -> Writer {
        Writer {
            name: super::file_name(dir.prefix()),
            dir,
            max_bytes,
            max_age,
            group,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// An I/O failure `doing` something to the file.
    fn io(&self, doing: &'static str) -> impl FnOnce(std::io::Error) -> WriteError {
        let shown = self.path().display().to_string();
        move |source| WriteError::Io {
            doing,
            shown,
            source,
        }
    }

    fn open_dir(&self) -> Result<Rc<OwnedFd>, WriteError> {
        self.dir.fd().map_err(|source| WriteError::Io {
            doing: "open",
            shown: self.dir.path().display().to_string(),
            source,
        })
    }

    /// Appends `lines` (whole lines) in one write; rewrites the file when it has grown past
    /// its bound. A note for the log when something was wrong with what was there.
    pub fn append(&self, lines: &[u8]) -> Result<Option<String>, WriteError> {
        let dir_fd = self.open_dir()?;
        let (mut file, note) = self.open(&dir_fd)?;
        let size = file
            .metadata()
            .map_err(|source| WriteError::Io {
                doing: "inspect",
                shown: self.name.clone(),
                source,
            })?
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
        file.write_all(&out).map_err(self.io("write"))?;
        if size + out.len() as u64 > self.max_bytes {
            drop(file);
            self.rewrite(&dir_fd, SystemTime::now())?;
        }
        Ok(note)
    }

    /// Drops what is older than `max_age` (and what is over the size bound): a rewrite
    /// only when there is something to drop.
    pub fn maintain(&self, now: SystemTime) -> Result<(), WriteError> {
        let done = self
            .open_dir()
            .and_then(|dir_fd| self.rewrite(&dir_fd, now));
        self.dir.release();
        done
    }

    /// Opens the file for appending, checked; makes it anew when what is there is not a
    /// file of jemsafe's.
    fn open(&self, dir: &OwnedFd) -> Result<(std::fs::File, Option<String>), WriteError> {
        let (file, note) = match open_ours(dir, &self.name, APPEND) {
            Ok(f) => (f, None),
            Err(why) => {
                let note = format!(
                    "{}: {why}; removed it and started a new timeline",
                    self.path().display()
                );
                let _ = files::remove(dir, &self.name);
                let f = create::create_new(dir, &self.name, Access::Append, 0o640)
                    .map_err(self.io("create"))?;
                (f, Some(note))
            }
        };
        if file.metadata().is_ok_and(|m| m.len() == 0) {
            if let Some(gid) = self.group {
                let _ = std::os::unix::fs::fchown(&file, None, Some(gid));
            }
        }
        Ok((file, note))
    }

    /// Keeps the lines [`keep_from`] says, through a new file renamed over the old.
    fn rewrite(&self, dir: &OwnedFd, now: SystemTime) -> Result<(), WriteError> {
        let file = match open_ours(dir, &self.name, APPEND) {
            Ok(f) => f,
            Err(_) => return Ok(()), // nothing of ours to bound
        };
        let read_limit = self.max_bytes.saturating_mul(2).saturating_add(1 << 20);
        let (bytes, mid) = read_bounded(file, read_limit).map_err(self.io("read"))?;
        // Header lines are not data: the new file gets a header of its own.
        let header = header();
        let lines: Vec<&[u8]> = bytes
            .split_inclusive(|b| *b == b'\n')
            .skip(usize::from(mid))
            .filter(|l| l.ends_with(b"\n") && *l != header.as_slice())
            .collect();
        let stamped: Vec<(Option<SystemTime>, usize)> =
            lines.iter().map(|l| (line_time(l), l.len())).collect();
        let from = keep_from(&stamped, self.max_bytes, self.max_age, now);
        if from == 0 && !mid {
            return Ok(());
        }
        let dropped = Dropped::count(&stamped, from, self.max_age, now);
        let ownership = Ownership {
            mode: 0o640,
            uid: None,
            gid: self.group,
        };
        let mut out = Staged::create(dir, &self.name, Access::Write, ownership)?;
        let mut text = header;
        for l in &lines[from..] {
            if line_time(l).is_some() {
                text.extend_from_slice(l);
            }
        }
        out.file()
            .write_all(&text)
            .and_then(|()| out.publish(&self.name))
            .map_err(self.io("rewrite"))?;
        if dropped.any() || mid {
            crate::info!(
                "timeline {} rewritten: {}{}",
                self.path().display(),
                dropped.describe(self.max_bytes >> 20, self.max_age.as_secs() / 3600),
                if mid {
                    format!(
                        "; it was longer than {} MiB: its older part was not read and is gone",
                        read_limit >> 20
                    )
                } else {
                    String::new()
                }
            );
        }
        Ok(())
    }
}

/// How the writer opens the file: for reading and appending, made if missing.
const APPEND: nix::fcntl::OFlag = nix::fcntl::OFlag::O_RDWR
    .union(nix::fcntl::OFlag::O_APPEND)
    .union(nix::fcntl::OFlag::O_CREAT);

/// `name` in `dir` opened with `flags` if it is what the writer makes: a regular file with
/// one link, owned by root (jemsafe under systemd) or by the user this jemsafe runs as,
/// reached without a symlink and without blocking on a FIFO; otherwise why not. The
/// writer and the reader both check through here: mysqld's user can rename a file of its
/// own over the name. Root's file is accepted from a reader that is not root (a DBA in
/// the dump directory's group).
fn open_ours(
    dir: &OwnedFd,
    name: &str,
    flags: nix::fcntl::OFlag,
) -> Result<std::fs::File, FileError> {
    use std::os::unix::fs::MetadataExt;
    let file = files::open_checked(dir, name, flags, None)?;
    let me = nix::unistd::geteuid().as_raw();
    let owner = file
        .metadata()
        .map_err(|source| FileError::Io {
            doing: "inspect",
            source,
        })?
        .uid();
    if owner != 0 && owner != me {
        return Err(FileError::Owner {
            found: owner,
            whose: "root or jemsafe's".to_owned(),
            uid: me,
        });
    }
    Ok(file)
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
    jemsafe_report::clock::from_millis(t.t).ok()
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
    /// The dump directory's timeline is not a file jemsafe wrote (see [`open_ours`]): it
    /// is not read.
    #[error("{shown} is not jemsafe's timeline ({why}); it is not read")]
    NotOurs { shown: String, why: FileError },
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
            ReadError::NotOurs { .. } => crate::error::Error::Untrusted(e.to_string()),
            ReadError::Io { context, source } => crate::error::IoError { context, source }.into(),
        }
    }
}

/// Where the timeline to read is.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The dump directory's (`<dir>/<prefix>.timeline`), which mysqld's user can replace:
    /// read only when it passes the writer's checks.
    DumpDir(&'a Path),
    /// A file the user named on the command line (a symlink is followed; any owner).
    Named(&'a Path),
}

impl Source<'_> {
    pub fn path(&self) -> &Path {
        match self {
            Source::DumpDir(p) | Source::Named(p) => p,
        }
    }
}

/// Reads the timeline at `source` (at most `limit` bytes: its newest part when longer).
pub fn read(source: Source, limit: u64) -> Result<Parsed, ReadError> {
    let path = source.path();
    let shown = jemsafe_report::safe::shown(path);
    let io = |context: String| {
        let shown = shown.clone();
        move |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ReadError::Missing { shown }
            } else {
                ReadError::Io { context, source }
            }
        }
    };
    let file = match source {
        Source::Named(p) => {
            jemsafe_report::safe::open_regular(p, true)
                .map_err(io(shown.clone()))?
                .file
        }
        Source::DumpDir(p) => {
            let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str()))
            else {
                return Err(ReadError::Io {
                    context: shown,
                    source: std::io::ErrorKind::InvalidInput.into(),
                });
            };
            let dir = files::open_dir(dir).map_err(io(shown.clone()))?;
            if nix::sys::stat::fstatat(
                Some(dir.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_err_and(|e| e == nix::errno::Errno::ENOENT)
            {
                return Err(ReadError::Missing { shown });
            }
            open_ours(&dir, name, nix::fcntl::OFlag::O_RDONLY).map_err(|why| {
                ReadError::NotOurs {
                    shown: shown.clone(),
                    why,
                }
            })?
        }
    };
    let (bytes, mid) = read_bounded(file, limit).map_err(|source| ReadError::Io {
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

    fn writer(d: &Path, max_bytes: u64, max_age: Duration) -> Writer {
        Writer::new(Rc::new(DumpDir::new(d, "mysqld")), max_bytes, max_age, None)
    }

    fn lines(records: &[Record]) -> Vec<u8> {
        records.iter().flat_map(encode).collect()
    }

    #[test]
    fn appends_survive_a_new_writer_and_are_read_back() {
        let d = dir("append");
        let w = writer(&d, 1 << 20, Duration::ZERO);
        w.append(&lines(&[sample(1, 7, 100)])).unwrap();
        // A crash left half a line: the next append starts on a line of its own.
        std::fs::OpenOptions::new()
            .append(true)
            .open(w.path())
            .unwrap()
            .write_all(b"{\"t\":2,\"pid\"")
            .unwrap();
        let w = writer(&d, 1 << 20, Duration::ZERO);
        w.append(&lines(&[sample(3, 7, 120)])).unwrap();
        let parsed = read(Source::DumpDir(&w.path()), 1 << 20).unwrap();
        assert_eq!(parsed.records, [sample(1, 7, 100), sample(3, 7, 120)]);
        assert_eq!(parsed.damage.unwrap().lines, 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_file_stays_within_its_bound_keeping_the_newest() {
        let d = dir("bound");
        let w = writer(&d, 20_000, Duration::ZERO);
        for i in 0..1000 {
            w.append(&lines(&[sample(i, 7, 100 + i)])).unwrap();
            assert!(std::fs::metadata(w.path()).unwrap().len() <= 20_000 + 300);
        }
        let parsed = read(Source::DumpDir(&w.path()), 1 << 20).unwrap();
        assert_eq!(parsed.damage, None);
        assert_eq!(parsed.records.last(), Some(&sample(999, 7, 1099)));
        // At least the newest half of the bound: 10 000 bytes of lines of about 210.
        assert!(parsed.records.len() >= 45, "{}", parsed.records.len());
        // Age: everything older than 100 s before the last record goes.
        let w = writer(&d, 1 << 20, Duration::from_secs(100));
        w.maintain(at(1000)).unwrap();
        let parsed = read(Source::DumpDir(&w.path()), 1 << 20).unwrap();
        assert!(parsed.records.iter().all(|r| r.time() >= at(900)));
        assert!(parsed.records.len() > 10 && parsed.records.len() <= 100);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn planted_symlinks_hard_links_and_fifos_are_replaced_not_written_through() {
        let d = dir("planted");
        let w = writer(&d, 1 << 20, Duration::ZERO);
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
            assert_eq!(
                read(Source::DumpDir(&w.path()), 1 << 20)
                    .unwrap()
                    .records
                    .len(),
                1
            );
        }
        // The reader refuses a symlink at the default path too.
        std::fs::remove_file(w.path()).unwrap();
        std::os::unix::fs::symlink(&target, w.path()).unwrap();
        assert!(read(Source::DumpDir(&w.path()), 1 << 20).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The campaign's plant: mysqld's user renames a file of its own (fabricated OOM
    /// kills, a 1 TiB limit) over the timeline. The reader checks as the writer does.
    #[test]
    fn the_reader_refuses_what_the_writer_would_not_have_written() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("reader");
        let path = d.join("mysqld.timeline");
        let mut planted = header();
        planted.extend(encode(&sample(1, 7, 100)));
        let not_ours = |why: &str| match read(Source::DumpDir(&path), 1 << 20) {
            Err(e @ ReadError::NotOurs { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("is not jemsafe's timeline") && text.contains(why),
                    "{text}"
                );
            }
            other => panic!("{why}: {other:?}"),
        };
        // Another user's file (mysqld's user: uid 65534 stands in for it here).
        std::fs::write(&path, &planted).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        not_ours("belongs to uid 65534");
        // A hard link to a file of jemsafe's elsewhere.
        std::fs::remove_file(&path).unwrap();
        let elsewhere = d.join("elsewhere");
        std::fs::write(&elsewhere, &planted).unwrap();
        std::fs::hard_link(&elsewhere, &path).unwrap();
        not_ours("2 hard links");
        // A FIFO: refused without blocking.
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        not_ours("not a regular file");
        // A symlink to jemsafe's own file.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        not_ours("symbolic link");
        // jemsafe's own file reads; a missing one is missing, not foreign.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &planted).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            read(Source::DumpDir(&path), 1 << 20).unwrap().records.len(),
            1
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            read(Source::DumpDir(&path), 1 << 20),
            Err(ReadError::Missing { .. })
        ));
        // A file the user names is read as named.
        std::os::unix::fs::chown(&elsewhere, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            read(Source::Named(&elsewhere), 1 << 20)
                .unwrap()
                .records
                .len(),
            1
        );
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
        let parsed = read(Source::DumpDir(&path), 2000).unwrap();
        assert!(parsed.started_mid_file && parsed.damage.is_none());
        assert!(parsed.records.len() < 100 && parsed.records.len() > 5);
        assert_eq!(parsed.records.last(), Some(&sample(99, 7, 100)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
