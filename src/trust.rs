//! What a root process must check before it preloads code into a database.
//!
//! CVE-2016-6662: mysqld_safe, running as root, preloaded a library named in a config file
//! that the mysql user could write. So when jemsafe runs as root, the config file,
//! libjemalloc and the shim — and every directory above each of them, along the path as
//! written and along the path symlinks resolve to — must be owned by root and writable by
//! no one else. A root-owned sticky directory (like /tmp) is acceptable above them: no one
//! else can replace what root owns there.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The variables that make ld.so load code into mysqld, which runs as root until its
/// `--user` takes effect.
pub const LOADER_VARIABLES: [&str; 3] = ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"];

/// LD_PRELOAD's entries, as ld.so splits them (on ':' and ' '; empty ones are skipped).
pub fn preload_entries(value: &str) -> impl Iterator<Item = &str> {
    value.split([':', ' ']).filter(|e| !e.is_empty())
}

/// LD_LIBRARY_PATH's entries, as ld.so splits them (on ':' and ';'), empty ones included:
/// ld.so takes an empty entry for the current directory. An empty value has none.
pub fn library_path_entries(value: &str) -> impl Iterator<Item = &str> {
    value.split([':', ';']).filter(move |_| !value.is_empty())
}

/// What makes a loader variable's value unacceptable whoever owns the files it names:
/// LD_AUDIT at all, and entries that ld.so would look for relative to somewhere.
pub fn loader_variable_problem(name: &str, value: &str) -> Option<String> {
    match name {
        "LD_AUDIT" if !value.is_empty() => Some(
            "jemsafe does not pass LD_AUDIT to mysqld: ld.so runs audit libraries in mysqld \
             before anything else, while it is still root; remove it"
                .to_owned(),
        ),
        "LD_PRELOAD" => preload_entries(value).find(|e| !e.starts_with('/')).map(|e| {
            format!(
                "entry {e:?} is not an absolute path: ld.so would search directories for it \
                 that jemsafe cannot vouch for (LD_LIBRARY_PATH, the library cache); give its absolute path"
            )
        }),
        "LD_LIBRARY_PATH" => library_path_entries(value)
            .find(|e| !e.starts_with('/'))
            .map(|e| {
                if e.is_empty() {
                    "has an empty entry (a leading, trailing or doubled ':'), which ld.so takes \
                     for mysqld's current directory; remove it"
                        .to_owned()
                } else {
                    format!(
                        "entry {e:?} is not an absolute path: ld.so would resolve it against \
                         mysqld's current directory; give absolute directories"
                    )
                }
            }),
        _ => None,
    }
}

/// For root: what is wrong with the loader variables mysqld would get, from jemsafe's own
/// environment and from `[mysqld] env` (`configured`). Every LD_PRELOAD file and every
/// LD_LIBRARY_PATH directory must be root's alone, like libjemalloc.
pub fn loader_environment_problems(configured: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for name in LOADER_VARIABLES {
        let inherited = std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        for (source, value) in [
            ("jemsafe's environment", inherited),
            ("[mysqld] env", configured.get(name).cloned()),
        ] {
            let Some(value) = value else { continue };
            if let Some(problem) = loader_variable_problem(name, &value) {
                out.push(format!(
                    "refusing to start mysqld as root with {name}={value:?} from {source}: {problem}"
                ));
                continue;
            }
            if name == "LD_PRELOAD" {
                for entry in preload_entries(&value) {
                    out.extend(problems(Path::new(entry), "LD_PRELOAD entry"));
                }
            } else if name == "LD_LIBRARY_PATH" {
                for dir in library_path_entries(&value) {
                    out.extend(search_dir_problems(Path::new(dir)));
                }
            }
        }
    }
    out
}

/// A directory ld.so searches: trusted like a preloaded file, and moreover nobody else
/// may add files to it (a sticky directory like /tmp is no help here).
fn search_dir_problems(dir: &Path) -> Vec<String> {
    let what = "LD_LIBRARY_PATH directory";
    let mut out = problems(dir, what);
    if out.is_empty() {
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.mode() & 0o7777;
            if mode & 0o022 != 0 {
                out.push(format!(
                    "refusing to use {what} {} as root: others can add libraries to it (mode {mode:04o}); \
                     fix: chmod go-w {}, or remove it from LD_LIBRARY_PATH",
                    dir.display(),
                    dir.display()
                ));
            }
        }
    }
    out
}

