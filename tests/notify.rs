//! The sd_notify relay: systemd hears READY=1 from jemsafe's own pid (so NotifyAccess=main
//! works), only after mysqld said it and verification finished.

use crate::common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn ready_comes_from_jemsafes_pid_after_mysqlds_ready_and_verification() {
    let dir = TempDir::new("notify");
    let mut systemd = NotifyListener::bind(dir.join("notify.sock"));
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let path = systemd.path.clone();
    let mut js = Running::start_with(&["run", "-c", config.to_str().unwrap()], |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    let (pid, ready) = systemd.wait_for("READY=1", T);
    assert_eq!(
        pid,
        js.pid(),
        "READY=1 must come from jemsafe itself: {ready}"
    );
    assert!(
        ready.contains("STATUS=workload ready; jemsafe: profile standby, verified"),
        "{ready}"
    );
    let log = js.err.wait_for("told systemd READY=1", T);
    let order: Vec<usize> = [
        "verified: mysqld pid",
        "mysqld reports READY=1",
        "told systemd READY=1",
    ]
    .iter()
    .map(|n| {
        js.err
            .seen
            .iter()
            .position(|l| l.contains(n))
            .unwrap_or(usize::MAX)
    })
    .collect();
    assert!(
        order[0] < order[2] && order[1] < order[2],
        "{log}: {:?}",
        js.err.seen
    );

    js.signal(Signal::SIGTERM);
    let (pid, _) = systemd.wait_for("STOPPING=1", T);
    assert_eq!(pid, js.pid());
    assert_eq!(js.wait_exit(T), 0);
    // Everything systemd heard came from jemsafe's pid, never from mysqld's.
    systemd.assert_all_from(js.pid());
}

#[test]
fn without_notify_socket_mysqld_gets_none() {
    let dir = TempDir::new("nonotify");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    assert_eq!(env_value(pid, "NOTIFY_SOCKET"), None);
    assert!(!js.err.seen.iter().any(|l| l.contains("READY")));
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}
