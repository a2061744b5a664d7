//! Issue 23, the OOM handling of a supervisor whose dump directory mysqld's user can
//! write (items 7, 10 and 11.1): real v1 memory cgroups, real OOM kills of the workload
//! program (it maps and touches memory on SIGHUP), the real kernel log. Each test fails
//! on the code before its fix.

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const T: Duration = Duration::from_secs(30);
/// The group's limit: the workload holds 8 MiB, and maps 256 MiB on SIGHUP.
const LIMIT: u64 = 96 << 20;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A workload config that restarts at once after each kill and never gives up.
fn loop_config(dir: &TempDir) -> PathBuf {
    workload_config(
        dir,
        "leak",
        &["--alloc-mb", "8", "--mmap-on-hup", "256"],
        "restart_delay_ms = 0\nrestart_delay_max_ms = 0\nmax_restarts = 1000\n",
    )
}

/// Waits for the `n`-th start of mysqld and for it to be ready for signals; its pid.
fn ready(js: &mut Running, n: usize) -> i32 {
    let pid = js.wait_started(n, T);
    js.out.wait_for(&format!("ready pid={pid} "), T);
    pid
}

/// jemsafe with `config` in a memory cgroup of its own (`tag`, [`LIMIT`]), once its first
/// mysqld is ready; that mysqld's pid. (Bound in this order, jemsafe is dropped before
/// the group.)
fn start_in_group(tag: &str, config: &Path) -> (MemCgroup, Running, i32) {
    let cg = MemCgroup::create(tag, LIMIT);
    let mut js = cg.jemsafe(&["run", "-c", config.to_str().unwrap()]);
    let pid = ready(&mut js, 1);
    (cg, js, pid)
}

/// Makes mysqld `pid` grow past the group's limit; the kernel's OOM killer ends it and
/// jemsafe explains it: the incident record's path.
fn oom_kill(js: &mut Running, cg: &MemCgroup, pid: i32) -> PathBuf {
    let kills = cg.oom_kills();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    let line = js.err.wait_for(
        &format!("mysqld pid {pid} was killed by the kernel's OOM killer"),
        T,
    );
    assert_eq!(cg.oom_kills(), kills + 1, "{line}");
    PathBuf::from(
        line.split("incident record ")
            .nth(1)
            .unwrap_or_else(|| panic!("no incident record: {line}"))
            .trim(),
    )
}

fn incident_records(dir: &Path) -> Vec<String> {
    files_ending(dir, ".oom.json")
}

/// The UTC stamp jemsafe puts in names, `secs` from now.
fn stamp_in(secs: u64) -> String {
    let t = SystemTime::now() + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | 'Z'))
        .collect()
}

