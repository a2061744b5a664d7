//! The launch path as root, against the security review's threat model: root and the config
//! are trusted; mysqld's user, code in mysqld and other local users are not.
//!
//! Nothing named by an untrusted file may run or load as root before jemsafe refuses;
//! a sandbox directory someone else prepared is not written into; loader variables cannot
//! load code from elsewhere; mysqld inherits no descriptor but its stdio and the shim's.
//! CI runs as root; elsewhere the ownership tests have nothing to prove and return.

use crate::common::*;
use nix::unistd::{Gid, Uid, User};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The real `mysql` user (the server package creates it).
fn mysql() -> User {
    User::from_name("mysql")
        .expect("look up the mysql user")
        .expect("a `mysql` user (apt-get install mariadb-server)")
}

fn chown_to(path: &Path, uid: Uid, gid: Gid) {
    nix::unistd::fchownat(
        None,
        path,
        Some(uid),
        Some(gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("chown");
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A "mysqld" that only leaves `marker` behind when anything executes it.
fn marker_script(path: &Path, marker: &Path) {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"uid=$(id -u) $*\" >> '{}'\n",
            marker.display()
        ),
    )
    .unwrap();
    chmod(path, 0o755);
}

/// Replaces the `key = ...` line of the config at `path`.
fn set_key(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut done = false;
    let text: String = text
        .lines()
        .map(|l| {
            if !done && l.starts_with(&format!("{key} = ")) {
                done = true;
                format!("{key} = {value:?}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(done, "no {key} in {}", path.display());
    std::fs::write(path, text).unwrap();
}

/// Runs jemsafe with `args` to its end (bounded); returns (exit code, stdout, stderr).
fn jemsafe(args: &[&str], tweak: impl FnOnce(&mut Command)) -> (i32, String, String) {
    let (code, out, err, _) = jemsafe_pid(args, tweak);
    (code, out, err)
}

/// [`jemsafe`], with the pid jemsafe had.
fn jemsafe_pid(args: &[&str], tweak: impl FnOnce(&mut Command)) -> (i32, String, String, i32) {
    let mut js = Running::start_with(args, tweak);
    let code = js.wait_exit(T);
    let out = js.out.drain(Duration::from_millis(500)).join("\n");
    (code, out, js.err.seen.join("\n"), js.pid())
}

fn assert_not_executed(marker: &Path, what: &str) {
    assert!(
        !marker.exists(),
        "{what}: the untrusted code ran: {}",
        std::fs::read_to_string(marker).unwrap_or_default()
    );
}

/// `run` refuses with 77 and `check` reports the problem, saying what it did not run;
/// neither leaves `marker`.
fn refused_without_running(config: &Path, marker: &Path, needle: &str) {
    let c = config.to_str().unwrap();
    let (code, _, err) = jemsafe(&["run", "-c", c], |_| {});
    assert_eq!(code, 77, "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("started mysqld"), "{err}");
    assert_not_executed(marker, "run");

    let (code, out, err) = jemsafe(&["check", "-c", c], |_| {});
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains(needle), "{needle:?} not in: {out}");
    assert!(out.contains("not executed: untrusted"), "{out}");
    assert_not_executed(marker, "check");
}

#[test]
fn a_mysqld_owned_by_mysql_is_never_executed_by_run_check_or_sandbox() {
    if !root() {
        return;
    }
    let mysql = mysql();
    let dir = sandbox_base("untrusted-mysqld");
    let marker = dir.join("marker");
    let fake = dir.join("mysqld");
    marker_script(&fake, &marker);
    chown_to(&fake, mysql.uid, mysql.gid);
    let config = workload_config(&dir, "standby", &[], "");
    set_key(&config, "path", fake.to_str().unwrap());
    refused_without_running(&config, &marker, "refusing to use mysqld binary");

    let sandbox = dir.join("sb");
    let (code, _, err) = jemsafe(
        &[
            "sandbox",
            sandbox.to_str().unwrap(),
            "--mysqld",
            fake.to_str().unwrap(),
        ],
        |_| {},
    );
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("refusing to use mysqld binary"), "{err}");
    assert_not_executed(&marker, "sandbox");
    assert!(!sandbox.exists(), "the sandbox was set up before refusing");
}

#[test]
fn a_libjemalloc_owned_by_mysql_is_never_loaded_by_run_or_check_nor_printed_by_env() {
    if !root() {
        return;
    }
    let mysql = mysql();
    let dir = TempDir::new("untrusted-lib");
    let marker = dir.join("marker");
    let lib = marker_library(dir.path(), &marker);
    chown_to(&lib, mysql.uid, mysql.gid);
    let config = workload_config(&dir, "standby", &[], "");
    add_to_section(
        &config,
        "[jemalloc]",
        &format!("library = {:?}", lib.display().to_string()),
    );
    refused_without_running(&config, &marker, "refusing to use libjemalloc");
    // `env` prints it for root's service files: refused too, nothing printed.
    let (code, out, err) = jemsafe(&["env", "-c", config.to_str().unwrap()], |_| {});
    assert_eq!(code, 77, "{out}\n{err}");
    assert!(err.contains("refusing to use libjemalloc"), "{err}");
    assert!(!out.contains("LD_PRELOAD"), "{out}");
    assert_not_executed(&marker, "env");
}

#[test]
fn a_config_owned_by_mysql_runs_nothing_it_names() {
    if !root() {
        return;
    }
    let mysql = mysql();
    let dir = TempDir::new("untrusted-config");
    let marker = dir.join("marker");
    // root's own script: only the config that names it is untrusted.
    let fake = dir.join("mysqld");
    marker_script(&fake, &marker);
    let config = workload_config(&dir, "standby", &[], "");
    set_key(&config, "path", fake.to_str().unwrap());
    chown_to(&config, mysql.uid, mysql.gid);
    refused_without_running(&config, &marker, "refusing to use config file");
}

/// A directory for sandboxes that the mysql user can reach (as the sandbox requires).
fn sandbox_base(tag: &str) -> TempDir {
    let base = TempDir::new(tag);
    chmod(base.path(), 0o755);
    base
}

/// A root-owned file outside the sandbox that an attacker would like root to overwrite.
fn roots_file(base: &TempDir) -> (PathBuf, &'static str) {
    let precious = base.join("precious");
    std::fs::write(&precious, "root's own content\n").unwrap();
    (precious, "root's own content\n")
}

/// `jemsafe sandbox DIR` with a root-owned marker script as mysqld; (code, stderr).
fn sandbox(dir: &Path, mysqld: &Path) -> (i32, String) {
    let (code, _, err) = jemsafe(
        &[
            "sandbox",
            dir.to_str().unwrap(),
            "--mysqld",
            mysqld.to_str().unwrap(),
        ],
        |_| {},
    );
    (code, err)
}

#[test]
fn a_sandbox_directory_prepared_by_another_user_is_refused_and_not_written_through() {
    if !root() {
        return;
    }
    let mysql = mysql();
    let nobody = User::from_name("nobody").unwrap().expect("user nobody");
    for (tag, user) in [("nobody", nobody), ("mysql", mysql)] {
        let base = sandbox_base(&format!("sb-owner-{tag}"));
        let marker = base.join("marker");
        let fake = base.join("mysqld");
        marker_script(&fake, &marker);
        let (precious, content) = roots_file(&base);
        // What the local user prepared: their own 0755 directory that looks like an
        // earlier sandbox, its jemsafe.toml a symlink to root's file.
        let dir = base.join("sb");
        std::fs::create_dir_all(dir.join("data/mysql")).unwrap();
        chmod(&dir, 0o755);
        let link = dir.join("jemsafe.toml");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        for p in [&dir, &dir.join("data"), &dir.join("data/mysql"), &link] {
            chown_to(p, user.uid, user.gid);
        }
        let (code, err) = sandbox(&dir, &fake);
        assert_eq!(code, 77, "{tag}: {err}");
        assert!(
            err.contains(&format!(
                "refusing to use the sandbox directory {}: it is owned by {tag}",
                dir.display()
            )),
            "{tag}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&precious).unwrap(),
            content,
            "{tag}"
        );
        assert_not_executed(&marker, tag);
    }
}

#[test]
fn a_symlinked_config_in_roots_own_sandbox_directory_is_refused() {
    if !root() {
        return;
    }
    let base = sandbox_base("sb-link");
    let marker = base.join("marker");
    let fake = base.join("mysqld");
    marker_script(&fake, &marker);
    let (precious, content) = roots_file(&base);
    let dir = base.join("sb");
    std::fs::create_dir_all(dir.join("data/mysql")).unwrap();
    chmod(&dir, 0o755);
    std::os::unix::fs::symlink(&precious, dir.join("jemsafe.toml")).unwrap();
    let (code, err) = sandbox(&dir, &fake);
    assert_eq!(code, 77, "{err}");
    assert!(
        err.contains(&format!(
            "{}/jemsafe.toml is a symbolic link owned by root",
            dir.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), content);
    assert_not_executed(&marker, "sandbox");
}

#[test]
fn a_sandbox_directory_others_can_write_or_a_symlinked_subdirectory_is_refused() {
    if !root() {
        return;
    }
    let base = sandbox_base("sb-modes");
    let marker = base.join("marker");
    let fake = base.join("mysqld");
    marker_script(&fake, &marker);

    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o775);
    let (code, err) = sandbox(&open, &fake);
    assert_eq!(code, 77, "{err}");
    assert!(
        err.contains("it is writable by others (mode 0775)") && err.contains("chmod go-w"),
        "{err}"
    );
    assert!(!open.join("jemsafe.toml").exists());

    // An earlier sandbox of root's whose data/ now leads elsewhere.
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let earlier = base.join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    chmod(&earlier, 0o755);
    std::fs::write(earlier.join("jemsafe.toml"), "# an earlier sandbox\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, earlier.join("data")).unwrap();
    let (code, err) = sandbox(&earlier, &fake);
    assert_eq!(code, 77, "{err}");
    assert!(
        err.contains(&format!(
            "{}/data is a symbolic link, not a directory",
            earlier.display()
        )),
        "{err}"
    );
    assert_not_executed(&marker, "sandbox");
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
    let owner = std::fs::metadata(&elsewhere).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&owner), 0);
}

#[test]
fn an_earlier_sandbox_of_roots_is_reused_and_its_config_replaced_not_written_through() {
    if !root() {
        return;
    }
    let base = sandbox_base("sb-reuse");
    let marker = base.join("marker");
    let fake = base.join("mysqld");
    marker_script(&fake, &marker);
    let dir = base.join("sb");
    std::fs::create_dir_all(dir.join("data/mysql")).unwrap();
    chmod(&dir, 0o755);
    let config = dir.join("jemsafe.toml");
    std::fs::write(&config, "# an earlier sandbox\n").unwrap();
    // A hard link shares the inode: writing through the old file would show here.
    let old = base.join("old-config");
    std::fs::hard_link(&config, &old).unwrap();
    let (_, err) = sandbox(&dir, &fake);
    assert!(err.contains("reusing the datadir"), "{err}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("Written by `jemsafe sandbox`"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&old).unwrap(),
        "# an earlier sandbox\n"
    );
}

#[test]
fn loader_variables_in_jemsafes_environment_that_load_from_anywhere_are_refused_as_root() {
    if !root() {
        return;
    }
    let mysql = mysql();
    let dir = TempDir::new("loader-env");
    let config = workload_config(&dir, "standby", &[], "");
    let libs = dir.join("mysql-libs");
    std::fs::create_dir(&libs).unwrap();
    chown_to(&libs, mysql.uid, mysql.gid);
    let libs = libs.to_str().unwrap();
    let c = config.to_str().unwrap();
    for (name, value, needle) in [
        (
            "LD_AUDIT",
            "/usr/lib/no-such-audit.so",
            "jemsafe does not pass LD_AUDIT",
        ),
        (
            "LD_PRELOAD",
            "libjemsafe-no-such.so",
            "entry \"libjemsafe-no-such.so\" is not an absolute path",
        ),
        (
            "LD_LIBRARY_PATH",
            libs,
            "refusing to use LD_LIBRARY_PATH directory",
        ),
        ("LD_LIBRARY_PATH", "/usr/lib:", "has an empty entry"),
    ] {
        let (code, _, err) = jemsafe(&["run", "-c", c], |cmd| {
            cmd.env(name, value);
        });
        assert_eq!(code, 77, "{name}={value}: {err}");
        assert!(
            err.contains(needle),
            "{name}={value}: {needle:?} not in {err}"
        );
        assert!(!err.contains("started mysqld"), "{err}");
        let (code, out, _) = jemsafe(&["check", "-c", c], |cmd| {
            cmd.env(name, value);
        });
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(needle),
            "{name}={value}: {needle:?} not in {out}"
        );
        assert!(out.contains("not executed: untrusted"), "{out}");
    }
}

#[test]
fn an_ld_library_path_directory_of_mysqls_in_mysqld_env_is_refused_as_root() {
    if !root() {
        return;
    }
    let mysql = mysql();
    let dir = TempDir::new("loader-config");
    let libs = dir.join("mysql-libs");
    std::fs::create_dir(&libs).unwrap();
    chown_to(&libs, mysql.uid, mysql.gid);
    let config = workload_config(&dir, "standby", &[], "");
    add_to_section(
        &config,
        "[mysqld]",
        &format!("env = {{ LD_LIBRARY_PATH = {:?} }}", libs.to_str().unwrap()),
    );
    let (code, _, err) = jemsafe(&["run", "-c", config.to_str().unwrap()], |_| {});
    assert_eq!(code, 77, "{err}");
    assert!(
        err.contains(&format!(
            "refusing to use LD_LIBRARY_PATH directory {} as root",
            libs.display()
        )) && err.contains("owned by mysql"),
        "{err}"
    );
    assert!(!err.contains("started mysqld"), "{err}");
}

#[test]
fn ld_audit_and_relative_loader_entries_in_mysqld_env_are_config_errors() {
    let dir = TempDir::new("loader-syntax");
    let config = workload_config(&dir, "standby", &[], "");
    let text = std::fs::read_to_string(&config).unwrap();
    for (env, key, needle) in [
        (
            "env = { LD_AUDIT = \"/usr/lib/audit.so\" }",
            "mysqld.env.LD_AUDIT",
            "jemsafe does not pass LD_AUDIT",
        ),
        (
            "env = { LD_PRELOAD = \"libfoo.so\" }",
            "mysqld.env.LD_PRELOAD",
            "is not an absolute path",
        ),
        (
            "env = { LD_LIBRARY_PATH = \"lib:/usr/lib\" }",
            "mysqld.env.LD_LIBRARY_PATH",
            "is not an absolute path",
        ),
    ] {
        std::fs::write(&config, &text).unwrap();
        add_to_section(&config, "[mysqld]", env);
        for cmd in ["run", "check"] {
            let (code, _, err) = jemsafe(&[cmd, "-c", config.to_str().unwrap()], |_| {});
            assert_eq!(code, 78, "{cmd} {env}: {err}");
            assert!(
                err.contains(&format!("config file {}, line", config.display()))
                    && err.contains(&format!("`{key}`"))
                    && err.contains(needle),
                "{cmd} {env}: {err}"
            );
        }
    }
}

/// Where each of `pid`'s descriptors leads.
fn fd_targets(pid: i32) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_link(e.path()).ok()?,
            ))
        })
        .collect()
}

