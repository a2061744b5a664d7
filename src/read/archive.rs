//! `jemsafe archive`: dumps with everything needed to read them elsewhere, like
//! `perf archive`; and `jemsafe report --archive`, which reads such a file.
//!
//! Layout of the .tar.gz:
//! - `dumps/<name>` and `dumps/<name>.json`: each dump and its sidecar (for a dump
//!   without one, a sidecar is made from its maps and the objects found now);
//! - `.build-id/xx/rest`: each mapped object that held sampled addresses, keyed by its
//!   build-id; `.build-id/xx/rest.debug`: its separate debug file, when there is one
//!   (the same tree as /usr/lib/debug/.build-id, so the report reads it as a debug
//!   directory).
//!
//! Writing runs as root over files other users can write (mysqld's user owns the dump
//! directory; a debuginfod cache may be a user's): every file goes into the archive from
//! the descriptor that was checked, never reopened by name. A dump's bytes are the ones
//! parsed; an object or debug file is opened with [`open_regular`] (regular files only,
//! no blocking open, no device) and packed only when it is an ELF file whose build-id
//! note is the build asked for. The archive is written as every output is
//! ([`super::output`]: mode 0600, a new file renamed over the name, never written
//! through a file or link that was there), and nothing is left when writing it fails.
//!
//! An archive comes from elsewhere: it is unpacked into a new private directory, regular
//! files only, each path checked to stay inside it, within bounds on entries, sizes and
//! the ratio to the archive's own size; directories left by a killed jemsafe are removed
//! by the next.

use crate::error::{Error, Result};
use jemsafe_report::safe::{escape, open_regular, shown, Opened};
use jemsafe_report::sidecar::{self, Object, Sidecar};
use jemsafe_report::{debug_file_for, DumpLimits, SymbolizeOptions};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Unpacked archives are at most this large (a distribution's debug files are big).
pub const MAX_UNPACKED: u64 = 32 << 30;
/// Entries in an archive, at most (jemsafe writes two per dump and two per build).
pub const MAX_ENTRIES: u64 = 10_000;
/// An archive unpacks to at most this many times its own size (jemsafe's: binaries and
/// dump text, 3 to 10 times; gzip reaches 1000 times on zeros)...
pub const MAX_RATIO: u64 = 200;
/// ...or this, for small archives (mostly tar headers).
pub const MIN_BUDGET: u64 = 16 << 20;
/// One entry, at most (mariadbd's debug file is some 300 MB).
pub const MAX_ENTRY: u64 = 4 << 30;
/// A GNU long name, at most (a path is at most 4096 bytes).
const MAX_NAME: u64 = 4096;
/// Unpacking directories are `<temp dir>/jemsafe-archive.<pid>.<n>`.
const UNPACK_PREFIX: &str = "jemsafe-archive.";

fn build_id_rel(id: &str, debug: bool) -> Option<String> {
    let ok = id.len() >= 4 && id.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| {
        format!(
            ".build-id/{}/{}{}",
            &id[..2],
            &id[2..],
            if debug { ".debug" } else { "" }
        )
    })
}

/// Why a file named by a dump (or found for one) is not used, for the summary.
fn reason(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not here".into(),
        // "is a FIFO, not a regular file", ...
        std::io::ErrorKind::InvalidData => e.to_string(),
        _ => format!("cannot be read ({e})"),
    }
}

/// An object a dump needs, and the file at its path here: opened once (see
/// [`open_regular`]) and kept open, so that what is packed is what was checked; Err is
/// why there is none.
struct Needed {
    object: Object,
    file: std::result::Result<Opened, String>,
}

