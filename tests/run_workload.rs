//! `jemsafe run` with our workload program standing in for mysqld: the real binary, the
//! real shim, the real Debian libjemalloc.

use crate::common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn verifies_dumps_on_usr1_toggles_on_usr2_and_stops_on_term() {
    let dir = TempDir::new("dump");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "64", "--report-child"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    let verified = js.err.wait_for("verified: mysqld pid", T);
    assert!(
        verified.contains("opt.prof=true prof.active=true"),
        "{verified}"
    );
    js.out.wait_for("ready pid=", T);

    // The allocator and the shim are mapped in the process, and the shim's thread exists.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("libjemalloc.so.2"), "{maps}");
    assert!(maps.contains("libjemsafe_shim.so"), "{maps}");
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect();
    assert!(threads.iter().any(|c| c == "jemsafe-shim"), "{threads:?}");

    // The environment mysqld got: preload order, MALLOC_CONF, MYSQLD_PARENT_PID.
    let preload = env_value(pid, "LD_PRELOAD").unwrap();
    let shim = shim();
    assert_eq!(
        preload,
        format!("{}:{}", libjemalloc().display(), shim.display())
    );
    assert_eq!(
        env_value(pid, "MALLOC_CONF").unwrap(),
        format!(
            "prof:true,prof_active:true,prof_prefix:{}",
            dir.join("dumps/mysqld").display()
        )
    );
    assert_eq!(
        env_value(pid, "MYSQLD_PARENT_PID").unwrap(),
        js.pid().to_string()
    );

    // mysqld's children inherit neither the channel's variable nor its socket.
    js.out.wait_for("child-env=", T);
    let child_env = js
        .out
        .seen
        .iter()
        .find(|l| l.starts_with("child-env="))
        .unwrap();
    assert_eq!(child_env, "child-env=unset");
    let child_sockets: Vec<_> = js
        .out
        .seen
        .iter()
        .filter(|l| l.starts_with("child-fd=socket:"))
        .collect();
    assert!(child_sockets.is_empty(), "{child_sockets:?}");

    // SIGUSR1: a dump with the heap_v2 header, MAPPED_LIBRARIES, and our allocation site.
    js.signal(Signal::SIGUSR1);
    let line = js.err.wait_for("heap dump written: ", T);
    let path = dump_path(&line);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("mysqld.{pid}.")) && name.ends_with(".usr1.heap"),
        "{name}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o007,
        0,
        "heap files are not world-readable: {mode:o}"
    );
    let dir_mode = std::fs::metadata(dir.join("dumps"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o750);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("heap_v2/524288\n"),
        "{}",
        &text[..80.min(text.len())]
    );
    assert!(text.contains("\nMAPPED_LIBRARIES:\n"));
    assert!(
        text.contains("examples/workload"),
        "the dump maps the workload binary"
    );
    let report = jeprof_text(&workload(), &path);
    assert!(report.contains("jemsafe_workload_leak_marker"), "{report}");

    // SIGUSR2 (toggle) twice; the process is the same one throughout.
    js.signal(Signal::SIGUSR2);
    js.err.wait_for("prof.active is now false (was true)", T);
    js.signal(Signal::SIGUSR2);
    js.err.wait_for("prof.active is now true (was false)", T);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!js.out.seen.iter().any(|l| l.contains("terminating")));

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert!(js
        .out
        .drain(Duration::from_secs(2))
        .iter()
        .any(|l| l == "terminating"));
    assert!(
        !dir.join("run/jemsafe.pid").exists(),
        "pid file removed at exit"
    );
}

#[test]
fn exit_status_of_mysqld_becomes_jemsafes() {
    let dir = TempDir::new("exit");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--exit", "7"],
        "restart = \"never\"\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    assert_eq!(js.wait_exit(T), 7);
    assert!(js
        .err
        .seen
        .iter()
        .any(|l| l.contains("exited with status 7")));

    let dir = TempDir::new("killed");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--kill-self", "9"],
        "restart = \"never\"\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    assert_eq!(js.wait_exit(T), 128 + 9);
    assert!(
        js.err
            .seen
            .iter()
            .any(|l| l.contains("was killed by SIGKILL")),
        "{:?}",
        js.err.seen
    );
}

#[test]
fn sigterm_forwarded_and_mysqlds_status_returned() {
    let dir = TempDir::new("term");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--on-term-exit", "3"],
        "",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 3);
    assert!(js
        .err
        .seen
        .iter()
        .any(|l| l.contains("received SIGTERM: sending SIGTERM")));
}

