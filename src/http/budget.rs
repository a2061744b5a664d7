//! What a rendering child (`__pprof`, `__page`, run as root) may use, so that no request
//! can make the kernel choose mysqld:
//!
//! - address space (`RLIMIT_AS`): `[http] render_memory_mb`, 2048 MiB by default. Over it,
//!   an allocation fails, the child ends, and the request gets a 500 that says so;
//! - CPU time (`RLIMIT_CPU`) and wall-clock time: the request's deadline (the wall clock
//!   is kept by [`super::child::run_framed`], which kills and reaps the child);
//! - `oom_score_adj` 1000: should memory run out anyway, the kernel kills the child first;
//! - its memory cgroup: when the group it would share with jemsafe and mysqld sets a
//!   memory limit of its own, the child leaves it for that group's parent, so that a render
//!   never spends mysqld's limit (cgroup v1: always possible; cgroup v2: only when the
//!   parent is the root group, since an inner v2 group with controllers holds no
//!   processes: under systemd on v2 the child stays in the service's group, chosen first
//!   by the OOM killer and held to its address-space budget). A group without a limit of
//!   its own is left alone: leaving it would escape nothing;
//! - the dumps it reads: at most [`MAX_PAGE_DUMPS`] dumps and 1/[`BYTES_PER_DUMP_BYTE`] of
//!   the memory budget in dump bytes per request (a render takes some 20 times the bytes
//!   of its dumps); the page names what it left out.

use crate::watch::memlimit::{Group, Location, Version};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `[http] render_memory_mb`'s default: a page of a dozen MariaDB dumps with DWARF fits
/// many times over.
pub const DEFAULT_MEMORY_MB: u64 = 2048;
/// The range `[http] render_memory_mb` allows.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 256..=(1 << 20);
/// Bytes of memory budget per dump byte a render may read: two planted dumps of 26 MB
/// took a child to 1.1 GB (21 times), a dense 8 MiB dump of 64-frame stacks to 695 MB
/// (85 times); beyond, the address-space limit stops it.
pub const BYTES_PER_DUMP_BYTE: u64 = 64;
/// Dumps on the live page at most (the newest ones).
pub const MAX_PAGE_DUMPS: usize = 12;
/// The environment variable that tells a rendering child how many dump bytes it may read.
pub const DUMP_BYTES_ENV: &str = "JEMSAFE_RENDER_DUMP_BYTES";

/// A rendering child's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Address space, bytes.
    pub memory_bytes: u64,
    /// Wall-clock time; CPU time is limited to the same.
    pub deadline: Duration,
}

impl Budget {
    pub fn new(memory_mb: u64, deadline: Duration) -> Budget {
        Budget {
            memory_bytes: memory_mb.saturating_mul(1 << 20),
            deadline,
        }
    }

    /// Dump bytes one request may read, in all.
    pub fn dump_bytes(&self) -> u64 {
        self.memory_bytes / BYTES_PER_DUMP_BYTE
    }

    /// CPU seconds: the deadline, at least one.
    fn cpu_seconds(&self) -> u64 {
        self.deadline.as_secs().max(1)
    }
}

/// The dump bytes this rendering child may read (from the server), or `fallback`.
pub fn dump_bytes_from_env(fallback: u64) -> u64 {
    std::env::var(DUMP_BYTES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fallback)
}

/// Of `dumps` (oldest first, with their sizes), the newest that fit in `max_count` and
/// `max_bytes` together (the newest always: its own size limit is the reader's), oldest
/// first; and a note naming what was left out, if anything.
pub fn cap_series(
    dumps: Vec<(PathBuf, u64)>,
    max_count: usize,
    max_bytes: u64,
) -> (Vec<PathBuf>, Option<String>) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut left_out = Vec::new();
    for (path, size) in dumps.into_iter().rev() {
        let fits = kept.len() < max_count && total.saturating_add(size) <= max_bytes;
        if kept.is_empty() || (fits && left_out.is_empty()) {
            total = total.saturating_add(size);
            kept.push(path);
        } else {
            left_out.push(path);
        }
    }
    kept.reverse();
    if left_out.is_empty() {
        return (kept, None);
    }
    const NAMED: usize = 5;
    let mut names: Vec<String> = left_out
        .iter()
        .take(NAMED)
        .map(|p| jemsafe_report::safe::shown(p).to_string())
        .collect();
    if left_out.len() > NAMED {
        names.push(format!("and {} more", left_out.len() - NAMED));
    }
    let note = format!(
        "{} older dump(s) left out: the live page reads at most {max_count} dumps and {} MiB \
         of dumps (1/{BYTES_PER_DUMP_BYTE} of [http] render_memory_mb); `jemsafe page` on \
         the command line shows them all: {}",
        left_out.len(),
        max_bytes >> 20,
        names.join(", ")
    );
    (kept, Some(note))
}

