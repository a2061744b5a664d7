//! Times, values and timeline files that mysqld's user can plant (issue 23, items 1 to 3
//! and the timeline's part of 11.4), each run as it was found: the real binary on files
//! the way the attacker leaves them, with every run bounded in time (and, where a loop
//! allocated, in memory) so that a regression fails instead of taking the machine.

use crate::common::*;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T: Duration = Duration::from_secs(60);
/// Address space for a command that must render a small file: far above what it needs,
/// far below what the unbounded axis loop reached (24 GB).
const RENDER_AS: u64 = 2 << 30;
/// 9999-12-31T23:59:59Z and one second after, in seconds since the epoch.
const LAST_SECOND_OF_9999: u64 = 253_402_300_799;

/// `jemsafe ARGS`, bounded by `T` and, when given, by an address-space limit.
fn jemsafe(args: &[&str], address_space: Option<u64>) -> Outcome {
    let mut cmd = Command::new(jemsafe_bin());
    cmd.args(args);
    if let Some(limit) = address_space {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    run_bounded(cmd, T)
}

fn assert_no_panic(what: &str, o: &Outcome) {
    assert!(
        o.code == 0 && !o.stderr.contains("panicked"),
        "{what}: exit {}\n{}",
        o.code,
        o.stderr
    );
}

/// Sets `path`'s mtime to `secs` since the epoch (negative: before it), as `touch -d @N`.
fn set_mtime(path: &Path, secs: i64) {
    let when = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// A small whole heap dump (one stack, an empty maps copy).
const DUMP: &str = "heap_v2/524288\n  t*: 1: 4096 [0: 0]\n  t0: 1: 4096 [0: 0]\n@ 0x1\n  \
                    t*: 1: 4096 [0: 0]\n  t0: 1: 4096 [0: 0]\n\nMAPPED_LIBRARIES:\n";

/// A dump of process `pid` in `dumps`, taken a minute ago; its path.
fn dump_of(dumps: &Path, pid: i32, seq: u64) -> std::path::PathBuf {
    let when = SystemTime::now() - Duration::from_secs(60);
    let name =
        jemsafe::dumpdir::on_demand_name("mysqld", pid, when, seq, jemsafe::dumpdir::Trigger::Cli);
    let path = dumps.join(name);
    std::fs::write(&path, DUMP).unwrap();
    path
}

/// A timeline line: a sample of `pid` at `t_ms` with `rss` bytes.
fn sample_line(t_ms: u64, pid: i32, rss: u64) -> String {
    format!("{{\"t\":{t_ms},\"pid\":{pid},\"start\":0,\"rss\":{rss}}}\n")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A config for the workload with the timeline off (nothing rewrites a planted file),
/// its dump directory created.
fn setup(tag: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new(tag);
    let config = workload_config(&dir, "leak", &[], "[timeline]\ninterval_s = 0\n");
    std::fs::create_dir_all(dir.join("dumps")).unwrap();
    (dir, config)
}

/// Item 1: mysqld's user sets its own dump's mtime before 1970 (`touch -d @-86400`), or
/// after 9999 where the file system keeps it (tmpfs). Before: `jemsafe dumps` panicked
/// ("all times should be after the epoch"), exit 101.
#[test]
fn jemsafe_dumps_lists_dumps_with_mtimes_before_1970_and_after_9999() {
    let (dir, config) = setup("times-dumps");
    let _tmpfs = Tmpfs::mount(&dir.join("dumps"), "1m");
    // jemalloc's own names (an interval dump's): no time in the name, the mtime is all.
    let before = dir.join("dumps/mysqld.4242.0.i0.heap");
    let after = dir.join("dumps/mysqld.4242.1.i1.heap");
    std::fs::write(&before, DUMP).unwrap();
    std::fs::write(&after, DUMP).unwrap();
    set_mtime(&before, -86400);
    set_mtime(&after, LAST_SECOND_OF_9999 as i64 + 1);
    let o = jemsafe(&["dumps", "-c", config.to_str().unwrap()], None);
    assert_no_panic("jemsafe dumps", &o);
    let out = o.out();
    for (path, shown) in [
        (&before, "a time before 1970"),
        (&after, "a time after the year 9999"),
    ] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let row = out
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
        assert!(row.starts_with(shown), "{row}");
    }
    assert!(out.contains("2 files"), "{out}");
    // Every other reader of a dump's time: the page (its dump list and chart), a report
    // (text and pprof, whose times are the mtimes), an archive.
    let page = dir.join("page.html");
    let o = jemsafe(
        &[
            "page",
            "-c",
            config.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ],
        Some(RENDER_AS),
    );
    assert_no_panic("jemsafe page", &o);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("1970-01-01 00:00:00 UTC") && html.contains("9999-12-31 23:59:59 UTC"),
        "{html}"
    );
    for dump in [&before, &after] {
        let d = dump.to_str().unwrap();
        for format in ["text", "pprof"] {
            let out = dir.join(&format!("report.{format}"));
            let o = jemsafe(
                &["report", "--format", format, "-o", out.to_str().unwrap(), d],
                Some(RENDER_AS),
            );
            assert_no_panic(&format!("jemsafe report --format {format} {d}"), &o);
        }
    }
    let archive = dir.join("a.tar.gz");
    let o = jemsafe(
        &[
            "archive",
            "-o",
            archive.to_str().unwrap(),
            before.to_str().unwrap(),
            after.to_str().unwrap(),
        ],
        Some(RENDER_AS),
    );
    assert_no_panic("jemsafe archive", &o);
}

/// Item 2: a three-line timeline with one sample of `"rss": 18446744073709551615`.
/// Before: the SVG's axis loop wrapped a u64 and allocated until the kernel killed it
/// (24 GB); here, under a 2 GiB address-space limit, it died of it (exit 101).
#[test]
fn a_timeline_with_an_rss_of_u64_max_renders_in_bounded_memory_in_every_format() {
    let (dir, config) = setup("times-u64");
    let t = now_ms();
    let text = format!(
        "{{\"jemsafe_timeline\":1}}\n{}{}{}",
        sample_line(t - 20_000, 7, 100 << 20),
        sample_line(t - 10_000, 7, u64::MAX),
        sample_line(t, 7, 100 << 20)
    );
    std::fs::write(dir.join("dumps/mysqld.timeline"), text).unwrap();
    let cfg = config.to_str().unwrap();
    for format in ["svg", "text", "csv", "json"] {
        let o = jemsafe(
            &["timeline", "-c", cfg, "--format", format],
            Some(RENDER_AS),
        );
        assert_no_panic(format, &o);
        assert!(
            o.stdout.len() < 256 << 10,
            "{format}: {} bytes",
            o.stdout.len()
        );
        assert!(
            o.out().contains("18446744073709551615") || format != "csv",
            "{}",
            o.out()
        );
    }
}

/// Item 3: one line with `"t": 253402300801000` (a year above 9999) in jemsafe's own
/// timeline. Before: `jemsafe page` and `jemsafe timeline` in text, json and svg
/// panicked (exit 101). Now the line is damage, named, and the outputs carry the marker
/// (item 11.4).
#[test]
fn a_timeline_time_after_9999_is_damage_in_every_format_and_on_the_page() {
    let (dir, config) = setup("times-9999");
    let dumps = dir.join("dumps");
    dump_of(&dumps, 4242, 1);
    let t = now_ms();
    let text = format!(
        "{{\"jemsafe_timeline\":1}}\n{}{}{}",
        sample_line(t - 20_000, 4242, 100 << 20),
        sample_line(253_402_300_801_000, 4242, 120 << 20),
        sample_line(t, 4242, 110 << 20)
    );
    std::fs::write(dumps.join("mysqld.timeline"), text).unwrap();
    let cfg = config.to_str().unwrap();
    let why = "is a time after the year 9999";
    for format in ["text", "csv", "json", "svg"] {
        let o = jemsafe(
            &["timeline", "-c", cfg, "--format", format],
            Some(RENDER_AS),
        );
        assert_no_panic(format, &o);
        assert!(o.stderr.contains(why), "{format}: {}", o.stderr);
        let out = o.out();
        match format {
            "csv" => assert!(
                out.lines()
                    .last()
                    .unwrap()
                    .starts_with("# jemsafe: 1 damaged line skipped, the first line 3 (byte ")
                    && out.contains(why),
                "{out}"
            ),
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["damaged_lines"], 1, "{out}");
                assert_eq!(v["samples"].as_array().unwrap().len(), 2, "{out}");
                assert!(v["damage"]["why"].as_str().unwrap().contains(why), "{out}");
            }
            "svg" => assert!(
                out.contains(">timeline damaged: 1 damaged line skipped"),
                "{out}"
            ),
            _ => assert!(out.contains("110 MiB"), "{out}"),
        }
    }
    let page = dir.join("page.html");
    let o = jemsafe(
        &["page", "-c", cfg, "-o", page.to_str().unwrap()],
        Some(RENDER_AS),
    );
    assert_no_panic("jemsafe page", &o);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(why), "the damage is not named on the page");
    assert!(
        html.contains("From the timeline file"),
        "the timeline is not drawn"
    );
}

