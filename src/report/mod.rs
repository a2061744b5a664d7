//! Native analysis of jemalloc heap dumps (`jemsafe report`, `jemsafe leaks`).
//!
//! Works on any `heap_v2` dump, whether or not jemsafe took it. The numbers are jeprof's:
//! the same un-sampling, the same caller-address adjustment, the same allocator frames
//! dropped, the same flat/cumulative accounting (see [`aggregate`]); names come from the
//! objects the dump says were mapped (see [`symbolize`]).
//!
//! Data path: [`parse`] -> [`aggregate::AddrProfile`] (un-sampled, optional base
//! subtracted) -> [`symbolize`] -> [`aggregate::NameProfile`] -> [`text`], [`collapsed`],
//! [`svg`], [`pprof`]; several dumps -> [`leaks`].

pub mod aggregate;
pub mod collapsed;
pub mod command;
pub mod leaks;
pub mod names;
pub mod parse;
pub mod pprof;
pub mod safe;
pub mod select;
pub mod svg;
pub mod symbolize;
pub mod text;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A dump read from disk, with what its file name and mappings say about it.
#[derive(Debug, Clone)]
pub struct LoadedDump {
    pub path: PathBuf,
    pub dump: parse::Dump,
    pub pid: Option<u32>,
    /// When it was taken: the UTC stamp in jemsafe's file names, else the file's mtime.
    pub time: Option<SystemTime>,
}

impl LoadedDump {
    /// The program's file name (`mariadbd`), from the dump's mappings.
    pub fn program(&self) -> String {
        self.dump
            .program()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
            .unwrap_or_else(|| "unknown program".into())
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
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.trim_end_matches('Z').replace('T', " "))
}

/// Reads, decompresses (gzip) and parses a dump; errors name the file and the line.
pub fn load(path: &Path) -> Result<LoadedDump> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(Error::io(format!(
        "cannot read heap dump {}",
        path.display()
    )))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let gzip = parse::is_gzip(reader.fill_buf().map_err(Error::io(format!(
        "cannot read heap dump {}",
        path.display()
    )))?);
    let parsed = if gzip {
        parse::parse_reader(std::io::BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(reader),
        ))
    } else {
        parse::parse_reader(reader)
    };
    let dump = parsed.map_err(|e| {
        Error::BadInput(format!(
            "{}: {e}; is this a complete jemalloc heap dump (heap_v2)?",
            path.display()
        ))
    })?;
    let (pid, stamp) = select::name_info(path);
    let time = stamp.or_else(|| std::fs::metadata(path).and_then(|m| m.modified()).ok());
    Ok(LoadedDump {
        path: path.to_owned(),
        dump,
        pid,
        time,
    })
}

/// Human units: `512 B`, `1.5 KiB`, `64.0 MiB`, `-3.2 GiB`.
pub fn human_bytes(v: f64) -> String {
    let a = v.abs();
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if a < 1024.0 {
        return format!("{:.0} B", v);
    }
    let mut x = v / 1024.0;
    let mut unit = 0;
    while x.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
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
