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

/// How jemsafe treats a variable that would reach mysqld, which ld.so and libc set up
/// while it is still root (its `--user` takes effect later). The variables are glibc's
/// list of those it drops for setuid programs (sysdeps/generic/unsecvars.h, glibc 2.36),
/// every other LD_* and TZ: the rest of the environment names nothing libc reads as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Not passed at all: LD_AUDIT (audit libraries run before anything else) and LD_*
    /// names ld.so may read that jemsafe does not know.
    Refused,
    /// LD_PRELOAD: files ld.so loads; each must be absolute and root's alone.
    Preload,
    /// A list of directories searched for code or data: LD_LIBRARY_PATH (libraries),
    /// GCONV_PATH (iconv modules, code), LOCPATH (locale files). Every entry absolute;
    /// every directory root's and nobody else may add files to it.
    SearchPath,
    /// One directory searched (TZDIR: zone files; GETCONF_DIR; LD_ORIGIN_PATH: $ORIGIN of
    /// libraries) or written (LD_PROFILE_OUTPUT): as a SearchPath entry.
    Dir,
    /// NLSPATH: catopen(3)'s templates (`/usr/share/locale/%L/%N`); each absolute, the
    /// directory before the first `%` as a SearchPath entry.
    Templates,
    /// A file libc reads: HOSTALIASES, RESOLV_HOST_CONF. Absolute, root's alone.
    ReadFile,
    /// A file written as root, or the prefix of its name: LD_DEBUG_OUTPUT (ld.so writes
    /// VALUE.PID), MALLOC_TRACE (mtrace(3)). Absolute; nobody else may add files to the
    /// directory it is in (a sticky /tmp is no help: someone could create the name first)
    /// and, if it exists, the file is root's alone.
    WrittenFile,
    /// TMPDIR: absolute and root's, a sticky directory of root's like /tmp included.
    /// (A directory of mysql's for mysqld's temporary files is mysqld's `--tmpdir`, used
    /// after mysqld has become mysql.)
    TempDir,
    /// LD_PROFILE: ld.so writes the profile into LD_PROFILE_OUTPUT, else into /var/tmp,
    /// where anyone can create the name first; so LD_PROFILE_OUTPUT must be set (Dir).
    Profile,
    /// TZ: a zone file when it is a path (`/…` or `:/…`), read like a ReadFile; else a
    /// zone name under TZDIR, which must not climb out of it with `..`.
    Tz,
    /// Values, not paths, that change behaviour only and load nothing: LD_BIND_NOW,
    /// LD_DEBUG (to stderr), LD_HWCAP_MASK..., GLIBC_TUNABLES (tunables name no file; a
    /// root-owned config or root's environment is trusted with them, and the ld.so bug of
    /// CVE-2023-4911 needed an attacker's value), LOCALDOMAIN, RES_OPTIONS, NIS_PATH
    /// (NIS+ names, not files).
    Value,
}

/// The class of variable `name`, or None for the variables libc reads no file for.
pub fn class(name: &str) -> Option<Class> {
    Some(match name {
        "LD_AUDIT" => Class::Refused,
        "LD_PRELOAD" => Class::Preload,
        "LD_LIBRARY_PATH" | "GCONV_PATH" | "LOCPATH" => Class::SearchPath,
        "TZDIR" | "GETCONF_DIR" | "LD_ORIGIN_PATH" | "LD_PROFILE_OUTPUT" => Class::Dir,
        "NLSPATH" => Class::Templates,
        "HOSTALIASES" | "RESOLV_HOST_CONF" => Class::ReadFile,
        "LD_DEBUG_OUTPUT" | "MALLOC_TRACE" => Class::WrittenFile,
        "TMPDIR" => Class::TempDir,
        "LD_PROFILE" => Class::Profile,
        "TZ" => Class::Tz,
        "LD_BIND_NOW"
        | "LD_BIND_NOT"
        | "LD_DEBUG"
        | "LD_DYNAMIC_WEAK"
        | "LD_HWCAP_MASK"
        | "LD_SHOW_AUXV"
        | "LD_USE_LOAD_BIAS"
        | "LD_WARN"
        | "LD_VERBOSE"
        | "LD_ASSUME_KERNEL"
        | "LD_TRACE_LOADED_OBJECTS"
        | "LD_TRACE_PRELINKING"
        | "LD_POINTER_GUARD"
        | "LD_LIBRARY_VERSION"
        | "LD_PREFER_MAP_32BIT_EXEC"
        | "LD_RUN_PATH"
        | "GLIBC_TUNABLES"
        | "LOCALDOMAIN"
        | "RES_OPTIONS"
        | "NIS_PATH" => Class::Value,
        _ if name.starts_with("LD_") => Class::Refused,
        _ => return None,
    })
}