/// Where a rendering child goes, given the memory cgroup it would inherit and whether
/// that group sets a limit of its own: the group's parent, where a process can join it.
/// None: it stays (no limit of its own to escape; the root group; or v2 below the root,
/// where an inner group holds no processes).
pub fn render_group(own: &Location, own_limit: bool) -> Option<Location> {
    let (_, parent) = own.components.split_last()?;
    if !own_limit || (own.version == Version::V2 && !parent.is_empty()) {
        return None;
    }
    Some(Location {
        version: own.version,
        mount: own.mount.clone(),
        components: parent.to_vec(),
    })
}

/// The `cgroup.procs` of the group rendering children join, opened for writing (through
/// descriptors, never following a symlink), and the group's path; None with the reason
/// when they stay where they are.
pub fn open_render_group() -> std::result::Result<(OwnedFd, PathBuf), String> {
    let pid = std::process::id() as i32;
    let cgroup = crate::procfs::read(pid, "cgroup").map_err(|e| e.to_string())?;
    let mountinfo = crate::procfs::read(pid, "mountinfo").map_err(|e| e.to_string())?;
    let own = crate::watch::memlimit::locate(&cgroup, &mountinfo)
        .ok_or("jemsafe is in no memory cgroup it can find")?;
    let own_limit = Group::open(&own)
        .ok()
        .and_then(|g| crate::watch::memlimit::read_at(g.dir(), own.version.limit_file()).ok())
        .and_then(|text| crate::watch::memlimit::parse_limit(own.version, &text))
        .is_some();
    let Some(target) = render_group(&own, own_limit) else {
        return Err(if own.components.is_empty() {
            "jemsafe is in the root memory cgroup, which has no limit".into()
        } else if !own_limit {
            format!(
                "{} {} sets no memory limit of its own",
                own.version.label(),
                own.path().display()
            )
        } else {
            format!(
                "{} {}: a process cannot join its parent (an inner group)",
                own.version.label(),
                own.path().display()
            )
        });
    };
    let group = Group::open(&target)?;
    let fd = nix::fcntl::openat(
        Some(group.dir().as_raw_fd()),
        "cgroup.procs",
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", target.path().display()))?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, target.path()))
}

/// Sets the child's limits between fork and exec: address space, CPU time, oom_score_adj
/// 1000 and, with `procs` (a group's `cgroup.procs`, see [`open_render_group`]), that
/// group. The descriptor must stay open until the child is spawned.
pub fn confine(cmd: &mut Command, budget: &Budget, procs: Option<RawFd>) {
    let memory = budget.memory_bytes as libc::rlim_t;
    let cpu = budget.cpu_seconds() as libc::rlim_t;
    // SAFETY: only system calls between fork and exec, on local values and a descriptor
    // the parent keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // Joining the group first: what the child maps is then charged there.
            if let Some(fd) = procs {
                // "0": the writing process itself. A failure leaves it where it was.
                libc::write(fd, b"0".as_ptr().cast(), 1);
            }
            let adj = c"/proc/self/oom_score_adj";
            let fd = libc::open(adj.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr().cast(), 4);
                libc::close(fd);
            }
            let set = |resource, soft: libc::rlim_t, hard: libc::rlim_t| {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, memory, memory)?;
            // SIGXCPU at the soft limit, SIGKILL at the hard one.
            set(libc::RLIMIT_CPU, cpu, cpu.saturating_add(5))?;
            Ok(())
        });
    }
}