#[test]
fn sigint_stops_mysqld_with_sigterm_and_hup_is_forwarded() {
    let dir = TempDir::new("int");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGHUP);
    js.out.wait_for("reload", T);
    js.signal(Signal::SIGINT);
    assert_eq!(js.wait_exit(T), 0);
    assert!(js
        .err
        .seen
        .iter()
        .any(|l| l.contains("received SIGINT: sending SIGTERM")));
}

#[test]
fn status_16_restarts_mysqld_and_verifies_again() {
    let dir = TempDir::new("restart");
    let marker = dir.join("restarted-once");
    let config = workload_config(
        &dir,
        "standby",
        &[
            "--alloc-mb",
            "1",
            "--restart-once",
            marker.to_str().unwrap(),
        ],
        "",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.err.wait_for(
        "exited with status 16 (restart requested): starting it again",
        T,
    );
    // The second start is verified like the first.
    let pid = js.wait_started(2, T);
    js.err.wait_for(&format!("verified: mysqld pid {pid} "), T);
    js.out.wait_for(&format!("ready pid={pid} "), T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn child_starts_with_default_dispositions_even_if_jemsafe_ignored_signals() {
    let dir = TempDir::new("sigign");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = Running::start_with(&["run", "-c", config.to_str().unwrap()], |cmd| {
        use std::os::unix::process::CommandExt;
        // Like `nohup jemsafe run`: SIGHUP ignored in jemsafe's own parent state.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
    });
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ignored = status.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
    let mask = u64::from_str_radix(ignored.split_whitespace().nth(1).unwrap(), 16).unwrap();
    // Bit 0 is SIGHUP. (The workload, a Rust program, ignores SIGPIPE itself.)
    assert_eq!(mask & 1, 0, "{status}");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn inherited_malloc_conf_is_replaced_and_said_so() {
    let dir = TempDir::new("mconf");
    let config = workload_config(&dir, "off", &["--alloc-mb", "1"], "");
    let mut js = Running::start_with(&["run", "-c", config.to_str().unwrap()], |cmd| {
        cmd.env("MALLOC_CONF", "narenas:1");
    });
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.err.wait_for(
        "MALLOC_CONF=narenas:1 in jemsafe's environment is replaced",
        T,
    );
    assert_eq!(env_value(pid, "MALLOC_CONF").unwrap(), "prof:false");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn dump_with_profiling_off_is_a_clear_error_and_mysqld_keeps_running() {
    let dir = TempDir::new("off");
    let config = workload_config(&dir, "off", &["--alloc-mb", "1"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    js.signal(Signal::SIGUSR1);
    let line = js.err.wait_for("heap dump to ", T);
    assert!(
        line.contains("failed: prof.dump: ENOENT (errno 2): profiling is not enabled"),
        "{line}"
    );
    js.out.wait_for("ready pid=", T);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn second_jemsafe_with_the_same_runtime_dir_is_refused() {
    let dir = TempDir::new("pidfile");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut first = Running::start(&["run", "-c", config.to_str().unwrap()]);
    first.wait_verified(T);
    let mut second = Running::start(&["run", "-c", config.to_str().unwrap()]);
    assert_eq!(second.wait_exit(T), 69);
    let msg = second.err.seen.join("\n");
    assert!(
        msg.contains(&format!("another jemsafe (pid {})", first.pid())),
        "{msg}"
    );
    assert!(!msg.contains("started mysqld"), "{msg}");
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait_exit(T), 0);
}

/// A library that is not jemalloc: libc itself, always present.
fn not_jemalloc() -> String {
    format!("/lib/{}-linux-gnu/libc.so.6", std::env::consts::ARCH)
}

#[test]
fn verify_require_refuses_a_library_that_is_not_jemalloc() {
    let dir = TempDir::new("require");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    add_to_section(
        &config,
        "[jemalloc]",
        &format!("library = {:?}", not_jemalloc()),
    );
    add_to_section(&config, "[supervise]", "verify = \"require\"");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    assert_eq!(js.wait_exit(T), 69);
    let log = js.err.seen.join("\n");
    assert!(
        log.contains("not starting mysqld (verify = \"require\")"),
        "{log}"
    );
    assert!(log.contains("no mallctl symbol in this process"), "{log}");
    assert!(!log.contains("started mysqld"), "{log}");
}

#[test]
fn verify_warn_starts_anyway_and_reports_the_failed_verification() {
    let dir = TempDir::new("warn");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    add_to_section(
        &config,
        "[jemalloc]",
        &format!("library = {:?}", not_jemalloc()),
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    let line = js.err.wait_for("verification FAILED", T);
    assert!(line.contains("verify = \"warn\""), "{line}");
    assert!(line.contains("no usable jemalloc"), "{line}");
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn check_passes_on_a_good_config_and_fails_with_file_and_line_on_a_bad_one() {
    let dir = TempDir::new("check");
    let config = workload_config(&dir, "interval", &[], "");
    let out = std::process::Command::new(jemsafe_bin())
        .args(["check", "-c", config.to_str().unwrap()])
        .env_remove("MALLOC_CONF")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("lg_prof_interval:30"), "{stdout}");
    assert!(stdout.contains("jemalloc 5.3"), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "profile = \"leak\"\n[profiles.x]\nprof = true\nlg_prof_sample = 99\n",
    )
    .unwrap();
    let out = std::process::Command::new(jemsafe_bin())
        .args(["check", "-c", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(bad.to_str().unwrap()) && stderr.contains("line 4"),
        "{stderr}"
    );
    assert!(stderr.contains("0..=63"), "{stderr}");
}

#[test]
fn check_reports_an_option_this_jemalloc_rejects() {
    // `prof_leak_error` needs prof_final: jemalloc 5.3 prints an error and goes on.
    let dir = TempDir::new("reject");
    let config = workload_config(
        &dir,
        "x",
        &[],
        "[profiles.x]\ninherits = \"leak\"\nextra = { prof_leak_error = true }\n",
    );
    let out = std::process::Command::new(jemsafe_bin())
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("the probe printed: <jemalloc>"), "{stdout}");
}

/// `check`'s probe is the process `run` would start: `[mysqld] env` included (it used
/// to be ignored, so a preload from there was never proven).
#[test]
fn check_probes_with_mysqld_env_as_run_launches_it() {
    let dir = TempDir::new("probe-env");
    let marker = dir.join("marker");
    let lib = marker_library(dir.path(), &marker);
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    add_to_section(
        &config,
        "[mysqld]",
        &format!("env = {{ LD_PRELOAD = {:?} }}", lib.display().to_string()),
    );
    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        marker.exists(),
        "the probe did not load [mysqld] env's LD_PRELOAD"
    );
}

#[test]
fn env_prints_shell_quoted_variables() {
    let dir = TempDir::new("env");
    let config = workload_config(&dir, "standby", &[], "");
    let out = std::process::Command::new(jemsafe_bin())
        .args(["env", "-c", config.to_str().unwrap(), "-p", "peak"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        stdout,
        format!(
            "LD_PRELOAD='{}'\nMALLOC_CONF='prof:true,prof_active:true,prof_gdump:true,prof_prefix:{}'\n",
            libjemalloc().display(),
            dir.join("dumps/mysqld").display()
        )
    );
}

/// jemsafe with `args`, `JOURNAL_STREAM` set by a shell to the device:inode of the
/// shell's descriptor `fd` as systemd sets it (2: stderr is "journald's", 1: it is not).
fn with_journal_stream_of(fd: u8, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/{fd}) && exec \"$0\" \"$@\""
        ))
        .arg(jemsafe_bin())
        .args(args);
    cmd
}

#[test]
fn under_journald_lines_carry_priorities_and_no_timestamps() {
    let dir = TempDir::new("journal");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    let mut js = Running::start_command(
        with_journal_stream_of(2, &["run", "-c", config.to_str().unwrap()]),
        |_| {},
    );
    js.err.wait_for("verified:", T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    let ours: Vec<&String> = js.err.seen.iter().filter(|l| l.starts_with('<')).collect();
    assert!(
        ours.iter().any(|l| l.starts_with("<6>started mysqld pid")),
        "{ours:?}"
    );
    assert!(
        !ours.iter().any(|l| l.contains(" jemsafe[")),
        "no timestamps: {ours:?}"
    );

    let out = with_journal_stream_of(2, &["check", "-c", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("<3>cannot read config file /nonexistent.toml"));
}

#[test]
fn an_inherited_journal_stream_naming_another_stream_keeps_timestamps() {
    // A stale value (the service's journal socket, not ours), and a real stream that is
    // not stderr (stdout's pipe).
    let stale = std::process::Command::new(jemsafe_bin())
        .args(["check", "-c", "/nonexistent.toml"])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    let stdout_s = with_journal_stream_of(1, &["check", "-c", "/nonexistent.toml"])
        .output()
        .unwrap();
    for out in [stale, stdout_s] {
        let err = String::from_utf8_lossy(&out.stderr);
        let (time, rest) = err.split_once(' ').unwrap_or_default();
        assert!(
            humantime::parse_rfc3339(time).is_ok()
                && rest.starts_with("jemsafe[")
                && rest.contains("] error: cannot read config file /nonexistent.toml"),
            "{err}"
        );
    }
}