#[test]
fn a_descriptor_jemsafe_inherited_does_not_reach_mysqld() {
    let dir = TempDir::new("fds");
    let secret = dir.join("secret");
    std::fs::write(&secret, "root-only secret\n").unwrap();
    chmod(&secret, 0o600);
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    // std opens with O_CLOEXEC; dup2 onto fd 9 in jemsafe's child clears it, as a
    // careless parent of jemsafe would leave it.
    let file = std::fs::File::open(&secret).unwrap();
    let mut js = Running::start_with(&["run", "-c", config.to_str().unwrap()], |cmd| {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = file.as_raw_fd();
        // SAFETY: dup2 between fork and exec on a descriptor the parent keeps open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 9) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let pid = js.wait_verified(T);
    let verified = js.err.wait_for("verified: mysqld pid", T);
    assert!(verified.contains("opt.prof=true"), "{verified}");
    js.out.wait_for("ready pid=", T);
    // jemsafe itself has it (the test set it up), mysqld does not.
    assert!(
        fd_targets(js.pid()).contains(&("9".to_owned(), secret.clone())),
        "{:?}",
        fd_targets(js.pid())
    );
    let fds = fd_targets(pid);
    assert!(
        !fds.iter().any(|(_, target)| target == &secret),
        "mysqld inherited {}: {fds:?}",
        secret.display()
    );
    // Nothing but its stdio and the shim's channel (which answered above).
    let shim_fd = env_value(pid, "JEMSAFE_SHIM_FD").expect("JEMSAFE_SHIM_FD");
    let mut numbers: Vec<&str> = fds.iter().map(|(fd, _)| fd.as_str()).collect();
    numbers.sort();
    let mut expected = vec!["0", "1", "2", shim_fd.as_str()];
    expected.sort();
    assert_eq!(numbers, expected, "{fds:?}");
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_new_sandbox_directory_is_mode_0755_whatever_the_umask() {
    let base = sandbox_base("sb-umask");
    let marker = base.join("marker");
    let fake = base.join("mysqld");
    marker_script(&fake, &marker);
    let dir = base.join("sb");
    let (_, _, err) = jemsafe(
        &[
            "sandbox",
            dir.to_str().unwrap(),
            "--mysqld",
            fake.to_str().unwrap(),
        ],
        |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::umask(0o002);
                    Ok(())
                });
            }
        },
    );
    assert!(!err.contains("refusing"), "{err}");
    assert!(dir.join("jemsafe.toml").is_file(), "{err}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "{err}");
}

