//! `jemsafe sandbox`: a throwaway MariaDB/MySQL under jemsafe, with no setup.
//!
//! Creates a datadir, writes an ordinary jemsafe.toml for it and then runs exactly what
//! `jemsafe run -c <that file>` runs, so the sandbox exercises the production path.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::{info, locate, trust, warn};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone)]
pub struct Options {
    /// Where to put everything; a new /tmp/jemsafe-sandbox.XXXXXX when None.
    pub dir: Option<PathBuf>,
    pub profile: String,
    /// Listen on 127.0.0.1:PORT; None = Unix socket only.
    pub port: Option<u16>,
    pub mysqld: Option<PathBuf>,
    /// `[jemalloc] library = "bundled"`: jemsafe's own profiling jemalloc.
    pub bundled: bool,
}

/// Longest Unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Prepares the sandbox; returns the path of the config written for it.
pub fn prepare(opts: &Options) -> Result<PathBuf> {
    let mut defaults = Config::parse("", Path::new("(sandbox)"))?;
    // Check -p before anything is created, so the error names what the user typed.
    defaults.resolve_profile(&opts.profile).map_err(|_| {
        Error::NotFound(format!(
            "-p {}: there is no such built-in profile; available: {}",
            opts.profile,
            defaults.profile_names().join(", ")
        ))
    })?;
    // As root, what will run is trust-checked before anything runs or is created: the
    // mysqld binary and the loader variables it would inherit.
    let as_root = nix::unistd::geteuid().is_root();
    // The config written below needs an absolute path.
    defaults.mysqld.path = match &opts.mysqld {
        Some(p) if p.is_relative() => Some(
            std::env::current_dir()
                .map_err(Error::io("cannot find the current directory"))?
                .join(p),
        ),
        other => other.clone(),
    };
    let mysqld = locate::mysqld(&defaults)?;
    if as_root {
        let mut problems = trust::problems(&mysqld, "mysqld binary");
        problems.extend(trust::loader_environment_problems(&Default::default()));
        Error::untrusted_if_any(problems)?;
    }
    // As root, mysqld runs as the `mysql` user, like the distribution's service does.
    let user = if as_root {
        match nix::unistd::User::from_name("mysql") {
            Ok(Some(u)) => Some(u),
            _ => {
                return Err(Error::Refused(
                    "running as root, but there is no `mysql` user for mysqld to run as; \
                     install the server package (it creates the user) or run the sandbox as an ordinary user"
                        .into(),
                ))
            }
        }
    } else {
        None
    };

    let dir = open_dir(opts.dir.as_deref())?;
    // mysqld (as the mysql user) creates its socket and pid file here.
    let mysqld_run = dir.join("mysqld");
    let socket = mysqld_run.join("mysqld.sock");
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(Error::Refused(format!(
            "{} is too long for a Unix socket path ({} > {MAX_SOCKET_PATH} bytes): choose a shorter sandbox directory",
            socket.display(),
            socket.as_os_str().len()
        )));
    }
    if let Some(u) = &user {
        reachable_by(&dir.join("data"), &u.name)?;
    }
    let datadir = dir.join("data");
    let dumps = dir.join("dumps");
    let run = dir.join("run");
    // mysqld's temporary files stay in the sandbox: nothing in /tmp, and no two
    // sandboxes (or a system server) sharing one temporary directory.
    let tmpdir = dir.join("tmp");
    for (d, mode, create) in [
        (&datadir, 0o750, true),
        (&tmpdir, 0o750, true),
        (&dumps, 0o750, true),
        (&mysqld_run, 0o755, true),
        (&run, 0o755, false),
    ] {
        if existing_dir(d)? {
            continue; // an earlier run of this sandbox set it up
        }
        if !create {
            continue; // `run` creates its runtime_dir itself
        }
        // The sandbox directory is writable only by its owner (checked above), so
        // nobody can slip a symlink in between this check and these calls.
        std::fs::create_dir(d).map_err(Error::io(format!("cannot create {}", d.display())))?;
        set_mode(d, mode)?;
        if let Some(u) = &user {
            nix::unistd::chown(d.as_path(), Some(u.uid), Some(u.gid))
                .map_err(|e| Error::io(format!("cannot chown {}", d.display()))(e.into()))?;
        }
    }
    let user_arg = user.as_ref().map(|u| format!("--user={}", u.name));

    let version = crate::launch::mysqld_version(&mysqld).unwrap_or_default();
    let mariadb = version.contains("MariaDB") || mysqld.ends_with("mariadbd");
    // data/ belongs to mysqld's user, who could plant a symlink there: only a real
    // directory counts as an earlier datadir.
    let initialized = std::fs::symlink_metadata(datadir.join("mysql")).is_ok_and(|m| m.is_dir());
    if !initialized {
        info!(
            "creating a {} datadir in {}",
            if mariadb { "MariaDB" } else { "MySQL" },
            datadir.display()
        );
        initialize(
            &mysqld,
            mariadb,
            &datadir,
            &tmpdir,
            user_arg.as_deref(),
            as_root,
        )?;
    } else {
        info!("reusing the datadir in {}", datadir.display());
    }

    let mut args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", datadir.display()),
        format!("--socket={}", socket.display()),
        format!("--pid-file={}", mysqld_run.join("mysqld.pid").display()),
        format!("--tmpdir={}", tmpdir.display()),
        "--innodb-buffer-pool-size=128M".to_owned(),
    ];
    match opts.port {
        Some(port) => {
            args.push(format!("--port={port}"));
            args.push("--bind-address=127.0.0.1".to_owned());
        }
        None => args.push("--skip-networking".to_owned()),
    }
    args.extend(user_arg);

    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Written by `jemsafe sandbox`; an ordinary jemsafe config (see etc/jemsafe.toml)."
    );
    let _ = writeln!(toml, "profile = {}", quote(&opts.profile));
    let _ = writeln!(
        toml,
        "\n[mysqld]\npath = {}",
        quote(&mysqld.to_string_lossy())
    );
    let _ = writeln!(
        toml,
        "args = [{}]",
        args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ")
    );
    if opts.bundled {
        let _ = writeln!(toml, "\n[jemalloc]\nlibrary = \"bundled\"");
    }
    let _ = writeln!(
        toml,
        "\n[dumps]\ndir = {}\nprefix = \"mysqld\"",
        quote(&dumps.to_string_lossy())
    );
    let _ = writeln!(
        toml,
        "\n[supervise]\nruntime_dir = {}",
        quote(&run.to_string_lossy())
    );
    let config_path = write_config(&dir, &toml)?;

    let client = if mariadb { "mariadb" } else { "mysql" };
    let connect = match opts.port {
        Some(port) => format!("{client} -h127.0.0.1 -P{port} -uroot"),
        None => format!("{client} --socket={} -uroot", socket.display()),
    };
    // A closed standard output must not stop the sandbox's mysqld from starting.
    let _ = writeln!(
        std::io::stdout().lock(),
        "jemsafe sandbox in {dir}\n\
         \x20 server:    {version}\n\
         \x20 config:    {config}\n\
         \x20 connect:   {connect}\n\
         \x20 heap dump: kill -USR1 {pid}   (files appear in {dumps})\n\
         \x20 read it:   jemsafe report -c {config}   (the newest dump; `jemsafe leaks -c {config}` ranks growth)\n\
         \x20 stop:      Ctrl-C, or kill {pid}; the directory stays until you remove it",
        dir = dir.display(),
        config = config_path.display(),
        pid = std::process::id(),
        dumps = dumps.display(),
    );
    Ok(config_path)
}

