//! Catching the moment with a real MariaDB in a memory cgroup (v1 on this machine): dumps
//! as mysqld nears its limit, the OOM kill explained, jemalloc's own dumps with memory
//! snapshots, and the memory timeline. Memory is used on request through the project's
//! test UDF (tests/udf/jemsafe_test_udf.c).

use crate::common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const START: Duration = Duration::from_secs(180);
const T: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
const LIMIT: u64 = 512 * MIB;

/// Allocates inside mysqld (1 MiB steps, touched) until its RSS is past `target` bytes.
fn grow_past(socket: &Path, pid: i32, target: u64) {
    let need = target.saturating_sub(rss_of(pid)) / MIB + 4;
    sql(socket, &format!("SELECT jemsafe_alloc_mb({need})"));
    assert!(rss_of(pid) > target, "RSS {} <= {target}", rss_of(pid));
}

fn heap_names(dir: &Path) -> Vec<String> {
    heap_files(dir)
}

fn count_with(names: &[String], needle: &str) -> usize {
    names.iter().filter(|n| n.contains(needle)).count()
}

#[test]
fn a_climb_past_a_512_mib_limit_is_dumped_per_level_and_its_oom_kill_explained() {
    let port = free_port();
    let (dir, config) = prepared_sandbox(
        "moment-levels",
        &format!(
            "[triggers]\nlimit_percent = [80, 90, 95]\ncheck_ms = 200\n\
             [timeline]\ninterval_s = 1\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npprof = false\n"
        ),
    );
    let plugins = udf_plugin_dir(dir.path());
    let cg = MemCgroup::create("levels", LIMIT);
    let mut js = cg.jemsafe(&[
        "run",
        "-c",
        config.to_str().unwrap(),
        "--",
        &format!("--plugin-dir={}", plugins.display()),
    ]);
    let pid = js.wait_started(1, START);
    let limit_line = js.err.wait_for("memory limit 512 MiB", T);
    assert!(
        limit_line.contains(&format!(
            "memory.limit_in_bytes of {} (cgroup v1)",
            cg.path.display()
        )) && limit_line.contains("dump triggers: limit80, limit90, limit95"),
        "{limit_line}"
    );
    js.err.wait_for("ready for connections", START);
    let socket = dir.join("mysqld/mysqld.sock");
    create_udf_functions(&socket);

    let dumps = dir.join("dumps");
    for (n, pct) in [80u64, 90, 95].into_iter().enumerate() {
        grow_past(&socket, pid, LIMIT * pct / 100);
        let line = js.err.wait_for_nth(&format!(".limit{pct}.heap ("), 1, T);
        assert!(line.contains("heap dump written: "), "{line}");
        let path = dump_path(&line);
        let side = jemsafe_report::sidecar::read_for(&path, false)
            .unwrap()
            .expect("sidecar");
        assert_eq!(
            side.trigger.as_deref(),
            Some(format!("limit{pct}").as_str())
        );
        assert!(
            side.memory_snapshot().is_some(),
            "a trigger dump has its snapshot"
        );
        // The reading that fired it, for the chart's marker and `jemsafe dumps`.
        let reason = side.reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("limit{pct}: RSS ")) && reason.ends_with(" of 512 MiB"),
            "{reason:?}"
        );
        let crossing = js
            .err
            .wait_for(&format!("rose past {pct}% of the memory limit 512 MiB"), T);
        assert!(
            crossing.contains(&format!("dumping (trigger limit{pct})")),
            "{crossing}"
        );
        assert_eq!(
            count_with(&heap_names(&dumps), ".limit"),
            n + 1,
            "{:?}",
            heap_names(&dumps)
        );
    }
    // Above 95% and staying there: no level fires again.
    sql(&socket, "SELECT jemsafe_alloc_mb(4)");
    let status = cli(&["status", "-c", config.to_str().unwrap(), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["memory_limit"]["bytes"], LIMIT);
    assert_eq!(status["memory_limit"]["kind"], "cgroup v1");
    let rss = status["rss_at_last_check"].as_u64().unwrap();
    assert!(rss > LIMIT * 95 / 100, "{status}");
    let text = cli(&["status", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("limit       512 MiB from memory.limit_in_bytes of"),
        "{text}"
    );
    let (code, body) = http_get(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "/metrics",
        &[],
        T,
    );
    assert_eq!(code, 200);
    let metrics = String::from_utf8_lossy(&body);
    for pct in [80, 90, 95] {
        let needle = format!("jemsafe_dumps_total{{trigger=\"limit{pct}\"}} 1");
        assert!(metrics.contains(&needle), "{needle} in\n{metrics}");
    }
    let names = heap_names(&dumps);
    for pct in [80, 90, 95] {
        assert_eq!(
            count_with(&names, &format!(".limit{pct}.heap")),
            1,
            "{names:?}"
        );
    }

    // The timeline has a sample near the limit before the kill (one a second).
    let deadline = std::time::Instant::now() + T;
    loop {
        let v = timeline_json(&config);
        let near = v["samples"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["pid"] == pid && s["rss"].as_u64().unwrap_or(0) > LIMIT * 95 / 100)
        });
        if near {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sample above 95%: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Past the limit: the kernel kills mariadbd; jemsafe says so, and why.
    let kills = cg.oom_kills();
    let refused = try_sql(&socket, "SELECT jemsafe_alloc_mb(512)").unwrap_err();
    assert!(
        refused.contains("2013") || refused.contains("lost"),
        "{refused}"
    );
    let line = js.err.wait_for("was killed by the kernel's OOM killer", T);
    assert_eq!(cg.oom_kills(), kills + 1);
    assert!(line.contains(" error: "), "at error priority: {line}");
    for needle in [
        format!("mysqld pid {pid} was killed by the kernel's OOM killer ("),
        format!("{}/memory.oom_control oom_kill 0 -> 1", cg.path.display()),
        format!(
            "memory limit 512 MiB (memory.limit_in_bytes of {}",
            cg.path.display()
        ),
        "RSS at the last check ".to_owned(),
        format!("last dump: mysqld.{pid}."),
        ".limit95.heap, ".to_owned(),
        " s before, RSS then ".to_owned(),
        " of 512 MiB; incident record ".to_owned(),
    ] {
        assert!(line.contains(&needle), "{needle:?} not in {line}");
    }
    let restart = js.err.wait_for("restarting it in", T);
    assert!(
        restart.contains(&format!(
            "mysqld pid {pid} was killed by SIGKILL (the kernel's OOM killer): restarting it in"
        )) && restart.contains("an OOM kill is a crash"),
        "{restart}"
    );
    let incident_path = PathBuf::from(line.split("incident record ").nth(1).unwrap().trim());
    let name = incident_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with(&format!("mysqld.{pid}.")) && name.ends_with(".oom.json"),
        "{name}"
    );
    let incident: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&incident_path).unwrap()).unwrap();
    assert_eq!(incident["kind"], "oom_kill");
    assert_eq!(incident["pid"], pid);
    assert_eq!(incident["limit"]["bytes"], LIMIT);
    assert!(incident["last_check"]["rss"].as_u64().unwrap() > LIMIT * 9 / 10);
    let recorded = incident["dumps"].as_array().unwrap();
    assert_eq!(
        recorded[0]["trigger"], "limit95",
        "newest first: {incident}"
    );
    assert!(recorded.len() >= 3, "{incident}");
    assert!(recorded[0]["rss"].as_u64().unwrap() > LIMIT * 95 / 100);

    let pid2 = js.wait_started(2, START);
    assert_ne!(pid2, pid);
    js.err.wait_for_nth("ready for connections", 2, START);
    assert_eq!(sql(&socket, "SELECT 1"), "1");
    let status = cli(&["status", "-c", config.to_str().unwrap(), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["last_exit_oom_killed"], true, "{status}");
    assert_eq!(status["last_exit_status"], 137);
    let text = cli(&["status", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    if let Ok(keep) = std::env::var("JEMSAFE_TEST_KEEP") {
        let _ = std::fs::write(format!("{keep}/status.txt"), text.as_bytes());
        let _ = std::fs::copy(&incident_path, format!("{keep}/incident.json"));
    }
    assert!(
        text.contains(&format!(
            "last exit: pid {pid} was killed by SIGKILL (the kernel's OOM killer)\n"
        )),
        "{text}"
    );
    let (_, body) = http_get(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "/metrics",
        &[],
        T,
    );
    let metrics = String::from_utf8_lossy(&body);
    assert!(
        metrics.contains("jemsafe_mysqld_oom_kills_total 1"),
        "{metrics}"
    );

    // A plain kill -9 of the new mysqld is not an OOM kill.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid2),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let line = js
        .err
        .wait_for(&format!("mysqld pid {pid2} was killed by SIGKILL"), T);
    assert!(!line.contains("OOM"), "{line}");
    js.wait_started(3, START);
    js.err.wait_for_nth("ready for connections", 3, START);
    let status = cli(&["status", "-c", config.to_str().unwrap(), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["last_exit_oom_killed"], false, "{status}");

    // The timeline of the run: the climb, the dumps, the kill, the restarts; and the
    // jemsafe run that made the sandbox before this one (the file survives restarts).
    let cfg = config.to_str().unwrap();
    let out = cli(&["timeline", "-c", cfg, "--step", "1s"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pct in [80, 90, 95] {
        assert!(
            text.contains(&format!(".limit{pct}.heap (limit{pct})")),
            "limit{pct} in\n{text}"
        );
    }
    let oom = format!("OOM kill: mysqld pid {pid} was killed by SIGKILL (the kernel's OOM killer)");
    let restart = format!("mysqld pid {pid2} started (restart)");
    let (at_oom, at_restart) = (text.find(&oom), text.find(&restart));
    assert!(at_oom.is_some() && at_oom < at_restart, "{text}");
    assert!(
        text.lines()
            .filter(|l| l.ends_with(" started") && l.contains("mysqld pid"))
            .count()
            >= 2,
        "two jemsafe runs in one file:\n{text}"
    );
    let peak: Vec<&str> = text.lines().filter(|l| l.ends_with("<- peak")).collect();
    assert_eq!(peak.len(), 1, "{text}");
    assert!(peak[0].contains(&format!(" {pid} ")), "{}", peak[0]);
    assert!(text.contains("memory limit 512 MiB"), "{text}");

    let out = cli(&[
        "timeline",
        "-c",
        cfg,
        "--format",
        "csv",
        "--pid",
        &pid.to_string(),
    ]);
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut rows = csv.lines();
    let head: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (rss_col, heap_col) = (col("rss"), col("heap_in_use"));
    let rss: Vec<u64> = rows
        .map(|r| r.split(',').nth(rss_col).unwrap().parse().unwrap())
        .collect();
    assert!(rss.len() >= 2, "{csv}");
    assert!(
        rss[0] < LIMIT / 2 && *rss.iter().max().unwrap() > LIMIT * 9 / 10,
        "the climb: {rss:?}"
    );
    assert!(
        csv.lines()
            .skip(1)
            .any(|r| !r.split(',').nth(heap_col).unwrap().is_empty()),
        "parts from the shim: {csv}"
    );

    let out = cli(&["timeline", "-c", cfg, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"oom_kill") && kinds.contains(&"dump"),
        "{kinds:?}"
    );
    assert_eq!(v["peak"]["pid"], pid);

    let svg = dir.join("timeline.svg");
    let out = cli(&[
        "timeline",
        "-c",
        cfg,
        "--format",
        "svg",
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.contains(&format!(">OOM kill: mysqld pid {pid}</text>")),
        "{chart}"
    );
    assert!(chart.contains(".limit95.heap</text>") && chart.contains(">limit 512.0 MiB</text>"));
    let png = dir.join("timeline.png");
    let rendered = std::process::Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(&svg)
        .output()
        .expect("rsvg-convert (apt-get install librsvg2-bin)");
    assert!(
        rendered.status.success(),
        "rsvg-convert: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let png = std::fs::read(&png).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("JEMSAFE_TEST_KEEP") {
        // For the README: the chart and the text of a real run.
        let _ = std::fs::copy(&svg, format!("{keep}/timeline.svg"));
        let _ = std::fs::copy(
            dumps.join("mysqld.timeline"),
            format!("{keep}/mysqld.timeline"),
        );
        let _ = std::fs::write(format!("{keep}/timeline.txt"), &text);
        let _ = std::fs::write(format!("{keep}/jemsafe.log"), js.err.seen.join("\n"));
    }

    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// jemalloc's own interval dumps (here every 2^24 bytes allocated) get a memory snapshot
/// in their sidecar, taken when jemsafe sees the file; `jemsafe memory DUMP` and `leaks`
/// read them like jemsafe's own.
#[test]
fn an_interval_profiles_own_dumps_carry_memory_snapshots() {
    let (dir, config) = prepared_sandbox(
        "moment-interval",
        "[profiles.every16m]\ninherits = \"interval\"\nlg_prof_interval = 24\n\
         [timeline]\ninterval_s = 1\n",
    );
    let (mut js, socket) = run_with_udf(&dir, &config, "every16m");
    // Growth in steps, each seen by the timeline (a sample a second).
    let pid = js.mysqld_pid.unwrap();
    let samples = || {
        let v = timeline_json(&config);
        v["samples"]
            .as_array()
            .map_or(0, |s| s.iter().filter(|s| s["pid"] == pid).count())
    };
    for _ in 0..4 {
        sql(&socket, "SELECT jemsafe_alloc_mb(16)");
        let seen = samples();
        let deadline = std::time::Instant::now() + T;
        while samples() == seen {
            assert!(
                std::time::Instant::now() < deadline,
                "no new timeline sample"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    sql(&socket, "SELECT jemsafe_leak_kb(32768)");
    let dumps = dir.join("dumps");
    // Sidecars of jemalloc's dumps come after a snapshot round trip: wait for one taken
    // after the 64 MiB were allocated.
    let snapshot_of = |side: &Path| {
        let s = jemsafe_report::sidecar::Sidecar::from_json(&std::fs::read(side).ok()?).ok()?;
        assert_eq!(s.trigger.as_deref(), Some("interval"));
        let snap = s
            .memory_snapshot()
            .unwrap_or_else(|| panic!("no memory snapshot in {}", side.display()))
            .unwrap();
        let after = snap.after_close_ms.expect("after_close_ms");
        assert!(after < 5000, "{after} ms");
        assert!(snap.jemalloc.allocated > 0, "{snap:?}");
        Some(snap)
    };
    let deadline = std::time::Instant::now() + T;
    let (sidecars, late) = loop {
        let found: Vec<PathBuf> = heap_names(&dumps)
            .into_iter()
            .filter(|n| n.contains(".i"))
            .map(|n| dumps.join(format!("{n}.json")))
            .filter(|p| p.exists())
            .collect();
        let late = found
            .iter()
            .find(|p| snapshot_of(p).is_some_and(|s| s.proc.rss > 64 * MIB))
            .cloned();
        if let Some(late) = late {
            break (found, late);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no interval dump's sidecar with RSS above 64 MiB in {}: {:?}",
            dumps.display(),
            heap_names(&dumps)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(sidecars.len() >= 3, "{sidecars:?}");
    let dump = late.with_extension("");
    let out = cli(&["memory", dump.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ms after jemalloc closed it):"), "{text}");
    assert!(text.contains("heap in use"), "{text}");
    // Every dump has its sidecar once its snapshot came back.
    let deadline = std::time::Instant::now() + T;
    while heap_names(&dumps)
        .iter()
        .any(|n| !dumps.join(format!("{n}.json")).exists())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            heap_names(&dumps)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = cli(&["leaks", "-c", config.to_str().unwrap(), "--top", "5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("Timeline (mysqld pid {pid}): RSS +"))
            && text.contains("/h since "),
        "{text}"
    );
    assert!(
        text.contains("\nMemory, first dump to last: RSS +"),
        "{text}"
    );
    if let Ok(keep) = std::env::var("JEMSAFE_TEST_KEEP") {
        let _ = std::fs::write(format!("{keep}/leaks.txt"), text.as_bytes());
    }
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// A timeline of `n` samples one second apart (RSS 100, 101, ... MiB), as jemsafe writes it.
fn timeline_text(n: u64) -> String {
    let mut text = String::from("{\"jemsafe_timeline\":1}\n");
    for i in 0..n {
        text.push_str(&format!(
            "{{\"t\":{},\"pid\":42,\"start\":7,\"rss\":{}}}\n",
            1_795_000_000_000u64 + i * 1000,
            (100 + i) * MIB
        ));
    }
    text
}

fn timeline_config(dir: &TempDir) -> PathBuf {
    let config = dir.join("jemsafe.toml");
    std::fs::create_dir_all(dir.join("dumps")).unwrap();
    std::fs::write(
        &config,
        format!(
            "[dumps]\ndir = {:?}\n",
            dir.join("dumps").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// `jemsafe timeline --format csv`, which must succeed.
fn timeline_csv(config: &Path) -> std::process::Output {
    let out = cli(&[
        "timeline",
        "-c",
        config.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert!(out.status.success(), "{out:?}");
    out
}

/// The RSS column of the CSV's rows (its `# jemsafe:` damage trailer is no row).
fn csv_rss(out: &std::process::Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|r| !r.starts_with('#'))
        .map(|r| r.split(',').nth(3).unwrap().parse().unwrap())
        .collect()
}

/// The CSV's damage trailer, when it has one.
fn csv_damage(out: &std::process::Output) -> Option<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("# jemsafe: "))
        .map(str::to_owned)
}

#[test]
fn a_truncated_or_corrupt_timeline_is_read_around_the_damage_with_one_warning() {
    let dir = TempDir::new("moment-damage");
    let config = timeline_config(&dir);
    let path = dir.join("dumps/mysqld.timeline");
    let whole = timeline_text(10);
    // Cut in the middle of the last record (a crash during a write).
    std::fs::write(&path, &whole[..whole.len() - 20]).unwrap();
    let out = timeline_csv(&config);
    assert_eq!(
        csv_rss(&out),
        (100..109).map(|m| m * MIB).collect::<Vec<_>>()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("mysqld.timeline: line 11 (byte") && err.contains("cut short"),
        "{err}"
    );
    let trailer = csv_damage(&out).expect("a damage trailer");
    assert!(
        trailer.starts_with("1 damaged line skipped, the first line 11 (byte "),
        "{trailer}"
    );

    // Garbage in the middle (binary, and a line that is JSON but not a record).
    let mut bytes = timeline_text(5).into_bytes();
    bytes.extend(b"\x00\xff\xfe garbage\n{\"t\":1}\n");
    bytes.extend(
        timeline_text(3)
            .lines()
            .skip(1)
            .flat_map(|l| format!("{l}\n").into_bytes()),
    );
    std::fs::write(&path, &bytes).unwrap();
    let out = timeline_csv(&config);
    assert_eq!(csv_rss(&out).len(), 8);
    assert!(csv_damage(&out).is_some_and(|t| t.starts_with("2 damaged lines skipped")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("line 7 (byte") && err.contains("2 damaged lines in all"),
        "{err}"
    );

    // No timeline at all: the reason, not a panic.
    std::fs::remove_file(&path).unwrap();
    let out = cli(&["timeline", "-c", config.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interval_s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A symlink planted at its name is not followed.
    std::fs::write(dir.join("elsewhere"), timeline_text(3)).unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere"), &path).unwrap();
    let out = cli(&["timeline", "-c", config.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_trigger_keys_and_impossible_levels_are_config_errors_naming_the_key() {
    let dir = TempDir::new("moment-config");
    for (section, key) in [
        (
            "[triggers]\nlimit_percent = [80, 150]\n",
            "`triggers.limit_percent`: 150 is out of range: allowed 1..=100",
        ),
        (
            "[triggers]\nlimit_pct = [90]\n",
            "unknown field `limit_pct`",
        ),
        (
            "[triggers]\npressure = \"some avg10 >= 20\"\n",
            "`triggers.pressure`",
        ),
        ("[timeline]\nmax_mb = 0\n", "max_mb = 0"),
    ] {
        let config = dir.join("bad.toml");
        std::fs::write(&config, section).unwrap();
        let out = cli(&["run", "-c", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{section}: {err}");
        assert!(
            err.contains(key) && err.contains("bad.toml") && err.contains("line 2"),
            "{section}: {err}"
        );
    }
}

/// `jemsafe timeline --format json`, parsed; Null while there is no timeline yet.
fn timeline_json(config: &Path) -> serde_json::Value {
    let out = cli(&[
        "timeline",
        "-c",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}