/// What the `mysql` user can write, as an attacker would prepare it: `dir/mysql-owned`
/// (theirs, with a file of theirs in it) and `dir/open` (root's, mode 1777 like /tmp).
struct AttackerDirs {
    mine: PathBuf,
    open: PathBuf,
}

fn attacker_dirs(dir: &TempDir) -> AttackerDirs {
    let mysql = mysql();
    let mine = dir.join("mysql-owned");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("hosts"), "db1 attacker.example\n").unwrap();
    chown_to(&mine.join("hosts"), mysql.uid, mysql.gid);
    chown_to(&mine, mysql.uid, mysql.gid);
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o1777);
    AttackerDirs { mine, open }
}

/// Files `dir` holds whose names start with `prefix`.
fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn glibcs_unsecure_variables_in_jemsafes_environment_naming_what_mysql_can_write_are_refused_as_root(
) {
    if !root() {
        return;
    }
    let dir = TempDir::new("unsecvars-env");
    let a = attacker_dirs(&dir);
    let config = workload_config(&dir, "standby", &[], "");
    let c = config.to_str().unwrap();
    let mine = a.mine.display().to_string();
    let open = a.open.display().to_string();
    // (variables, what the refusal says): one case per class of glibc's list.
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        // Search paths: iconv modules (code) and locale files.
        (
            vec![("GCONV_PATH", mine.clone())],
            format!("refusing to use GCONV_PATH directory {mine} as root"),
        ),
        (
            vec![("LOCPATH", format!("/usr/lib/locale:{mine}"))],
            format!("refusing to use LOCPATH directory {mine} as root"),
        ),
        // One directory searched.
        (
            vec![("TZDIR", mine.clone())],
            format!("refusing to use TZDIR directory {mine} as root"),
        ),
        // catopen's templates: the directory before the first %.
        (
            vec![("NLSPATH", format!("{mine}/%L/%N.cat"))],
            format!("refusing to use NLSPATH directory {mine} as root"),
        ),
        // Files read.
        (
            vec![("HOSTALIASES", format!("{mine}/hosts"))],
            format!("refusing to use HOSTALIASES file {mine}/hosts as root"),
        ),
        // Files written as root: into a directory others can add names to, even sticky.
        (
            vec![
                ("LD_DEBUG", "files".to_owned()),
                ("LD_DEBUG_OUTPUT", format!("{open}/ld-debug")),
            ],
            format!("refusing to use LD_DEBUG_OUTPUT directory {open} as root: others can add files to it (mode 1777)"),
        ),
        (
            vec![("MALLOC_TRACE", format!("{mine}/trace"))],
            format!("refusing to use MALLOC_TRACE directory {mine} as root"),
        ),
        (
            vec![("LD_PROFILE", "libc.so.6".to_owned())],
            "ld.so would write the profile as root into /var/tmp".to_owned(),
        ),
        (
            vec![("TMPDIR", mine.clone())],
            format!("refusing to use TMPDIR directory {mine} as root"),
        ),
        // ld.so variables jemsafe does not know are not passed.
        (
            vec![("LD_FUTURE_PATH", "/usr/lib".to_owned())],
            "jemsafe does not know what ld.so does with LD_FUTURE_PATH".to_owned(),
        ),
    ];
    let mut jemsafe_pids = Vec::new();
    for (vars, needle) in &cases {
        let set = |cmd: &mut Command| {
            for (k, v) in vars {
                cmd.env(k, v);
            }
        };
        let (code, _, err, pid) = jemsafe_pid(&["run", "-c", c], set);
        jemsafe_pids.push(pid);
        assert_eq!(code, 77, "{vars:?}: {err}");
        assert!(
            err.contains(needle.as_str()) && err.contains("jemsafe's environment"),
            "{vars:?}: {needle:?} not in {err}"
        );
        assert!(!err.contains("started mysqld"), "{err}");
        let (code, out, _, pid) = jemsafe_pid(&["check", "-c", c], set);
        jemsafe_pids.push(pid);
        assert_eq!(code, 1, "{vars:?}: {out}");
        assert!(
            out.contains(needle.as_str()),
            "{vars:?}: {needle:?} not in {out}"
        );
        assert!(out.contains("not executed: untrusted"), "{out}");
    }
    // Root's ld.so wrote nothing for mysqld (nor a probe) where the mysql user could have
    // planted the name. jemsafe's own ld.so did: the test set the variables on jemsafe.
    let written = files_named(&a.open, "ld-debug");
    assert!(
        written.iter().all(|f| jemsafe_pids
            .iter()
            .any(|pid| f == &format!("ld-debug.{pid}"))),
        "{written:?}, jemsafe was {jemsafe_pids:?}"
    );
}