/// Item 3: mysqld's user renames a file of its own over `<prefix>.timeline` (fabricated
/// OOM kills, a 1 TiB limit), or hard-links one of root's there. Before: read as
/// jemsafe's record. Now: named as not jemsafe's, and not read.
#[test]
fn a_planted_timeline_is_named_as_not_jemsafes_and_not_read() {
    let (dir, config) = setup("times-planted");
    let dumps = dir.join("dumps");
    dump_of(&dumps, 4242, 1);
    let t = now_ms();
    let forged = format!(
        "{{\"jemsafe_timeline\":1}}\n{}{{\"t\":{t},\"pid\":4242,\"event\":\"exit\",\"how\":\"was \
         killed by SIGKILL (the kernel's OOM killer)\",\"flag\":true}}\n{{\"t\":{},\"pid\":4242,\
         \"start\":0,\"rss\":1,\"limit\":1099511627776}}\n",
        sample_line(t - 20_000, 4242, 100 << 20),
        t - 10_000
    );
    let timeline = dumps.join("mysqld.timeline");
    let (uid, gid) = mysql_user();
    let cfg = config.to_str().unwrap();
    let page = dir.join("page.html");
    for (plant, why) in [("mysql's", "belongs to uid"), ("hard link", "2 hard links")] {
        let _ = std::fs::remove_file(&timeline);
        if plant == "mysql's" {
            std::fs::write(&timeline, &forged).unwrap();
            std::os::unix::fs::chown(&timeline, Some(uid), Some(gid)).unwrap();
        } else {
            let roots = dir.join("roots-file");
            std::fs::write(&roots, &forged).unwrap();
            std::fs::hard_link(&roots, &timeline).unwrap();
        }
        let o = jemsafe(&["timeline", "-c", cfg, "--format", "json"], None);
        assert_ne!(o.code, 0, "{plant}: read: {}", o.out());
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        assert!(
            o.stderr.contains("is not jemsafe's timeline") && o.stderr.contains(why),
            "{plant}: {}",
            o.stderr
        );
        assert!(!o.out().contains("oom_kill"), "{plant}: {}", o.out());
        let o = jemsafe(
            &["page", "-c", cfg, "-o", page.to_str().unwrap()],
            Some(RENDER_AS),
        );
        assert_no_panic(plant, &o);
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(
            html.contains("is not jemsafe&#39;s timeline")
                || html.contains("is not jemsafe's timeline"),
            "{plant}: not named on the page"
        );
        assert!(html.contains(why), "{plant}: no reason on the page");
        assert!(
            !html.contains("was killed by SIGKILL") && !html.contains("marker oom"),
            "{plant}: the forged OOM kill is shown"
        );
        assert!(
            !html.contains("1024.0 GiB") && !html.contains("1099511627776"),
            "{plant}: the forged limit is shown"
        );
    }
}

