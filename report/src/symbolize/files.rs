//! Opening the files a dump names (safely, see [`crate::safe`]) and checking that they
//! are the files that were mapped: same device and inode, or the build-id recorded.

use super::{hex, Options};
use crate::maps::MapEntry;
use crate::safe::FileStore;
use object::Object as _;
use std::path::{Path, PathBuf};

/// A file another user can write is read into memory rather than mapped: at most this.
pub(super) const MAX_READ: u64 = 2 << 30;

/// An object or debug file, opened safely (see [`crate::safe`]), its bytes kept in the
/// report's [`FileStore`]: the parsed structures borrow from them.
pub(super) struct FileData<'a> {
    pub(super) data: &'a [u8],
    pub(super) meta: std::fs::Metadata,
}

/// Opens a file named by a dump (or found for one): a regular file only, never blocking,
/// `follow`: whether the last component may be a symbolic link. Err is the reason.
pub(super) fn open_file<'a>(
    store: &'a FileStore,
    path: &Path,
    follow: bool,
) -> Result<FileData<'a>, String> {
    let (opened, _) = open_only(path, follow)?;
    let data = store.file_bytes(&opened, MAX_READ)?;
    Ok(FileData {
        data,
        meta: opened.meta,
    })
}

/// [`open_file`] without reading: the file and its filesystem's type (`statfs`'s f_type).
fn open_only(
    path: &Path,
    follow: bool,
) -> Result<(crate::safe::Opened, Option<nix::sys::statfs::FsType>), String> {
    let opened = crate::safe::open_regular(path, follow).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            e.to_string()
        } else {
            format!("cannot be read ({e})")
        }
    })?;
    let fs_type = nix::sys::statfs::fstatfs(&opened.file)
        .ok()
        .map(|s| s.filesystem_type());
    Ok((opened, fs_type))
}

pub(super) fn build_id_path(dir: &Path, id: &[u8]) -> Option<PathBuf> {
    if id.len() < 2 {
        return None;
    }
    let h = hex(id);
    Some(
        dir.join(".build-id")
            .join(&h[..2])
            .join(format!("{}.debug", &h[2..])),
    )
}

pub(super) const OVERLAYFS: nix::sys::statfs::FsType = nix::sys::statfs::OVERLAYFS_SUPER_MAGIC;
pub(super) const BTRFS: nix::sys::statfs::FsType = nix::sys::statfs::BTRFS_SUPER_MAGIC;

/// Whether the file at a maps line's path (device `dev`, inode `ino` by fstat, on a
/// file system of type `fs_type`) is the file that was mapped. The inode must match, and
/// so must the device, except where the kernel's maps and stat disagree by design:
/// overlayfs (before Linux 6.8 the maps show the lower layer's device; the same rule as
/// `verify`) and btrfs (stat shows a subvolume's anonymous device).
pub(super) fn same_file(
    entry: &MapEntry,
    dev: (u32, u32),
    ino: u64,
    fs_type: Option<nix::sys::statfs::FsType>,
) -> Result<(), String> {
    if ino != entry.inode {
        return Err(format!(
            "is not the file that was mapped (inode {ino} now, {} in the dump): it was \
             replaced after the dump, e.g. by a package upgrade",
            entry.inode
        ));
    }
    if dev != entry.dev && !matches!(fs_type, Some(t) if t == OVERLAYFS || t == BTRFS) {
        return Err(format!(
            "is not the file that was mapped (device {:02x}:{:02x} now, {:02x}:{:02x} in \
             the dump, same inode number): another file system is mounted there now",
            dev.0, dev.1, entry.dev.0, entry.dev.1
        ));
    }
    Ok(())
}

pub(super) fn shown_dirs(opts: &Options) -> String {
    let dirs: Vec<String> = opts
        .debug_dirs
        .iter()
        .map(|d| d.join(".build-id").display().to_string())
        .collect();
    if dirs.is_empty() {
        "no debug directory".into()
    } else {
        dirs.join(", ")
    }
}

