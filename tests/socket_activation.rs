//! systemd socket activation passed through to a real MariaDB (Debian 12 enables
//! `mariadb.socket` by default): the test plays systemd, binding 127.0.0.1:PORT itself
//! and starting jemsafe with it as descriptor 3, LISTEN_FDS=1 and LISTEN_PID = jemsafe's.

use crate::common::*;
use nix::sys::signal::Signal;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

const START: Duration = Duration::from_secs(180);
const T: Duration = Duration::from_secs(60);

/// `query` over TCP to 127.0.0.1:port as root, bounded by the client's connect timeout.
fn tcp_sql(port: u16, query: &str) -> Result<String, String> {
    try_client(
        &["-h127.0.0.1", &format!("-P{port}"), "--connect-timeout=10"],
        query,
    )
}

/// Starts `jemsafe ARGS` the way systemd starts a socket-activated service: `socket` as
/// descriptor 3, LISTEN_FDS=1, LISTEN_FDNAMES, and LISTEN_PID naming the process that
/// execs jemsafe; `listen_fds` overrides LISTEN_FDS.
fn activated(args: &[&std::ffi::OsStr], socket: Option<i32>, listen_fds: &str) -> Running {
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(jemsafe_bin())
        .args(args);
    Running::start_command(sh, |cmd| {
        cmd.env("LISTEN_FDS", listen_fds)
            .env("LISTEN_FDNAMES", "mariadb.socket");
        if let Some(raw) = socket {
            // SAFETY: dup2 and fcntl between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if raw == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0);
                    } else if libc::dup2(raw, 3) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    })
}

/// The `nth` mysqld, `pid`, answers on the socket jemsafe was given, named in its
/// environment as sd_listen_fds(3) wants.
fn serves_on_systemds_socket(js: &mut Running, port: u16, pid: i32, nth: usize) {
    js.err.wait_for_nth("ready for connections", nth, START);
    let query = format!("SELECT {nth}");
    assert_eq!(
        tcp_sql(port, &query),
        Ok(nth.to_string()),
        "{:?}",
        js.err.seen
    );
    assert_eq!(env_value(pid, "LISTEN_PID"), Some(pid.to_string()));
    assert_eq!(env_value(pid, "LISTEN_FDS").as_deref(), Some("1"));
    assert_eq!(
        env_value(pid, "LISTEN_FDNAMES").as_deref(),
        Some("mariadb.socket")
    );
}

#[test]
fn mariadbd_serves_on_systemds_socket_across_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("socket-activation");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // systemd's part: the socket is bound and listening before the service starts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let port_arg = port.to_string();
    let mut js = activated(
        &[
            "sandbox".as_ref(),
            dir.join("sb").as_os_str(),
            "--port".as_ref(),
            port_arg.as_ref(),
        ],
        Some(listener.as_raw_fd()),
        "1",
    );
    // From here only jemsafe (and the mysqld it starts) holds the socket.
    drop(listener);
    let first = js.wait_verified(START);
    serves_on_systemds_socket(&mut js, port, first, 1);
    // The same socket goes to the next mysqld.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let second = js.wait_started(2, T);
    serves_on_systemds_socket(&mut js, port, second, 2);
    assert!(
        !js.err
            .seen
            .iter()
            .any(|l| l.contains("Address already in use")),
        "{:?}",
        js.err.seen
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_bad_listen_fds_is_refused_naming_the_variable() {
    let dir = TempDir::new("socket-activation-bad");
    let config = workload_config(&dir, "standby", &[], "");
    let mut js = activated(
        &["run".as_ref(), "-c".as_ref(), config.as_os_str()],
        None,
        "100000",
    );
    let code = js.wait_exit(T);
    let err = js.err.drain(Duration::from_secs(1)).join("\n");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("LISTEN_FDS=\"100000\""), "{err}");
}
