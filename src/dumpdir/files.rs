//! Root's hands in mysqld's dump directory.
//!
//! mysqld's user owns the dump directory and can swap any name in it for a symlink, a
//! FIFO or a hard link to a file elsewhere. So root touches a heap file only through a
//! descriptor opened relative to the directory (`O_NOFOLLOW | O_NONBLOCK`), and only when
//! `fstat` shows a regular file with one link, owned by mysqld's user: a FIFO cannot hang
//! it, a symlink cannot redirect it, a hard link cannot make it chmod something else.
//!
//! Dumps appear under their final name only when complete: the shim writes to a hidden
//! temporary name, jemsafe checks the file ([`completeness`]) and renames it.

use jemsafe_report::create::{self, Ownership};
use jemsafe_report::maps::MapEntry;
use nix::fcntl::OFlag;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub use jemsafe_report::create::random;

/// Why a file in the dump directory is not used: it is not what jemsafe may touch, it
/// could not be opened, read, changed or written, or it is not a whole dump. The
/// messages say "it …" of the file; the caller names it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it has {0} hard links (a file written there has one)")]
    HardLinks(u64),
    #[error("it belongs to uid {found}, not to {whose} uid {uid}")]
    Owner { found: u32, whose: String, uid: u32 },
    /// `doing`: "open", "inspect", "read", "chmod".
    #[error("cannot {doing} it: {source}")]
    Io {
        doing: &'static str,
        source: io::Error,
    },
    #[error("cannot rename it to {to}: {source}")]
    Rename { to: String, source: io::Error },
    #[error(transparent)]
    New(#[from] create::WriteNewError),
    #[error(transparent)]
    Incomplete(#[from] Incomplete),
}

impl FileError {
    /// An I/O failure `doing` something to the file ("open", "read", "chmod").
    pub fn io(doing: &'static str) -> impl FnOnce(io::Error) -> FileError {
        move |source| FileError::Io { doing, source }
    }
}

/// Why a heap file is not a whole dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    #[error("the file is empty")]
    Empty,
    #[error("it has no MAPPED_LIBRARIES section at its end (cut short?)")]
    NoMaps,
    #[error("its last line is cut short")]
    LastLineCut,
    #[error("its last line is not a maps line: {0:?}")]
    NotMaps(String),
    #[error(
        "its maps copy ends at {:x}-{:x}, but the process's maps end at {:x}-{:x} (cut short)",
        found.0, found.1, expected.0, expected.1
    )]
    EndsElsewhere {
        found: (u64, u64),
        expected: (u64, u64),
    },
    #[error("its maps copy does not end with the top of the address space (cut short)")]
    NoTop,
}

/// Hidden names the shim writes on-demand dumps to: never a heap name, so listing,
/// retention and inotify handling ignore them until they are renamed.
pub const TEMP_PREFIX: &str = ".jemsafe-partial.";

/// The temporary name for the dump that will be called `final_name`.
pub fn temp_name(final_name: &str) -> String {
    format!("{TEMP_PREFIX}{final_name}")
}

/// The dump directory, opened without following a symlink at its last component.
pub fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    jemsafe_report::safe::open_dir(None, dir, false)
}

/// `name` in the directory `dir`, opened for reading if it is a regular file with one
/// link owned by `owner` (when given); otherwise why not.
pub fn open_heap_file(dir: &OwnedFd, name: &str, owner: Option<u32>) -> Result<File, FileError> {
    open_checked(
        dir,
        name,
        OFlag::O_RDONLY,
        owner.map(|uid| (uid, "mysqld's")),
    )
}

/// `name` in `dir`, opened with `flags` (never following a symlink, never blocking on a
/// FIFO; a file `O_CREAT` makes gets mode 0640), if it is a regular file with one link
/// owned by `owner` (uid, and whose uid it is, for the message) when given; otherwise
/// why not. New files of their own are made by [`jemsafe_report::create`].
pub fn open_checked(
    dir: &OwnedFd,
    name: &str,
    flags: OFlag,
    owner: Option<(u32, &str)>,
) -> Result<File, FileError> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ELOOP => FileError::Symlink,
        e => FileError::Io {
            doing: "open",
            source: e.into(),
        },
    })?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    check_file(&file, owner)?;
    Ok(file)
}

