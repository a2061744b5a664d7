//! jemsafe-report: read jemalloc heap profiles (`heap_v2`, as `prof.dump` writes them,
//! also gzipped) and say what holds memory.
//!
//! Works on any dump, whether or not jemsafe took it, and knows nothing of jemsafe's
//! configuration or command line: callers pass typed options ([`render::ReportOptions`],
//! [`render::LeaksOptions`]). The numbers are jeprof's: the same un-sampling, the same
//! caller-address adjustment, the same allocator frames dropped, the same flat/cumulative
//! accounting (see `aggregate.rs`); names come from the objects the dump says were mapped
//! (see `symbolize/`). A dump is treated as hostile input ([`safe`]): bounded reads, no
//! blocking opens, escaped names.
//!
//! Data path: [`load`] -> `parse` -> `aggregate::AddrProfile` (un-sampled, optional
//! base subtracted) -> `symbolize` -> `aggregate::NameProfile` -> `text`, `collapsed`,
//! `svg`, [`pprof`], [`dot`] (the call graph); several dumps -> `leaks`. [`render`] runs it.

// The public face: loading ([`load`]), the options types, the renderings ([`render`]:
// report, leaks, fragmentation), and the formats and helpers callers share. The stages
// behind them are private, so that they can change without breaking a caller.
pub mod clock;
pub mod create;
pub mod debuginfod;
pub mod dot;
pub mod maps;
pub mod memory;
mod naming;
pub mod page;
pub mod pprof;
pub mod render;
pub mod safe;
pub mod series;
pub mod sidecar;
pub mod units;

mod aggregate;
mod collapsed;
mod counts;
mod fragmentation;
#[cfg(test)]
mod fuzz_tests;
mod leaks;
mod names;
mod parse;
mod provenance;
mod svg;
mod symbolize;
mod text;

pub use aggregate::Metric;
pub use parse::decompress;
pub use symbolize::{debug_file_for, NameMode, Options as SymbolizeOptions};

/// What can go wrong reading or rendering dumps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The dump (or a file it names) is malformed, too large or not a file.
    #[error("{0}")]
    BadDump(String),
    /// The dumps asked for cannot be compared (other processes, too few).
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// An I/O failure and what was being done: the one shape both crates' errors carry.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    pub context: String,
    pub source: std::io::Error,
}

