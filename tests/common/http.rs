//! `[http]` in tests: the bearer token file /debug/pprof/* needs, requests that keep the
//! response head, and `jemsafe run`'s own footprint (RSS, mappings).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TOKEN: &str = "s3cret-token";

/// `dir`/token, root's and 0600, holding [`TOKEN`]; the config lines that name it.
pub fn token_file(dir: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let line = format!("token_file = {:?}\n", path.display().to_string());
    (path, line)
}

/// A config for the workload (`profile`, `args`) with `[http]` on a free loopback port,
/// the token file in `dir` and `extra` in [http]; `dumps` lines go to [dumps]. Returns
/// it with the address jemsafe will serve on.
pub fn http_workload_config(
    dir: &super::TempDir,
    profile: &str,
    args: &[&str],
    extra: &str,
    dumps: &str,
) -> (PathBuf, SocketAddr) {
    let port = super::free_port();
    let (_, token) = token_file(dir.path());
    let config = super::workload_config(
        dir,
        profile,
        args,
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{token}{extra}"),
    );
    super::add_to_section(&config, "[dumps]", dumps);
    (config, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Waits (bounded) until `js` serves HTTP, has verified its mysqld and says it is ready.
pub fn wait_serving(js: &mut super::Running) {
    let started = Duration::from_secs(60);
    js.err.wait_for("HTTP server on", started);
    js.wait_verified(started);
    js.out.wait_for("ready pid=", started);
}

/// jemsafe running the workload (`leak`, 8 MiB) of [`http_workload_config`], once it
/// serves; with its config and address.
pub fn workload_with_http(
    dir: &super::TempDir,
    extra: &str,
    dumps: &str,
) -> (super::Running, PathBuf, SocketAddr) {
    let (config, addr) = http_workload_config(dir, "leak", &["--alloc-mb", "8"], extra, dumps);
    let mut js = super::Running::start(&["run", "-c", config.to_str().unwrap()]);
    wait_serving(&mut js);
    (js, config, addr)
}

/// The header that carries [`TOKEN`].
pub fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// A response: status, head (lines after the status line), body.
pub struct Reply {
    pub code: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// GET `path` from `addr` with extra `headers`, bounded by `timeout`.
pub fn http_request(addr: SocketAddr, path: &str, headers: &[&str], timeout: Duration) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    Reply {
        code,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Number of mappings of `pid`.
pub fn mappings(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .count()
}

/// Threads of `pid`.
pub fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// A process stopped by [`stop_process`]: SIGCONT when dropped, so that a stopped
/// process never outlives a failed test.
pub struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

/// SIGSTOP to `pid`, and the wait (bounded) until every thread of it is stopped: the
/// kernel stops the group only once a thread of it runs, so on a busy machine another
/// thread (the shim's) may still answer for a while after kill(2) returned. Dropping
/// what it returns resumes the process.
#[must_use = "dropping it resumes the process"]
pub fn stop_process(pid: i32, timeout: Duration) -> Stopped {
    use nix::sys::signal::{kill, Signal};
    let stopped = Stopped(pid);
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let all_stopped = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("read the process's tasks")
            .filter_map(|t| t.ok())
            .all(|t| {
                std::fs::read_to_string(t.path().join("stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
                    .unwrap_or(true) // a thread that ended
            });
        if all_stopped {
            return stopped;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} did not stop within {timeout:?}"
        );
        // No event tells a non-parent that a process stopped: poll /proc briefly.
        std::thread::sleep(Duration::from_millis(5));
    }
}
