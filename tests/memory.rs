//! `jemsafe memory`: mysqld's RSS broken down from jemalloc's own accounting (read through
//! the shim) and the kernel's (/proc), on the workload program and on a real MariaDB.

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const MIB: f64 = 1048576.0;

/// `jemsafe memory --json` of the jemsafe with `config`.
fn memory(config: &Path) -> Value {
    let out = cli(&["memory", "--json", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn field(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

/// The lines add up to RSS, with the residual.
fn assert_adds_up(v: &Value) {
    let lines = [
        "heap_in_use",
        "fragmentation",
        "dirty_pages",
        "metadata",
        "outside_jemalloc",
        "file_backed",
        "shmem",
        "residual",
    ];
    let sum: f64 = lines.iter().map(|k| field(v, k)).sum();
    assert_eq!(sum, field(v, "rss"), "{v}");
}

/// (a) Memory mapped without malloc shows up outside jemalloc, to within 5%.
#[test]
fn mmap_without_malloc_is_outside_jemalloc() {
    let dir = TempDir::new("mem-mmap");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--mmap-on-hup", "64"],
        "",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let before = memory(&config);
    assert_adds_up(&before);
    js.signal(Signal::SIGHUP); // forwarded: the workload maps and touches 64 MiB
    js.out.wait_for("mapped 64 MiB", T);
    let after = memory(&config);
    assert_adds_up(&after);
    let grew = field(&after, "outside_jemalloc") - field(&before, "outside_jemalloc");
    assert!(
        (grew - 64.0 * MIB).abs() <= 0.05 * 64.0 * MIB,
        "outside jemalloc grew by {:.1} MiB, not 64 MiB: {before} -> {after}",
        grew / MIB
    );
    // Human form: every line with its share of RSS.
    let out = cli(&["memory", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("outside jemalloc") && text.contains("% "),
        "{text}"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Every dump jemsafe takes carries a memory snapshot in its sidecar: `jemsafe memory
/// DUMP` shows where the memory was then, and `leaks` opens with which part of RSS grew.
/// A dump without one gets a clear message, never invented numbers; a snapshot of another
/// format version is refused with the reason.
#[test]
fn dumps_remember_where_the_memory_was() {
    let dir = TempDir::new("mem-dump");
    let config = workload_config(
        &dir,
        "leak",
        &["--alloc-mb", "1", "--mmap-on-hup", "64"],
        "",
    );
    add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let c = config.to_str().unwrap();
    let dump = |cfg: &str| {
        let out = cli(&["dump", "-c", cfg]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let first = dump(c);
    js.signal(Signal::SIGHUP);
    js.out.wait_for("mapped 64 MiB", T);
    let last = dump(c);

    let out = cli(&["memory", "--json", &last]);
    assert!(out.status.success(), "{out:?}");
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_adds_up(&m);
    assert!(field(&m, "outside_jemalloc") >= 60.0 * MIB, "{m}");
    // The sidecar's own path names the same snapshot.
    let out = cli(&["memory", "--json", &format!("{last}.json")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), m);

    let out = cli(&["leaks", "-c", c, &first, &last]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.starts_with("Memory, first dump to last: RSS +")
            && text.contains("outside jemalloc +6")
            && text.contains("Most of the growth is not in the heap"),
        "{text}"
    );

    // A dump without a sidecar: the reason, no numbers.
    let bare = dir.join("bare.heap");
    std::fs::copy(&first, &bare).unwrap();
    let out = cli(&["memory", bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no sidecar"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // A snapshot of a format this jemsafe does not read.
    let sidecar = format!("{first}.json");
    let text = std::fs::read_to_string(&sidecar).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["memory"]["version"] = 99.into();
    let future = dir.join("future.heap");
    std::fs::copy(&first, &future).unwrap();
    std::fs::write(format!("{}.json", future.display()), v.to_string()).unwrap();
    let out = cli(&["memory", future.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("format version 99"),
        "{out:?}"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// (b) 200 MiB of 1 KiB objects of which one in 16 survives: the gap between RSS and the
/// heap in use is fragmentation and freed pages, to within 5% of RSS; and the advice
/// names the size class and the knob.
#[test]
fn freed_objects_in_live_slabs_are_fragmentation() {
    let dir = TempDir::new("mem-frag");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--fragment-mb", "200"],
        "",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let m = memory(&config);
    assert_adds_up(&m);
    let rss = field(&m, "rss");
    let gap = rss - field(&m, "heap_in_use");
    let freed = field(&m, "fragmentation") + field(&m, "dirty_pages");
    // 51,200 slabs of 4 KiB cost jemalloc about 9 MiB of metadata (4% of RSS here): the
    // gap is fragmentation and freed pages plus that bookkeeping.
    let explained = freed + field(&m, "metadata");
    assert!(
        freed >= 0.9 * gap && (gap - explained).abs() <= 0.05 * rss,
        "gap {:.1} MiB; fragmentation + dirty {:.1} MiB, with metadata {:.1} MiB; RSS {:.1} MiB: {m}",
        gap / MIB,
        freed / MIB,
        explained / MIB,
        rss / MIB
    );
    let worst = &m["size_classes"][0];
    assert_eq!(worst["size"], 1024, "{m}");
    let out = cli(&["memory", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("advice: fragmentation") && text.contains("narenas"),
        "{text}"
    );
    // `status` shows the same breakdown live.
    let out = cli(&["status", "--json", "-c", config.to_str().unwrap()]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["memory"]["fragmentation"].as_u64().unwrap() > 20 << 20,
        "{status}"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// (c) A real MariaDB with a 256 MiB buffer pool, after a load: the pool is outside
/// jemalloc (mmap), and the heap in use is stats.allocated.
#[test]
fn mariadbs_buffer_pool_is_outside_jemalloc() {
    let tmp = TempDir::new("mem-maria");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.join("sb");
    let mut js = Running::start(&[
        "sandbox",
        dir.to_str().unwrap(),
        "--",
        "--innodb-buffer-pool-size=256M",
    ]);
    let start = Duration::from_secs(180);
    js.wait_verified(start);
    js.err.wait_for("ready for connections", start);
    let socket = dir.join("mysqld/mysqld.sock");
    sql(
        &socket,
        "CREATE DATABASE m; USE m; CREATE TABLE m.t (id INT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=InnoDB; \
         INSERT INTO m.t SELECT seq, REPEAT('x', 1000) FROM seq_1_to_100000;",
    );
    let pages = |name: &str| -> f64 {
        sql(
            &socket,
            &format!("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_{name}'"),
        )
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Innodb_buffer_pool_pages_{name}"))
    };
    let page_size: f64 = sql(&socket, "SELECT @@innodb_page_size")
        .trim()
        .parse()
        .unwrap();
    let touched = (pages("total") - pages("free")) * page_size;
    assert!(
        touched > 64.0 * MIB,
        "the load touched only {touched} bytes"
    );

    let config = dir.join("jemsafe.toml");
    let out = cli(&["status", "--json", "-c", config.to_str().unwrap()]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &status["memory"];
    assert_adds_up(m);
    assert!(
        field(m, "outside_jemalloc") >= touched,
        "outside jemalloc {:.1} MiB < buffer pool pages in use {:.1} MiB: {m}",
        field(m, "outside_jemalloc") / MIB,
        touched / MIB
    );
    assert_eq!(m["heap_in_use"], status["stats"]["allocated"], "{status}");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(start), 0);
}

/// A cgroup v2 group of the test's own (the unified hierarchy of a hybrid layout, or the
/// only one), removed when dropped; None where no v2 hierarchy is mounted.
struct V2Group(std::path::PathBuf);

impl V2Group {
    fn create(tag: &str) -> Option<V2Group> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = mountinfo.lines().find_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            tail.starts_with("cgroup2 ")
                .then(|| head.split(' ').nth(4).map(str::to_owned))
                .flatten()
        })?;
        let path = Path::new(&mount).join(format!("jemsafe-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).ok()?;
        Some(V2Group(path))
    }
}

impl Drop for V2Group {
    fn drop(&mut self) {
        // Empty once jemsafe and mysqld are gone (Running, dropped first, sees to it).
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `args` of jemsafe run from inside `group` (mysqld, its child, is in it too).
fn in_group(group: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"")
        .arg(group)
        .arg(jemsafe_bin())
        .args(args);
    cmd
}

#[test]
fn the_pressure_trigger_reads_mysqlds_own_groups_psi_and_says_which() {
    let dir = TempDir::new("psi-own");
    let config = workload_config(&dir, "standby", &["--alloc-mb", "1"], "");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "[triggers]\npressure = \"some avg10 > 90\"\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let Some(group) = V2Group::create("psi") else {
        eprintln!("no cgroup v2 hierarchy here: nothing to test");
        return;
    };
    let own = format!(
        "read from {}/memory.pressure (mysqld's own cgroup v2 group)",
        group.0.display()
    );
    // `check` run where mysqld will run names the file...
    let out = in_group(&group.0, &["check", "-c", config_arg])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&format!("pressure {own}")), "{text}");
    // ...as do `run` at mysqld's start and `status`. Before: none of them said which.
    let mut js = Running::start_command(in_group(&group.0, &["run", "-c", config_arg]), |_| {});
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let started = js.err.seen.join("\n");
    assert!(started.contains(&format!("pressure {own}")), "{started}");
    let out = cli(&["status", "-c", config_arg]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&format!("pressure    {own}")), "{text}");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);

    // Where the process's v2 group is the root, only the machine's PSI describes it.
    let me = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    if me.lines().any(|l| l == "0::/") {
        let out = cli(&["check", "-c", config_arg]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains(
                "pressure read from /proc/pressure/memory, system-wide (its cgroup v2 group is \
                 the root): pressure anywhere on the machine counts"
            ),
            "{text}"
        );
    }
}

#[test]
fn an_oom_line_says_when_per_hour_refused_the_dumps() {
    let dir = TempDir::new("oom-refused");
    let config = workload_config(
        &dir,
        "standby",
        &["--alloc-mb", "1", "--mmap-on-hup", "40"],
        "restart_delay_ms = 20\n\
         [triggers]\nrss_mb = [20]\nlimit_percent = []\nper_hour = 1\ncheck_ms = 100\n",
    );
    let cg = MemCgroup::create("oom-refused", 80 << 20);
    let mut js = cg.jemsafe(&["run", "-c", config.to_str().unwrap()]);
    // The first mysqld spends the hour's one trigger dump...
    let first = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGHUP); // forwarded: the workload maps and touches 40 MiB more
    js.err.wait_for(".rss20.heap (", T);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    // ...so the second one's crossing is refused, and it has no dump when it is killed.
    js.wait_started(2, T);
    js.out.wait_for_nth("ready pid=", 2, T);
    js.signal(Signal::SIGHUP);
    js.err
        .wait_for("no dump, [triggers] per_hour = 1 reached", T);
    js.signal(Signal::SIGHUP); // 40 MiB more: past the group's 80 MiB
    let line = js.err.wait_for("was killed by the kernel's OOM killer", T);
    // Before: "no dump of this process before it (a [triggers] limit_percent level …)",
    // as if no level had been crossed.
    assert!(
        line.contains("no dump of this process before it: 1 trigger dump refused by per_hour = 1"),
        "{line}"
    );
    assert!(cg.oom_kills() >= 1);
    js.signal(Signal::SIGTERM);
    js.wait_exit(T);
}
