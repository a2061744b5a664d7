//! What dumps' names and sidecars say (pid, time, process), named dumps put in the dump
//! directory's order, and the dumps around one: the one before it of the same process,
//! all dumps of one pid. Which dumps a command reads is decided in [`super::plan`].

use crate::dumpdir::naming::HeapName;
use crate::dumpdir::retention::{chronological, Entry, Kind};
use crate::error::{Error, Result};
use jemsafe_report::safe::shown;
use jemsafe_report::sidecar::{Known, Process, Sidecar};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The heap-file name of `path` parsed with whatever prefix makes it parse.
fn heap_name(path: &Path) -> Option<HeapName> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.match_indices('.')
        .find_map(|(i, _)| HeapName::parse(&name[..i], name))
}

/// (pid, time stamp) from a dump's file name, when it is jemsafe's or jemalloc's.
pub fn name_info(path: &Path) -> (Option<u32>, Option<SystemTime>) {
    match heap_name(path) {
        Some(n) => (Some(n.pid), n.time()),
        None => (None, None),
    }
}

/// The dump taken before `dump` by the same process, in `dump`'s directory.
pub fn previous(dump: &Path) -> Result<PathBuf> {
    let Some(name) = heap_name(dump) else {
        return Err(Error::Refused(format!(
            "--base previous: {} is not named like a jemsafe or jemalloc heap file, so its \
             process is unknown; name the base dump instead",
            shown(dump)
        )));
    };
    let dir = match dump.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut same_pid = series(&dir, name.pid)?;
    // Another process that had the same pid (a restart in a container) is not "previous".
    let mine = Known::of(Some(name.pid), process_of(dump).as_ref());
    same_pid.retain(|p| Known::of(Some(name.pid), process_of(p).as_ref()).same_as(&mine));
    let me = same_pid.iter().position(|p| same_file(p, dump));
    match me {
        Some(i) if i > 0 => Ok(same_pid[i - 1].clone()),
        _ => Err(Error::NotFound(format!(
            "--base previous: no earlier dump of pid {} than {} in {}",
            name.pid,
            shown(dump),
            shown(&dir)
        ))),
    }
}

/// The process a dump was taken of, from its sidecar (never through a symlink).
fn process_of(dump: &Path) -> Option<jemsafe_report::sidecar::Process> {
    jemsafe_report::sidecar::read_for(dump, false)
        .ok()
        .flatten()
        .and_then(|s| s.process)
}

/// What [`jemsafe_report::sidecar::read_for`] said of a dump's sidecar.
type SidecarRead = std::result::Result<Option<Sidecar>, String>;

/// Sidecars read at most once each: the plan reads the processes it chooses by, and the
/// loading of the dumps takes the same sidecars ([`jemsafe_report::load_with_sidecar`]),
/// not a second read that mysqld's user could have changed.
#[derive(Debug, Default)]
pub struct Sidecars {
    read: RefCell<HashMap<PathBuf, SidecarRead>>,
    /// Follow symbolic links (dumps the user named), as loading them does.
    follow: bool,
}

impl Sidecars {
    pub fn new(follow: bool) -> Sidecars {
        Sidecars {
            read: RefCell::default(),
            follow,
        }
    }

    fn read(&self, dump: &Path) -> SidecarRead {
        jemsafe_report::sidecar::read_for(dump, self.follow)
    }

    /// The process `dump` was taken of, from its sidecar (read now, kept for [`Self::take`]).
    pub fn process(&self, dump: &Path) -> Option<Process> {
        let mut read = self.read.borrow_mut();
        let got = read
            .entry(dump.to_owned())
            .or_insert_with(|| self.read(dump));
        got.as_ref().ok()?.as_ref()?.process.clone()
    }

    /// `dump`'s sidecar: the one read before, else read now.
    pub fn take(&self, dump: &Path) -> SidecarRead {
        let kept = self.read.borrow_mut().remove(dump);
        kept.unwrap_or_else(|| self.read(dump))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// When a dump was taken: the time in its name, else its mtime; None when neither is known.
pub fn time_of(path: &Path) -> Option<SystemTime> {
    heap_name(path)
        .as_ref()
        .and_then(HeapName::time)
        .or_else(|| std::fs::metadata(path).and_then(|m| m.modified()).ok())
}

/// `paths` oldest first, in the dump directory's one order
/// ([`crate::dumpdir::retention::chronological`]: the name's time, else the mtime, never
/// later than now; jemalloc's counter within a process). A file not named like a heap
/// file goes by its mtime among them.
pub fn oldest_first(paths: &[PathBuf]) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let modified = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH)
    };
    let (heaps, others): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|p| heap_name(p).is_some());
    let entries: Vec<Entry> = heaps
        .iter()
        .filter_map(|p| {
            Some(Entry {
                name: p.to_string_lossy().into_owned(),
                kind: Kind::Heap(heap_name(p)?),
                size: 0,
                modified: modified(p),
                regular: true,
            })
        })
        .collect();
    let mut timed: Vec<(SystemTime, PathBuf)> = chronological(&entries, None, now)
        .into_iter()
        .filter_map(|(e, _, t)| {
            let i = entries.iter().position(|x| std::ptr::eq(x, e))?;
            Some((t, heaps[i].clone()))
        })
        .collect();
    timed.extend(
        others
            .into_iter()
            .map(|p| (modified(p).min(now), p.clone())),
    );
    // Stable: the heap files keep the order `chronological` gave among equal times.
    timed.sort_by_key(|(t, _)| *t);
    timed.into_iter().map(|(_, p)| p).collect()
}

