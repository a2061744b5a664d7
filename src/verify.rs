//! Proof that the profiling allocator is really inside mysqld.
//!
//! Two independent witnesses: `/proc/<pid>/maps` must contain the configured libjemalloc
//! and the shim, compared by device and inode (a path string can lie: symlinks, bind
//! mounts, a package upgrade that replaced the file), and the shim's `hello` must report a
//! jemalloc that serves malloc, with the profiling state the profile asked for. The
//! judgement is a pure function of those inputs.

use crate::config::Profile;
use jemsafe_proto::Reply;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub major: u64,
    pub minor: u64,
    pub inode: u64,
}

impl FileId {
    /// Identity of the file `path` resolves to (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        let dev = meta.dev();
        Ok(FileId {
            major: libc::major(dev) as u64,
            minor: libc::minor(dev) as u64,
            inode: meta.ino(),
        })
    }
}

/// One line of /proc/<pid>/maps that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub id: FileId,
    pub path: String,
}

/// Parses /proc/<pid>/maps text; anonymous mappings and odd lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            // address perms offset dev inode [path]; the path may contain spaces.
            let mut fields = line.splitn(6, ' ');
            let (_addr, _perms, _offset) = (fields.next()?, fields.next()?, fields.next()?);
            let (major, minor) = fields.next()?.split_once(':')?;
            let inode: u64 = fields.next()?.parse().ok()?;
            if inode == 0 {
                return None;
            }
            Some(Mapping {
                id: FileId {
                    major: u64::from_str_radix(major, 16).ok()?,
                    minor: u64::from_str_radix(minor, 16).ok()?,
                    inode,
                },
                path: fields.next().unwrap_or("").trim().to_owned(),
            })
        })
        .collect()
}

pub fn read_maps(pid: i32) -> std::io::Result<Vec<Mapping>> {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|t| parse_maps(&t))
}

/// What the running mysqld must show.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub library: PathBuf,
    pub library_id: FileId,
    pub shim: PathBuf,
    pub shim_id: FileId,
    pub profile: Profile,
    /// `<dumps.dir>/<dumps.prefix>`.
    pub prof_prefix: String,
}

/// The outcome, ready for one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub problems: Vec<String>,
    pub summary: String,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judges the maps and the handshake against the expectation.
