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
//! An archive comes from elsewhere: it is unpacked into a new private directory, regular
//! files only, each path checked to stay inside it, within a size bound.

use crate::error::{Error, Result};
use jemsafe_report::safe::shown;
use jemsafe_report::sidecar::{self, Object, Sidecar};
use jemsafe_report::{symbolize, DumpLimits};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Unpacked archives are at most this large (a distribution's debug files are big).
pub const MAX_UNPACKED: u64 = 32 << 30;

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

/// The objects a dump needs (executable mappings with a path), with build-ids: the
/// sidecar's, else the file's now when it is still the mapped one (same inode).
fn objects_of(dump: &jemsafe_report::LoadedDump) -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    for m in dump.dump.maps.iter().filter(|m| m.executable()) {
        let Some(path) = m.path.as_deref().filter(|p| p.starts_with('/')) else {
            continue;
        };
        if out.iter().any(|o| o.path == path) {
            continue;
        }
        if let Some(rec) = dump.sidecar.as_ref().and_then(|s| s.object(path)) {
            out.push(rec.clone());
            continue;
        }
        let mut o = Object {
            path: path.to_owned(),
            device: Some(format!("{:02x}:{:02x}", m.dev.0, m.dev.1)),
            inode: Some(m.inode),
            ..Default::default()
        };
        if let Ok(f) = std::fs::File::open(path) {
            use std::os::unix::fs::MetadataExt;
            if f.metadata().is_ok_and(|meta| meta.ino() == m.inode) {
                o.size = f.metadata().ok().map(|meta| meta.len());
                o.build_id = sidecar::build_id(&f).map(|id| sidecar::hex(&id));
            }
        }
        out.push(o);
    }
    out
}

/// The file that is build `id` of `path` here, if any: the path itself when it has that
/// build-id.
fn local_object(path: &str, id: &str) -> Option<PathBuf> {
    let f = std::fs::File::open(path).ok()?;
    (sidecar::build_id(&f).map(|b| sidecar::hex(&b)).as_deref() == Some(id))
        .then(|| PathBuf::from(path))
}

/// Writes the archive of `dumps` to `output`; a summary for the user.
pub fn create(dumps: &[PathBuf], output: &Path, limits: &DumpLimits) -> Result<String> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .map_err(Error::io(format!(
            "cannot create {} (an existing file is not replaced)",
            shown(output)
        )))?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(true);
    let sym = symbolize::Options::default();
    // build-id -> (object path, debug file)
    let mut objects: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    let mut missing: Vec<String> = Vec::new();
    let io = |what: String| Error::io(format!("cannot write {}: {what}", shown(output)));
    for path in dumps {
        let loaded = jemsafe_report::load(path, limits)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dump.heap".into());
        tar.append_path_with_name(path, format!("dumps/{name}"))
            .map_err(io(shown(path)))?;
        let objs = objects_of(&loaded);
        let side = match &loaded.sidecar {
            Some(s) => s.clone(),
            None => {
                let mut s = Sidecar::new();
                s.dump = Some(name.clone());
                s.objects = objs.clone();
                s
            }
        };
        let json = side.to_json();
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("dumps/{name}.json"), &json[..])
            .map_err(io(format!("{name}.json")))?;
        for o in objs {
            let Some(id) = o.build_id.clone() else {
                missing.push(format!("{} (no build-id known)", o.path));
                continue;
            };
            if objects.contains_key(&id) {
                continue;
            }
            let object = local_object(&o.path, &id);
            let debug = object
                .as_deref()
                .and_then(|p| symbolize::debug_file_for(p, &sym))
                .or_else(|| {
                    // The object is gone here; its debug file may still be, by build-id.
                    sym.debug_dirs
                        .iter()
                        .filter_map(|d| build_id_rel(&id, true).map(|r| d.join(r)))
                        .chain(std::iter::once(jemsafe_report::debuginfod::cached(
                            &sym.debuginfod.cache,
                            &hex_bytes(&id),
                            jemsafe_report::debuginfod::Kind::Debuginfo,
                        )))
                        .find(|p| p.is_file())
                });
            if object.is_none() && debug.is_none() {
                missing.push(format!("{} (build-id {id})", o.path));
            }
            objects.insert(id, (object, debug));
        }
    }
    let mut packed = 0;
    for (id, (object, debug)) in &objects {
        for (file, is_debug) in [(object, false), (debug, true)] {
            let (Some(file), Some(rel)) = (file, build_id_rel(id, is_debug)) else {
                continue;
            };
            tar.append_path_with_name(file, &rel)
                .map_err(io(shown(file)))?;
            packed += 1;
        }
    }
    let gz = tar
        .into_inner()
        .map_err(io("the end of the archive".into()))?;
    let mut inner = gz.finish().map_err(io("its compression".into()))?;
    std::io::Write::flush(&mut inner).map_err(io("the end of the file".into()))?;
    let mut summary = format!(
        "{}: {} dump{} with {} object and debug files for {} builds",
        shown(output),
        dumps.len(),
        if dumps.len() == 1 { "" } else { "s" },
        packed,
        objects.len()
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
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("dumps"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e != "json"))
                    .collect()
            })
            .unwrap_or_default();
        super::select::sort_by_time(&mut v);
        v
    }
}

/// Unpacks `archive`: regular files only, paths that stay inside, at most
/// [`MAX_UNPACKED`] bytes.
pub fn unpack(archive: &Path) -> Result<Unpacked> {
    use std::os::unix::fs::DirBuilderExt;
    let file = std::fs::File::open(archive)
        .map_err(Error::io(format!("cannot open {}", shown(archive))))?;
    let base = std::env::temp_dir();
    let mut dir = None;
    for i in 0..100u32 {
        let candidate = base.join(format!("jemsafe-archive.{}.{i}", std::process::id()));
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
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
        file,
    )));
    let mut total: u64 = 0;
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a .tar.gz ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("damaged ({e})")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let rel = entry
            .path()
            .map_err(|e| bad(format!("a bad name ({e})")))?
            .into_owned();
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(bad(format!(
                "an entry outside the archive: {}",
                shown(&rel)
            )));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED {
            return Err(bad(format!(
                "more than {} GiB unpacked; not read",
                MAX_UNPACKED >> 30
            )));
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
        let size = entry.size();
        std::io::copy(&mut (&mut entry).take(size), &mut out)
            .map_err(|e| bad(format!("damaged at {} ({e})", shown(&rel))))?;
    }
    Ok(unpacked)
}

use std::io::Read;
