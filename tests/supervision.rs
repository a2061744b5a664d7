//! Long-running supervision with the workload program: restart policy, retention, storm
//! control, free-space refusal, growth dumps, and the control socket with its CLI.

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(30);

#[test]
fn a_crashing_mysqld_is_restarted_with_backoff_then_given_up() {
    let dir = TempDir::new("giveup");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--kill-self", "9"],
        "restart = \"on-crash\"\nrestart_delay_ms = 20\nmax_restarts = 2\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let code = js.wait_exit(T);
    let log = js.err.seen.join("\n");
    assert_eq!(code, 128 + 9, "{log}");
    assert_eq!(log.matches("started mysqld pid").count(), 3, "{log}");
    assert!(log.contains("restarting it in 20 ms (restart #1)"), "{log}");
    assert!(log.contains("restarting it in 40 ms (restart #2)"), "{log}");
    assert!(
        log.contains("giving up: mysqld was restarted 2 times within 300 s (max_restarts = 2)"),
        "{log}"
    );
}

#[test]
fn a_stop_signal_during_the_restart_delay_ends_jemsafe_at_once() {
    let dir = TempDir::new("delay");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--kill-self", "9"],
        "restart_delay_ms = 600000\nrestart_delay_max_ms = 600000\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.err.wait_for("restarting it in 600000 ms", T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert!(js
        .err
        .seen
        .iter()
        .any(|l| l.contains("during the restart delay: not restarting")));
    assert_eq!(
        js.err
            .seen
            .iter()
            .filter(|l| l.contains("started mysqld"))
            .count(),
        1
    );
}