/// One reason not to trust `path`, as a sentence with the fix.
pub fn problems(path: &Path, what: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let message = |problem: String| {
        format!(
            "refusing to use {what} {} as root: {problem} (CVE-2016-6662: only root may be able to change what root preloads into mysqld)",
            path.display()
        )
    };
    // The path itself, if it is a symlink: whoever owns it can point it elsewhere.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        out.extend(untrusted(path, false).map(message));
    }
    let mut check = |p: &Path, follow: bool| {
        if seen.iter().any(|s: &PathBuf| s == p) {
            return;
        }
        seen.push(p.to_path_buf());
        if let Some(problem) = untrusted(p, follow) {
            out.push(message(problem));
        }
    };
    // The path as written: each ancestor as it is (a root-owned symlink is fine where it
    // sits), then the file itself with symlinks followed.
    for dir in ancestors(path) {
        check(&dir, false);
    }
    check(path, true);
    // The path symlinks resolve to.
    if let Ok(real) = std::fs::canonicalize(path) {
        for dir in ancestors(&real) {
            check(&dir, true);
        }
        check(&real, true);
    }
    out
}

/// Every directory above `path`, from / down.
fn ancestors(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = PathBuf::new();
    let comps: Vec<Component> = path.components().collect();
    for comp in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(comp);
        out.push(cur.clone());
    }
    out
}

/// Why `p` is not trustworthy, or None.
fn untrusted(p: &Path, follow: bool) -> Option<String> {
    let meta = if follow {
        std::fs::metadata(p)
    } else {
        std::fs::symlink_metadata(p)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot inspect {}: {e}", p.display())),
    };
    if meta.file_type().is_symlink() {
        // A symlink's own mode means nothing; who may replace it is decided by its
        // directory, checked separately. Its owner still must be root.
        return (meta.uid() != 0).then(|| {
            format!(
                "{} is a symbolic link owned by {}; fix: replace it with one owned by root",
                p.display(),
                user_name(meta.uid())
            )
        });
    }
    let mode = meta.mode() & 0o7777;
    let sticky_root_dir = meta.is_dir() && mode & 0o1000 != 0 && meta.uid() == 0;
    if meta.uid() != 0 {
        return Some(format!(
            "{} is owned by {} (mode {mode:04o}); fix: chown root:root {}",
            p.display(),
            user_name(meta.uid()),
            p.display()
        ));
    }
    if mode & 0o022 != 0 && !sticky_root_dir {
        return Some(format!(
            "{} is writable by {} (owner root, mode {mode:04o}); fix: chmod go-w {}",
            p.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            p.display()
        ));
    }
    None
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_run_from_the_root_down() {
        assert_eq!(
            ancestors(Path::new("/usr/lib/x.so")),
            [
                PathBuf::from("/"),
                PathBuf::from("/usr"),
                PathBuf::from("/usr/lib")
            ]
        );
    }

    #[test]
    fn system_libraries_are_trusted_and_tmp_files_of_others_are_not() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership checks need files owned by root; CI runs as root
        }
        assert!(problems(Path::new("/etc/passwd"), "config").is_empty());
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-trust.XXXXXX").unwrap();
        let file = dir.join("x.toml");
        std::fs::write(&file, "").unwrap();
        assert!(
            problems(&file, "config").is_empty(),
            "root-owned 0700 dir under sticky /tmp"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
        let p = problems(&file, "config");
        assert!(
            p.iter()
                .any(|m| m.contains("writable by its group") && m.contains("chmod go-w")),
            "{p:?}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let p = problems(&file, "config");
        assert!(p.iter().any(|m| m.contains("owned by nobody (uid 65534)") && m.contains("chown root:root")), "{p:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_owned_by_another_user_is_refused_even_if_it_points_at_roots_file() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-trust-link.XXXXXX").unwrap();
        let target = dir.join("real.toml");
        std::fs::write(&target, "").unwrap();
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let root_link = problems(&link, "config");
        nix::unistd::fchownat(
            None,
            &link,
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let nobody_link = problems(&link, "config");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(root_link.is_empty(), "{root_link:?}");
        assert!(
            nobody_link
                .iter()
                .any(|m| m.contains("is a symbolic link owned by nobody")),
            "{nobody_link:?}"
        );
    }

    #[test]
    fn loader_variables_split_like_ld_so() {
        assert_eq!(
            preload_entries("/a.so /b.so::/c.so").collect::<Vec<_>>(),
            ["/a.so", "/b.so", "/c.so"]
        );
        assert_eq!(
            library_path_entries("/a;/b::/c").collect::<Vec<_>>(),
            ["/a", "/b", "", "/c"]
        );
        assert_eq!(library_path_entries("").count(), 0);
        assert!(loader_variable_problem("LD_AUDIT", "").is_none());
        assert!(loader_variable_problem("LD_AUDIT", "/usr/lib/x.so").is_some());
        assert!(loader_variable_problem("LD_PRELOAD", "/a.so x.so").is_some());
        assert!(loader_variable_problem("LD_LIBRARY_PATH", ":/usr/lib").is_some());
        assert!(loader_variable_problem("TZ", "UTC").is_none());
    }
}