impl IoError {
    /// For `map_err`: the failure of `context` (`cannot read x.heap`).
    pub fn of(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> IoError {
        let context = context.into();
        move |source| IoError { context, source }
    }
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let io = IoError::of(context);
        move |source| Error::Io(io(source))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A dump read from disk, with what its file name and mappings say about it.
#[derive(Debug, Clone)]
pub struct LoadedDump {
    pub path: PathBuf,
    pub dump: parse::Dump,
    /// The process it was taken of, when the caller knows (jemalloc's and jemsafe's file
    /// names carry it; `load` leaves it unset).
    pub pid: Option<u32>,
    /// When it was taken: the file's mtime from `load`, or what the caller knows better.
    pub time: Option<SystemTime>,
    /// What jemsafe recorded when it took the dump (`<dump>.json`), when there is one:
    /// `load` reads it.
    pub sidecar: Option<sidecar::Sidecar>,
    /// Warnings from loading (e.g. a sidecar that could not be used).
    pub notes: Vec<String>,
}

impl LoadedDump {
    /// The dump in `text`, as if read from `x.heap` of pid 1 with no sidecar (unit tests).
    #[cfg(test)]
    pub(crate) fn from_text(text: &str) -> LoadedDump {
        LoadedDump {
            path: "x.heap".into(),
            dump: crate::parse::parse_reader(text.as_bytes()).unwrap(),
            pid: Some(1),
            time: None,
            sidecar: None,
            notes: Vec::new(),
        }
    }

    /// The program's file name (`mariadbd`), from the dump's mappings (control
    /// characters escaped).
    pub fn program(&self) -> String {
        self.dump
            .program()
            .map(|p| safe::escape(p.rsplit('/').next().unwrap_or(p)).into_owned())
            .unwrap_or_else(|| "unknown program".into())
    }

    /// The process it was taken of, from its sidecar.
    pub fn process(&self) -> Option<&sidecar::Process> {
        self.sidecar.as_ref()?.process.as_ref()
    }

    /// What is known of its process ([`sidecar::Known`]).
    pub fn known(&self) -> sidecar::Known {
        sidecar::Known::of(self.pid, self.process())
    }

    /// What is known of the process of `dumps` (all of one process, newest last): the
    /// newest one's pid, the start and boot of the first whose sidecar tells them.
    pub fn known_of_series(dumps: &[LoadedDump]) -> sidecar::Known {
        let process = dumps.iter().find_map(LoadedDump::process);
        sidecar::Known::of(dumps.last().and_then(|d| d.pid), process)
    }

    /// Err when `self` and `other` are dumps of two processes (different pids, or one pid
    /// reused by a later process).
    pub fn same_process(&self, other: &LoadedDump) -> std::result::Result<(), String> {
        if self.known().same_as(&other.known()) {
            return Ok(());
        }
        match (self.pid, other.pid, self.process(), other.process()) {
            (Some(a), Some(b), ..) if a != b => Err(format!("pid {b} and pid {a}")),
            (.., Some(a), Some(b)) => Err(format!(
                "two processes that had the same pid: {} and {}",
                b.describe(),
                a.describe()
            )),
            _ => Err("two processes".to_owned()),
        }
    }

    /// `mariadbd pid 4711, 2026-11-26 18:25:54 UTC`
    pub fn describe(&self) -> String {
        let mut s = self.program();
        if let Some(pid) = self.pid {
            s.push_str(&format!(" pid {pid}"));
        }
        if let Some(t) = self.time {
            s.push_str(&format!(", {}", format_time(t)));
        }
        s
    }
}

/// `2026-11-26 18:25:54 UTC`
pub fn format_time(t: SystemTime) -> String {
    clock::utc_words(t)
}

/// Default of `--max-dump-mb`: how much dump text (after gzip decompression) is read.
/// Real dumps are far smaller (16k distinct stacks, every allocation sampled: 10 MB); a
/// hostile one of many tiny distinct stacks costs about 30 times its size in memory.
pub const DEFAULT_MAX_DUMP_MB: u64 = 1024;

/// How a dump may be read.
#[derive(Debug, Clone, Copy)]
pub struct DumpLimits {
    /// Bytes of dump text read at most (after decompression); more is refused.
    pub max_bytes: u64,
    /// Whether a symbolic link as the last component is followed: yes for a path the
    /// user named, no for one picked from the dump directory (mysqld's user writes there).
    pub follow_symlinks: bool,
}

impl DumpLimits {
    pub fn new(max_dump_mb: u64, follow_symlinks: bool) -> DumpLimits {
        DumpLimits {
            max_bytes: max_dump_mb.saturating_mul(1 << 20),
            follow_symlinks,
        }
    }
}

impl Default for DumpLimits {
    fn default() -> Self {
        DumpLimits::new(DEFAULT_MAX_DUMP_MB, true)
    }
}

fn too_large(path: &Path, limits: &DumpLimits, what: &str) -> Error {
    Error::BadDump(format!(
        "{}: {what} more than {} MiB of dump text: refused, so that a hostile or broken \
         file cannot exhaust memory; if this dump is genuine, raise the limit with \
         --max-dump-mb N",
        safe::shown(path),
        limits.max_bytes >> 20
    ))
}

/// Reads, decompresses (gzip) and parses a dump; errors name the file and the line. The
/// file must be a regular file (a FIFO or device is refused without being opened), and
/// at most `limits.max_bytes` of text are read.
pub fn load(path: &Path, limits: &DumpLimits) -> Result<LoadedDump> {
    load_with_sidecar(
        path,
        limits,
        sidecar::read_for(path, limits.follow_symlinks),
    )
}

/// [`load`] with the sidecar its caller has already read ([`sidecar::read_for`]'s
/// answer): a sidecar is read once, so that what chose the dump and what reads it agree
/// (mysqld's user could change the file between two reads).
pub fn load_with_sidecar(
    path: &Path,
    limits: &DumpLimits,
    sidecar: std::result::Result<Option<sidecar::Sidecar>, String>,
) -> Result<LoadedDump> {
    let opened = open_dump(path, limits)?;
    let meta = opened.meta.clone();
    let reader = std::io::BufReader::with_capacity(1 << 16, opened.file);
    parse_dump(path, reader, &meta, limits, sidecar)
}

/// [`load`], keeping the file's bytes as they were read and parsed: `jemsafe archive`
/// packs exactly these, never the path again (mysqld's user can swap the file for a
/// symbolic link once it has been checked). At most `limits.max_bytes` are read.
pub fn load_with_bytes(path: &Path, limits: &DumpLimits) -> Result<(LoadedDump, Vec<u8>)> {
    use std::io::Read;
    let opened = open_dump(path, limits)?;
    let mut bytes = Vec::new();
    (&opened.file)
        .take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Error::io(format!(
            "cannot read heap dump {}",
            safe::shown(path)
        )))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large(path, limits, "holds"));
    }
    let sidecar = sidecar::read_for(path, limits.follow_symlinks);
    let dump = parse_dump(path, &bytes[..], &opened.meta, limits, sidecar)?;
    Ok((dump, bytes))
}