#[test]
fn a_signal_storm_gives_one_dump_now_and_one_trailing() {
    let dir = TempDir::new("storm");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "8"], "");
    add_to_section(&config, "[dumps]", "min_interval_ms = 5000");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    // The first request is served at once...
    js.signal(Signal::SIGUSR1);
    js.err.wait_for("heap dump written: ", T);
    // ...199 more within the interval become one trailing dump.
    for _ in 0..199 {
        js.signal(Signal::SIGUSR1);
    }
    js.err.wait_for_nth("heap dump written: ", 2, T);
    // The status request is served after every signal sent above was handled.
    let out = cli(&["status", "--json", "-c", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(heap_files(&dir.join("dumps")).len(), 2, "{:?}", js.err.seen);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    let dumps = js
        .err
        .seen
        .iter()
        .filter(|l| l.contains("heap dump written"))
        .count();
    assert_eq!(dumps, 2);
}

/// Sets a file's modification time `age` in the past.
fn age(path: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(when).unwrap();
}

#[test]
fn retention_by_count_size_and_age_leaves_foreign_files_alone() {
    let dir = TempDir::new("retention");
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    // Five of jemalloc's interval dumps from an earlier mysqld, oldest first...
    for i in 0..5u64 {
        let p = dumps.join(format!("mysqld.100.{i}.i{i}.heap"));
        std::fs::write(&p, vec![b'x'; 1000]).unwrap();
        age(&p, Duration::from_secs(3600 * (10 - i)));
    }
    // ...and what retention must never touch.
    let foreign = [
        "notes.txt",
        "other.100.1.i1.heap",
        "mysqld.100.1.i1.heap.gz",
    ];
    for f in foreign {
        std::fs::write(dumps.join(f), "keep me").unwrap();
        age(&dumps.join(f), Duration::from_secs(3600 * 100));
    }
    std::os::unix::fs::symlink("/etc/hostname", dumps.join("mysqld.100.9.i9.heap")).unwrap();

    let config = workload_config(&dir, "leak", &["--alloc-mb", "8"], "");
    add_to_section(
        &config,
        "[dumps]",
        "keep = 3\nmax_age_h = 9\nmin_interval_ms = 0",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    // At start-up the two oldest go for the count; the 8-hour-old file stays (younger
    // than max_age_h = 9); the symlink and foreign names are not counted.
    let log = js.err.seen.join("\n");
    assert!(
        log.contains("retention: deleted")
            && log.contains("mysqld.100.0.i0.heap (more than keep = 3 files)"),
        "{log}"
    );
    assert_eq!(
        heap_files(&dumps),
        [
            "mysqld.100.2.i2.heap",
            "mysqld.100.3.i3.heap",
            "mysqld.100.4.i4.heap",
            "mysqld.100.9.i9.heap",
            "other.100.1.i1.heap"
        ]
    );
    // A new dump appears: inotify runs retention again, the oldest goes.
    js.signal(Signal::SIGUSR1);
    js.err.wait_for("heap dump written: ", T);
    js.err.wait_for("retention: deleted", T);
    js.err
        .wait_for("mysqld.100.2.i2.heap (more than keep = 3 files)", T);
    for f in foreign {
        assert!(dumps.join(f).exists(), "{f} was deleted");
    }
    assert!(
        dumps
            .join("mysqld.100.9.i9.heap")
            .symlink_metadata()
            .is_ok(),
        "the symlink was deleted"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);

    // By size: two files of 700 KiB against max_total_mb = 1, by age: max_age_h = 1.
    let dir = TempDir::new("retention-size");
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    for (i, hours) in [(0u64, 5u64), (1, 4), (2, 3)] {
        let p = dumps.join(format!("mysqld.7.{i}.i{i}.heap"));
        std::fs::write(&p, vec![b'x'; 700 << 10]).unwrap();
        age(&p, Duration::from_secs(3600 * hours));
    }
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    add_to_section(&config, "[dumps]", "max_total_mb = 1");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let log = js.err.seen.join("\n");
    assert!(log.contains("more than max_total_mb = 1"), "{log}");
    assert_eq!(heap_files(&dumps), ["mysqld.7.2.i2.heap"]);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_nearly_full_dump_filesystem_refuses_dumps_and_mysqld_runs_on() {
    let dir = TempDir::new("tmpfs");
    let dumps = dir.join("dumps");
    let _tmpfs = Tmpfs::mount(&dumps, "512k");

    let config = workload_config(&dir, "leak", &["--alloc-mb", "8"], "");
    add_to_section(&config, "[dumps]", "min_free_mb = 1\nmin_interval_ms = 0");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGUSR1);
    let line = js.err.wait_for("dump refused", T);
    // Below a MiB the figure is in KiB: "only 0 MiB free" hid 508 KiB.
    assert!(
        line.contains(" KiB free") && line.contains("(min_free_mb = 1)"),
        "{line}"
    );
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dump refused"));
    assert!(heap_files(&dumps).is_empty());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    js.signal(Signal::SIGTERM);
    assert_eq!(
        js.wait_exit(T),
        0,
        "mysqld was unaffected and stopped cleanly"
    );
}

#[test]
fn a_failed_write_is_reported_to_the_requester_and_harms_nothing() {
    let dir = TempDir::new("nowrite");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    add_to_section(&config, "[dumps]", "min_free_mb = 0");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    // The filesystem turns read-only under jemsafe's feet: jemalloc cannot create the file.
    let dumps = dir.join("dumps");
    let _tmpfs = Tmpfs::mount(&dumps, "4m");
    Tmpfs::remount(&dumps, "ro");
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("failed: prof.dump:"), "{stderr}");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn growth_beyond_the_step_triggers_a_dump() {
    let dir = TempDir::new("growth");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "32"], "");
    add_to_section(&config, "[dumps]", "on_growth_mb = 16\ngrowth_check_s = 1");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let line = js.err.wait_for("above the last growth dump: dumping", T);
    assert!(line.contains("16 MiB above"), "{line}");
    let written = js.err.wait_for("heap dump written: ", T);
    assert!(written.contains(".growth.heap"), "{written}");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    // One step of growth, one dump: the workload holds its memory and does not grow.
    assert_eq!(heap_files(&dir.join("dumps")).len(), 1);
}