/// LD_PRELOAD's entries, as ld.so splits them (on ':' and ' '; empty ones are skipped).
pub fn preload_entries(value: &str) -> impl Iterator<Item = &str> {
    value.split([':', ' ']).filter(|e| !e.is_empty())
}

/// A search path's entries: LD_LIBRARY_PATH as ld.so splits it (on ':' and ';'), the
/// others on ':'; empty entries included (ld.so takes one for the current directory).
/// An empty value has none.
pub fn path_entries<'a>(name: &str, value: &'a str) -> impl Iterator<Item = &'a str> {
    let separators: &[char] = if name == "LD_LIBRARY_PATH" {
        &[':', ';']
    } else {
        &[':']
    };
    value.split(separators).filter(move |_| !value.is_empty())
}

/// NLSPATH's templates (catopen(3) ignores an empty NLSPATH).
fn templates(value: &str) -> impl Iterator<Item = &str> {
    value.split(':').filter(move |_| !value.is_empty())
}

/// The directory an NLSPATH template's fixed part ends in: what comes before the first
/// `%` (which catopen(3) substitutes), up to its last '/'.
pub fn template_dir(template: &str) -> &str {
    let fixed = template.split('%').next().unwrap_or("");
    match fixed.rfind('/') {
        Some(0) => "/",
        Some(i) => &fixed[..i],
        None => fixed,
    }
}

/// TZ's file, when it names one (`/file` or `:/file`).
fn tz_file(value: &str) -> Option<&str> {
    let v = value.strip_prefix(':').unwrap_or(value);
    v.starts_with('/').then_some(v)
}

/// What makes variable `name`'s value unacceptable whoever owns the files it names: a
/// refused variable set at all, and paths that would be looked up relative to somewhere
/// jemsafe cannot vouch for.
pub fn loader_variable_problem(name: &str, value: &str) -> Option<String> {
    let not_absolute = |e: &str| {
        format!(
            "{e:?} is not an absolute path: it would be resolved against mysqld's current \
             directory; give an absolute path"
        )
    };
    match class(name)? {
        Class::Refused if name == "LD_AUDIT" && !value.is_empty() => Some(
            "jemsafe does not pass LD_AUDIT to mysqld: ld.so runs audit libraries in mysqld \
             before anything else, while it is still root; remove it"
                .to_owned(),
        ),
        Class::Refused if !value.is_empty() => Some(format!(
            "jemsafe does not know what ld.so does with {name}, so it does not pass it to \
             mysqld, which ld.so sets up while it is still root; remove it"
        )),
        Class::Refused => None,
        Class::Preload => preload_entries(value).find(|e| !e.starts_with('/')).map(|e| {
            format!(
                "entry {e:?} is not an absolute path: ld.so would search directories for it \
                 that jemsafe cannot vouch for (LD_LIBRARY_PATH, the library cache); give its absolute path"
            )
        }),
        Class::SearchPath => path_entries(name, value)
            .find(|e| !e.starts_with('/'))
            .map(|e| {
                if e.is_empty() {
                    "has an empty entry (a leading, trailing or doubled ':'), which ld.so takes \
                     for mysqld's current directory; remove it"
                        .to_owned()
                } else {
                    format!(
                        "entry {e:?} is not an absolute path: it would be resolved against \
                         mysqld's current directory; give absolute directories"
                    )
                }
            }),
        Class::Templates => templates(value).find(|e| !e.starts_with('/')).map(|e| {
            if e.is_empty() {
                "has an empty entry (a leading, trailing or doubled ':'); remove it".to_owned()
            } else {
                format!("entry {}", not_absolute(e))
            }
        }),
        Class::Dir | Class::ReadFile | Class::WrittenFile | Class::TempDir => {
            // Empty: libc ignores it (LD_PROFILE_OUTPUT's case is LD_PROFILE's).
            (!value.is_empty() && !value.starts_with('/')).then(|| not_absolute(value))
        }
        Class::Tz => (tz_file(value).is_none()
            && value.split('/').any(|c| c == ".."))
        .then(|| {
            format!(
                "zone {value:?} climbs out of TZDIR with \"..\": give a zone name (Europe/Paris) \
                 or an absolute file (:/etc/localtime)"
            )
        }),
        Class::Profile | Class::Value => None,
    }
}

/// For root: what is wrong with the variables of [`class`] mysqld would get, from
/// jemsafe's own environment and from `[mysqld] env` (`configured`). Each file and
/// directory they name must be root's alone, like libjemalloc.
pub fn loader_environment_problems(configured: &BTreeMap<String, String>) -> Vec<String> {
    let inherited: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            class(&k)?;
            Some((k, v.to_string_lossy().into_owned()))
        })
        .collect();
    environment_problems(&inherited, configured)
}