/// The dump file, opened safely ([`safe::open_regular`]) and not larger than the limit.
fn open_dump(path: &Path, limits: &DumpLimits) -> Result<safe::Opened> {
    let shown = safe::shown(path);
    let opened = safe::open_regular(path, limits.follow_symlinks).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            Error::BadDump(format!(
                "{shown} {e}: a heap dump is a regular file (name the file itself)"
            ))
        } else {
            Error::io(format!("cannot read heap dump {shown}"))(e)
        }
    })?;
    if opened.meta.len() > limits.max_bytes {
        return Err(too_large(path, limits, "holds"));
    }
    Ok(opened)
}

/// Parses the dump `reader` reads (the file at `path`, with metadata `meta`), with what
/// reading its sidecar gave.
fn parse_dump(
    path: &Path,
    mut reader: impl std::io::BufRead,
    meta: &std::fs::Metadata,
    limits: &DumpLimits,
    sidecar: std::result::Result<Option<sidecar::Sidecar>, String>,
) -> Result<LoadedDump> {
    let shown = safe::shown(path);
    let hit = std::rc::Rc::new(std::cell::Cell::new(false));
    let gzip = parse::is_gzip(
        reader
            .fill_buf()
            .map_err(Error::io(format!("cannot read heap dump {shown}")))?,
    );
    let parsed = if gzip {
        parse::parse_reader(std::io::BufReader::with_capacity(
            1 << 16,
            safe::Capped::new(
                flate2::bufread::MultiGzDecoder::new(reader),
                limits.max_bytes,
                &hit,
            ),
        ))
    } else {
        parse::parse_reader(std::io::BufReader::with_capacity(
            1 << 16,
            safe::Capped::new(reader, limits.max_bytes, &hit),
        ))
    };
    if hit.get() {
        let what = if gzip { "decompresses to" } else { "holds" };
        return Err(too_large(path, limits, what));
    }
    let dump = parsed.map_err(|e| {
        Error::BadDump(format!(
            "{shown}: {e}; is this a complete jemalloc heap dump (heap_v2)?"
        ))
    })?;
    let mut notes = Vec::new();
    let sidecar = match sidecar {
        Ok(s) => s,
        Err(why) => {
            notes.push(format!("{why}; the dump is read without it"));
            None
        }
    };
    Ok(LoadedDump {
        path: path.to_owned(),
        dump,
        pid: sidecar
            .as_ref()
            .and_then(|s| s.process.as_ref())
            .map(|p| p.pid),
        time: meta.modified().ok(),
        sidecar,
        notes,
    })
}

/// Human units: `512 B`, `1.5 KiB`, `64.0 MiB`, `-3.2 GiB`.
pub fn human_bytes(v: f64) -> String {
    units::bytes(v, units::TENTHS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_units() {
        assert_eq!(super::human_bytes(512.0), "512 B");
        assert_eq!(super::human_bytes(1536.0), "1.5 KiB");
        assert_eq!(super::human_bytes(64.0 * 1048576.0), "64.0 MiB");
        assert_eq!(super::human_bytes(-3.0 * 1073741824.0), "-3.0 GiB");
    }
}