#[test]
fn control_cli_dump_status_prof_and_dumps() {
    let dir = TempDir::new("cli");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "64"], "");
    let c = config.to_str().unwrap();

    let out = cli(&["dump", "-c", c]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no jemsafe is running"), "{stderr}");

    let mut js = Running::start(&["run", "-c", c]);
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);

    let out = cli(&["dump", "-c", c]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        path.ends_with(".cli.heap") && Path::new(&path).is_file(),
        "{path}"
    );

    let out = cli(&["status", "--json", "-c", c]);
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["mysqld_pid"], pid);
    assert_eq!(status["jemsafe_pid"], js.pid());
    assert_eq!(status["profile"], "leak");
    assert_eq!(status["restarts"], 0);
    assert!(status["malloc_conf"]
        .as_str()
        .unwrap()
        .starts_with("prof:true,prof_active:true"));
    assert_eq!(status["verification"]["ok"], true);
    assert!(status["jemalloc"]["version"]
        .as_str()
        .unwrap()
        .starts_with("5."));
    assert_eq!(status["jemalloc"]["opt_prof"], true);
    assert_eq!(status["jemalloc"]["prof_active"], true);
    assert_eq!(status["jemalloc"]["lg_prof_sample"], 19);
    assert!(
        status["stats"]["allocated"].as_u64().unwrap() >= 64 << 20,
        "{status}"
    );
    for k in ["active", "resident", "mapped", "retained"] {
        assert!(status["stats"][k].is_u64(), "{k}: {status}");
    }
    assert_eq!(status["dumps"]["files"], 1);
    assert_eq!(status["last_dump"]["path"], path.as_str());

    let out = cli(&["status", "-c", c]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains(&format!("mysqld      pid {pid}")), "{human}");
    assert!(human.lines().count() <= 12, "fits one screen: {human}");

    let out = cli(&["prof", "off", "-c", c]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "prof.active = false (was true)"
    );
    let out = cli(&["prof", "reset", "--lg-sample", "17", "-c", c]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "prof.reset done; lg_prof_sample = 17"
    );

    let out = cli(&["dumps", "-c", c]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(&format!("{pid}"))
            && listing.contains("cli")
            && listing.contains("1 files"),
        "{listing}"
    );

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert!(
        !dir.join("run/jemsafe.sock").exists(),
        "socket removed at exit"
    );
}

#[test]
fn the_control_socket_refuses_other_users() {
    let dir = TempDir::new("uid");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(jemsafe_bin())
            .args(["dump", "-c", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // The socket's mode keeps nobody out...
    let out = as_nobody();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
    // ...and with the mode opened up, the server's SO_PEERCRED check still refuses.
    let sock = dir.join("run/jemsafe.sock");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused: uid 65534 may not control jemsafe"),
        "{stderr}"
    );
    assert!(heap_files(&dir.join("dumps")).is_empty());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_sigterm_from_elsewhere_followed_by_exit_0_is_a_clean_shutdown() {
    // systemd's KillMode=control-group signals mysqld directly, not through jemsafe.
    let dir = TempDir::new("groupkill");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    assert_eq!(js.wait_exit(T), 0);
    let log = js.err.seen.join("\n");
    assert!(
        log.contains("exited with status 0; jemsafe exits with status 0"),
        "{log}"
    );
    assert!(!log.contains("restarting"), "{log}");
}

#[test]
fn as_pid_1_jemsafe_reaps_orphans() {
    let dir = TempDir::new("pid1");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1", "--spawn-orphan"], "");
    // A PID namespace of its own: jemsafe is PID 1 there, as in a container.
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(jemsafe_bin())
        .args([
            "--log-level",
            "debug",
            "run",
            "-c",
            config.to_str().unwrap(),
        ]);
    let mut js = Running::start_command(cmd, |_| {});
    // Pids in the log are the namespace's, so none is kept for cleanup: killing unshare
    // (--kill-child) tears the whole namespace down.
    js.err.wait_for("verified: mysqld pid", T);
    js.out.wait_for("ready pid=", T);
    let line = js.err.wait_for("reaped orphan process", T);
    assert!(line.contains("debug"), "{line}");
    assert_eq!(
        std::fs::read_to_string(dir.join("run/jemsafe.pid"))
            .unwrap()
            .trim(),
        "1"
    );
    // unshare does not pass SIGTERM on; SIGKILL to it kills jemsafe (--kill-child) and so
    // the whole namespace.
    js.signal(Signal::SIGKILL);
    assert_eq!(js.wait_exit(T), 128 + 9);
}

/// jemsafe with `config`, where the helper at `point` panics (`JEMSAFE_FAULT`, a debug
/// build's test hook: no real input is kept panicking on purpose).
fn with_fault(config: &Path, point: &str) -> Running {
    Running::start_with(&["run", "-c", config.to_str().unwrap()], |c| {
        c.env("JEMSAFE_FAULT", point);
    })
}

#[test]
fn a_panic_recording_mysqlds_end_costs_neither_the_restart_nor_the_supervisor() {
    let dir = TempDir::new("panic-end");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--kill-self", "9"],
        "restart = \"on-crash\"\nrestart_delay_ms = 20\nmax_restarts = 2\n",
    );
    let mut js = with_fault(&config, "record_ending");
    // Before: the first end's panic made jemsafe exit 101, and nothing restarted mysqld.
    let code = js.wait_exit(T);
    let log = js.err.seen.join("\n");
    assert_eq!(code, 128 + 9, "{log}");
    assert_eq!(log.matches("started mysqld pid").count(), 3, "{log}");
    assert_eq!(
        log.matches("internal error (a bug in jemsafe) in thread main at src/supervisor/mod.rs")
            .count(),
        3,
        "{log}"
    );
    assert!(
        log.contains("error: jemsafe abandoned recording mysqld's end after that internal error and carries on"),
        "{log}"
    );
    assert!(log.contains("restarting it in 40 ms (restart #2)"), "{log}");
}

#[test]
fn a_panic_in_an_event_handler_is_contained_and_the_loop_goes_on() {
    let dir = TempDir::new("panic-usr1");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = with_fault(&config, "signal_action");
    let mysqld = js.wait_verified(T);
    js.signal(Signal::SIGUSR1);
    js.err
        .wait_for("jemsafe abandoned signals after that internal error", T);
    // The loop still serves requests, and mysqld is the same process.
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}\n{:?}", js.err.seen);
    assert!(Path::new(&format!("/proc/{mysqld}")).exists());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0, "{:?}", js.err.seen);
}

