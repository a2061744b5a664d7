//! Writing a dump's sidecar (`<dump>.json`, format in `jemsafe_report::sidecar`) while
//! mysqld still runs: the objects it has mapped (build-ids read through
//! /proc/PID/map_files, so the very file that was mapped even after an upgrade replaced
//! it), its identity (pid, start time, boot), how it was profiled.
//!
//! Root writes in mysqld's directory: the file is created relative to the directory's
//! descriptor with `O_CREAT | O_EXCL | O_NOFOLLOW` (a name planted in advance, a symlink
//! included, makes the write fail rather than follow), given to the heap files' owner
//! and mode 0640, like the dump it describes.

use jemsafe_report::maps::MapEntry;
use jemsafe_report::sidecar::{self, Jemalloc, Object, Process, Sidecar};
use std::os::unix::fs::MetadataExt;

/// What the supervisor knows beside /proc.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub pid: i32,
    pub trigger: String,
    /// The reading that fired the trigger (see [`Sidecar::reason`]).
    pub reason: Option<String>,
    pub profile: Option<String>,
    pub malloc_conf: Option<String>,
    pub mysqld_version: Option<String>,
    pub jemalloc: Option<Jemalloc>,
}

/// The sidecar for a dump of `ctx.pid` taken now; `maps`: the dump's own copy of the
/// process's maps.
pub fn collect(ctx: &Context, dump_name: &str, maps: &[MapEntry]) -> Sidecar {
    let mut s = Sidecar::new();
    s.dump = Some(dump_name.to_owned());
    s.trigger = Some(ctx.trigger.clone());
    s.reason = ctx.reason.clone();
    s.written_at = Some(jemsafe_report::clock::rfc3339_seconds(
        std::time::SystemTime::now(),
    ));
    s.host = crate::procfs::system("/proc/sys/kernel/hostname");
    s.process = process(ctx.pid);
    s.mysqld_version = ctx.mysqld_version.clone();
    s.profile = ctx.profile.clone();
    s.malloc_conf = ctx.malloc_conf.clone();
    s.jemalloc = ctx.jemalloc.clone();
    s.objects = objects(ctx.pid, maps);
    s.jemsafe_version = Some(env!("CARGO_PKG_VERSION").to_owned());
    s
}

/// pid, start ticks and boot id from /proc.
pub fn process(pid: i32) -> Option<Process> {
    // Field 3 (the state) first; starttime is field 22.
    let start_ticks: u64 = crate::procfs::stat_fields(pid)?.get(19)?.parse().ok()?;
    let started_at = boot_time().and_then(|btime| {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0).then(|| {
            let secs = btime.saturating_add(start_ticks / hz as u64);
            jemsafe_report::clock::rfc3339_seconds(jemsafe_report::clock::from_secs_clamped(secs))
        })
    });
    Some(Process {
        pid: pid as u32,
        start_ticks,
        boot_id: crate::procfs::system("/proc/sys/kernel/random/boot_id"),
        started_at,
        executable: crate::procfs::exe(pid).map(|p| p.to_string_lossy().into_owned()),
    })
}

fn boot_time() -> Option<u64> {
    crate::procfs::system("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Every file mapped executable by `pid` in `maps`, once, in maps order.
pub fn objects(pid: i32, maps: &[MapEntry]) -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    for m in maps {
        let Some(path) = m.path.as_deref() else {
            continue;
        };
        if !m.executable() || !path.starts_with('/') || out.iter().any(|o| o.path == path) {
            continue;
        }
        let mut o = Object {
            path: path.to_owned(),
            build_id: None,
            device: Some(format!("{:02x}:{:02x}", m.dev.0, m.dev.1)),
            inode: Some(m.inode),
            size: None,
        };
        // The mapped file itself (root can open map_files), else the path if it is still
        // the same inode.
        let file = crate::procfs::mapped_file(pid, m).ok().or_else(|| {
            let p = std::path::Path::new(path.trim_end_matches(" (deleted)"));
            let f = jemsafe_report::safe::open_regular(p, false).ok()?;
            (f.meta.ino() == m.inode).then_some(f.file)
        });
        if let Some(file) = file {
            o.size = file.metadata().ok().map(|m| m.len());
            o.build_id = sidecar::build_id(&file).map(|id| sidecar::hex(&id));
        }
        out.push(o);
    }
    out
}

/// Writes `s` as `<dump_name>.json` in the dump directory, owned by `owner`; never over
/// an existing name, never through a symlink.
pub fn write(
    dir: &super::DumpDir,
    dump_name: &str,
    s: &Sidecar,
    owner: Option<u32>,
) -> Result<(), super::files::FileError> {
    dir.write_new(&format!("{dump_name}.json"), &s.to_json(), owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_described_with_its_objects_and_build_ids() {
        let pid = std::process::id() as i32;
        let p = process(pid).unwrap();
        assert_eq!(p.pid, pid as u32);
        assert!(p.start_ticks > 0);
        assert!(p.same_as(&process(pid).unwrap()));
        let objs = objects(pid, &crate::procfs::maps(pid).unwrap());
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = objs
            .iter()
            .find(|o| std::path::Path::new(&o.path) == me)
            .expect("the executable is mapped");
        assert!(exe.build_id.is_some() && exe.inode.is_some() && exe.size.is_some());
    }

    #[test]
    fn a_planted_name_or_symlink_is_never_written_through() {
        let dir = std::env::temp_dir().join(format!("jemsafe-sidecar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("d.heap.json")).unwrap();
        let fd = crate::dumpdir::DumpDir::new(&dir, "d");
        let s = Sidecar::new();
        assert!(write(&fd, "d.heap", &s, None).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        write(&fd, "e.heap", &s, None).unwrap();
        let back = Sidecar::from_json(&std::fs::read(dir.join("e.heap.json")).unwrap()).unwrap();
        assert_eq!(back, s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
