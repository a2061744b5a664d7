//! Separate debug files: by build-id, by path, by `.gnu_debuglink`, or in the
//! debuginfod cache; each must carry the object's build-id.

use super::files::{build_id_path, candidate, open_file};
use super::Options;
use crate::safe::FileStore;
use object::Object as _;
use std::path::{Path, PathBuf};

/// A separate debug file found for an object.
pub(super) struct DebugFile<'a> {
    pub(super) path: PathBuf,
    pub(super) data: &'a [u8],
    pub(super) file: object::File<'a>,
}

/// A `.gnu_debuglink` or `.gnu_debugaltlink` name usable under a directory: one plain
/// file name, no `/`, not `.` or `..` (the object may be someone else's file).
pub(super) fn plain_file_name(name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']))
        .then(|| name.to_owned())
}

/// A separate debug file for `path`: by build-id, by path, by .gnu_debuglink; it must have
/// the same build-id when both have one. Candidates may be symbolic links (the
/// `.build-id` tree is made of them) but must lead to regular files.
pub(super) fn find_debug_file<'a>(
    store: &'a FileStore,
    path: &Path,
    file: &object::File<'_>,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Option<DebugFile<'a>> {
    let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(id) = &build_id {
        candidates.push(crate::debuginfod::cached(
            &opts.debuginfod.cache,
            id,
            crate::debuginfod::Kind::Debuginfo,
        ));
    }
    for dir in &opts.debug_dirs {
        if let Some(id) = &build_id {
            candidates.extend(build_id_path(dir, id));
        }
        if let Ok(rel) = path.strip_prefix("/") {
            candidates.push(dir.join(rel));
            let mut with_ext = dir.join(rel).into_os_string();
            with_ext.push(".debug");
            candidates.push(with_ext.into());
        }
    }
    if let Ok(Some((link, _crc))) = file.gnu_debuglink() {
        if let (Some(link), Some(parent)) = (plain_file_name(link), path.parent()) {
            candidates.push(parent.join(&link));
            candidates.push(parent.join(".debug").join(&link));
            for dir in &opts.debug_dirs {
                if let Ok(rel) = parent.strip_prefix("/") {
                    candidates.push(dir.join(rel).join(&link));
                }
            }
        }
    }
    for c in candidates {
        // Missing candidates are the rule; anything else found there is worth a word.
        if c == path {
            continue;
        }
        let Some((data, dbg)) = candidate(store, &c, notes) else {
            continue;
        };
        let dbg_id = dbg.build_id().ok().flatten();
        // An object with a build-id takes only a debug file with the same build-id.
        match (&build_id, dbg_id) {
            (Some(a), b) if b != Some(&a[..]) => continue,
            _ => {}
        }
        return Some(DebugFile {
            path: c,
            data,
            file: dbg,
        });
    }
    None
}

/// The separate debug file jemsafe would use for the object at `path` (by build-id, by
/// path, by `.gnu_debuglink`, or in the debuginfod cache), for packing it with a dump.
pub fn debug_file_for(path: &Path, opts: &Options) -> Option<PathBuf> {
    let store = FileStore::default();
    let opened = open_file(&store, path, true).ok()?;
    let file = object::File::parse(opened.data).ok()?;
    find_debug_file(&store, path, &file, opts, &mut Vec::new()).map(|d| d.path)
}

/// Whether debug information for build `id` is at hand without a download: a separate
/// debug file by build-id, one in the debuginfod cache, or DWARF in the object itself.
pub(super) fn local_debug_info(
    id: &[u8],
    object: Option<&object::File<'_>>,
    opts: &Options,
) -> bool {
    if object.is_some_and(|f| f.section_by_name(".debug_info").is_some()) {
        return true;
    }
    let cache = crate::debuginfod::cached(
        &opts.debuginfod.cache,
        id,
        crate::debuginfod::Kind::Debuginfo,
    );
    cache.exists()
        || opts
            .debug_dirs
            .iter()
            .filter_map(|d| build_id_path(d, id))
            .any(|p| p.exists())
}