/// The objects a dump needs (executable mappings with a path), with build-ids: the
/// sidecar's, else the file's now when it is still the mapped one (same inode).
fn objects_of(dump: &jemsafe_report::LoadedDump) -> Vec<Needed> {
    let mut out: Vec<Needed> = Vec::new();
    for m in dump.dump.maps.iter().filter(|m| m.executable()) {
        let Some(path) = m.path.as_deref().filter(|p| p.starts_with('/')) else {
            continue;
        };
        if out.iter().any(|n| n.object.path == path) {
            continue;
        }
        // The kernel writes resolved paths in the maps: the last component is never a
        // symbolic link. A FIFO or a device is refused without being opened.
        let file = open_regular(Path::new(path), false).map_err(reason);
        if let Some(rec) = dump.sidecar.as_ref().and_then(|s| s.object(path)) {
            out.push(Needed {
                object: rec.clone(),
                file,
            });
            continue;
        }
        let mut o = Object {
            path: path.to_owned(),
            device: Some(format!("{:02x}:{:02x}", m.dev.0, m.dev.1)),
            inode: Some(m.inode),
            ..Default::default()
        };
        let file = file.and_then(|f| {
            if f.meta.ino() != m.inode {
                return Err(format!(
                    "is not the file that was mapped (inode {} now, {} in the dump)",
                    f.meta.ino(),
                    m.inode
                ));
            }
            o.size = Some(f.meta.len());
            o.build_id = sidecar::build_id(&f.file).map(|id| sidecar::hex(&id));
            Ok(f)
        });
        out.push(Needed { object: o, file });
    }
    out
}

/// `opened` if it is an ELF file whose build-id note is `id` (read from this descriptor);
/// else why not.
fn with_build_id(opened: Opened, id: &str) -> std::result::Result<Opened, String> {
    match sidecar::build_id(&opened.file).map(|b| sidecar::hex(&b)) {
        Some(now) if now == id => Ok(opened),
        Some(now) => Err(format!("is another build now (build-id {now})")),
        None => Err("is not an ELF file with a build-id".into()),
    }
}

/// The separate debug file of build `id`: by build-id in the debug directories and the
/// debuginfod cache, else as the report finds it through the object at `object` (its
/// path, its `.gnu_debuglink`). Whatever a candidate path leads to (a `.build-id` tree
/// is made of symbolic links, and a cache may be another user's), it is used only when
/// the file opened is an ELF file carrying build-id `id`: a link to /etc/shadow is not.
fn debug_file(id: &str, object: Option<&str>, sym: &SymbolizeOptions) -> Option<Opened> {
    let by_id = sym
        .debug_dirs
        .iter()
        .filter_map(|d| build_id_rel(id, true).map(|r| d.join(r)))
        .chain(std::iter::once(jemsafe_report::debuginfod::cached(
            &sym.debuginfod.cache,
            &hex_bytes(id),
            jemsafe_report::debuginfod::Kind::Debuginfo,
        )));
    // Looked for only when there is none by build-id (it reads the object).
    let through_object = object
        .into_iter()
        .filter_map(|p| debug_file_for(Path::new(p), sym));
    by_id.chain(through_object).find_map(|candidate| {
        let opened = open_regular(&candidate, true).ok()?;
        with_build_id(opened, id).ok()
    })
}

/// One "not found here" item of the summary: the path and build-id as a (hostile)
/// dump or sidecar has them, escaped.
fn missing_item(path: &str, id: Option<&str>, why: &str) -> String {
    match id {
        Some(id) => format!("{} (build-id {}: {why})", escape(path), escape(id)),
        None => format!("{} ({why})", escape(path)),
    }
}

/// The first `len` bytes of a file, read by position from the descriptor that was
/// checked; a file that became shorter meanwhile is an error (not an entry shorter than
/// its header says).
struct Exactly<'a> {
    file: &'a std::fs::File,
    at: u64,
    len: u64,
}

impl Read for Exactly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.len - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "it became shorter while it was being archived",
            ));
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// The header of an entry: a private regular file (dumps show a process's memory).
fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h
}

/// Adds `opened` as `name`, from its descriptor.
fn append_opened<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    opened: &Opened,
) -> std::io::Result<()> {
    let len = opened.meta.len();
    let mtime = u64::try_from(opened.meta.mtime()).unwrap_or(0);
    let data = Exactly {
        file: &opened.file,
        at: 0,
        len,
    };
    tar.append_data(&mut header(len, mtime), name, data)
}