/// The 22nd field of /proc/PID/stat: the process's start, in clock ticks after boot.
fn start_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Item 3, live: `GET /` while the timeline holds a line of the year 10000, then while
/// a planted file is in its place. Before: 500 every time (the page's child panicked).
#[test]
fn the_live_page_survives_a_year_10000_line_and_names_a_planted_timeline() {
    let dir = TempDir::new("times-live");
    let (js, config, addr) = workload_with_http(&dir, "[timeline]\ninterval_s = 0\n", "");
    let pid = js.mysqld_pid.expect("verified");
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let start = start_ticks(pid);
    let t = now_ms();
    let line =
        |t: u64, rss: u64| format!("{{\"t\":{t},\"pid\":{pid},\"start\":{start},\"rss\":{rss}}}\n");
    let timeline = dir.join("dumps/mysqld.timeline");
    std::fs::write(
        &timeline,
        format!(
            "{{\"jemsafe_timeline\":1}}\n{}{}{}",
            line(t - 20_000, 30 << 20),
            line(253_402_300_801_000, 40 << 20),
            line(t - 10_000, 35 << 20)
        ),
    )
    .unwrap();
    let get = || {
        raw_http(
            addr,
            &format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\n{}\r\nConnection: close\r\n\r\n",
                basic("dba", TOKEN)
            ),
        )
    };
    let (code, head, page) = get();
    assert_eq!(code, 200, "{head}\n{page}");
    assert!(
        page.contains("is a time after the year 9999"),
        "damage not named"
    );
    assert!(
        page.contains("From the timeline file"),
        "timeline not drawn"
    );
    // mysqld's user puts a file of its own in its place.
    let (uid, gid) = mysql_user();
    let planted = dir.join("dumps/planted");
    std::fs::write(
        &planted,
        format!("{{\"jemsafe_timeline\":1}}\n{}", line(t, 50 << 20)),
    )
    .unwrap();
    std::os::unix::fs::chown(&planted, Some(uid), Some(gid)).unwrap();
    std::fs::rename(&planted, &timeline).unwrap();
    let (code, head, page) = get();
    assert_eq!(code, 200, "{head}\n{page}");
    assert!(
        page.contains("not jemsafe"),
        "the planted timeline is not named"
    );
    assert!(
        !page.contains("From the timeline file"),
        "the planted timeline was read"
    );
}