#[test]
fn a_panic_outside_the_handlers_aborts_so_that_systemd_restarts_jemsafe() {
    let dir = TempDir::new("panic-start");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = with_fault(&config, "start");
    // Restart=on-abnormal restarts after a death by SIGABRT, never after exit status 101.
    let code = js.wait_exit(T);
    let log = js.err.seen.join("\n");
    assert_eq!(code, 128 + 6, "{log}");
    assert!(log.contains("fault injected at start"), "{log}");
    assert!(
        log.contains("outside any contained handler; aborting"),
        "{log}"
    );
}

#[test]
fn a_coalesced_dump_ends_with_its_mysqld_and_its_waiters_hear_so_then() {
    let dir = TempDir::new("trailing-end");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1"],
        "restart_delay_ms = 600000\nrestart_delay_max_ms = 600000\n",
    );
    add_to_section(&config, "[dumps]", "min_interval_ms = 3000");
    let mut js = Running::run_debug(&config);
    let mysqld = js.wait_verified(T);
    js.signal(Signal::SIGUSR1);
    js.err.wait_for("heap dump written: ", T);
    js.signal(Signal::SIGUSR1);
    js.err.wait_for("coalesced into the next dump", T);
    let waiter = dump_in_background(&config);
    js.err.wait_for_nth("coalesced into the next dump", 2, T);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mysqld), Signal::SIGKILL).unwrap();
    js.err.wait_for("restarting it in 600000 ms", T);
    let out = waiter.join().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // Before: the dump was tried 3 s later without a mysqld ("mysqld is not running"),
    // counted as a failure, and the waiter waited for that.
    assert!(!out.status.success());
    assert!(
        said.contains(&format!(
            "mysqld pid {mysqld} exited before the coalesced usr1 dump was taken"
        )),
        "{said}\n{:?}",
        js.err.seen
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    let log = js.err.seen.join("\n");
    assert!(!log.contains("dump not taken"), "{log}");
    assert_eq!(heap_files(&dir.join("dumps")).len(), 1, "{log}");
}

/// jemsafe's event loop's voluntary context switches (its wake-ups) so far.
fn wakeups(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn with_no_trigger_and_no_timeline_nothing_is_scheduled() {
    let dir = TempDir::new("idle-off");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1"],
        "[triggers]\nlimit_percent = []\ncheck_ms = 100\n[timeline]\ninterval_s = 0\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.err.wait_for("no memory check is scheduled", T);
    // Before: a check every check_ms whatever was configured (10 wake-ups a second here).
    let before = wakeups(js.pid());
    std::thread::sleep(Duration::from_secs(2)); // the measurement window, not a wait
    let woke = wakeups(js.pid()) - before;
    assert!(woke <= 1, "{woke} wake-ups in 2 s with nothing scheduled");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn the_timeline_samples_on_its_own_timer_without_checks() {
    let dir = TempDir::new("idle-timeline");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1"],
        "[triggers]\nlimit_percent = []\n[timeline]\ninterval_s = 1\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.err.wait_for("no memory check is scheduled", T);
    let timeline = dir.join("dumps").join("mysqld.timeline");
    let samples = || {
        std::fs::read_to_string(&timeline)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"rss\""))
            .count()
    };
    let deadline = std::time::Instant::now() + T;
    while samples() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100)); // polling a file, bounded
    }
    assert!(samples() >= 3, "{:?}", std::fs::read_to_string(&timeline));
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// jemsafe on the workload with /metrics on a free loopback port (debug log).
fn with_metrics(dir: &TempDir) -> (Running, std::path::PathBuf, std::net::SocketAddr) {
    let (config, addr) = http_workload_config(
        dir,
        "standby",
        &["--alloc-mb", "1"],
        "",
        "min_interval_ms = 0",
    );
    let mut js = Running::run_debug(&config);
    wait_serving(&mut js);
    (js, config, addr)
}