/// Writes the archive of `dumps` to `output` ([`super::output`]: a new file of mode 0600,
/// or 0640 in the dump directory, renamed over whatever is at the name); a summary for
/// the user. On failure no output is left, and what was at the name stays.
pub fn create(
    dumps: &[PathBuf],
    output: &Path,
    dump_dir: Option<&Path>,
    limits: &DumpLimits,
) -> Result<String> {
    let out = super::output::Output::create(output, dump_dir)?;
    let summary = write(out.file(), dumps, output, limits)?;
    out.finish()?;
    Ok(summary)
}

fn write(
    file: &std::fs::File,
    dumps: &[PathBuf],
    output: &Path,
    limits: &DumpLimits,
) -> Result<String> {
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let sym = SymbolizeOptions::default();
    // build-id -> (object, debug file), opened and checked
    let mut builds: BTreeMap<String, (Option<Opened>, Option<Opened>)> = BTreeMap::new();
    let mut missing: Vec<String> = Vec::new();
    let io = |what: String| Error::io(format!("cannot write {}: {what}", shown(output)));
    for path in dumps {
        // The bytes that were read, checked and parsed are the ones packed.
        let (loaded, bytes) = jemsafe_report::load_with_bytes(path, limits)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dump.heap".into());
        let mtime = loaded.time.map_or(0, jemsafe_report::clock::secs);
        tar.append_data(
            &mut header(bytes.len() as u64, mtime),
            format!("dumps/{name}"),
            &bytes[..],
        )
        .map_err(io(shown(path)))?;
        drop(bytes);
        let needed = objects_of(&loaded);
        let side = match &loaded.sidecar {
            Some(s) => s.clone(),
            None => {
                let mut s = Sidecar::new();
                s.dump = Some(name.clone());
                s.objects = needed.iter().map(|n| n.object.clone()).collect();
                s
            }
        };
        let json = side.to_json();
        tar.append_data(
            &mut header(json.len() as u64, mtime),
            format!("dumps/{name}.json"),
            &json[..],
        )
        .map_err(io(format!("{}.json", escape(&name))))?;
        for Needed { object: o, file } in needed {
            let Some(id) = o.build_id.clone() else {
                let why = match &file {
                    Err(why) => why.as_str(),
                    Ok(_) => "no build-id known",
                };
                missing.push(missing_item(&o.path, None, why));
                continue;
            };
            if build_id_rel(&id, false).is_none() {
                missing.push(missing_item(&o.path, Some(&id), "not a build-id"));
                continue;
            }
            if builds.contains_key(&id) {
                continue;
            }
            let object = file.and_then(|f| with_build_id(f, &id));
            let found_at = object.is_ok().then_some(o.path.as_str());
            let debug = debug_file(&id, found_at, &sym);
            if let (Err(why), None) = (&object, &debug) {
                missing.push(missing_item(&o.path, Some(&id), why));
            }
            builds.insert(id, (object.ok(), debug));
        }
    }
    let mut packed = 0;
    for (id, (object, debug)) in &builds {
        for (file, is_debug) in [(object, false), (debug, true)] {
            let (Some(file), Some(rel)) = (file, build_id_rel(id, is_debug)) else {
                continue;
            };
            append_opened(&mut tar, &rel, file).map_err(io(rel.clone()))?;
            packed += 1;
        }
    }
    let gz = tar
        .into_inner()
        .map_err(io("the end of the archive".into()))?;
    let inner = gz.finish().map_err(io("its compression".into()))?;
    let file = inner
        .into_inner()
        .map_err(|e| io("the end of the file".into())(e.into_error()))?;
    let mode = file
        .metadata()
        .map_err(io("the end of the file".into()))?
        .mode()
        & 0o7777;
    let mut summary = format!(
        "{} (mode {mode:04o}): {} dump{} with {} object and debug files for {} builds",
        shown(output),
        dumps.len(),
        if dumps.len() == 1 { "" } else { "s" },
        packed,
        builds.len()
    );
    if !missing.is_empty() {
        summary.push_str(&format!(
            "; not found here, their addresses will be shown as object+0xADDRESS: {}",
            missing.join(", ")
        ));
    }
    Ok(summary)
}