/// Whether an open file is one root may touch there: regular, one link, owned by
/// `owner` when given.
fn check_file(file: &File, owner: Option<(u32, &str)>) -> Result<(), FileError> {
    let meta = file.metadata().map_err(FileError::io("inspect"))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular);
    }
    if meta.nlink() != 1 {
        return Err(FileError::HardLinks(meta.nlink()));
    }
    match owner {
        Some((uid, whose)) if meta.uid() != uid => Err(FileError::Owner {
            found: meta.uid(),
            whose: whose.to_owned(),
            uid,
        }),
        _ => Ok(()),
    }
}

/// Takes read access away from others: a heap file reveals mysqld's address-space layout
/// (jemalloc creates files with mode 0644 minus mysqld's umask). Changed through the
/// descriptor that was checked, never by name.
pub fn restrict_file(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o007 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7770))?;
    }
    Ok(())
}

/// Removes `name` from `dir` (the entry itself: a symlink is removed, not followed).
pub fn remove(dir: &OwnedFd, name: &str) -> io::Result<()> {
    create::remove(dir, name)
}

/// Whether `name` exists in `dir` (as anything: a symlink is not followed).
pub fn exists(dir: &OwnedFd, name: &str) -> bool {
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok()
}

/// Renames `from` to `to` inside `dir`, failing rather than replacing an existing `to`.
pub fn rename_new(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    nix::fcntl::renameat2(
        Some(dir.as_raw_fd()),
        from,
        Some(dir.as_raw_fd()),
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// The last bytes of a heap file this many at most: enough for the end of any maps
/// section, and a bound on what root reads from a file mysqld's user wrote.
const TAIL_BYTES: u64 = 1 << 20;

/// Reads the file's size and its last [`TAIL_BYTES`] at most.
pub fn read_tail(file: &mut File) -> io::Result<(u64, Vec<u8>)> {
    let size = file.metadata()?.len();
    let start = size.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((size - start) as usize);
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    Ok((size, tail))
}

/// Whether a heap file is whole, judged from its size and its tail: jemalloc ends every
/// dump with `MAPPED_LIBRARIES:` and a copy of /proc/PID/maps, and on a full disk it can
/// report success for a file cut short (a short write is not an error to it).
/// `last_mapping`: the last line of the process's /proc/PID/maps now, when it still
/// runs. The top of the address space ([vsyscall], [stack]) does not change, so a dump
/// cut at a line boundary inside its maps copy is caught too.
/// A whole dump's maps copy is returned: the process's mappings at the dump's instant.
pub fn completeness(
    size: u64,
    tail: &[u8],
    last_mapping: Option<&MapEntry>,
) -> Result<Vec<MapEntry>, Incomplete> {
    if size == 0 {
        return Err(Incomplete::Empty);
    }
    let text = String::from_utf8_lossy(tail);
    let Some(at) = text.rfind("MAPPED_LIBRARIES:\n") else {
        return Err(Incomplete::NoMaps);
    };
    let maps = &text[at + "MAPPED_LIBRARIES:\n".len()..];
    if !maps.ends_with('\n') {
        return Err(Incomplete::LastLineCut);
    }
    let last_line = maps.lines().last().unwrap_or("");
    let Some(last) = jemsafe_report::maps::parse_line(last_line) else {
        return Err(Incomplete::NotMaps(last_line.to_owned()));
    };
    if let Some(expected) = last_mapping {
        if (last.start, last.end) != (expected.start, expected.end) {
            return Err(Incomplete::EndsElsewhere {
                found: (last.start, last.end),
                expected: (expected.start, expected.end),
            });
        }
    }
    Ok(maps
        .lines()
        .filter_map(jemsafe_report::maps::parse_line)
        .collect())
}

/// Whether a heap file whose writer is gone is whole: [`completeness`] against the top
/// of the address space. Where that is the `[vsyscall]` page (x86-64), it is the same
/// fixed mapping in every process, so `fixed_top` (jemsafe's own last mapping, when it is
/// that page) is what the copy must end with. Elsewhere the copy must at least end with a
/// mapping the kernel names (`[stack]`, `[vvar]`, `[vdso]`): those are above every
/// library, so a copy cut at a line boundary among the libraries fails.
/// The kernel's mappings above every library (not `[heap]` or `[anon:…]`, which sit among
/// or below them): a maps copy that ends with one of these was not cut among the libraries.
const TOP_MAPPINGS: [&str; 7] = [
    "[stack]",
    "[vvar]",
    "[vvar_vclock]",
    "[vdso]",
    "[vsyscall]",
    "[vectors]",
    "[sigpage]",
];

pub fn completeness_of_orphan(
    size: u64,
    tail: &[u8],
    fixed_top: Option<&MapEntry>,
) -> Result<Vec<MapEntry>, Incomplete> {
    let fixed_top = fixed_top.filter(|m| m.path.as_deref() == Some("[vsyscall]"));
    let maps = completeness(size, tail, fixed_top)?;
    match maps.last() {
        Some(last)
            if last
                .path
                .as_deref()
                .is_some_and(|p| TOP_MAPPINGS.contains(&p)) =>
        {
            Ok(maps)
        }
        _ => Err(Incomplete::NoTop),
    }
}

/// jemsafe's own last mapping: the top of the address space.
pub fn own_top_mapping() -> Option<MapEntry> {
    crate::procfs::maps(std::process::id() as i32).ok()?.pop()
}

/// A partial file (`partial`, the temporary name of `final_name`) that an interrupted
/// dump's writer finished after all (jemsafe was killed, mysqld lived on): if it is a
/// regular file of `owner`'s holding a whole dump, it is made private and given its final
/// name (never over an existing one). Its size, or why it stays partial.
pub fn recover_partial(
    dir: &OwnedFd,
    partial: &str,
    final_name: &str,
    owner: Option<u32>,
) -> Result<u64, FileError> {
    let mut file = open_heap_file(dir, partial, owner)?;
    let (size, tail) = read_tail(&mut file).map_err(FileError::io("read"))?;
    completeness_of_orphan(size, &tail, own_top_mapping().as_ref())?;
    restrict_file(&file).map_err(FileError::io("chmod"))?;
    rename_new(dir, partial, final_name).map_err(|source| FileError::Rename {
        to: final_name.to_owned(),
        source,
    })?;
    Ok(size)
}

/// Writes `bytes` as the new file `name` in the directory `dir` (a sidecar, an incident
/// record) through [`create::write_new`]: never over an existing name, never through a
/// symlink, never blocking; mode 0640, owned by `owner` (the dumps' owner) and the
/// directory's group; removed again if writing fails.
pub fn write_new(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    owner: Option<u32>,
) -> Result<(), FileError> {
    let write = |source| create::WriteNewError::Write {
        name: name.to_owned(),
        source,
    };
    // The directory's group too (mysqld's, as on the dumps it writes there): whoever may
    // read a dump may read what describes it.
    let (uid, gid) = match owner.filter(|&uid| uid != nix::unistd::geteuid().as_raw()) {
        Some(uid) => {
            let st = nix::sys::stat::fstat(dir.as_raw_fd()).map_err(|e| write(e.into()))?;
            (Some(uid), Some(st.st_gid))
        }
        None => (None, None),
    };
    let ownership = Ownership {
        mode: 0o640,
        uid,
        gid,
    };
    Ok(create::write_new(dir, name, bytes, ownership)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1234 /usr/sbin/mariadbd\n\
        7ffd1f5e4000-7ffd1f605000 rw-p 00000000 00:00 0 [stack]\n\
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n";

    fn dump() -> String {
        format!("heap_v2/524288\n  t*: 1: 8 [0: 0]\n\nMAPPED_LIBRARIES:\n{MAPS}")
    }

    /// The last mapping of [`MAPS`], the [vsyscall] page: where a whole copy ends.
    fn last_mapping() -> Option<jemsafe_report::maps::MapEntry> {
        MAPS.lines()
            .last()
            .and_then(jemsafe_report::maps::parse_line)
    }

    #[test]
    fn a_whole_dump_passes() {
        let d = dump();
        let last = last_mapping();
        let last = last.as_ref();
        let maps = completeness(d.len() as u64, d.as_bytes(), last).unwrap();
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[0].path.as_deref(), Some("/usr/sbin/mariadbd"));
        assert_eq!(completeness(d.len() as u64, d.as_bytes(), None), Ok(maps));
    }

    #[test]
    fn cut_dumps_fail_with_the_reason() {
        let d = dump();
        let last = last_mapping();
        let last = last.as_ref();
        let why = |r: Result<Vec<MapEntry>, Incomplete>| r.unwrap_err().to_string();
        assert!(why(completeness(0, b"", last)).contains("empty"));
        let cut = &d[..d.len() - 10];
        assert!(why(completeness(cut.len() as u64, cut.as_bytes(), last)).contains("cut short"));
        let before_maps = &d[..d.find("MAPPED").unwrap()];
        assert!(why(completeness(
            before_maps.len() as u64,
            before_maps.as_bytes(),
            last
        ))
        .contains("no MAPPED_LIBRARIES"));
        // Cut exactly at a line boundary inside the maps copy.
        let at_line = &d[..d.rfind("ffffffffff600000").unwrap()];
        let e = why(completeness(at_line.len() as u64, at_line.as_bytes(), last));
        assert!(e.contains("ends at 7ffd1f5e4000-7ffd1f605000"), "{e}");
    }

    #[test]
    fn an_orphans_dump_is_whole_only_up_to_the_top_of_the_address_space() {
        let d = dump();
        let vsyscall = last_mapping();
        let at = |s: &str| completeness_of_orphan(s.len() as u64, s.as_bytes(), vsyscall.as_ref());
        assert_eq!(at(&d).unwrap().len(), 3);
        // Cut at a line boundary: after [stack], before [vsyscall].
        let at_line = &d[..d.rfind("ffffffffff600000").unwrap()];
        assert!(at(at_line)
            .unwrap_err()
            .to_string()
            .contains("ends at 7ffd1f5e4000"));
        // Without a [vsyscall] page: a kernel-named mapping must end the copy.
        let no_vsyscall = |s: &str| completeness_of_orphan(s.len() as u64, s.as_bytes(), None);
        assert!(no_vsyscall(at_line).is_ok(), "[stack] is the top there");
        let among_libraries = &d[..d.find("7ffd1f5e4000").unwrap()];
        let e = no_vsyscall(among_libraries).unwrap_err().to_string();
        assert!(e.contains("top of the address space"), "{e}");
        // [heap] lies below the libraries: a copy cut right after it is not whole.
        let after_heap =
            format!("{among_libraries}55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0    [heap]\n");
        let e = no_vsyscall(&after_heap).unwrap_err().to_string();
        assert!(e.contains("top of the address space"), "{e}");
        // A top that is not the fixed page says nothing about another process.
        let stack = jemsafe_report::maps::parse_line(MAPS.lines().nth(1).unwrap());
        let e = completeness_of_orphan(d.len() as u64, d.as_bytes(), stack.as_ref());
        assert!(e.is_ok(), "{e:?}");
        assert!(completeness_of_orphan(5, b"heap_", None).is_err());
    }

    #[test]
    fn temp_names_are_never_heap_names() {
        let t = temp_name("mysqld.1.20261127T000000.0001.cli.heap");
        assert!(crate::dumpdir::HeapName::parse("mysqld", &t).is_none());
        assert!(t.starts_with('.'));
    }
}