/// Item 1, in the supervisor: mysqld's user sets its dump's mtime before 1970, then
/// mysqld is OOM-killed (the workload maps past its cgroup's limit). Before: the root
/// supervisor panicked formatting that mtime for the incident record and exited 101:
/// no record, no restart. Now the record says what the time is, and mysqld restarts.
#[test]
fn an_oom_kill_after_a_dumps_mtime_is_set_before_1970_is_recorded_and_restarted() {
    let dir = TempDir::new("times-oom");
    let config = workload_config(
        &dir,
        "leak",
        &["--alloc-mb", "8", "--mmap-on-hup", "512"],
        "",
    );
    add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    let cg = MemCgroup::create("times-oom", 192 << 20);
    let mut js = cg.jemsafe(&["run", "-c", config.to_str().unwrap()]);
    let pid = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let dump = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    set_mtime(Path::new(&dump), -86400); // mysqld's user: touch -d @-86400
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let line = js.err.wait_for("incident record ", T);
    assert!(!line.contains("no incident record"), "{line}");
    js.wait_started(2, T);
    let record = std::fs::read_dir(dir.join("dumps"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".oom.json"))
        .expect("an incident record");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let dumps = v["dumps"].as_array().unwrap();
    assert_eq!(dumps.len(), 1, "{v}");
    assert_eq!(dumps[0]["time"], "a time before 1970", "{v}");
    assert!(
        Path::new(&dump).ends_with(dumps[0]["file"].as_str().unwrap()),
        "{v}"
    );
}

/// Item 11.4: with `max_mb`, the rewrite that bounds the timeline dropped older good
/// lines without a word. Now it says how many, and why.
#[test]
fn a_timeline_rewrite_over_max_mb_says_what_it_dropped() {
    let dir = TempDir::new("times-rewrite");
    let config = workload_config(
        &dir,
        "leak",
        &["--alloc-mb", "8"],
        "[timeline]\ninterval_s = 1\nmax_mb = 1\n",
    );
    std::fs::create_dir_all(dir.join("dumps")).unwrap();
    // 1.5 MiB of an earlier run's samples, and one damaged line.
    let t = now_ms() - 3_600_000;
    let mut text = String::from("{\"jemsafe_timeline\":1}\n");
    let mut lines = 0u64;
    while text.len() < 3 << 19 {
        text.push_str(&sample_line(t + lines * 1000, 7, 100 << 20));
        lines += 1;
    }
    text.push_str("{\"t\":1,\"pid\"\n");
    std::fs::write(dir.join("dumps/mysqld.timeline"), text).unwrap();
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    let line = js.err.wait_for("rewritten: dropped ", T);
    assert!(
        line.contains("older lines to stay within [timeline] max_mb = 1")
            && line.contains("1 damaged lines")
            && line.contains("mysqld.timeline"),
        "{line}"
    );
    let dropped: u64 = line
        .split("rewritten: dropped ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(
        dropped > lines / 2 && dropped < lines,
        "{dropped} of {lines}: {line}"
    );
}
