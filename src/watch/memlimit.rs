//! mysqld's memory limit and the kernel files that say how close it is: its memory
//! cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`, else the machine's MemTotal),
//! the group's usage and OOM-kill counter, and memory pressure (PSI).
//!
//! Where the group is comes from /proc/PID/cgroup and where its hierarchy is mounted from
//! /proc/self/mountinfo (pure functions, tested with fixture texts for v1, v2 and the
//! hybrid layout). Root then walks from the mount point down to the group one directory
//! at a time with `O_NOFOLLOW`, checks with `fstatfs` that it is a cgroup filesystem, and
//! keeps the directories open: every later read is `openat` on a held descriptor, with a
//! bound, so nothing a process can rename or plant redirects it.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The most any cgroup or /proc file read here may hold (memory.stat is about 2 KiB).
const MAX_READ: u64 = 64 << 10;

/// v1's "no limit": PAGE_COUNTER_MAX pages, some 2^63 bytes; anything this large is none.
const V1_UNLIMITED: u64 = 1 << 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        }
    }

    pub fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }

    fn usage_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        }
    }

    fn events_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        }
    }
}

/// Where a process's memory cgroup is: the hierarchy's mount point, and the directories
/// from the mount point down to the group (relative names, one per level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub version: Version,
    pub mount: PathBuf,
    pub components: Vec<String>,
}

impl Location {
    pub fn path(&self) -> PathBuf {
        let mut p = self.mount.clone();
        p.extend(&self.components);
        p
    }
}

/// The memory cgroup of a process from its /proc/PID/cgroup text and /proc/self/mountinfo:
/// the v1 memory controller when it is mounted (it then owns memory even when a v2
/// hierarchy exists, the "hybrid" layout), else the v2 group. None when neither is found
/// or the path is not one the kernel writes (`..`, empty components).
pub fn locate(cgroup: &str, mountinfo: &str) -> Option<Location> {
    let mounts = parse_mounts(mountinfo);
    let mut v2 = None;
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            if let Some(m) = mounts.iter().find(|m| m.v1_memory) {
                return location(Version::V1, m, path);
            }
        } else if controllers.is_empty() {
            v2 = mounts
                .iter()
                .find(|m| m.v2)
                .and_then(|m| location(Version::V2, m, path));
        }
    }
    v2
}

/// The v2 group of a process whatever owns the memory controller (its `memory.pressure`
/// exists in the hybrid layout too, since PSI follows the v2 hierarchy); or why there is
/// none of its own, so that only the machine's PSI describes it.
pub fn unified(cgroup: &str, mountinfo: &str) -> Result<Location, &'static str> {
    let mounts = parse_mounts(mountinfo);
    let m = mounts
        .iter()
        .find(|m| m.v2)
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the process has no cgroup v2 group")?;
    let l = location(Version::V2, m, path).ok_or("its cgroup v2 path is not one to follow")?;
    if l.components.is_empty() {
        return Err("its cgroup v2 group is the root");
    }
    Ok(l)
}

/// Where the memory pressure (PSI) that `[triggers] pressure` reads comes from: the file
/// is chosen once, when mysqld starts, and only that file is read (an unreadable group
/// file is no reading, never the machine's figure instead).
#[derive(Debug)]
pub enum PressureSource {
    /// `memory.pressure` of mysqld's own cgroup v2 group, held open.
    Group(Group),
    /// `/proc/pressure/memory`, the whole machine's, and why mysqld's own is not there.
    System(String),
}

/// The machine's PSI file.
const SYSTEM_PSI: &str = "/proc/pressure/memory";

/// Where a process sits in the cgroup hierarchies: its /proc/PID/cgroup and jemsafe's
/// mountinfo, read once for both its memory group and its PSI source.
pub struct Placement {
    pid: i32,
    /// (cgroup, mountinfo), None when either is unreadable.
    texts: Option<(String, String)>,
}

