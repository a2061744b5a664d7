//! Dumps remember what they were taken of: `<dump>.json` beside every dump jemsafe
//! writes; reports use it to find the build that was mapped after the file was replaced,
//! and to never pair dumps of two processes that shared a pid.

use crate::common::*;
use jemsafe_report::sidecar::Sidecar;
use nix::sys::signal::Signal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn report(args: &[&std::ffi::OsStr], debug_dirs: &Path) -> (bool, String, String) {
    let out = Command::new(jemsafe_bin())
        .args(["report", "--bytes", "--top", "0"])
        .args(args)
        .env("JEMSAFE_DEBUG_DIRS", debug_dirs)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build_id(path: &Path) -> String {
    use object::Object;
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&data[..]).unwrap();
    let id = file.build_id().unwrap().unwrap();
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn sidecar_of(dump: &Path) -> Sidecar {
    let side = jemsafe_report::sidecar::path_for(dump);
    Sidecar::from_json(&std::fs::read(&side).unwrap()).unwrap()
}

/// Starts the workload (a copy of it at `program`) under jemsafe, takes two dumps.
fn two_dumps(dir: &TempDir, program: &Path) -> (Running, PathBuf, PathBuf) {
    let config = workload_config(dir, "leak", &["--alloc-mb", "16"], "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("{:?}", workload().display().to_string()),
        &format!("{:?}", program.display().to_string()),
    );
    std::fs::write(&config, text).unwrap();
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGUSR1);
    let a = dump_path(&js.err.wait_for_nth("heap dump written: ", 1, T));
    js.signal(Signal::SIGUSR1);
    let b = dump_path(&js.err.wait_for_nth("heap dump written: ", 2, T));
    (js, a, b)
}

#[test]
fn every_dump_has_a_sidecar_and_reports_find_the_replaced_build_by_it() {
    let dir = TempDir::new("sidecar");
    let program = dir.join("workload-copy");
    std::fs::copy(workload(), &program).unwrap();
    let id = build_id(&program);
    let (mut js, a, b) = two_dumps(&dir, &program);
    // <prefix>.<pid>.<UTC>.<seq>.<trigger>.heap
    let pid: u32 = b
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap();

    // What the sidecar holds.
    let s = sidecar_of(&b);
    assert_eq!(s.version, jemsafe_report::sidecar::VERSION);
    assert_eq!(s.trigger.as_deref(), Some("usr1"));
    assert_eq!(s.profile.as_deref(), Some("leak"));
    assert!(
        s.malloc_conf.as_deref().unwrap().contains("prof:true"),
        "{s:?}"
    );
    assert!(s.host.is_some() && s.mysqld_version.is_some(), "{s:?}");
    let je = s.jemalloc.as_ref().unwrap();
    assert!(je.version.as_deref().unwrap().starts_with('5'), "{je:?}");
    assert!(je.lg_prof_sample.is_some(), "{je:?}");
    let p = s.process.as_ref().unwrap();
    assert_eq!(p.pid, pid);
    assert!(p.start_ticks > 0 && p.boot_id.is_some() && p.started_at.is_some());
    let me = s
        .object(program.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not recorded: {s:?}", program.display()));
    assert_eq!(me.build_id.as_deref(), Some(id.as_str()));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&program).unwrap();
    assert_eq!((me.inode, me.size), (Some(meta.ino()), Some(meta.len())));
    assert!(
        s.object(libjemalloc().to_str().unwrap()).is_some()
            || s.objects.iter().any(|o| o.path.contains("libjemalloc"))
    );
    // Private like the dump, and owned like it.
    let side = jemsafe_report::sidecar::path_for(&b);
    let sm = std::fs::metadata(&side).unwrap();
    assert_eq!(sm.mode() & 0o777, 0o640);
    assert_eq!(sm.uid(), std::fs::metadata(&b).unwrap().uid());
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);

    // The upgrade: the program's file is replaced by another build. Its debug
    // information is installed by build-id (here: the old binary itself, which has DWARF).
    let debug = dir.join("debug");
    let by_id = debug.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&by_id).unwrap();
    std::fs::copy(&program, by_id.join(format!("{}.debug", &id[2..]))).unwrap();
    // As dpkg does it: the new file is written beside the old one and renamed over it
    // (so it has another inode: a file removed first may give its inode to the next).
    let new = dir.join("workload-copy.dpkg-new");
    std::fs::copy("/usr/bin/true", &new).unwrap();
    std::fs::rename(&new, &program).unwrap();

    let (ok, text, err) = report(&[b.as_os_str()], &debug);
    assert!(ok, "{err}");
    assert!(
        text.contains("jemsafe_workload_leak_marker"),
        "{text}\n{err}"
    );
    assert!(!text.contains("workload-copy+0x"), "{text}");

    // Without its sidecar the dump reads as before: the replaced file is refused.
    let moved = dir.join("b.json.away");
    std::fs::rename(&side, &moved).unwrap();
    let (ok, text, err) = report(&[b.as_os_str()], &debug);
    assert!(ok, "{err}");
    assert!(
        err.contains("is not the file that was mapped"),
        "{err}\n{text}"
    );
    assert!(!text.contains("jemsafe_workload_leak_marker"), "{text}");
    std::fs::rename(&moved, &side).unwrap();

    // A base of another process that had the same pid (a container's restart) is not
    // "previous", and two such dumps are not compared.
    let (ok, _, err) = report(
        &[b.as_os_str(), "--base".as_ref(), "previous".as_ref()],
        &debug,
    );
    assert!(ok, "{err}");
    let a_side = jemsafe_report::sidecar::path_for(&a);
    let mut other = sidecar_of(&a);
    other.process.as_mut().unwrap().start_ticks += 1;
    std::fs::remove_file(&a_side).unwrap();
    std::fs::write(&a_side, other.to_json()).unwrap();
    let (ok, _, err) = report(
        &[b.as_os_str(), "--base".as_ref(), "previous".as_ref()],
        &debug,
    );
    assert!(!ok && err.contains("no earlier dump of pid"), "{err}");
    let (ok, _, err) = report(&[b.as_os_str(), "--base".as_ref(), a.as_os_str()], &debug);
    assert!(
        !ok && err.contains("two processes that had the same pid"),
        "{err}"
    );
    let out = Command::new(jemsafe_bin())
        .arg("leaks")
        .args([&a, &b])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("two processes that had the same pid"),
        "{err}"
    );
}