/// [`loader_environment_problems`] for a given inherited environment.
fn environment_problems(
    inherited: &BTreeMap<String, String>,
    configured: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let sources = [
        ("jemsafe's environment", inherited),
        ("[mysqld] env", configured),
    ];
    for (source, vars) in sources {
        for (name, value) in vars {
            let Some(class) = class(name) else { continue };
            if let Some(problem) = loader_variable_problem(name, value) {
                out.push(format!(
                    "refusing to start mysqld as root with {name}={value:?} from {source}: {problem}"
                ));
                continue;
            }
            let before = out.len();
            match class {
                Class::Preload => {
                    for entry in preload_entries(value) {
                        out.extend(problems(Path::new(entry), "LD_PRELOAD entry"));
                    }
                }
                Class::SearchPath => {
                    for dir in path_entries(name, value) {
                        out.extend(search_dir_problems(Path::new(dir), name));
                    }
                }
                Class::Dir if !value.is_empty() => {
                    out.extend(search_dir_problems(Path::new(value), name));
                }
                Class::Templates => {
                    let mut seen = Vec::new();
                    for dir in templates(value).map(template_dir) {
                        if !seen.contains(&dir) {
                            seen.push(dir);
                            out.extend(search_dir_problems(Path::new(dir), name));
                        }
                    }
                }
                Class::ReadFile if !value.is_empty() => {
                    out.extend(problems(Path::new(value), &format!("{name} file")));
                }
                Class::Tz => {
                    if let Some(file) = tz_file(value) {
                        out.extend(problems(Path::new(file), "TZ file"));
                    }
                }
                Class::WrittenFile if !value.is_empty() => {
                    out.extend(written_file_problems(Path::new(value), name));
                }
                Class::TempDir if !value.is_empty() => {
                    out.extend(
                        problems(Path::new(value), "TMPDIR directory")
                            .into_iter()
                            .map(|m| {
                                format!(
                                    "{m}; a directory of mysql's for mysqld's temporary files is \
                             mysqld's --tmpdir (my.cnf, or [mysqld] args), which it uses as mysql"
                                )
                            }),
                    );
                }
                Class::Profile if !value.is_empty() => {
                    // Where it goes is the value mysqld will see: [mysqld] env's, else ours.
                    let output = configured
                        .get("LD_PROFILE_OUTPUT")
                        .or_else(|| inherited.get("LD_PROFILE_OUTPUT"));
                    if !output.is_some_and(|o| !o.is_empty()) {
                        out.push(format!(
                            "refusing to start mysqld as root with LD_PROFILE={value:?} from \
                             {source}: ld.so would write the profile as root into /var/tmp, \
                             where anyone can create that name first; set LD_PROFILE_OUTPUT \
                             to a directory of root's alone, or remove LD_PROFILE"
                        ));
                    }
                }
                _ => {}
            }
            // Where the value came from, and the other way out.
            if class != Class::Profile {
                for m in &mut out[before..] {
                    m.push_str(&format!("; or take {name} out of {source}"));
                }
            }
        }
    }
    out
}

/// A directory something is looked up in or written to as root (`name` is the variable
/// it comes from): trusted like a preloaded file, and moreover nobody else may add files
/// to it (a sticky directory like /tmp is no help here).
fn search_dir_problems(dir: &Path, name: &str) -> Vec<String> {
    let what = format!("{name} directory");
    let mut out = problems(dir, &what);
    if out.is_empty() {
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.mode() & 0o7777;
            if mode & 0o022 != 0 {
                out.push(format!(
                    "refusing to use {what} {} as root: others can add files to it (mode {mode:04o}); \
                     fix: chmod go-w {}",
                    dir.display(),
                    dir.display()
                ));
            }
        }
    }
    out
}

