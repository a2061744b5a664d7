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

use jemsafe_report::maps::MapEntry;
use nix::fcntl::OFlag;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Hidden names the shim writes on-demand dumps to: never a heap name, so listing,
/// retention and inotify handling ignore them until they are renamed.
pub const TEMP_PREFIX: &str = ".jemsafe-partial.";

/// The temporary name for the dump that will be called `final_name`.
pub fn temp_name(final_name: &str) -> String {
    format!("{TEMP_PREFIX}{final_name}")
}

/// A random number for a name that must be unguessable and new (an output's temporary
/// name, an incident record's suffix when its name was taken), from the standard
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

/// The dump directory, opened without following a symlink at its last component.
pub fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    jemsafe_report::safe::open_dir(None, dir, false)
}

/// `name` in the directory `dir`, opened for reading if it is a regular file with one
/// link owned by `owner` (when given); otherwise why not.
pub fn open_heap_file(dir: &OwnedFd, name: &str, owner: Option<u32>) -> Result<File, String> {
    open_checked(
        dir,
        name,
        OFlag::O_RDONLY,
        owner.map(|uid| (uid, "mysqld's")),
    )
}

/// `name` in `dir`, opened with `flags` (never following a symlink, never blocking on a
/// FIFO; a file it creates gets mode 0640), if it is a regular file with one link owned
/// by `owner` (uid, and whose uid it is, for the message) when given; otherwise why not.
pub fn open_checked(
    dir: &OwnedFd,
    name: &str,
    flags: OFlag,
    owner: Option<(u32, &str)>,
) -> Result<File, String> {
    open_checked_mode(dir, name, flags, owner, 0o640)
}

/// [`open_checked`], a file it creates getting `mode` (before the umask).
pub fn open_checked_mode(
    dir: &OwnedFd,
    name: &str,
    flags: OFlag,
    owner: Option<(u32, &str)>,
    mode: u32,
) -> Result<File, String> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ELOOP => "it is a symbolic link".to_owned(),
        e => format!("cannot open it: {e}"),
    })?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "it has {} hard links (a file written there has one)",
            meta.nlink()
        ));
    }
    if let Some((uid, whose)) = owner {
        if meta.uid() != uid {
            return Err(format!(
                "it belongs to uid {}, not to {whose} uid {uid}",
                meta.uid()
            ));
        }
    }
    Ok(file)
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
    nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    )
    .map_err(io::Error::from)
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
) -> Result<Vec<MapEntry>, String> {
    if size == 0 {
        return Err("the file is empty".into());
    }
    let text = String::from_utf8_lossy(tail);
    let Some(at) = text.rfind("MAPPED_LIBRARIES:\n") else {
        return Err("it has no MAPPED_LIBRARIES section at its end (cut short?)".into());
    };
    let maps = &text[at + "MAPPED_LIBRARIES:\n".len()..];
    if !maps.ends_with('\n') {
        return Err("its last line is cut short".into());
    }
    let last_line = maps.lines().last().unwrap_or("");
    let Some(last) = jemsafe_report::maps::parse_line(last_line) else {
        return Err(format!("its last line is not a maps line: {last_line:?}"));
    };
    if let Some(expected) = last_mapping {
        if (last.start, last.end) != (expected.start, expected.end) {
            return Err(format!(
                "its maps copy ends at {:x}-{:x}, but the process's maps end at {:x}-{:x} \
                 (cut short)",
                last.start, last.end, expected.start, expected.end
            ));
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
) -> Result<Vec<MapEntry>, String> {
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
        _ => Err("its maps copy does not end with the top of the address space (cut short)".into()),
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
) -> Result<u64, String> {
    let mut file = open_heap_file(dir, partial, owner)?;
    let (size, tail) = read_tail(&mut file).map_err(|e| format!("cannot read it: {e}"))?;
    completeness_of_orphan(size, &tail, own_top_mapping().as_ref())?;
    restrict_file(&file).map_err(|e| format!("cannot chmod it: {e}"))?;
    rename_new(dir, partial, final_name)
        .map_err(|e| format!("cannot rename it to {final_name}: {e}"))?;
    Ok(size)
}

/// Writes `bytes` as the new file `name` in the directory `dir` (a sidecar, an incident
/// record): never over an existing name, never through a symlink, never blocking; mode
/// 0640, owned by `owner` (the dumps' owner) and the directory's group; removed again if
/// writing fails.
pub fn write_new(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    owner: Option<u32>,
) -> Result<(), String> {
    use std::io::Write;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_EXCL
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .map_err(|e| format!("cannot create {name}: {e}"))?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
        if let Some(uid) = owner {
            if uid != nix::unistd::geteuid().as_raw() {
                // The directory's group too (mysqld's, as on the dumps it writes there):
                // whoever may read a dump may read what describes it.
                let gid = nix::sys::stat::fstat(dir.as_raw_fd())
                    .map(|st| st.st_gid)
                    .map_err(io::Error::from)?;
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
        }
        file.write_all(bytes)?;
        file.sync_data()
    })();
    result.map_err(|e| {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        format!("cannot write {name}: {e}")
    })
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
        assert!(completeness(0, b"", last).unwrap_err().contains("empty"));
        let cut = &d[..d.len() - 10];
        assert!(completeness(cut.len() as u64, cut.as_bytes(), last)
            .unwrap_err()
            .contains("cut short"));
        let before_maps = &d[..d.find("MAPPED").unwrap()];
        assert!(
            completeness(before_maps.len() as u64, before_maps.as_bytes(), last)
                .unwrap_err()
                .contains("no MAPPED_LIBRARIES")
        );
        // Cut exactly at a line boundary inside the maps copy.
        let at_line = &d[..d.rfind("ffffffffff600000").unwrap()];
        let e = completeness(at_line.len() as u64, at_line.as_bytes(), last).unwrap_err();
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
        assert!(at(at_line).unwrap_err().contains("ends at 7ffd1f5e4000"));
        // Without a [vsyscall] page: a kernel-named mapping must end the copy.
        let no_vsyscall = |s: &str| completeness_of_orphan(s.len() as u64, s.as_bytes(), None);
        assert!(no_vsyscall(at_line).is_ok(), "[stack] is the top there");
        let among_libraries = &d[..d.find("7ffd1f5e4000").unwrap()];
        let e = no_vsyscall(among_libraries).unwrap_err();
        assert!(e.contains("top of the address space"), "{e}");
        // [heap] lies below the libraries: a copy cut right after it is not whole.
        let after_heap =
            format!("{among_libraries}55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0    [heap]\n");
        let e = no_vsyscall(&after_heap).unwrap_err();
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
        assert!(crate::dumps::HeapName::parse("mysqld", &t).is_none());
        assert!(t.starts_with('.'));
    }
}