impl Placement {
    pub fn of(pid: i32) -> Placement {
        let cgroup = crate::procfs::read(pid, "cgroup");
        let mountinfo = crate::procfs::read(std::process::id() as i32, "mountinfo");
        Placement {
            pid,
            texts: cgroup.ok().zip(mountinfo.ok()),
        }
    }
}

impl PressureSource {
    /// Process `pid`'s (mysqld's, or jemsafe's own for `check`: mysqld inherits it).
    pub fn of(pid: i32) -> PressureSource {
        PressureSource::at(&Placement::of(pid))
    }

    /// The source for a process placed at `placement`.
    pub fn at(placement: &Placement) -> PressureSource {
        let Some((cgroup, mountinfo)) = &placement.texts else {
            return PressureSource::System(format!("/proc/{}/cgroup is unreadable", placement.pid));
        };
        match unified(cgroup, mountinfo) {
            Ok(l) => match Group::open(&l) {
                Ok(g) => PressureSource::Group(g),
                Err(e) => PressureSource::System(e),
            },
            Err(why) => PressureSource::System(why.to_owned()),
        }
    }

    /// The file read, alone (`/proc/pressure/memory`): for a dump's reason.
    pub fn file(&self) -> String {
        match self {
            PressureSource::Group(g) => g.path().join("memory.pressure").display().to_string(),
            PressureSource::System(_) => SYSTEM_PSI.to_owned(),
        }
    }

    /// The PSI text now, from this source only.
    pub fn read(&self) -> Option<String> {
        match self {
            PressureSource::Group(g) => g.read_in(0, "memory.pressure"),
            PressureSource::System(_) => crate::procfs::system(SYSTEM_PSI),
        }
    }

    /// `/sys/fs/cgroup/db/memory.pressure (mysqld's own cgroup v2 group)`, or the
    /// machine's file and why.
    pub fn describe(&self) -> String {
        match self {
            PressureSource::Group(g) => format!(
                "{} (mysqld's own cgroup v2 group)",
                g.path().join("memory.pressure").display()
            ),
            PressureSource::System(why) => format!(
                "{SYSTEM_PSI}, system-wide ({why}): pressure anywhere on the machine counts"
            ),
        }
    }
}