#[test]
fn glibcs_unsecure_variables_in_mysqld_env_naming_what_mysql_can_write_are_refused_as_root() {
    if !root() {
        return;
    }
    let dir = TempDir::new("unsecvars-config");
    let a = attacker_dirs(&dir);
    let config = workload_config(&dir, "standby", &[], "");
    let text = std::fs::read_to_string(&config).unwrap();
    let mine = a.mine.display().to_string();
    for (env, needle) in [
        (
            format!("env = {{ GCONV_PATH = {mine:?} }}"),
            format!("refusing to use GCONV_PATH directory {mine} as root"),
        ),
        (
            format!(
                "env = {{ RESOLV_HOST_CONF = {:?} }}",
                format!("{mine}/hosts")
            ),
            format!("refusing to use RESOLV_HOST_CONF file {mine}/hosts as root"),
        ),
        (
            format!("env = {{ MALLOC_TRACE = {:?} }}", format!("{mine}/trace")),
            format!("refusing to use MALLOC_TRACE directory {mine} as root"),
        ),
        (
            format!("env = {{ LD_PROFILE = \"libc.so.6\", LD_PROFILE_OUTPUT = {mine:?} }}"),
            format!("refusing to use LD_PROFILE_OUTPUT directory {mine} as root"),
        ),
        (
            format!("env = {{ TZ = {:?} }}", format!(":{mine}/hosts")),
            format!("refusing to use TZ file {mine}/hosts as root"),
        ),
    ] {
        std::fs::write(&config, &text).unwrap();
        add_to_section(&config, "[mysqld]", &env);
        let (code, _, err) = jemsafe(&["run", "-c", config.to_str().unwrap()], |_| {});
        assert_eq!(code, 77, "{env}: {err}");
        assert!(
            err.contains(&needle)
                && err.contains("owned by mysql")
                && err.contains("out of [mysqld] env"),
            "{env}: {needle:?} not in {err}"
        );
        assert!(!err.contains("started mysqld"), "{err}");
    }
}