fn hex_bytes(id: &str) -> Vec<u8> {
    (0..id.len() / 2)
        .filter_map(|i| u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// An archive unpacked into a private temporary directory, removed when dropped.
pub struct Unpacked {
    pub dir: PathBuf,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Unpacked {
    /// The dumps in it, oldest first.
    pub fn dumps(&self) -> Vec<PathBuf> {
        let v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("dumps"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e != "json"))
                    .collect()
            })
            .unwrap_or_default();
        super::select::oldest_first(&v)
    }
}

/// How many bytes an archive of `size` bytes may unpack to (headers, padding and skipped
/// entries included).
fn unpack_budget(size: u64) -> u64 {
    size.saturating_mul(MAX_RATIO)
        .clamp(MIN_BUDGET, MAX_UNPACKED)
}

/// The pid in the name of an unpacking directory, `jemsafe-archive.<pid>.<n>`.
fn unpacker_pid(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(UNPACK_PREFIX)?.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0 && p <= i32::MAX as u32)
}

/// Whether process `pid` exists (a pid that cannot be signalled exists too).
fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Removes the unpacking directories in `base` left by jemsafes killed while they read
/// an archive: those whose pid is gone, owned by this user, real directories (a link is
/// never followed; other users' entries are left alone).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(unpacker_pid) else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let path = e.path();
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && std::fs::remove_dir_all(&path).is_ok() {
            crate::debug!(
                "removed {}, left by jemsafe pid {pid} (no longer running)",
                shown(&path)
            );
        }
    }
}

