//! Servers a test starts and always stops (Prometheus), free ports, a tiny HTTP client,
//! and the MariaDB client.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (the kernel picks it; a race with another binder is
/// possible but unlikely, and shows as a clear bind error).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// GET `path` from `addr` with extra `headers`; (status, body). Bounded by `timeout`.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    timeout: Duration,
) -> (u16, Vec<u8>) {
    let reply = super::http_request(addr, path, headers, timeout);
    (reply.code, reply.body)
}

/// A child process killed (and reaped) when the guard goes, whatever the test did.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Prometheus on 127.0.0.1:`port`, scraping `target` (`host:port`) every second,
/// with its storage under `dir`. `names`: host names it resolves to 127.0.0.1, through an
/// /etc/hosts of its own bind-mounted in a private mount namespace (`unshare -m`), so
/// that it can scrape by a name that is not the listen address without touching the
/// machine's /etc/hosts.
pub fn start_prometheus(
    dir: &std::path::Path,
    port: u16,
    target: &str,
    names: &[&str],
) -> ChildGuard {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: jemsafe\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n127.0.0.1 {}\n", names.join(" ")),
    )
    .unwrap();
    // exec: the guard's kill reaches prometheus itself, not a shell above it.
    let script = "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"";
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&hosts)
        .arg("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prometheus (apt-get install prometheus) under unshare (util-linux)");
    ChildGuard(child)
}

/// Runs `query` with the mariadb client on `socket` as root; its output, trimmed.
pub fn sql(socket: &std::path::Path, query: &str) -> String {
    let out = Command::new("mariadb")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "--batch", "--skip-column-names", "-e", query])
        .output()
        .expect("run the mariadb client (apt-get install mariadb-client)");
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
