//! Proof that the profiling allocator is really inside mysqld.
//!
//! Two independent witnesses: `/proc/<pid>/maps` must contain the configured libjemalloc
//! and the shim, compared by device and inode (a path string can lie: symlinks, bind
//! mounts, a package upgrade that replaced the file), and the shim's `hello` must report a
//! jemalloc that serves malloc, with the profiling state the profile asked for. The
//! judgement is a pure function of those inputs.

use crate::config::Profile;
use jemsafe_proto::{Binding, Bound, Hello, Reply};
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

/// A maps line as a [`Mapping`]; None for anonymous memory.
fn mapping(e: jemsafe_report::maps::MapEntry) -> Option<Mapping> {
    (e.inode != 0).then(|| Mapping {
        id: FileId {
            major: e.dev.0 as u64,
            minor: e.dev.1 as u64,
            inode: e.inode,
        },
        path: e.path.unwrap_or_default(),
    })
}

/// Parses /proc/<pid>/maps text; anonymous mappings and odd lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(jemsafe_report::maps::parse_line)
        .filter_map(mapping)
        .collect()
}

pub fn read_maps(pid: i32) -> std::io::Result<Vec<Mapping>> {
    Ok(crate::procfs::maps(pid)?
        .into_iter()
        .filter_map(mapping)
        .collect())
}

/// What the running mysqld must show.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub library: PathBuf,
    pub library_id: FileId,
    pub shim: PathBuf,
    pub shim_id: FileId,
    /// The bundled jemalloc: `shim` is `library`, one object carries both.
    pub bundled: bool,
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

/// What the filesystem and /proc say, gathered before judging (the judgement is pure).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub maps: Vec<Mapping>,
    /// The configured library and shim with symlinks resolved (overlayfs shows the
    /// lower layer's device in maps: then the inode at the real path must match).
    pub library_real: PathBuf,
    pub shim_real: PathBuf,
    /// Identity of the object the shim says serves malloc, when it says one.
    pub served_by: Option<FileId>,
}

impl Facts {
    /// Reads /proc/`pid`/maps and resolves the paths the judgement compares.
    pub fn gather(pid: i32, hello: &Reply, expect: &Expectation) -> std::io::Result<Facts> {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let served_by = hello
            .body::<Hello>()
            .ok()
            .and_then(|h| h.bound().and_then(|b| FileId::of(Path::new(&b.path)).ok()));
        Ok(Facts {
            maps: read_maps(pid)?,
            library_real: real(&expect.library),
            shim_real: real(&expect.shim),
            served_by,
        })
    }
}

/// Judges the maps and the handshake against the expectation.
pub fn judge(pid: i32, facts: &Facts, hello: &Reply, expect: &Expectation) -> Verdict {
    let mut problems = Vec::new();
    // Same device and inode; or, where overlayfs makes /proc/<pid>/maps show the lower
    // layer's device (containers on kernels before 6.8), the same inode at the same path.
    let mapped = |id: FileId, real: &Path| {
        facts
            .maps
            .iter()
            .any(|m| m.id == id || (m.id.inode == id.inode && Path::new(&m.path) == real))
    };
    if !mapped(expect.library_id, &facts.library_real) {
        let other = facts
            .maps
            .iter()
            .find(|m| m.path.contains("jemalloc"))
            .map(|m| format!(" (a different file is mapped: {})", m.path))
            .unwrap_or_default();
        problems.push(format!(
            "{} is not mapped in /proc/{pid}/maps{other}",
            expect.library.display()
        ));
    }
    if !expect.bundled && !mapped(expect.shim_id, &facts.shim_real) {
        problems.push(format!(
            "the shim {} is not mapped in /proc/{pid}/maps",
            expect.shim.display()
        ));
    }
    // The protocol first, on the raw reply: a shim of another version may not even
    // have the fields this jemsafe's Hello needs.
    let protocol = jemsafe_proto::PROTOCOL_VERSION.to_string();
    let mut bound = None;
    if hello.ok && hello.get("protocol") != Some(protocol.as_str()) {
        problems.push(format!(
            "the shim {} speaks protocol {} but jemsafe speaks {protocol}: install the shim \
             that came with this jemsafe",
            expect.shim.display(),
            hello.get("protocol").unwrap_or("?")
        ));
    } else {
        match hello.body::<Hello>() {
            Err(failure) => problems.push(format!("the shim's handshake failed: {failure}")),
            Ok(Hello {
                jemalloc: Binding::Missing { reason },
                ..
            }) => problems.push(format!("the shim found no usable jemalloc: {reason}")),
            Ok(Hello {
                jemalloc: Binding::Bound(b),
                ..
            }) => {
                problems.extend(judge_bound(&b, facts, expect));
                bound = Some(b);
            }
        }
    }
    let summary = match (&bound, problems.is_empty()) {
        (Some(b), true) => format!(
            "verified: mysqld pid {pid} runs jemalloc {} from {} {}; \
             opt.prof={} prof.active={} lg_prof_sample={} prof_prefix={}",
            b.version,
            expect.library.display(),
            if expect.bundled {
                "(bundled, the shim inside)"
            } else {
                "with the shim"
            },
            b.opt_prof,
            b.prof_active,
            b.lg_prof_sample
                .map_or_else(|| "?".to_owned(), |l| l.to_string()),
            b.prof_prefix.as_deref().unwrap_or("(none)"),
        ),
        _ => format!(
            "verification FAILED for mysqld pid {pid}: {}",
            problems.join("; ")
        ),
    };
    Verdict { problems, summary }
}

