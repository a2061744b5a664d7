//! Faults found by the fault campaign on a real MariaDB under load (hardening items 10,
//! 11, 12 and 15), each run here as it happened: with the workload program where it
//! takes the same code path, with MariaDB where only MariaDB shows it. Each test fails
//! on the code before its fix.

use crate::common::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const T: Duration = Duration::from_secs(30);

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sets the modification time of a file or directory (as its owner, or root).
fn set_mtime(path: &Path, when: SystemTime) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// A test directory mysqld's user can reach once the workload has become it.
fn open_dir(tag: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// jemsafe running the workload with `--user=mysql`, which becomes mysql on SIGHUP (as
/// mysqld does early in its start-up); returns once it is ready.
fn start_becoming_mysql(tag: &str) -> (TempDir, std::path::PathBuf, Running) {
    let dir = open_dir(tag);
    let config = workload_config(
        &dir,
        "leak",
        &[
            "--alloc-mb",
            "1",
            "--user=mysql",
            "--become-on-hup",
            "mysql",
        ],
        "",
    );
    add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    (dir, config, js)
}

/// `jemsafe dump`; the path it printed.
fn dump(config: &Path) -> String {
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Item 10: dumps with mtimes a day ahead (a restored backup from another process, and
/// one of the live process's dumps `touch`ed by mysqld's user), keep = 3. Before: they
/// counted as the newest, so each fresh dump of the live mysqld was the oldest file and
/// was deleted a second after it was written; only the touched ones stayed. Now the
/// names' times and the running process order them: the live process's three newest stay.
#[test]
fn future_mtimes_do_not_make_retention_delete_fresh_dumps() {
    let dir = TempDir::new("future");
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let now = SystemTime::now();
    let ahead = now + Duration::from_secs(24 * 3600);
    // Taken an hour ago by a process that is gone, restored with tomorrow's mtime.
    let restored: Vec<String> = (1..=2)
        .map(|seq| {
            let when = now - Duration::from_secs(3600 - seq * 60);
            jemsafe::dumpdir::on_demand_name("mysqld", 1, when, seq, jemsafe::dumpdir::Trigger::Cli)
        })
        .collect();
    for name in &restored {
        std::fs::write(dumps.join(name), "heap_v2/524288\n").unwrap();
        set_mtime(&dumps.join(name), ahead);
    }
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    add_to_section(&config, "[dumps]", "keep = 3\nmin_interval_ms = 0");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);

    let first = dump(&config);
    set_mtime(Path::new(&first), ahead); // mysqld's user: touch -d tomorrow
    let mut fresh = Vec::new();
    for n in 1..=3 {
        fresh.push(file_name(&dump(&config)));
        // One deletion per dump beyond keep = 3, each after its dump is announced.
        js.err.wait_for_nth("retention: deleted", n, T);
    }
    let log = js.err.seen.join("\n");
    for gone in &restored {
        assert!(
            log.contains(&format!("{gone} (more than keep = 3 files)")),
            "{log}"
        );
    }
    // The status request is served after the last dump's inotify events were handled.
    let out = cli(&["status", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(heap_files(&dumps), fresh, "{log}");
    let deleted: Vec<&String> = js
        .err
        .seen
        .iter()
        .filter(|l| l.contains("retention: deleted"))
        .collect();
    assert!(
        fresh
            .iter()
            .all(|f| deleted.iter().all(|l| !l.contains(f.as_str()))),
        "{deleted:?}"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Item 11: a sidecar whose dump was deleted by hand, and partial files left by a killed
/// jemsafe. Before: they stayed forever, across dumps and restarts, and nothing was
/// logged. Now retention removes them once a minute old and says so; young ones, other
/// names, symlinks and directories stay.
#[test]
fn orphan_sidecars_and_partial_files_are_removed_after_a_minute() {
    let dir = TempDir::new("orphans");
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let two_minutes_ago = SystemTime::now() - Duration::from_secs(120);
    let old_sidecar = "mysqld.1.20260101T000000.0001.cli.heap.json";
    let old_partial = ".jemsafe-partial.mysqld.1.20260101T000000.0002.cli.heap";
    let young_partial = ".jemsafe-partial.mysqld.1.20260101T000000.0003.cli.heap";
    let foreign = [
        "notes.json",
        ".jemsafe-partial.notes",
        "mysqld.1.20260101T000000.0004.cli.heap.json.bak",
    ];
    for name in [old_sidecar, old_partial, young_partial]
        .iter()
        .chain(&foreign)
    {
        std::fs::write(dumps.join(name), "{}").unwrap();
        if *name != young_partial {
            set_mtime(&dumps.join(name), two_minutes_ago);
        }
    }
    let link = "mysqld.1.20260101T000000.0005.cli.heap.json";
    std::os::unix::fs::symlink("/etc/hostname", dumps.join(link)).unwrap();
    let subdir = ".jemsafe-partial.mysqld.1.20260101T000000.0006.cli.heap";
    std::fs::create_dir(dumps.join(subdir)).unwrap();
    set_mtime(&dumps.join(subdir), two_minutes_ago);

    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    // At start-up: the two old leftovers, each logged with what it was.
    let line = js.err.wait_for(old_sidecar, T);
    assert!(
        line.contains("retention: deleted") && line.contains("orphan sidecar"),
        "{line}"
    );
    let line = js.err.wait_for(old_partial, T);
    assert!(
        line.contains("retention: deleted") && line.contains("partial file"),
        "{line}"
    );
    for kept in [young_partial, link, subdir].iter().chain(&foreign) {
        assert!(
            dumps.join(kept).symlink_metadata().is_ok(),
            "{kept} was deleted"
        );
    }
    assert!(!dumps.join(old_sidecar).exists() && !dumps.join(old_partial).exists());

    // A dump deleted by hand leaves its sidecar; the next dump's retention, once the
    // sidecar is a minute old, removes it.
    let by_hand = dump(&config);
    let sidecar = format!("{by_hand}.json");
    assert!(Path::new(&sidecar).is_file(), "{sidecar}");
    std::fs::remove_file(&by_hand).unwrap();
    set_mtime(Path::new(&sidecar), two_minutes_ago);
    dump(&config);
    let line = js.err.wait_for(&file_name(&sidecar), T);
    assert!(line.contains("orphan sidecar"), "{line}");
    assert!(!Path::new(&sidecar).exists());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Issue 23 item 11.5: after `kill -9` of jemsafe, the orphan mysqld finished its dump
/// under the partial name (here: a real, whole dump put back under that name, a minute
/// old, without a sidecar, as jemsafe never saw it end). Before: the next start deleted it
/// as "the partial file of a dump that was interrupted". Now it is kept under its final
/// name, private, and logged; a copy cut at a line boundary inside its maps copy (its
/// [vsyscall] line gone) is still deleted, with the reason.
#[test]
fn a_whole_dump_left_under_its_partial_name_is_kept_under_its_final_name() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("partial-whole");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let whole = dump(&config);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);

    let dumps = dir.join("dumps");
    let name = file_name(&whole);
    std::fs::remove_file(format!("{whole}.json")).unwrap();
    let partial = dumps.join(format!(".jemsafe-partial.{name}"));
    std::fs::rename(&whole, &partial).unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bytes = std::fs::read(&partial).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.trim_end().ends_with("[vsyscall]"),
        "this machine's top"
    );
    let cut_at = text.trim_end().rfind('\n').unwrap() + 1;
    let cut_name = name.replacen(".0001.", ".0002.", 1);
    let cut = dumps.join(format!(".jemsafe-partial.{cut_name}"));
    std::fs::write(&cut, &bytes[..cut_at]).unwrap();
    let two_minutes_ago = SystemTime::now() - Duration::from_secs(120);
    set_mtime(&partial, two_minutes_ago);
    set_mtime(&cut, two_minutes_ago);

    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let line = js.err.wait_for(&format!("kept as {name}"), T);
    assert!(line.contains("holds a whole dump"), "{line}");
    let line = js.err.wait_for(&cut_name, T);
    assert!(
        line.contains("retention: deleted") && line.contains("ends at"),
        "{line}"
    );
    let kept = dumps.join(&name);
    assert_eq!(std::fs::read(&kept).unwrap(), bytes);
    assert_eq!(kept.metadata().unwrap().mode() & 0o007, 0, "made private");
    assert!(!partial.exists() && !cut.exists());
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Issue 23 item 11.6: the dump directory removed and re-created by root, mode 0755.
/// Before: the next dump failed with prof.dump's generic "EFAULT … missing or not
/// writable", and `check` said nothing. Now the dump, jemsafe's log and `check` say who
/// must be able to write it (mysqld's user, by name), what it is, and the commands that
/// fix it; done as said, the next dump works.
#[test]
fn a_dump_directory_recreated_by_root_names_mysqlds_user_and_the_fix() {
    if !root() {
        eprintln!("skipped: needs root (a dump directory owned by another user)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let (dir, config, mut js) = start_becoming_mysql("dumpdir-0755");
    js.signal(Signal::SIGHUP); // forwarded: the workload becomes mysql
    js.out.wait_for("became uid=", T);
    dump(&config);

    let dumps = dir.join("dumps");
    std::fs::remove_dir_all(&dumps).unwrap();
    std::fs::create_dir(&dumps).unwrap();
    std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = mysql_user();
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .unwrap()
        .unwrap()
        .name;
    let said = format!(
        "dump directory {d} is not writable by mysqld's user mysql (uid {uid}), who writes the \
         dumps: it is root:root mode 0755; fix: chown mysql:{group} {d} && chmod 0750 {d}",
        d = dumps.display()
    );
    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&said), "{stderr}");
    let line = js.err.wait_for("is not writable by mysqld's user", T);
    assert!(line.contains(&said), "{line}");

    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&said), "{stdout}");

    std::os::unix::fs::chown(&dumps, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o750)).unwrap();
    let path = dump(&config);
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), uid);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Item 12: `jemsafe prof off` against a SIGSTOPped mysqld. Before: it exited 69 "no
/// answer within 5 s", yet after SIGCONT prof.active was false, and nothing was logged.
/// Now the client hears the change was delivered and is not confirmed (exit 75), and
/// jemsafe logs the confirmation when mysqld runs again.
#[test]
fn a_prof_change_to_a_stopped_mysqld_is_unconfirmed_then_logged_when_it_happens() {
    let dir = TempDir::new("profstop");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "1"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let mysqld = js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let cont = stop_process(mysqld, T);

    let asked = Instant::now();
    let out = cli(&["prof", "off", "-c", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        stderr.contains("was delivered to mysqld pid")
            && stderr.contains("not confirmed")
            && stderr.contains("it is stopped"),
        "{stderr}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
    js.err
        .wait_for("deactivate (prof.active = false) was delivered", T);

    drop(cont);
    let line = js.err.wait_for("deactivate: prof.active is now false", T);
    assert!(
        line.contains("confirmed") && line.contains("s late"),
        "{line}"
    );
    let out = cli(&["status", "--json", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jemalloc"]["prof_active"], false, "{v}");
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Item 15, with the workload doing what mysqld does: it starts as root and switches to
/// its --user a moment later (here on SIGHUP). Before: a dump in that moment was written
/// by root and kept, owned root:root. Now it is refused with "still starting" (exit 75),
/// and the dump after the switch belongs to mysql like every other.
#[test]
fn a_dump_before_mysqld_becomes_its_user_is_refused_then_owned_like_every_other() {
    if !root() {
        return;
    }
    let (dir, config, mut js) = start_becoming_mysql("starting");
    let dumps = dir.join("dumps");

    let out = cli(&["dump", "-c", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        stderr.contains("is still starting") && stderr.contains("runs as root"),
        "{stderr}"
    );
    assert_eq!(heap_files(&dumps), Vec::<String>::new());

    js.signal(Signal::SIGHUP); // forwarded: the workload becomes mysql
    js.out.wait_for("became uid=", T);
    let path = dump(&config);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), mysql_user(), "{path}");
    assert_eq!(
        std::fs::metadata(format!("{path}.json")).unwrap().uid(),
        mysql_user().0
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Item 15 on MariaDB, as the campaign met it: dumps asked for from the moment mariadbd
/// is started, while it still runs as root before switching to --user=mysql. Before: the
/// first one was written by root and kept (root:root, 14 KiB). Now every dump written
/// belongs to mysql, and the early ones are refused as "still starting".
#[test]
fn mariadb_dumps_asked_for_during_start_up_belong_to_mysql() {
    if !root() {
        eprintln!("skipped: needs root (a dump directory owned by another user)");
        return;
    }
    let dir = open_dir("mariadb-start");
    let config = dir.join("jemsafe.toml");
    // Make the datadir first, so that the dumps race mariadbd's start-up, not its bootstrap.
    {
        let mut js = Running::start(&["sandbox", dir.path().to_str().unwrap()]);
        js.wait_verified(Duration::from_secs(180));
        js.err
            .wait_for("ready for connections", Duration::from_secs(180));
        js.signal(Signal::SIGTERM);
        assert_eq!(js.wait_exit(T), 0);
    }
    let dumps = dir.join("dumps");
    for name in heap_files(&dumps) {
        std::fs::remove_file(dumps.join(name)).unwrap();
    }
    assert!(config.is_file(), "the sandbox writes {}", config.display());
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_started(1, T);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    let written = loop {
        assert!(
            Instant::now() < deadline,
            "no dump within 60 s: {:?}",
            js.err.seen
        );
        let out = cli(&["dump", "-c", config.to_str().unwrap()]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is still starting"), "{stderr}");
        refused += 1;
    };
    eprintln!("{refused} dumps refused before {written}");
    for name in heap_files(&dumps) {
        let meta = std::fs::metadata(dumps.join(&name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), mysql_user(), "{name}");
    }
    js.err
        .wait_for("ready for connections", Duration::from_secs(120));
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(Duration::from_secs(60)), 0);
}