#[test]
fn relative_or_unknown_loader_variables_in_mysqld_env_are_config_errors() {
    let dir = TempDir::new("unsecvars-syntax");
    let config = workload_config(&dir, "standby", &[], "");
    let text = std::fs::read_to_string(&config).unwrap();
    for (env, key, needle) in [
        (
            "env = { GCONV_PATH = \"/usr/lib/gconv:gconv\" }",
            "mysqld.env.GCONV_PATH",
            "entry \"gconv\" is not an absolute path",
        ),
        (
            "env = { NLSPATH = \"%N.cat\" }",
            "mysqld.env.NLSPATH",
            "\"%N.cat\" is not an absolute path",
        ),
        (
            "env = { TMPDIR = \"tmp\" }",
            "mysqld.env.TMPDIR",
            "\"tmp\" is not an absolute path",
        ),
        (
            "env = { LD_DEBUG_OUTPUT = \"ld-debug\" }",
            "mysqld.env.LD_DEBUG_OUTPUT",
            "\"ld-debug\" is not an absolute path",
        ),
        (
            "env = { TZ = \"../../tmp/zone\" }",
            "mysqld.env.TZ",
            "climbs out of TZDIR",
        ),
        (
            "env = { LD_FUTURE_PATH = \"/usr/lib\" }",
            "mysqld.env.LD_FUTURE_PATH",
            "jemsafe does not know what ld.so does with LD_FUTURE_PATH",
        ),
    ] {
        std::fs::write(&config, &text).unwrap();
        add_to_section(&config, "[mysqld]", env);
        for cmd in ["run", "check"] {
            let (code, _, err) = jemsafe(&[cmd, "-c", config.to_str().unwrap()], |_| {});
            assert_eq!(code, 78, "{cmd} {env}: {err}");
            assert!(
                err.contains(&format!("config file {}, line", config.display()))
                    && err.contains(&format!("`{key}`"))
                    && err.contains(needle),
                "{cmd} {env}: {err}"
            );
        }
    }
}