/// What is wrong with the jemalloc the shim is bound to, for this profile.
fn judge_bound(b: &Bound, facts: &Facts, expect: &Expectation) -> Vec<String> {
    let mut problems = Vec::new();
    if facts.served_by.is_some_and(|id| id != expect.library_id) {
        problems.push(format!(
            "malloc is served by {}, not by the configured {}",
            b.path,
            expect.library.display()
        ));
    }
    let p = &expect.profile;
    if !b.config_prof {
        problems.push(
            "this libjemalloc was built without --enable-prof: it cannot profile \
             ([jemalloc] library = \"bundled\" can)"
                .into(),
        );
        return problems;
    }
    let mut expect_eq = |what: &str, got: Option<String>, want: String| {
        if got.as_deref() != Some(want.as_str()) {
            problems.push(format!(
                "{what} is {} but profile {:?} asks for {want}",
                got.unwrap_or_else(|| "unknown".into()),
                p.name
            ));
        }
    };
    expect_eq("opt.prof", Some(b.opt_prof.to_string()), p.prof.to_string());
    if p.prof {
        expect_eq(
            "prof.active",
            Some(b.prof_active.to_string()),
            p.prof_active.to_string(),
        );
        expect_eq(
            "opt.prof_prefix",
            b.prof_prefix.clone(),
            expect.prof_prefix.clone(),
        );
        if let Some(lg) = p.lg_prof_sample {
            expect_eq(
                "lg_prof_sample",
                b.lg_prof_sample.map(|l| l.to_string()),
                lg.to_string(),
            );
        }
    }
    problems
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
            bundled: false,
            profile: config.resolve_profile(profile).unwrap(),
            prof_prefix: "/var/lib/jemsafe/mysqld".into(),
        }
    }

    fn hello(active: bool) -> Reply {
        Reply::ok_with(
            1,
            &Hello {
                protocol: jemsafe_proto::PROTOCOL_VERSION,
                shim_version: "0.1.0".into(),
                pid: 7,
                jemalloc: Binding::Bound(Bound {
                    path: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
                    version: "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c".into(),
                    config_prof: true,
                    opt_prof: true,
                    prof_active: active,
                    prof_prefix: Some("/var/lib/jemsafe/mysqld".into()),
                    lg_prof_interval: Some(-1),
                    lg_prof_sample: Some(19),
                    prof_gdump: Some(false),
                    capabilities: None,
                }),
            },
        )
    }

    /// The facts of MAPS, as Facts::gather would find them on the machine it came from.
    fn facts(maps: &str) -> Facts {
        Facts {
            maps: parse_maps(maps),
            library_real: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
            shim_real: "/opt/jem safe/libjemsafe_shim.so".into(),
            served_by: None,
        }
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
        let v = judge(7, &facts(MAPS), &hello(false), &expectation("standby"));
        assert!(v.ok(), "{v:?}");
        assert!(v
            .summary
            .contains("verified: mysqld pid 7 runs jemalloc 5.3.0"));
    }

    #[test]
    fn the_bundled_library_is_one_object_with_the_shim_inside() {
        let maps = "7f1e2b000000-7f1e2b010000 r-xp 00002000 fd:01 4242 /usr/lib/jemsafe/libjemsafe_jemalloc.so\n";
        let mut expect = expectation("standby");
        expect.library = "/usr/lib/jemsafe/libjemsafe_jemalloc.so".into();
        expect.shim = expect.library.clone();
        expect.shim_id = expect.library_id;
        expect.bundled = true;
        let mut facts = facts(maps);
        facts.library_real = expect.library.clone();
        facts.shim_real = expect.library.clone();
        let v = judge(7, &facts, &hello(false), &expect);
        assert!(v.ok(), "{v:?}");
        assert!(
            v.summary.contains(
                "from /usr/lib/jemsafe/libjemsafe_jemalloc.so (bundled, the shim inside)"
            ),
            "{v:?}"
        );
        // Not mapped: one problem, about the library (the shim is the same object).
        let v = judge(7, &Facts::default(), &hello(false), &expect);
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert!(
            v.problems[0].contains("libjemsafe_jemalloc.so is not mapped"),
            "{v:?}"
        );
    }

    #[test]
    fn a_different_inode_is_not_our_library_even_with_the_same_path() {
        let maps = MAPS.replace(" 4242 ", " 4243 ");
        let v = judge(7, &facts(&maps), &hello(false), &expectation("standby"));
        assert!(!v.ok());
        assert!(v.summary.contains("is not mapped") && v.summary.contains("a different file"));
    }

    #[test]
    fn wrong_profiling_state_and_missing_jemalloc_are_problems() {
        let v = judge(7, &facts(MAPS), &hello(true), &expectation("standby"));
        assert_eq!(
            v.problems,
            ["prof.active is true but profile \"standby\" asks for false"]
        );
        let missing = Reply::ok_with(
            1,
            &Hello {
                protocol: jemsafe_proto::PROTOCOL_VERSION,
                shim_version: "0.1.0".into(),
                pid: 7,
                jemalloc: Binding::Missing {
                    reason: "no mallctl".into(),
                },
            },
        );
        let v = judge(7, &facts(MAPS), &missing, &expectation("leak"));
        assert!(
            v.summary.contains("no usable jemalloc: no mallctl"),
            "{v:?}"
        );
        let old_shim = Reply::ok(1).with("protocol", 0).with("jemalloc", "bound");
        let v = judge(7, &facts(MAPS), &old_shim, &expectation("leak"));
        assert!(
            v.summary.contains("speaks protocol 0 but jemsafe speaks 1"),
            "{v:?}"
        );
        let mut served = facts(MAPS);
        served.served_by = Some(FileId {
            major: 8,
            minor: 1,
            inode: 5,
        });
        let v = judge(7, &served, &hello(false), &expectation("standby"));
        assert!(v.summary.contains("malloc is served by"), "{v:?}");
    }
}
