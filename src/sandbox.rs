//! `jemsafe sandbox`: a throwaway MariaDB/MySQL under jemsafe, with no setup.
//!
//! Creates a datadir, writes an ordinary jemsafe.toml for it and then runs exactly what
//! `jemsafe run -c <that file>` runs, so the sandbox exercises the production path.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::locate;
use crate::{info, warn};
use std::fmt::Write as _;
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
    // A directory jemsafe did not create is used only if it is empty or an earlier
    // sandbox; its mode is left alone, whatever it is.
    let (dir, created) = match &opts.dir {
        Some(d) if d.exists() => {
            let ours = d.join("jemsafe.toml").is_file();
            let empty = std::fs::read_dir(d)
                .map_err(Error::io(format!("cannot read {}", d.display())))?
                .next()
                .is_none();
            if !ours && !empty {
                return Err(Error::Refused(format!(
                    "{} is not empty and holds no sandbox (no jemsafe.toml): give a new or empty directory",
                    d.display()
                )));
            }
            let dir = std::fs::canonicalize(d)
                .map_err(Error::io(format!("cannot resolve {}", d.display())))?;
            (dir, false)
        }
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(Error::io(format!("cannot create {}", d.display())))?;
            let dir = std::fs::canonicalize(d)
                .map_err(Error::io(format!("cannot resolve {}", d.display())))?;
            (dir, true)
        }
        None => {
            let dir = nix::unistd::mkdtemp("/tmp/jemsafe-sandbox.XXXXXX")
                .map_err(|e| Error::io("cannot create a temporary directory")(e.into()))?;
            (dir, true)
        }
    };
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
    defaults.mysqld.path = opts.mysqld.clone();
    let mysqld = locate::mysqld(&defaults)?;
    let version = crate::check::mysqld_version(&mysqld).unwrap_or_default();
    let mariadb = version.contains("MariaDB") || mysqld.ends_with("mariadbd");

    // As root, mysqld runs as the `mysql` user, like the distribution's service does.
    let as_root = nix::unistd::geteuid().is_root();
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

    if created {
        set_mode(&dir, 0o755)?;
    }
    if let Some(u) = &user {
        reachable_by(&dir.join("data"), &u.name)?;
    }
    let datadir = dir.join("data");
    let dumps = dir.join("dumps");
    let run = dir.join("run");
    for (d, mode) in [(&datadir, 0o750), (&dumps, 0o750), (&mysqld_run, 0o755)] {
        if d.exists() {
            continue; // an earlier run of this sandbox set it up
        }
        std::fs::create_dir_all(d).map_err(Error::io(format!("cannot create {}", d.display())))?;
        set_mode(d, mode)?;
        if let Some(u) = &user {
            nix::unistd::chown(d.as_path(), Some(u.uid), Some(u.gid))
                .map_err(|e| Error::io(format!("cannot chown {}", d.display()))(e.into()))?;
        }
    }
    let user_arg = user.as_ref().map(|u| format!("--user={}", u.name));

    if !datadir.join("mysql").is_dir() {
        info!(
            "creating a {} datadir in {}",
            if mariadb { "MariaDB" } else { "MySQL" },
            datadir.display()
        );
        initialize(&mysqld, mariadb, &datadir, user_arg.as_deref())?;
    } else {
        info!("reusing the datadir in {}", datadir.display());
    }

    let mut args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", datadir.display()),
        format!("--socket={}", socket.display()),
        format!("--pid-file={}", mysqld_run.join("mysqld.pid").display()),
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
    let config_path = dir.join("jemsafe.toml");
    std::fs::write(&config_path, toml)
        .map_err(Error::io(format!("cannot write {}", config_path.display())))?;

    let client = if mariadb { "mariadb" } else { "mysql" };
    let connect = match opts.port {
        Some(port) => format!("{client} -h127.0.0.1 -P{port} -uroot"),
        None => format!("{client} --socket={} -uroot", socket.display()),
    };
    println!(
        "jemsafe sandbox in {dir}\n\
         \x20 server:    {version}\n\
         \x20 config:    {config}\n\
         \x20 connect:   {connect}\n\
         \x20 heap dump: kill -USR1 {pid}   (files appear in {dumps})\n\
         \x20 read it:   jeprof --text {mysqld} {dumps}/<file>.heap\n\
         \x20 stop:      Ctrl-C, or kill {pid}; the directory stays until you remove it",
        dir = dir.display(),
        config = config_path.display(),
        pid = std::process::id(),
        dumps = dumps.display(),
        mysqld = mysqld.display(),
    );
    Ok(config_path)
}

fn initialize(mysqld: &Path, mariadb: bool, datadir: &Path, user_arg: Option<&str>) -> Result<()> {
    let mut cmd = if mariadb {
        let tool = ["mariadb-install-db", "mysql_install_db"]
            .iter()
            .find_map(|t| which::which(t).ok())
            .ok_or_else(|| {
                Error::NotFound(
                    "mariadb-install-db not found: install the mariadb-server package".into(),
                )
            })?;
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
    cmd.args(user_arg)
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET");
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