/// A file written as root (or the prefix of its name): its directory must be closed to
/// others and, if the file is there, it must be root's alone.
fn written_file_problems(file: &Path, name: &str) -> Vec<String> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("/"),
    };
    let mut out = search_dir_problems(dir, name);
    if out.is_empty() && std::fs::symlink_metadata(file).is_ok() {
        out.extend(problems(file, &format!("{name} file")));
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

/// A user as messages name it: `mysql (uid 102)`, or `uid 102` when it has no name.
pub fn user_name(uid: u32) -> String {
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
            path_entries("LD_LIBRARY_PATH", "/a;/b::/c").collect::<Vec<_>>(),
            ["/a", "/b", "", "/c"]
        );
        assert_eq!(
            path_entries("GCONV_PATH", "/a;/b:/c").collect::<Vec<_>>(),
            ["/a;/b", "/c"]
        );
        assert_eq!(path_entries("LD_LIBRARY_PATH", "").count(), 0);
        assert!(loader_variable_problem("LD_AUDIT", "").is_none());
        assert!(loader_variable_problem("LD_AUDIT", "/usr/lib/x.so").is_some());
        assert!(loader_variable_problem("LD_PRELOAD", "/a.so x.so").is_some());
        assert!(loader_variable_problem("LD_LIBRARY_PATH", ":/usr/lib").is_some());
        assert!(loader_variable_problem("TZ", "UTC").is_none());
    }

    /// glibc 2.36's sysdeps/generic/unsecvars.h, in its order.
    const UNSECURE_ENVVARS: [&str; 24] = [
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LD_AUDIT",
        "LD_DEBUG",
        "LD_DEBUG_OUTPUT",
        "LD_DYNAMIC_WEAK",
        "LD_HWCAP_MASK",
        "LD_LIBRARY_PATH",
        "LD_ORIGIN_PATH",
        "LD_PRELOAD",
        "LD_PROFILE",
        "LD_SHOW_AUXV",
        "LD_USE_LOAD_BIAS",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TMPDIR",
        "TZDIR",
    ];

    #[test]
    fn every_variable_glibc_drops_for_setuid_programs_has_a_class() {
        for name in UNSECURE_ENVVARS {
            assert!(class(name).is_some(), "{name}");
        }
        // Paths must be absolute; refused variables are refused whatever their value.
        for name in UNSECURE_ENVVARS {
            let expect_problem = !matches!(class(name), Some(Class::Value | Class::Profile));
            let relative = loader_variable_problem(name, "relative/x");
            assert_eq!(relative.is_some(), expect_problem, "{name}: {relative:?}");
            assert!(loader_variable_problem(name, "").is_none(), "{name}");
        }
        assert_eq!(class("LD_FUTURE_PATH"), Some(Class::Refused));
        assert!(loader_variable_problem("LD_FUTURE_PATH", "/x")
            .is_some_and(|p| p.contains("does not know what ld.so does with LD_FUTURE_PATH")));
        assert_eq!(class("LANG"), None);
        assert!(loader_variable_problem("LANG", "relative").is_none());
    }

    #[test]
    fn paths_are_absolute_entry_by_entry() {
        assert!(loader_variable_problem("GCONV_PATH", "/usr/lib/gconv:/opt/gconv").is_none());
        let p = loader_variable_problem("GCONV_PATH", "/usr/lib/gconv:gconv").unwrap();
        assert!(p.contains("entry \"gconv\" is not an absolute path"), "{p}");
        assert!(loader_variable_problem("LOCPATH", "/usr/lib/locale:")
            .is_some_and(|p| p.contains("empty entry")));
        assert!(
            loader_variable_problem("NLSPATH", "/usr/share/locale/%L/%N:%N.cat")
                .is_some_and(|p| p.contains("\"%N.cat\" is not an absolute path"))
        );
        assert!(loader_variable_problem("NLSPATH", "/usr/share/locale/%L/%N").is_none());
        assert!(loader_variable_problem("MALLOC_TRACE", "trace.log").is_some());
        assert!(loader_variable_problem("TZ", "Europe/Paris").is_none());
        assert!(loader_variable_problem("TZ", ":/etc/localtime").is_none());
        assert!(loader_variable_problem("TZ", "../../../tmp/zone").is_some());
        assert!(loader_variable_problem("GLIBC_TUNABLES", "glibc.malloc.check=3").is_none());
    }

    #[test]
    fn nlspath_templates_are_trusted_by_their_fixed_directory() {
        assert_eq!(
            template_dir("/usr/share/locale/%L/LC_MESSAGES/%N.cat"),
            "/usr/share/locale"
        );
        assert_eq!(template_dir("/usr/share/x.cat"), "/usr/share");
        assert_eq!(template_dir("/%N"), "/");
    }

    #[test]
    fn ld_profile_needs_an_output_directory_from_either_source() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let p = environment_problems(&map(&[("LD_PROFILE", "libc.so.6")]), &map(&[]));
        assert!(
            p.len() == 1
                && p[0].contains("into /var/tmp")
                && p[0].contains("jemsafe's environment"),
            "{p:?}"
        );
        let p = environment_problems(
            &map(&[("LD_PROFILE", "libc.so.6")]),
            &map(&[("LD_PROFILE_OUTPUT", "")]),
        );
        assert!(p.iter().any(|m| m.contains("into /var/tmp")), "{p:?}");
        if nix::unistd::geteuid().is_root() {
            // /root is root's alone on any sane system.
            let p = environment_problems(
                &map(&[("LD_PROFILE", "libc.so.6")]),
                &map(&[("LD_PROFILE_OUTPUT", "/root")]),
            );
            assert!(p.is_empty(), "{p:?}");
        }
    }
}