/// The value of the sample `series` (name and labels, as exposed) in /metrics; 0 when
/// absent.
fn metric(addr: std::net::SocketAddr, series: &str) -> f64 {
    let (code, body) = http_get(addr, "/metrics", &[], T);
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_dump_lost_when_mysqld_is_killed_mid_write_is_logged_and_counted() {
    let dir = TempDir::new("dump-lost");
    let (mut js, config, addr) = with_metrics(&dir);
    let mysqld = js.wait_started(1, T);
    let cont = stop_process(mysqld, T);
    let waiter = dump_in_background(&config);
    // Killed once the request is with the shim, unwritten (SIGKILL ends a stopped process;
    // killed before the send, the send fails instead, which is another path).
    js.err.wait_for("dump request ", T);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mysqld), Signal::SIGKILL).unwrap();
    drop(cont);
    assert!(!waiter.join().unwrap().status.success());
    // Before: no line and no count; the loss was silent.
    let line = js.err.wait_for(" lost: mysqld pid ", T);
    assert!(
        line.contains("cli dump ") && line.contains(&format!("mysqld pid {mysqld} exited")),
        "{line}"
    );
    assert_eq!(
        metric(
            addr,
            "jemsafe_dump_failures_total{reason=\"mysqld_exited\"}"
        ),
        1.0
    );
    assert!(heap_files(&dir.join("dumps")).is_empty());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_dump_written_after_its_deadline_counts_once_as_a_dump() {
    let dir = TempDir::new("dump-late");
    let (mut js, config, addr) = with_metrics(&dir);
    let mysqld = js.wait_started(1, T);
    let cont = stop_process(mysqld, T);
    let waiter = dump_in_background(&config);
    // The deadline is 60 s: its waiter hears the dump is late...
    js.err
        .wait_for("no heap dump within 60 s", Duration::from_secs(90));
    assert!(!waiter.join().unwrap().status.success());
    drop(cont);
    // ...and the dump completes when mysqld runs again.
    let line = js.err.wait_for("heap dump written: ", T);
    assert!(line.contains("after its deadline"), "{line}");
    // Before: in both jemsafe_dumps_total and jemsafe_dump_failures_total{timeout}.
    assert_eq!(metric(addr, "jemsafe_dumps_total{trigger=\"cli\"}"), 1.0);
    assert_eq!(
        metric(addr, "jemsafe_dump_failures_total{reason=\"timeout\"}"),
        0.0
    );
    assert_eq!(heap_files(&dir.join("dumps")).len(), 1);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_panic_before_the_restart_decision_still_restarts_mysqld() {
    let dir = TempDir::new("panic-decision");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--kill-self", "9"],
        "restart = \"on-crash\"\nrestart_delay_ms = 20\n",
    );
    let mut js = with_fault(&config, "ending_decision");
    js.err.wait_for_nth("started mysqld pid", 3, T);
    let log = js.err.seen.join("\n");
    assert!(
        log.contains(
            "mysqld's exit was not fully handled (internal error above): restarting it in 20 ms"
        ),
        "{log}"
    );
    js.signal(Signal::SIGTERM);
    // mysqld's own status, as after any stop (it may have died of its SIGKILL or of the
    // SIGTERM passed on), or 0 when the stop came during the restart delay.
    let code = js.wait_exit(T);
    assert!(
        [0, 128 + 9, 128 + 15].contains(&code),
        "{code}: {:?}",
        js.err.seen
    );
}