/// Unpacks `archive`: regular files only, paths that stay inside, at most
/// [`MAX_ENTRIES`] entries of at most [`MAX_ENTRY`] bytes each, [`unpack_budget`] bytes
/// in all. Into a new private directory of the temporary directory (removed when the
/// result is dropped, or by the next jemsafe after a kill).
pub fn unpack(archive: &Path) -> Result<Unpacked> {
    use std::os::unix::fs::DirBuilderExt;
    let opened = open_regular(archive, true).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            Error::BadInput(format!(
                "{} {e}: an archive is a .tar.gz file, as `jemsafe archive` writes",
                shown(archive)
            ))
        } else {
            Error::io(format!("cannot open {}", shown(archive)))(e)
        }
    })?;
    let size = opened.meta.len();
    let budget = unpack_budget(size);
    let base = std::env::temp_dir();
    remove_stale(&base);
    let mut dir = None;
    for i in 0..100u32 {
        let candidate = base.join(format!("{UNPACK_PREFIX}{}.{i}", std::process::id()));
        if std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&candidate)
            .is_ok()
        {
            dir = Some(candidate);
            break;
        }
    }
    let dir = dir.ok_or_else(|| {
        Error::Refused(format!(
            "cannot make a private directory in {} to unpack {}",
            shown(&base),
            shown(archive)
        ))
    })?;
    let unpacked = Unpacked { dir };
    let bad = |why: String| Error::BadInput(format!("{}: {why}", shown(archive)));
    let bomb = || {
        bad(format!(
            "unpacks to more than {budget} bytes ({MAX_RATIO} times its {size} bytes, at \
             least {} MiB, at most {} GiB): refused, so that a compression bomb cannot \
             fill the disk; nothing of it is kept",
            MIN_BUDGET >> 20,
            MAX_UNPACKED >> 30
        ))
    };
    let hit = std::rc::Rc::new(std::cell::Cell::new(false));
    let stream = jemsafe_report::safe::Capped::new(
        flate2::read::MultiGzDecoder::new(std::io::BufReader::new(opened.file)),
        budget,
        &hit,
    );
    let damaged = |e: std::io::Error| {
        if hit.get() {
            bomb()
        } else {
            bad(format!("damaged ({e})"))
        }
    };
    let mut tar = tar::Archive::new(stream);
    // Raw: GNU long names are read here, bounded (the tar crate reads any size).
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a .tar.gz ({e})")))?
        .raw(true);
    let mut count: u64 = 0;
    let mut total: u64 = 0;
    let mut long_name: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(&damaged)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(format!(
                "more than {MAX_ENTRIES} entries (`jemsafe archive` writes two per dump and \
                 two per build): refused; nothing of it is kept"
            )));
        }
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() {
            if entry.size() > MAX_NAME {
                return Err(bad(format!(
                    "a name of {} bytes, more than {MAX_NAME}: refused",
                    entry.size()
                )));
            }
            let mut name = Vec::new();
            (&mut entry)
                .take(MAX_NAME)
                .read_to_end(&mut name)
                .map_err(&damaged)?;
            while name.last() == Some(&0) {
                name.pop();
            }
            long_name = Some(name);
            continue;
        }
        let name = long_name.take();
        if kind != tar::EntryType::Regular {
            continue;
        }
        let rel = match name {
            Some(n) => PathBuf::from(<std::ffi::OsString as OsStringExt>::from_vec(n)),
            None => entry
                .path()
                .map_err(|e| bad(format!("a bad name ({e})")))?
                .into_owned(),
        };
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(bad(format!(
                "an entry outside the archive: {}",
                shown(&rel)
            )));
        }
        let entry_size = entry.size();
        if entry_size > MAX_ENTRY {
            return Err(bad(format!(
                "its entry {} is {entry_size} bytes, more than {} GiB: refused; nothing of \
                 it is kept",
                shown(&rel),
                MAX_ENTRY >> 30
            )));
        }
        total = total.saturating_add(entry_size);
        if total > budget {
            return Err(bomb());
        }
        let to = unpacked.dir.join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(Error::io(format!("cannot unpack into {}", shown(parent))))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&to)
            .map_err(Error::io(format!("cannot unpack {}", shown(&to))))?;
        std::io::copy(&mut (&mut entry).take(entry_size), &mut out).map_err(|e| {
            if hit.get() {
                bomb()
            } else {
                bad(format!("damaged at {} ({e})", shown(&rel)))
            }
        })?;
        // A dump's time, when its name has none, is its file's: the one packed.
        if let Some(t) = entry.header().mtime().ok().filter(|&t| t > 0) {
            let _ = out.set_modified(jemsafe_report::clock::from_secs_clamped(t));
        }
    }
    Ok(unpacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_archive_size_within_bounds() {
        assert_eq!(unpack_budget(0), MIN_BUDGET);
        assert_eq!(unpack_budget(1 << 20), 200 << 20);
        assert_eq!(unpack_budget(1 << 30), MAX_UNPACKED);
        assert_eq!(unpack_budget(u64::MAX), MAX_UNPACKED);
    }

    #[test]
    fn unpacking_directories_are_told_by_name() {
        assert_eq!(unpacker_pid("jemsafe-archive.4711.0"), Some(4711));
        assert_eq!(unpacker_pid("jemsafe-archive.4711.12"), Some(4711));
        for other in [
            "jemsafe-archive.4711",
            "jemsafe-archive..0",
            "jemsafe-archive.+4711.0",
            "jemsafe-archive.4711.0.x",
            "jemsafe-archive.0.0",
            "jemsafe-archive.99999999999.0",
            "jemsafe-test-archive.1.0",
        ] {
            assert_eq!(unpacker_pid(other), None, "{other}");
        }
    }

    #[test]
    fn summary_items_are_escaped() {
        let item = missing_item(
            "/x/lib\u{1b}]0;t\u{7}\u{202e}os.so",
            Some("ab\r\nforged"),
            "not a build-id",
        );
        assert_eq!(
            item,
            "/x/lib\\x1b]0;t\\x07\\u{202e}os.so (build-id ab\\x0d\\x0aforged: not a build-id)"
        );
    }

    #[test]
    fn build_id_paths_need_hex() {
        assert_eq!(
            build_id_rel("abcdef", true).as_deref(),
            Some(".build-id/ab/cdef.debug")
        );
        assert_eq!(build_id_rel("ab/../x", false), None);
        assert_eq!(build_id_rel("abc", false), None);
    }
}
