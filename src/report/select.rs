//! What dumps' names and sidecars say (pid, time, order, process), and the dumps around
//! one: the one before it of the same process, all dumps of one pid. Which dumps a
//! command reads is decided in [`super::plan`].

use crate::dumps::naming::HeapName;
use crate::error::{Error, Result};
use jemsafe_report::safe::shown;
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
    if let Some(mine) = process_of(dump) {
        same_pid.retain(|p| process_of(p).map_or(true, |other| other.same_as(&mine)));
    }
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
pub fn process_of(dump: &Path) -> Option<jemsafe_report::sidecar::Process> {
    jemsafe_report::sidecar::read_for(dump, false)
        .ok()
        .flatten()
        .and_then(|s| s.process)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// Where a dump sorts: its time (from the name, else its mtime; None when neither is
/// known), then jemalloc's/jemsafe's sequence number.
pub fn order_of(path: &Path) -> (Option<SystemTime>, u64) {
    let name = heap_name(path);
    let time = name
        .as_ref()
        .and_then(HeapName::time)
        .or_else(|| std::fs::metadata(path).and_then(|m| m.modified()).ok());
    (time, name.map_or(0, |n| n.seq))
}

/// Orders dumps oldest first.
pub fn sort_by_time(paths: &mut [PathBuf]) {
    paths.sort_by_cached_key(|p| {
        let (time, seq) = order_of(p);
        (time.unwrap_or(UNIX_EPOCH), seq)
    });
}

/// All heap files of `pid` in `dir` (any prefix), oldest first.
pub fn series(dir: &Path, pid: u32) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("cannot list {}", shown(dir))))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Regular files only: a symlink in mysqld's directory is not a dump of ours.
        .filter(|p| {
            p.symlink_metadata().is_ok_and(|m| m.is_file())
                && heap_name(p).is_some_and(|n| n.pid == pid)
        })
        .collect();
    sort_by_time(&mut out);
    Ok(out)
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