struct Mount {
    point: PathBuf,
    root: String,
    v1_memory: bool,
    v2: bool,
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent maj:min root point options [optional...] - fstype source super
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let head: Vec<&str> = head.split(' ').collect();
        let tail: Vec<&str> = tail.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (head.get(3), head.get(4), tail.first())
        else {
            continue;
        };
        let v1_memory = *fstype == "cgroup"
            && tail
                .get(2)
                .is_some_and(|o| o.split(',').any(|x| x == "memory"));
        let v2 = *fstype == "cgroup2";
        if v1_memory || v2 {
            out.push(Mount {
                point: PathBuf::from(unescape(point)),
                root: unescape(root),
                v1_memory,
                v2,
            });
        }
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            out.push((d(1) * 64 + d(2) * 8 + d(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn location(version: Version, m: &Mount, path: &str) -> Option<Location> {
    let path = path.trim_end();
    // Inside a bind-mounted subtree, /proc/PID/cgroup names the group from the
    // hierarchy's root and mountinfo says which part is mounted.
    let rel = if m.root == "/" {
        path
    } else {
        let r = path.strip_prefix(m.root.as_str())?;
        if !(r.is_empty() || r.starts_with('/')) {
            return None;
        }
        r
    };
    let mut components = Vec::new();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." || c.contains('\0') {
            return None;
        }
        components.push(c.to_owned());
    }
    Some(Location {
        version,
        mount: m.point.clone(),
        components,
    })
}

/// A memory cgroup opened for reading: the directories from the group up to the
/// hierarchy's root, group first, each held open.
#[derive(Debug)]
pub struct Group {
    pub location: Location,
    chain: Vec<(PathBuf, OwnedFd)>,
}

impl Group {
    /// Opens `location` one directory at a time without following a symlink, and only on
    /// a cgroup filesystem.
    pub fn open(location: &Location) -> Result<Group, String> {
        use nix::fcntl::OFlag;
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mount = nix::fcntl::open(&location.mount, dir_flags, nix::sys::stat::Mode::empty())
            .map_err(|e| format!("cannot open {}: {e}", location.mount.display()))?;
        // SAFETY: open just returned this descriptor; nothing else owns it.
        let mount = unsafe { OwnedFd::from_raw_fd(mount) };
        let fs = nix::sys::statfs::fstatfs(&mount)
            .map_err(|e| format!("cannot inspect {}: {e}", location.mount.display()))?;
        let expected = match location.version {
            Version::V1 => nix::sys::statfs::CGROUP_SUPER_MAGIC,
            Version::V2 => nix::sys::statfs::CGROUP2_SUPER_MAGIC,
        };
        if fs.filesystem_type() != expected {
            return Err(format!(
                "{} is not a {} filesystem",
                location.mount.display(),
                location.version.label()
            ));
        }
        let mut path = location.mount.clone();
        let mut chain = vec![(path.clone(), mount)];
        for c in &location.components {
            let parent = &chain.last().map(|(_, fd)| fd.as_raw_fd());
            path.push(c);
            let fd = nix::fcntl::openat(
                *parent,
                c.as_str(),
                dir_flags | OFlag::O_NOFOLLOW,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            // SAFETY: openat just returned this descriptor; nothing else owns it.
            chain.push((path.clone(), unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        chain.reverse();
        Ok(Group {
            location: location.clone(),
            chain,
        })
    }

    /// The memory cgroup of process `pid`, opened; None when it has none that can be read.
    pub fn of(pid: i32) -> Option<Group> {
        Group::at(&Placement::of(pid))
    }

    /// The memory cgroup of a process placed at `placement`, opened.
    pub fn at(placement: &Placement) -> Option<Group> {
        let (cgroup, mountinfo) = placement.texts.as_ref()?;
        Group::open(&locate(cgroup, mountinfo)?).ok()
    }

    pub fn version(&self) -> Version {
        self.location.version
    }

    /// The group's own directory, held open.
    pub fn dir(&self) -> &OwnedFd {
        &self.chain[0].1
    }

    /// The group's own directory.
    pub fn path(&self) -> &Path {
        &self.chain[0].0
    }

    fn read_in(&self, level: usize, name: &str) -> Option<String> {
        read_at(&self.chain.get(level)?.1, name).ok()
    }

    /// The tightest limit on the group: its own or an ancestor's (limits nest), and where
    /// it is set; None when no level of the hierarchy sets one.
    pub fn limit(&self) -> Option<Limit> {
        let v = self.version();
        let mut best: Option<Limit> = None;
        for level in 0..self.chain.len() {
            let Some(bytes) = self
                .read_in(level, v.limit_file())
                .and_then(|t| parse_limit(v, &t))
            else {
                continue;
            };
            if best.as_ref().map_or(true, |b| bytes < b.bytes) {
                best = Some(Limit {
                    bytes,
                    source: Source::Cgroup {
                        version: v,
                        file: self.chain[level].0.join(v.limit_file()),
                    },
                });
            }
        }
        best
    }

    /// The file that counts the group's OOM kills ([`Group::oom_kills`]), for messages.
    pub fn events_path(&self) -> PathBuf {
        self.path().join(self.version().events_file())
    }

    /// The group's memory use as the kernel charges it (page cache included).
    pub fn usage(&self) -> Option<u64> {
        self.read_in(0, self.version().usage_file())?
            .trim()
            .parse()
            .ok()
    }

    /// OOM kills of processes in the group: v2 `memory.events`, v1 `memory.oom_control`
    /// (`oom_kill N`; the kernel counts a kill in the victim's own group, whichever
    /// level's limit was hit).
    pub fn oom_kills(&self) -> Option<u64> {
        if self.location.components.is_empty() {
            return None; // the root group keeps no such counter
        }
        keyed(&self.read_in(0, self.version().events_file())?, "oom_kill")
    }
}

/// `name` in the directory `dir`: a regular file, never a symlink, read with a bound.
pub fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<String> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.take(MAX_READ).read_to_string(&mut text)?;
    Ok(text)
}

/// A limit file's value: None for "max" (v2), v1's huge "unlimited", or anything unreadable.
pub fn parse_limit(version: Version, text: &str) -> Option<u64> {
    let t = text.trim();
    if version == Version::V2 && t == "max" {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    (v < V1_UNLIMITED).then_some(v)
}

/// The number after `key` in a `key value` per line file (memory.events, /proc/vmstat).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == key).then(|| f.next()?.parse().ok()).flatten()
    })
}

/// The limit that applies to mysqld, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A cgroup's limit file (the group's own or an ancestor's).
    Cgroup { version: Version, file: PathBuf },
    /// No cgroup limit: the machine's memory (/proc/meminfo MemTotal).
    MemTotal,
}

impl Limit {
    /// Whether a cgroup sets it (the OOM killer then acts at this limit, not at the
    /// machine's memory).
    pub fn from_cgroup(&self) -> bool {
        matches!(self.source, Source::Cgroup { .. })
    }

    /// `512 MiB: memory.limit_in_bytes of /sys/fs/cgroup/memory/db (cgroup v1)`
    pub fn describe(&self) -> String {
        format!("{}: {}", human(self.bytes), self.source.describe())
    }
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Cgroup { version, file } => format!(
                "{} of {} ({})",
                file.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                file.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                version.label()
            ),
            Source::MemTotal => {
                "no cgroup limit: the machine's memory (MemTotal in /proc/meminfo)".into()
            }
        }
    }