/// Why a child failed, from what it wrote on standard error: running out of its address
/// space is said as such (Rust's allocator says "memory allocation of N bytes failed").
pub fn failure(stderr: &str, budget: &Budget) -> Option<String> {
    let command_line = "use `jemsafe report` or `jemsafe page` on the command line";
    if stderr.contains("memory allocation of") {
        return Some(format!(
            "the renderer needed more than its memory budget of {} MiB ([http] \
             render_memory_mb) and was stopped; the dumps are too large for a live render: \
             {command_line}",
            budget.memory_bytes >> 20
        ));
    }
    // The reader's own limit, which names its command-line flag: here it is the budget's.
    stderr.contains("--max-dump-mb").then(|| {
        format!(
            "the dump is larger than the {} MiB of dump text a live render may read \
             (1/{BYTES_PER_DUMP_BYTE} of [http] render_memory_mb = {}): {command_line}",
            budget.dump_bytes() >> 20,
            budget.memory_bytes >> 20
        )
    })
}

/// The group rendering children join, said once when the server starts.
pub fn describe(group: &std::result::Result<(OwnedFd, PathBuf), String>) -> String {
    match group {
        Ok((_, path)) => format!("in memory cgroup {}", path.display()),
        Err(why) => format!("in jemsafe's memory cgroup ({why})"),
    }
}

/// The size of `path`, not following a link; 0 when it cannot be read (the reader then
/// says why).
pub fn size_of(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(sizes: &[u64]) -> Vec<(PathBuf, u64)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| (PathBuf::from(format!("/d/{i}.heap")), *s))
            .collect()
    }

    #[test]
    fn a_series_keeps_the_newest_dumps_within_count_and_bytes() {
        let (kept, note) = cap_series(series(&[1, 1, 1]), 12, 100);
        assert_eq!(kept.len(), 3);
        assert_eq!(note, None);
        // By count: the newest two.
        let (kept, note) = cap_series(series(&[1, 1, 1]), 2, 100);
        assert_eq!(
            kept,
            [PathBuf::from("/d/1.heap"), PathBuf::from("/d/2.heap")]
        );
        let note = note.unwrap();
        assert!(
            note.contains("1 older dump(s) left out") && note.contains("/d/0.heap"),
            "{note}"
        );
        // By bytes: the newest always, then what fits; nothing older than a gap.
        let (kept, note) = cap_series(series(&[10, 60, 50]), 12, 100);
        assert_eq!(kept, [PathBuf::from("/d/2.heap")]);
        assert!(note.unwrap().contains("2 older dump(s)"));
        let (kept, _) = cap_series(series(&[500]), 12, 100);
        assert_eq!(kept.len(), 1);
        // Many left out: five named, the rest counted.
        let (kept, note) = cap_series(series(&[1; 40]), 12, 1 << 30);
        assert_eq!(kept.len(), 12);
        assert!(note.unwrap().contains("and 23 more"));
        assert_eq!(cap_series(Vec::new(), 12, 100), (Vec::new(), None));
    }

    #[test]
    fn children_leave_for_the_parent_group_where_a_process_may_join_it() {
        let at = |version, components: &[&str]| Location {
            version,
            mount: PathBuf::from("/sys/fs/cgroup/memory"),
            components: components.iter().map(|c| c.to_string()).collect(),
        };
        let service = ["system.slice", "mariadb.service"];
        assert_eq!(
            render_group(&at(Version::V1, &service), true),
            Some(at(Version::V1, &["system.slice"]))
        );
        assert_eq!(
            render_group(&at(Version::V1, &["jemsafe"]), true),
            Some(at(Version::V1, &[]))
        );
        // No limit of its own: nothing to escape.
        assert_eq!(render_group(&at(Version::V1, &service), false), None);
        assert_eq!(render_group(&at(Version::V1, &[]), true), None);
        assert_eq!(render_group(&at(Version::V2, &service), true), None);
        assert_eq!(
            render_group(&at(Version::V2, &["jemsafe"]), true),
            Some(at(Version::V2, &[]))
        );
    }

    #[test]
    fn the_budget_derives_cpu_and_dump_bytes() {
        let b = Budget::new(2048, Duration::from_millis(500));
        assert_eq!(b.memory_bytes, 2 << 30);
        assert_eq!(b.dump_bytes(), 32 << 20);
        assert_eq!(b.cpu_seconds(), 1);
        assert!(failure("memory allocation of 4096 bytes failed", &b)
            .unwrap()
            .contains("2048 MiB"));
        assert_eq!(failure("no such dump", &b), None);
        let big = failure(
            "x.heap: more than 32 MiB of dump text: ... --max-dump-mb N",
            &b,
        );
        assert!(big
            .unwrap()
            .contains("32 MiB of dump text a live render may read"));
    }
}