#[test]
fn glibcs_unsecure_variables_naming_roots_own_files_reach_mysqld() {
    if !root() {
        return;
    }
    let dir = TempDir::new("unsecvars-ok");
    chmod(dir.path(), 0o755);
    let logs = dir.join("ld-logs");
    std::fs::create_dir(&logs).unwrap();
    chmod(&logs, 0o755);
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let debug_output = format!("{}/ld-debug", logs.display());
    let vars = [
        ("GCONV_PATH", "/usr/lib/x86_64-linux-gnu/gconv"),
        ("TZDIR", "/usr/share/zoneinfo"),
        ("TZ", ":/etc/localtime"),
        ("TMPDIR", "/tmp"),
        ("NLSPATH", "/usr/share/locale/%L/%N"),
        ("LD_BIND_NOW", "1"),
        ("GLIBC_TUNABLES", "glibc.malloc.check=0"),
        ("LD_DEBUG", "statistics"),
        ("LD_DEBUG_OUTPUT", debug_output.as_str()),
    ];
    let mut js = Running::start_with(&["run", "-c", config.to_str().unwrap()], |cmd| {
        for (k, v) in vars {
            cmd.env(k, v);
        }
    });
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    for (k, v) in vars {
        assert_eq!(env_value(pid, k).as_deref(), Some(v), "{k}");
    }
    // ld.so wrote its statistics for mysqld where root's config said.
    assert!(
        files_named(&logs, "ld-debug.").contains(&format!("ld-debug.{pid}")),
        "{:?}",
        files_named(&logs, "")
    );
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}