    /// A short word for JSON and the timeline: "cgroup v2", "cgroup v1" or "MemTotal".
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Cgroup { version, .. } => version.label(),
            Source::MemTotal => "MemTotal",
        }
    }
}

/// MemTotal from /proc/meminfo's text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    Some(jemsafe_report::memory::kib(meminfo, "MemTotal")).filter(|b| *b > 0)
}

/// The limit for a process in `group` (None: no memory cgroup): the group's, else MemTotal.
pub fn limit_for(group: Option<&Group>) -> Option<Limit> {
    group.and_then(Group::limit).or_else(|| {
        Some(Limit {
            bytes: mem_total(&crate::procfs::system("/proc/meminfo")?)?,
            source: Source::MemTotal,
        })
    })
}

/// The system-wide OOM-kill counter (/proc/vmstat `oom_kill`).
pub fn vmstat_oom_kills() -> Option<u64> {
    keyed(&crate::procfs::system("/proc/vmstat")?, "oom_kill")
}

/// RSS of `pid` from /proc/PID/statm (resident pages; the cheapest reading there is).
pub fn statm_rss(pid: i32) -> Option<u64> {
    let text = crate::procfs::read(pid, "statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// 512 MiB, 7.6 GiB: for messages.
pub fn human(bytes: u64) -> String {
    jemsafe_report::units::bytes(bytes as f64, jemsafe_report::units::WHOLE)
}

/// `pressure = "some avg10 > 20"`: a PSI line, a window, a threshold in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct PressureRule {
    /// `full` (all tasks stalled) rather than `some`.
    pub full: bool,
    /// 10, 60 or 300 (seconds).
    pub window: u16,
    pub above: f64,
}

impl PressureRule {
    /// Parses `some|full avg10|avg60|avg300 > N` (N in 0..100); the error says what is allowed.
    pub fn parse(text: &str) -> Result<PressureRule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let allowed = "give \"some|full avg10|avg60|avg300 > N\" with N a percentage below 100, \
                       e.g. \"some avg10 > 20\"";
        let [line, window, op, n] = words.as_slice() else {
            return Err(format!("{text:?} is not a pressure rule: {allowed}"));
        };
        let full = match *line {
            "some" => false,
            "full" => true,
            other => return Err(format!("{other:?} is neither `some` nor `full`: {allowed}")),
        };
        let window = match *window {
            "avg10" => 10,
            "avg60" => 60,
            "avg300" => 300,
            other => {
                return Err(format!(
                    "{other:?} is not a PSI window (avg10, avg60, avg300): {allowed}"
                ))
            }
        };
        if *op != ">" {
            return Err(format!("{op:?}: only `>` is supported: {allowed}"));
        }
        let above: f64 = n
            .parse()
            .ok()
            .filter(|v: &f64| (0.0..100.0).contains(v))
            .ok_or_else(|| format!("{n:?} is not a percentage below 100: {allowed}"))?;
        Ok(PressureRule {
            full,
            window,
            above,
        })
    }

    /// The rule's value in a PSI text (`some avg10=1.50 avg60=... total=...`).
    pub fn reading(&self, psi: &str) -> Option<f64> {
        let line = if self.full { "full" } else { "some" };
        let key = format!("avg{}=", self.window);
        psi.lines()
            .find(|l| l.split_whitespace().next() == Some(line))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key.as_str()))?
            .parse()
            .ok()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} avg{} > {}",
            if self.full { "full" } else { "some" },
            self.window,
            self.above
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V2_MOUNTS: &str = "\
25 1 0:22 / / rw shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn v1_memory_wins_in_the_hybrid_layout() {
        let cgroup = "9:name=systemd:/\n4:memory:/process_api/13e8\n1:cpu:/\n0::/\n";
        let l = locate(cgroup, HYBRID_MOUNTS).unwrap();
        assert_eq!(l.version, Version::V1);
        assert_eq!(
            l.path(),
            Path::new("/sys/fs/cgroup/memory/process_api/13e8")
        );
        // Its v2 group is the root: no memory.pressure of its own.
        assert_eq!(
            unified(cgroup, HYBRID_MOUNTS),
            Err("its cgroup v2 group is the root")
        );
        let v1_only = HYBRID_MOUNTS.replace("cgroup2 cgroup2", "tmpfs tmpfs");
        assert_eq!(
            unified("4:memory:/db\n0::/x\n", &v1_only),
            Err("no cgroup v2 hierarchy is mounted")
        );
        let cgroup = "4:memory:/db\n0::/system.slice/mariadb.service\n";
        assert_eq!(
            unified(cgroup, HYBRID_MOUNTS).unwrap().path(),
            Path::new("/sys/fs/cgroup/unified/system.slice/mariadb.service")
        );
    }

    #[test]
    fn v2_group_is_found_under_the_unified_mount() {
        let l = locate("0::/system.slice/mariadb.service\n", V2_MOUNTS).unwrap();
        assert_eq!(l.version, Version::V2);
        assert_eq!(l.components, ["system.slice", "mariadb.service"]);
        assert_eq!(
            l.path(),
            Path::new("/sys/fs/cgroup/system.slice/mariadb.service")
        );
        let root = locate("0::/\n", V2_MOUNTS).unwrap();
        assert!(root.components.is_empty());
    }

    #[test]
    fn a_bind_mounted_subtree_and_escapes_are_understood() {
        let mounts = "30 24 0:26 /docker/abc /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n";
        let l = locate("0::/docker/abc/inner\n", mounts).unwrap();
        assert_eq!(l.path(), Path::new("/sys/fs/cgroup x/inner"));
        assert_eq!(
            locate("0::/docker/abcd\n", mounts),
            None,
            "not under the mounted root"
        );
        assert_eq!(locate("0::/elsewhere\n", mounts), None);
    }

    #[test]
    fn paths_the_kernel_never_writes_are_refused() {
        assert_eq!(locate("0::/a/../../etc\n", V2_MOUNTS), None);
        assert_eq!(locate("0::/a/./b\n", V2_MOUNTS), None);
        assert_eq!(
            locate("4:memory:/x\n", V2_MOUNTS),
            None,
            "no v1 memory mount"
        );
        assert_eq!(locate("garbage", V2_MOUNTS), None);
        assert_eq!(locate("0::/x\n", ""), None, "nothing mounted");
    }

    #[test]
    fn limits_counters_and_meminfo_parse() {
        assert_eq!(parse_limit(Version::V2, "max\n"), None);
        assert_eq!(parse_limit(Version::V2, "536870912\n"), Some(512 << 20));
        assert_eq!(parse_limit(Version::V1, "9223372036854771712\n"), None);
        assert_eq!(parse_limit(Version::V1, "536870912\n"), Some(512 << 20));
        assert_eq!(parse_limit(Version::V1, "junk"), None);
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        let control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(control, "oom_kill"), Some(3));
        assert_eq!(keyed(control, "oom"), None);
        assert_eq!(
            mem_total("MemTotal:       24684000 kB\nMemFree: 1 kB\n"),
            Some(24684000 * 1024)
        );
    }

    #[test]
    fn a_v2_fixture_tree_reads_its_tightest_limit_usage_and_kills() {
        // Not a cgroup filesystem, so Group::open refuses it; the readers work on any
        // held directories, which is what the fixture exercises.
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-memlimit.XXXXXX").unwrap();
        let svc = dir.join("system.slice/mariadb.service");
        std::fs::create_dir_all(&svc).unwrap();
        std::fs::write(dir.join("system.slice/memory.max"), "1073741824\n").unwrap();
        std::fs::write(svc.join("memory.max"), "max\n").unwrap();
        std::fs::write(svc.join("memory.current"), "123456\n").unwrap();
        std::fs::write(svc.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        std::fs::write(
            svc.join("memory.pressure"),
            "some avg10=31.50 avg60=2.00 avg300=0.10 total=9\n",
        )
        .unwrap();
        let location = Location {
            version: Version::V2,
            mount: dir.clone(),
            components: vec!["system.slice".into(), "mariadb.service".into()],
        };
        assert!(Group::open(&location)
            .unwrap_err()
            .contains("not a cgroup v2 filesystem"));
        let open = |p: &Path| crate::dumpdir::files::open_dir(p).unwrap();
        let g = Group {
            location,
            chain: vec![
                (svc.clone(), open(&svc)),
                (dir.join("system.slice"), open(&dir.join("system.slice"))),
                (dir.clone(), open(&dir)),
            ],
        };
        let limit = g.limit().unwrap();
        assert_eq!(limit.bytes, 1 << 30);
        assert!(limit.from_cgroup());
        assert_eq!(
            limit.describe(),
            format!(
                "1.0 GiB: memory.max of {}/system.slice (cgroup v2)",
                dir.display()
            )
        );
        assert_eq!(g.usage(), Some(123456));
        assert_eq!(g.oom_kills(), Some(1));
        let psi = PressureSource::Group(g);
        assert!(psi.read().unwrap().starts_with("some avg10=31.50"));
        assert_eq!(
            psi.describe(),
            format!(
                "{}/memory.pressure (mysqld's own cgroup v2 group)",
                svc.display()
            )
        );
        // An unreadable group file is no reading, never the machine's figure.
        std::fs::remove_file(svc.join("memory.pressure")).unwrap();
        assert_eq!(psi.read(), None);
        let PressureSource::Group(g) = psi else {
            unreachable!()
        };
        // A symlink planted in place of a file is not followed.
        std::fs::remove_file(svc.join("memory.current")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", svc.join("memory.current")).unwrap();
        assert_eq!(g.usage(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_machines_cgroup_opens_when_there_is_one() {
        let me = std::process::id() as i32;
        if let Some(g) = Group::of(me) {
            assert!(
                g.path().starts_with("/sys/fs/cgroup"),
                "{}",
                g.path().display()
            );
        }
        let limit = limit_for(Group::of(me).as_ref()).unwrap();
        assert!(limit.bytes > 0);
        assert!(statm_rss(me).unwrap() > 0);
    }
}