/// Item 7: an OOM kill in mysqld's group that the kernel log gives to another process
/// (a render child, here a hog with oom_score_adj 1000), then `kill -9` of mysqld within
/// the settling time. Before: "killed by SIGKILL (the kernel's OOM killer)", an incident
/// record, `last_exit_oom_killed`. Now: "killed by SIGKILL, not by the OOM killer (the
/// kernel's OOM kill in this group at … was pid N (workload); …)", and no record.
#[test]
fn an_oom_kill_of_another_process_in_the_group_is_not_blamed_on_mysqld() {
    if !root() {
        eprintln!("skipped: needs root (memory cgroups, /dev/kmsg)");
        return;
    }
    let dir = TempDir::new("oom-other");
    let config = loop_config(&dir);
    let (cg, mut js, pid) = start_in_group("oom-other", &config);

    // Another process in mysqld's group is chosen by the OOM killer.
    let mut hog = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo $$ > \"$0\" && echo 1000 > /proc/self/oom_score_adj && exec \"$@\"")
        .arg(cg.path.join("cgroup.procs"))
        .arg(workload())
        .args(["--alloc-mb", "512"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let hog_pid = hog.id() as i32;
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(status) = hog.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the hog was never OOM-killed");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(cg.oom_kills(), 1);

    // At once (well within the 10 s settling time): an admin's kill -9.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let line = js
        .err
        .wait_for(&format!("mysqld pid {pid} was killed by SIGKILL"), T);
    assert!(
        line.contains(
            "was killed by SIGKILL, not by the OOM killer (the kernel's OOM kill in this group at "
        ) && line.contains(&format!(" was pid {hog_pid} (workload); ")),
        "{line}"
    );
    assert!(!line.contains("(the kernel's OOM killer)"), "{line}");
    ready(&mut js, 2);
    let log = js.err.drain(Duration::from_millis(300)).join("\n");
    assert!(
        !log.contains("was killed by the kernel's OOM killer"),
        "{log}"
    );
    assert!(incident_records(&dir.join("dumps")).is_empty());
    let status = cli(&["status", "-c", config.to_str().unwrap(), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["last_exit_oom_killed"], false, "{status}");
}

/// Items 11.1 and 10 (names): an OOM loop over a dump directory that already holds more
/// incident records than the cap, one of the loop's names taken in advance by mysqld's
/// user. Before: the records stayed above the cap at start and grew by one a kill (no dump
/// was deleted, so incident retention never ran), and the taken name made the record
/// fail ("cannot create … File exists"). Now: the cap holds at start and after each kill,
/// and the taken name gets a random suffix, said in a warning.
#[test]
fn an_oom_loop_keeps_incident_records_within_their_cap() {
    if !root() {
        eprintln!("skipped: needs root (memory cgroups)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("oom-loop");
    let config = loop_config(&dir);
    let dumps = dir.join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    // An earlier loop's records, an hour old: 5 above the cap.
    let seeded = jemsafe::watch::oom::MAX_INCIDENTS + 5;
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..seeded {
        let path = dumps.join(format!("mysqld.{}.20261126T1{:05}.oom.json", 10 + i, i));
        std::fs::write(&path, "{}\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    assert_eq!(incident_records(&dumps).len(), seeded);

    let (cg, mut js, mut pid) = start_in_group("oom-loop", &config);
    assert_eq!(
        incident_records(&dumps).len(),
        jemsafe::watch::oom::MAX_INCIDENTS,
        "retention at start"
    );
    // mysqld's user takes the names the first kill's record could have.
    let taken: Vec<PathBuf> = (0..4)
        .map(|s| dumps.join(format!("mysqld.{pid}.{}.oom.json", stamp_in(s))))
        .collect();
    for path in &taken {
        std::fs::write(path, "planted\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let mut written = Vec::new();
    for n in 1..=3 {
        let record = oom_kill(&mut js, &cg, pid);
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        assert_eq!(body["pid"], pid);
        written.push(record);
        pid = ready(&mut js, n + 1);
        let names = incident_records(&dumps);
        assert!(
            names.len() <= jemsafe::watch::oom::MAX_INCIDENTS,
            "{} records after kill {n}",
            names.len()
        );
        for w in &written {
            assert!(w.is_file(), "a new record was retired: {}", w.display());
        }
    }
    let first = written[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        !taken.iter().any(|t| t.ends_with(&first))
            && first.len() == taken[0].file_name().unwrap().len() + 17,
        "the first record took a unique name: {first}"
    );
    let log = js.err.drain(Duration::from_millis(300)).join("\n");
    assert!(
        log.contains("already existed, not written by jemsafe") && log.contains(&first),
        "{log}"
    );
    // The planted files were not written through.
    for path in &taken {
        if path.exists() {
            assert_eq!(std::fs::read_to_string(path).unwrap(), "planted\n");
        }
    }
}

/// Item 10 (sidecars): the incident record reads the RSS from the newest dumps' sidecars
/// only, each within a bound. Six dumps of the killed mysqld, the newest with a 2 MiB
/// sidecar. Before: every sidecar of up to 16 MiB was read (50 at most), the big one
/// included. Now: the newest four, within 1 MiB each; the big one and the older two are
/// recorded without RSS.
#[test]
fn an_oom_kill_reads_the_newest_sidecars_only_within_a_bound() {
    if !root() {
        eprintln!("skipped: needs root (memory cgroups)");
        return;
    }
    let dir = TempDir::new("oom-sidecars");
    let config = loop_config(&dir);
    let dumps = dir.join("dumps");
    let (cg, mut js, pid) = start_in_group("oom-sidecars", &config);
    js.err.wait_for("verif", T);
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let sidecar = std::fs::read(real.with_extension("heap.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&sidecar).unwrap();
    assert!(v["memory"].is_object(), "a snapshot to read: {v}");
    // Five more dumps of this mysqld, newer than the real one (later sequence numbers).
    let name = real.file_name().unwrap().to_str().unwrap().to_owned();
    let heap = std::fs::read(&real).unwrap();
    for seq in 2..=6u32 {
        let copy = name.replacen(".0001.", &format!(".{seq:04}."), 1);
        assert_ne!(copy, name);
        std::fs::write(dumps.join(&copy), &heap).unwrap();
        let mut side = sidecar.clone();
        if seq == 6 {
            side.extend(vec![b' '; 2 << 20]);
        }
        std::fs::write(dumps.join(format!("{copy}.json")), side).unwrap();
    }

    let record = oom_kill(&mut js, &cg, pid);
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let recorded = body["dumps"].as_array().unwrap();
    assert_eq!(recorded.len(), 6, "{body}");
    let with_rss: Vec<bool> = recorded.iter().map(|d| d["rss"].is_u64()).collect();
    assert_eq!(
        with_rss,
        [false, true, true, true, false, false],
        "newest first; the 2 MiB sidecar and those past the newest four unread: {body}"
    );
    assert!(recorded[0]["file"].as_str().unwrap().contains(".0006."));
}