/// A file found by build-id (a separate debug file: symbols and DWARF, no code), checked
/// to carry that build-id.
pub(super) fn by_build_id<'a>(
    store: &'a FileStore,
    id: &[u8],
    opts: &Options,
    notes: &mut Vec<String>,
) -> Option<(&'a [u8], object::File<'a>)> {
    use crate::debuginfod::{cached, Kind};
    let in_cache =
        [Kind::Debuginfo, Kind::Executable].map(|k| cached(&opts.debuginfod.cache, id, k));
    let local = opts.debug_dirs.iter().flat_map(|d| {
        // `xx/rest.debug`, the debug file; `xx/rest`, the object itself (as Fedora's
        // .build-id trees and `jemsafe archive` have it).
        let debug = build_id_path(d, id);
        let exe = debug
            .as_ref()
            .map(|p| p.with_extension(""))
            .filter(|p| p.extension().is_none());
        exe.into_iter().chain(debug)
    });
    for c in local.chain(in_cache) {
        let Some((data, file)) = candidate(store, &c, notes) else {
            continue;
        };
        if file.build_id().ok().flatten() == Some(id) {
            return Some((data, file));
        }
    }
    None
}

/// A debug file candidate (which may be a link, as the `.build-id` tree is made of them),
/// opened and parsed as ELF; None when it is not there (the rule) or not usable (then with
/// a note, unless it is simply not ELF).
pub(super) fn candidate<'a>(
    store: &'a FileStore,
    c: &Path,
    notes: &mut Vec<String>,
) -> Option<(&'a [u8], object::File<'a>)> {
    std::fs::metadata(c).ok()?;
    let opened = match open_file(store, c, true) {
        Ok(o) => o,
        Err(why) => {
            notes.push(format!("debug file {} {why}; not used", c.display()));
            return None;
        }
    };
    let file = object::File::parse(opened.data).ok()?;
    Some((opened.data, file))
}

/// The file at `path` if it is the one that was mapped: same device and inode as the
/// dump's maps say, or (when the dump's sidecar recorded one) the same build-id.
pub(super) fn mapped_file<'a>(
    store: &'a FileStore,
    path: &str,
    entry: &MapEntry,
    recorded: Option<&[u8]>,
) -> Result<(&'a [u8], object::File<'a>), String> {
    if path.ends_with(" (deleted)") {
        return Err("was deleted after it was mapped (replaced by an upgrade?)".into());
    }
    if entry.inode == 0 && recorded.is_none() {
        // No file has inode 0: the line is not a file mapping or was forged, and without
        // the inode a replaced object cannot be told from the one that was mapped.
        return Err(
            "has inode 0 in the dump's maps, so it cannot be checked to be the \
             file that was mapped"
                .into(),
        );
    }
    let p = Path::new(path);
    // The kernel writes resolved paths in the maps: the last component is never a link.
    let (opened, fs_type) = open_only(p, false)?;
    let same = {
        use std::os::unix::fs::MetadataExt;
        let st_dev = opened.meta.dev();
        let dev = (libc::major(st_dev), libc::minor(st_dev));
        same_file(entry, dev, opened.meta.ino(), fs_type)
    };
    // Without a recorded build-id only the inode can vouch for the file: checked before
    // its bytes are read, so that a file that is not the one mapped costs nothing.
    if recorded.is_none() {
        same.clone()?;
    }
    let data = store.file_bytes(&opened, MAX_READ)?;
    let file = object::File::parse(data).map_err(|e| format!("is not an ELF object ({e})"))?;
    match recorded {
        // The build-id decides: the same build elsewhere (another machine, a copy) is
        // the file; a file rewritten in place is not.
        Some(id) => {
            let now = file.build_id().ok().flatten();
            if now == Some(id) {
                Ok((data, file))
            } else {
                same?;
                Err(format!(
                    "is not the build that was mapped (build-id {} now, {} when the dump \
                     was taken)",
                    now.map(hex).unwrap_or_else(|| "none".into()),
                    hex(id)
                ))
            }
        }
        None => same.map(|()| (data, file)),
    }
}