pub fn judge(pid: i32, maps: &[Mapping], hello: &Reply, expect: &Expectation) -> Verdict {
    let mut problems = Vec::new();
    // Same device and inode; or, where overlayfs makes /proc/<pid>/maps show the lower
    // layer's device (containers on kernels before 6.8), the same inode at the same path.
    let mapped = |id: FileId, path: &Path| {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        maps.iter()
            .any(|m| m.id == id || (m.id.inode == id.inode && Path::new(&m.path) == real.as_path()))
    };
    if !mapped(expect.library_id, &expect.library) {
        let other = maps
            .iter()
            .find(|m| m.path.contains("jemalloc"))
            .map(|m| format!(" (a different file is mapped: {})", m.path))
            .unwrap_or_default();
        problems.push(format!(
            "{} is not mapped in /proc/{pid}/maps{other}",
            expect.library.display()
        ));
    }
    if !mapped(expect.shim_id, &expect.shim) {
        problems.push(format!(
            "the shim {} is not mapped in /proc/{pid}/maps",
            expect.shim.display()
        ));
    }
    let field = |k: &str| hello.get(k).unwrap_or("?").to_owned();
    let protocol = u64::from(jemsafe_proto::PROTOCOL_VERSION);
    if !hello.ok {
        problems.push(format!(
            "the shim's handshake failed: {}",
            hello.error_text()
        ));
    } else if hello.get_u64("protocol") != Some(protocol) {
        problems.push(format!(
            "the shim {} speaks protocol {} but jemsafe speaks {protocol}: install the shim \
             that came with this jemsafe",
            expect.shim.display(),
            hello.get("protocol").unwrap_or("?")
        ));
    } else if hello.get("jemalloc") != Some("bound") {
        problems.push(format!(
            "the shim found no usable jemalloc: {}",
            hello.get("reason").unwrap_or("no reason given")
        ));
    } else {
        if let Some(path) = hello.get("jemalloc_path") {
            if FileId::of(Path::new(path)).is_ok_and(|id| id != expect.library_id) {
                problems.push(format!(
                    "malloc is served by {path}, not by the configured {}",
                    expect.library.display()
                ));
            }
        }
        let p = &expect.profile;
        if hello.get_bool("config_prof") == Some(false) {
            problems
                .push("this libjemalloc was built without --enable-prof: it cannot profile".into());
        } else {
            let mut expect_eq = |what: &str, got: Option<String>, want: String| {
                if got.as_deref() != Some(want.as_str()) {
                    problems.push(format!(
                        "{what} is {} but profile {:?} asks for {want}",
                        got.unwrap_or_else(|| "unknown".into()),
                        p.name
                    ));
                }
            };
            expect_eq(
                "opt.prof",
                hello.get("opt_prof").map(str::to_owned),
                p.prof.to_string(),
            );
            if p.prof {
                expect_eq(
                    "prof.active",
                    hello.get("prof_active").map(str::to_owned),
                    p.prof_active.to_string(),
                );
                expect_eq(
                    "opt.prof_prefix",
                    hello.get("prof_prefix").map(str::to_owned),
                    expect.prof_prefix.clone(),
                );
                if let Some(lg) = p.lg_prof_sample {
                    expect_eq(
                        "lg_prof_sample",
                        hello.get("lg_prof_sample").map(str::to_owned),
                        lg.to_string(),
                    );
                }
            }
        }
    }
    let summary = if problems.is_empty() {
        format!(
            "verified: mysqld pid {pid} runs jemalloc {} from {} with the shim; \
             opt.prof={} prof.active={} lg_prof_sample={} prof_prefix={}",
            field("version"),
            expect.library.display(),
            field("opt_prof"),
            field("prof_active"),
            field("lg_prof_sample"),
            hello.get("prof_prefix").unwrap_or("(none)"),
        )
    } else {
        format!(
            "verification FAILED for mysqld pid {pid}: {}",
            problems.join("; ")
        )
    };
    Verdict { problems, summary }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1311 /usr/sbin/mariadbd
7f1e2a000000-7f1e2a021000 r-xp 00000000 00:00 0
7f1e2b000000-7f1e2b010000 r-xp 00002000 fd:01 4242 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
7f1e2c000000-7f1e2c010000 r-xp 00002000 fd:01 777 /opt/jem safe/libjemsafe_shim.so (deleted)
7ffd1a1f0000-7ffd1a211000 rw-p 00000000 00:00 0 [stack]
";

    fn expectation(profile: &str) -> Expectation {
        let config = Config::parse("", Path::new("/t.toml")).unwrap();
        Expectation {
            library: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
            library_id: FileId {
                major: 0xfd,
                minor: 1,
                inode: 4242,
            },
            shim: "/opt/jem safe/libjemsafe_shim.so".into(),
            shim_id: FileId {
                major: 0xfd,
                minor: 1,
                inode: 777,
            },
            profile: config.resolve_profile(profile).unwrap(),
            prof_prefix: "/var/lib/jemsafe/mysqld".into(),
        }
    }

    fn hello(active: bool) -> Reply {
        Reply::ok(1)
            .with("protocol", jemsafe_proto::PROTOCOL_VERSION)
            .with("jemalloc", "bound")
            .with(
                "version",
                "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c",
            )
            .with("config_prof", true)
            .with("opt_prof", true)
            .with("prof_active", active)
            .with("lg_prof_sample", 19)
            .with("prof_prefix", "/var/lib/jemsafe/mysqld")
    }

    #[test]
    fn maps_parse_device_inode_and_paths_with_spaces() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 3);
        assert_eq!(
            maps[1].id,
            FileId {
                major: 0xfd,
                minor: 1,
                inode: 4242
            }
        );
        assert_eq!(maps[2].path, "/opt/jem safe/libjemsafe_shim.so (deleted)");
    }

    #[test]
    fn matching_maps_and_handshake_verify() {
        let v = judge(7, &parse_maps(MAPS), &hello(false), &expectation("standby"));
        assert!(v.ok(), "{v:?}");
        assert!(v
            .summary
            .contains("verified: mysqld pid 7 runs jemalloc 5.3.0"));
    }

    #[test]
    fn a_different_inode_is_not_our_library_even_with_the_same_path() {
        let maps = MAPS.replace(" 4242 ", " 4243 ");
        let v = judge(
            7,
            &parse_maps(&maps),
            &hello(false),
            &expectation("standby"),
        );
        assert!(!v.ok());
        assert!(v.summary.contains("is not mapped") && v.summary.contains("a different file"));
    }

    #[test]
    fn wrong_profiling_state_and_missing_jemalloc_are_problems() {
        let v = judge(7, &parse_maps(MAPS), &hello(true), &expectation("standby"));
        assert_eq!(
            v.problems,
            ["prof.active is true but profile \"standby\" asks for false"]
        );
        let missing = Reply::ok(1)
            .with("protocol", jemsafe_proto::PROTOCOL_VERSION)
            .with("jemalloc", "missing")
            .with("reason", "no mallctl");
        let v = judge(7, &parse_maps(MAPS), &missing, &expectation("leak"));
        assert!(
            v.summary.contains("no usable jemalloc: no mallctl"),
            "{v:?}"
        );
        let old_shim = Reply::ok(1).with("protocol", 0).with("jemalloc", "bound");
        let v = judge(7, &parse_maps(MAPS), &old_shim, &expectation("leak"));
        assert!(
            v.summary.contains("speaks protocol 0 but jemsafe speaks 1"),
            "{v:?}"
        );
    }
}
