//! Memory limits and the moment of an OOM kill: a v1 memory cgroup with a limit that a
//! test runs jemsafe in (mysqld inherits it), the project's test UDF built into a plugin
//! directory, and a MariaDB sandbox run with sections added to its config.

use super::{jemsafe_bin, Running, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

/// A v1 memory cgroup (this machine's layout) made for one test, below the test's own
/// group; its processes (the jemsafe and mysqld the test started) are killed and the
/// group removed when the test ends.
pub struct MemCgroup {
    pub path: PathBuf,
}

impl MemCgroup {
    pub fn create(tag: &str, limit_bytes: u64) -> MemCgroup {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap()
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, c, p) = (f.next()?, f.next()?, f.next()?);
                c.split(',').any(|c| c == "memory").then(|| p.to_owned())
            })
            .expect("a v1 memory controller (see REFERENCE.md: /sys/fs/cgroup/memory)");
        let path = Path::new(V1_MEMORY)
            .join(own.trim_start_matches('/'))
            .join(format!("jemsafe-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).expect("mkdir a memory cgroup (root needed)");
        std::fs::write(path.join("memory.limit_in_bytes"), limit_bytes.to_string())
            .expect("set memory.limit_in_bytes");
        MemCgroup { path }
    }

    /// A group inside this one, with a limit of its own (dropped before this one: declare
    /// it after).
    pub fn child(&self, tag: &str, limit_bytes: u64) -> MemCgroup {
        let path = self.path.join(tag);
        std::fs::create_dir(&path).expect("mkdir a memory cgroup (root needed)");
        std::fs::write(path.join("memory.limit_in_bytes"), limit_bytes.to_string())
            .expect("set memory.limit_in_bytes");
        MemCgroup { path }
    }

    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.path.join("memory.oom_control"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap()
    }

    /// `jemsafe ARGS` started inside the group (it enters the group, then execs jemsafe).
    pub fn jemsafe(&self, args: &[&str]) -> Running {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.path.join("cgroup.procs"))
            .arg(jemsafe_bin())
            .args(args);
        Running::start_command(cmd, |_| {})
    }

    fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Only what this test started is in the group.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.procs().is_empty() && Instant::now() < deadline {
            for pid in self.procs() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// tests/udf/jemsafe_test_udf.c built with gcc into `dir`/plugins (readable by mysqld's
/// user); the directory for mysqld's `--plugin-dir`.
pub fn udf_plugin_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
    let so = plugins.join("jemsafe_test_udf.so");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/udf/jemsafe_test_udf.c");
    let out = Command::new("gcc")
        .args([
            "-shared", "-fPIC", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&so)
        .arg(&source)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
    plugins
}

/// The UDF's functions, created in a running server.
pub const UDF_FUNCTIONS: &[&str] = &["jemsafe_alloc_mb", "jemsafe_free_mb", "jemsafe_leak_kb"];

pub fn create_udf_functions(socket: &Path) {
    for f in UDF_FUNCTIONS {
        super::sql(
            socket,
            &format!("CREATE OR REPLACE FUNCTION {f} RETURNS INTEGER SONAME 'jemsafe_test_udf.so'"),
        );
    }
}

/// Like `sql`, but a failure (mysqld killed under the query) is returned, not a panic.
pub fn try_sql(socket: &Path, query: &str) -> Result<String, String> {
    try_client(&[&format!("--socket={}", socket.display())], query)
}

/// `query` with the mariadb client as root, connected as `connect` says (a socket, a
/// host and port); its output, or its error message.
pub fn try_client(connect: &[&str], query: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(connect)
        .args(["-uroot", "--batch", "--skip-column-names", "-e", query])
        .output()
        .expect("run the mariadb client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A MariaDB sandbox whose datadir exists (one `jemsafe sandbox` run, stopped when it was
/// ready), and a config for `jemsafe run` that is the sandbox's with `extra` appended.
pub fn prepared_sandbox(tag: &str, extra: &str) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut js = Running::start(&["sandbox", dir.path().to_str().unwrap()]);
    js.wait_started(1, Duration::from_secs(180));
    js.err
        .wait_for("ready for connections", Duration::from_secs(180));
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(Duration::from_secs(60)), 0);
    let base = std::fs::read_to_string(dir.join("jemsafe.toml")).unwrap();
    let config = dir.join("moment.toml");
    std::fs::write(&config, format!("{base}\n{extra}")).unwrap();
    (dir, config)
}

/// `jemsafe run -c config -p profile` of a [`prepared_sandbox`], its mysqld loading the
/// project's test UDF; returns once the server is ready and the UDF functions exist, with
/// the server's socket.
pub fn run_with_udf(dir: &TempDir, config: &Path, profile: &str) -> (Running, PathBuf) {
    let plugins = udf_plugin_dir(dir.path());
    let mut js = Running::start(&[
        "run",
        "-c",
        config.to_str().unwrap(),
        "-p",
        profile,
        "--",
        &format!("--plugin-dir={}", plugins.display()),
    ]);
    js.wait_started(1, Duration::from_secs(180));
    js.err
        .wait_for("ready for connections", Duration::from_secs(180));
    let socket = dir.join("mysqld/mysqld.sock");
    create_udf_functions(&socket);
    (js, socket)
}

/// RSS of `pid` in bytes, from /proc/PID/statm.
pub fn rss_of(pid: i32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