/// The sandbox directory as a canonical path that only its owner, root or the caller,
/// can change: a new directory, an empty one, or an earlier sandbox (it holds a
/// jemsafe.toml that is a regular file of the caller's). A directory that someone else
/// prepared could redirect what root writes there (a jemsafe.toml symlinked to a file of
/// root's), so it is refused.
fn open_dir(requested: Option<&Path>) -> Result<PathBuf> {
    let Some(requested) = requested else {
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-sandbox.XXXXXX")
            .map_err(|e| Error::io("cannot create a temporary directory")(e.into()))?;
        set_mode(&dir, 0o755)?;
        return Ok(dir);
    };
    let requested = if requested.is_absolute() {
        requested.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(Error::io("cannot find the current directory"))?
            .join(requested)
    };
    let existed = match std::fs::symlink_metadata(&requested) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("cannot inspect {}", requested.display()))(e)),
    };
    if !existed {
        if nix::unistd::geteuid().is_root() {
            // Where root creates it must be root's alone, or the new directory could be
            // swapped for someone else's.
            if let Some(parent) = requested
                .ancestors()
                .skip(1)
                .find(|a| a.symlink_metadata().is_ok())
            {
                Error::untrusted_if_any(trust::problems(parent, "directory above the sandbox"))?;
            }
        }
        std::fs::create_dir_all(&requested)
            .map_err(Error::io(format!("cannot create {}", requested.display())))?;
    }
    let dir = std::fs::canonicalize(&requested)
        .map_err(Error::io(format!("cannot resolve {}", requested.display())))?;
    if !existed {
        // Whatever the umask made of it (0775 under umask 002).
        set_mode(&dir, 0o755)?;
    }
    Error::untrusted_if_any(dir_problems(&requested, &dir))?;
    if !existed {
        return Ok(dir);
    }
    // A directory jemsafe did not create just now is used only if it is empty or an
    // earlier sandbox; its mode is left alone.
    let config = dir.join("jemsafe.toml");
    let ours = match std::fs::symlink_metadata(&config) {
        Ok(m) if m.file_type().is_file() && m.uid() == nix::unistd::geteuid().as_raw() => true,
        Ok(m) => {
            return Err(Error::Untrusted(format!(
                "{} is {} owned by {}, not a config an earlier `jemsafe sandbox` of yours wrote; \
                 jemsafe will not write through it: remove it or choose another directory",
                config.display(),
                file_kind(&m),
                trust::user_name(m.uid())
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("cannot inspect {}", config.display()))(e)),
    };
    let empty = std::fs::read_dir(&dir)
        .map_err(Error::io(format!("cannot read {}", dir.display())))?
        .next()
        .is_none();
    if !ours && !empty {
        return Err(Error::Refused(format!(
            "{} is not empty and holds no sandbox (no jemsafe.toml): give a new or empty directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Why the sandbox directory `dir` (canonical; `requested` as given) is not safe to
/// write into: it must be owned by root or the caller and writable by no one else, and
/// as root pass the same checks as anything root runs from.
fn dir_problems(requested: &Path, dir: &Path) -> Vec<String> {
    let me = nix::unistd::geteuid().as_raw();
    let mine = |uid: u32| uid == 0 || uid == me;
    let mut out = Vec::new();
    if let Ok(m) = std::fs::symlink_metadata(requested) {
        if m.file_type().is_symlink() && !mine(m.uid()) {
            out.push(format!(
                "refusing to use the sandbox directory {}: it is a symbolic link owned by {}, who can point it elsewhere; give the real directory",
                requested.display(),
                trust::user_name(m.uid())
            ));
        }
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => out.push(format!(
            "refusing to use the sandbox directory {}: it is {}, not a directory",
            dir.display(),
            file_kind(&m)
        )),
        Ok(m) if !mine(m.uid()) => out.push(format!(
            "refusing to use the sandbox directory {}: it is owned by {}, who could redirect \
             what jemsafe writes there; remove it or choose a new directory",
            dir.display(),
            trust::user_name(m.uid())
        )),
        Ok(m) if m.mode() & 0o022 != 0 => out.push(format!(
            "refusing to use the sandbox directory {}: it is writable by others (mode {:04o}), \
             who could redirect what jemsafe writes there; fix: chmod go-w {}",
            dir.display(),
            m.mode() & 0o7777,
            dir.display()
        )),
        Ok(_) => {}
        Err(e) => out.push(format!("cannot inspect {}: {e}", dir.display())),
    }
    if out.is_empty() && me == 0 {
        out.extend(trust::problems(requested, "sandbox directory"));
    }
    out
}

/// Whether `d`, inside the sandbox, already exists as a real directory; a symlink or
/// anything else in its place is refused rather than followed.
fn existing_dir(d: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(d) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(m) => Err(Error::Untrusted(format!(
            "{} is {}, not a directory; jemsafe does not follow it: remove it",
            d.display(),
            file_kind(&m)
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("cannot inspect {}", d.display()))(e)),
    }
}

/// Writes `dir`/jemsafe.toml as a new file (O_EXCL, O_NOFOLLOW, relative to the
/// directory's descriptor) renamed into place, so an earlier config is replaced, never
/// written through.
fn write_config(dir: &Path, text: &str) -> Result<PathBuf> {
    use jemsafe_report::create::{Access, Ownership, Staged};
    let path = dir.join("jemsafe.toml");
    let context = format!("cannot write {}", path.display());
    let dir_fd = jemsafe_report::safe::open_dir(None, dir, true).map_err(Error::io(&context))?;
    let mut staged = Staged::create(
        dir_fd,
        "jemsafe.toml",
        Access::Write,
        Ownership::mode(0o644),
    )
    .map_err(|e| Error::io(&context)(e.into_source()))?;
    staged
        .file()
        .write_all(text.as_bytes())
        .and_then(|()| staged.publish("jemsafe.toml"))
        .map_err(Error::io(context))?;
    Ok(path)
}

fn file_kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

fn initialize(
    mysqld: &Path,
    mariadb: bool,
    datadir: &Path,
    tmpdir: &Path,
    user_arg: Option<&str>,
    as_root: bool,
) -> Result<()> {
    let mut cmd = if mariadb {
        let tool = ["mariadb-install-db", "mysql_install_db"]
            .iter()
            .find_map(|t| which::which(t).ok())
            .ok_or_else(|| {
                Error::NotFound(
                    "mariadb-install-db not found: install the mariadb-server package".into(),
                )
            })?;
        // Found on PATH and run as root: trusted like mysqld itself.
        if as_root {
            Error::untrusted_if_any(trust::problems(&tool, "datadir installer"))?;
        }
        let mut c = Command::new(tool);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db");
        c
    } else {
        let mut c = Command::new(mysqld);
        c.arg("--no-defaults")
            .arg("--initialize-insecure")
            .arg(format!("--datadir={}", datadir.display()));
        c
    };
    // The bootstrap server must not talk to systemd as if it were the service.
    cmd.arg(format!("--tmpdir={}", tmpdir.display()))
        .args(user_arg)
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET");
    // The bootstrap server runs as mysqld's user: nothing of jemsafe's may reach it.
    crate::launch::close_inherited_fds(&mut cmd);
    let out = cmd
        .output()
        .map_err(Error::io(format!("cannot run {:?}", cmd.get_program())))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        warn!("{}", text.trim());
        return Err(Error::Refused(format!(
            "creating the datadir failed ({:?} exited with {}); its output is above",
            cmd.get_program(),
            out.status
        )));
    }
    Ok(())
}

/// mysqld, running as `user`, must be able to reach `dir`: every directory above it
/// needs search permission for others (jemsafe does not change modes above the sandbox).
fn reachable_by(dir: &Path, user: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for above in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(above)
            .map_err(Error::io(format!("cannot inspect {}", above.display())))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(Error::Refused(format!(
                "mysqld runs as {user} and cannot reach {}: {} has mode {:04o}; \
                 choose a sandbox directory elsewhere, or `chmod o+x {}`",
                dir.display(),
                above.display(),
                mode & 0o7777,
                above.display()
            )));
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("cannot chmod {}", path.display())))
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