/// All heap files of `pid` in `dir` (any prefix), oldest first.
pub fn series(dir: &Path, pid: u32) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("cannot list {}", shown(dir))))?;
    let of_pid: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Regular files only: a symlink in mysqld's directory is not a dump of ours.
        .filter(|p| {
            p.symlink_metadata().is_ok_and(|m| m.is_file())
                && heap_name(p).is_some_and(|n| n.pid == pid)
        })
        .collect();
    Ok(oldest_first(&of_pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_pid_and_time_with_any_prefix() {
        let (pid, t) = name_info(Path::new("/x/mysqld.77.20261126T182554.0003.usr1.heap"));
        assert_eq!(pid, Some(77));
        assert!(t.is_some());
        let (pid, t) = name_info(Path::new("my.prefix.88.3.i12.heap"));
        assert_eq!((pid, t), (Some(88), None));
        assert_eq!(name_info(Path::new("random.heap")), (None, None));
    }

    /// Named dumps go in the dump directory's order: jemalloc's counter over mtimes,
    /// the name's time over the mtime, other names by mtime among them.
    #[test]
    fn named_dumps_take_the_directory_order() {
        let dir = std::env::temp_dir().join(format!("jemsafe-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000 + s);
        let files = [
            // jemalloc's: counter 2 touched earlier than counter 1.
            ("mysqld.5.2.i2.heap", 10),
            ("mysqld.5.1.i1.heap", 20),
            // jemsafe's: its name says 2026-11-18T11:08:00Z (s = 80), its mtime says 0.
            ("mysqld.5.20261118T110800.0003.usr1.heap", 0),
            ("copied.heap", 50),
        ];
        let paths: Vec<PathBuf> = files.iter().map(|(n, _)| dir.join(n)).collect();
        for ((_, s), p) in files.iter().zip(&paths) {
            let f = std::fs::File::create(p).unwrap();
            f.set_modified(at(*s)).unwrap();
        }
        let got = oldest_first(&paths);
        let names: Vec<&str> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "mysqld.5.1.i1.heap",
                "mysqld.5.2.i2.heap",
                "copied.heap",
                "mysqld.5.20261118T110800.0003.usr1.heap"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What chose a dump and what loads it see one sidecar, however it changes between.
    #[test]
    fn a_sidecar_is_read_once_for_choosing_and_loading() {
        let dir = std::env::temp_dir().join(format!("jemsafe-sidecars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dump = dir.join("mysqld.5.1.i1.heap");
        let write = |start_ticks: u64| {
            let s = Sidecar {
                process: Some(Process {
                    pid: 5,
                    start_ticks,
                    ..Default::default()
                }),
                ..Sidecar::new()
            };
            let path = jemsafe_report::sidecar::path_for(&dump);
            std::fs::write(path, serde_json::to_vec(&s).unwrap()).unwrap();
        };
        write(100);
        let sidecars = Sidecars::new(false);
        assert_eq!(sidecars.process(&dump).map(|p| p.start_ticks), Some(100));
        // mysqld's user rewrites it after the plan chose the dump.
        write(200);
        let taken = sidecars.take(&dump).unwrap().unwrap();
        assert_eq!(taken.process.map(|p| p.start_ticks), Some(100));
        // Taken once: a dump no plan chose is read when it is loaded.
        let again = sidecars.take(&dump).unwrap().unwrap();
        assert_eq!(again.process.map(|p| p.start_ticks), Some(200));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn previous_is_the_earlier_dump_of_the_same_pid() {
        let dir = std::env::temp_dir().join(format!("jemsafe-select-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "mysqld.5.20261126T100000.0001.usr1.heap",
            "mysqld.5.20261126T110000.0002.usr1.heap",
            "mysqld.6.20261126T105000.0001.usr1.heap",
            "mysqld.5.20261126T120000.0003.cli.heap",
        ];
        for n in names {
            std::fs::write(dir.join(n), "heap_v2/1\n").unwrap();
        }
        let prev = previous(&dir.join(names[3])).unwrap();
        assert_eq!(prev, dir.join(names[1]));
        assert!(previous(&dir.join(names[0])).is_err());
        let s = series(&dir, 5).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], dir.join(names[0]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