#[test]
fn retention_deletes_a_sidecar_with_its_dump() {
    let dir = TempDir::new("sidecar-ret");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "8"], "");
    add_to_section(&config, "[dumps]", "keep = 1");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGUSR1);
    let a = dump_path(&js.err.wait_for_nth("heap dump written: ", 1, T));
    assert!(jemsafe_report::sidecar::path_for(&a).is_file());
    js.signal(Signal::SIGUSR1);
    let b = dump_path(&js.err.wait_for_nth("heap dump written: ", 2, T));
    js.err.wait_for("retention: deleted", T);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert!(!a.exists());
    assert!(!jemsafe_report::sidecar::path_for(&a).exists());
    assert!(jemsafe_report::sidecar::path_for(&b).is_file());
}

/// The table of a text report (from its column header on).
fn table(text: &str) -> String {
    let at = text
        .find("      flat")
        .unwrap_or_else(|| panic!("no table:\n{text}"));
    text[at..].to_owned()
}

#[test]
fn an_archive_reads_the_same_where_none_of_its_binaries_are() {
    let dir = TempDir::new("archive");
    let program = dir.join("workload-copy");
    std::fs::copy(workload(), &program).unwrap();
    let (mut js, a, b) = two_dumps(&dir, &program);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    // Here, with the system's debug files (libc6-dbg is installed by the test setup).
    let system = Path::new("/usr/lib/debug");
    let (ok, here, err) = report(&[b.as_os_str()], system);
    assert!(ok, "{err}");
    assert!(here.contains("jemsafe_workload_leak_marker"), "{here}");

    let archive = dir.join("heap.tar.gz");
    let out = Command::new(jemsafe_bin())
        .args(["archive", "-o"])
        .arg(&archive)
        .args([&a, &b])
        .env("JEMSAFE_DEBUG_DIRS", system)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An existing file is replaced by a new one, never written through
    // (tests/hardening_page.rs has the planted files and links).
    let first = std::fs::metadata(&archive).unwrap().ino();
    let again = Command::new(jemsafe_bin())
        .args(["archive", "-o"])
        .arg(&archive)
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_ne!(std::fs::metadata(&archive).unwrap().ino(), first);

    // "Another machine": the program replaced, no debug files, the dumps gone.
    let new = dir.join("workload-copy.dpkg-new");
    std::fs::copy("/usr/bin/true", &new).unwrap();
    std::fs::rename(&new, &program).unwrap();
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
    let none = dir.join("no-debug");
    std::fs::create_dir_all(&none).unwrap();
    let name = b.file_name().unwrap();
    let (ok, there, err) = report(&["--archive".as_ref(), archive.as_os_str(), name], &none);
    assert!(ok, "{err}");
    assert_eq!(table(&there), table(&here), "{err}");
    // The newest dump by default, and --base previous inside the archive.
    let (ok, newest, err) = report(&["--archive".as_ref(), archive.as_os_str()], &none);
    assert!(ok, "{err}");
    assert_eq!(table(&newest), table(&here));
    let (ok, growth, err) = report(
        &[
            "--archive".as_ref(),
            archive.as_os_str(),
            "--base".as_ref(),
            "previous".as_ref(),
        ],
        &none,
    );
    assert!(ok, "{err}");
    assert!(growth.contains("Base: "), "{growth}");
}

/// jemalloc's own dumps (here: every 2^20 bytes allocated) get their sidecar when inotify
/// sees them, while mysqld still runs.
#[test]
fn jemallocs_interval_dumps_get_a_sidecar_too() {
    let dir = TempDir::new("sidecar-auto");
    let config = workload_config(
        &dir,
        "every-mib",
        &["--alloc-mb", "8"],
        "[profiles.every-mib]\ninherits = \"leak\"\nlg_prof_interval = 20\n",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let dumps = dir.join("dumps");
    let deadline = std::time::Instant::now() + T;
    let side = loop {
        let found = std::fs::read_dir(&dumps).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(".i") && n.ends_with(".heap.json"))
            })
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sidecar of an interval dump in {}",
            dumps.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    let s = Sidecar::from_json(&std::fs::read(&side).unwrap()).unwrap();
    assert_eq!(s.trigger.as_deref(), Some("interval"), "{s:?}");
    assert!(s.process.is_some() && !s.objects.is_empty(), "{s:?}");
}
