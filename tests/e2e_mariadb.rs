//! End to end with a real MariaDB: `jemsafe sandbox` (the README's quick start path)
//! creates a throwaway datadir, runs mariadbd under jemsafe, and we use it like a DBA.

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;

/// MariaDB's first start includes creating the datadir; CI machines can be slow.
const START: Duration = Duration::from_secs(180);
const T: Duration = Duration::from_secs(60);

/// A directory for a sandbox that mysqld (as the mysql user) can reach: jemsafe leaves
/// the mode of a directory it did not create alone, so the test opens it up.
fn sandbox_dir(tag: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn sandbox_serves_queries_dumps_on_usr1_and_shuts_down_cleanly_on_term() {
    let dir = sandbox_dir("e2e");
    let mut js = Running::start(&["sandbox", dir.path().to_str().unwrap()]);
    // stderr first: if the sandbox fails, its reason is there.
    let pid = js.wait_verified(START);
    let intro = js.out.wait_for("connect:", T);
    assert!(intro.contains("mysqld/mysqld.sock"), "{intro}");
    let verified = js.err.wait_for("verified: mysqld pid", START);
    assert!(
        verified.contains("opt.prof=true prof.active=true"),
        "{verified}"
    );
    js.err.wait_for("ready for connections", START);

    let socket = dir.join("mysqld/mysqld.sock");
    assert_eq!(sql(&socket, "SELECT 1"), "1");
    sql(
        &socket,
        "CREATE DATABASE jemsafe_e2e; USE jemsafe_e2e; \
         CREATE TABLE jemsafe_e2e.t (id INT PRIMARY KEY AUTO_INCREMENT, pad TEXT) ENGINE=InnoDB; \
         INSERT INTO jemsafe_e2e.t (pad) SELECT REPEAT('x', 4000) FROM seq_1_to_2000;",
    );
    let mysqld_pid_file = dir.join("mysqld/mysqld.pid");
    assert_eq!(
        std::fs::read_to_string(&mysqld_pid_file).unwrap().trim(),
        pid.to_string()
    );

    // SIGUSR1 to jemsafe: a heap dump of mariadbd, which keeps serving, same pid.
    js.signal(Signal::SIGUSR1);
    let line = js.err.wait_for("heap dump written: ", T);
    let path = dump_path(&line);
    assert!(path.starts_with(dir.join("dumps")), "{}", path.display());
    if nix::unistd::geteuid().is_root() {
        // mysqld (as mysql) writes the files: the directory is mysql's, 0750.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(dir.join("dumps")).unwrap();
        let mysql = nix::unistd::User::from_name("mysql").unwrap().unwrap();
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o777),
            (mysql.uid.as_raw(), 0o750)
        );
        let dump = std::fs::metadata(&path).unwrap();
        assert_eq!(dump.permissions().mode() & 0o007, 0);
        // Its sidecar belongs to the same user and group, 0640: whoever may read the
        // dump may read what describes it.
        let side = std::fs::metadata(jemsafe_report::sidecar::path_for(&path)).unwrap();
        assert_eq!(
            (side.uid(), side.gid(), side.permissions().mode() & 0o777),
            (dump.uid(), dump.gid(), 0o640)
        );
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("heap_v2/"),
        "{}",
        &text[..60.min(text.len())]
    );
    let mapped = text
        .split("\nMAPPED_LIBRARIES:\n")
        .nth(1)
        .expect("MAPPED_LIBRARIES");
    assert!(
        mapped.contains("/usr/sbin/mariadbd"),
        "the dump names mariadbd"
    );
    assert!(text.lines().filter(|l| l.starts_with("@ 0x")).count() > 5);
    let report = jeprof_text(Path::new("/usr/sbin/mariadbd"), &path);
    assert!(
        report.contains("Total:") && report.contains("my_malloc"),
        "{report}"
    );

    assert_eq!(sql(&socket, "SELECT COUNT(*) FROM jemsafe_e2e.t"), "2000");
    assert_eq!(
        std::fs::read_to_string(&mysqld_pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // MariaDB never saw our SIGUSR1 (it would log "Got signal 10").
    assert!(
        !js.err.seen.iter().any(|l| l.contains("Got signal")),
        "{:?}",
        js.err.seen
    );

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert!(
        js.err.seen.iter().any(|l| l.contains("Shutdown complete")),
        "MariaDB shut down cleanly: {:?}",
        js.err.seen
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_killed_mariadbd_is_restarted_verified_and_answers_again() {
    let dir = sandbox_dir("e2e-kill");
    let mut js = Running::start(&["sandbox", dir.path().to_str().unwrap()]);
    let first = js.wait_verified(START);
    js.err.wait_for("ready for connections", START);
    let socket = dir.join("mysqld/mysqld.sock");
    assert_eq!(sql(&socket, "SELECT 1"), "1");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let line = js.err.wait_for("restarting it in", T);
    assert!(
        line.contains(&format!("mysqld pid {first} was killed by SIGKILL")),
        "{line}"
    );
    let pid = js.wait_started(2, T);
    js.err
        .wait_for(&format!("verified: mysqld pid {pid} "), START);
    js.err.wait_for_nth("ready for connections", 2, START);
    assert_eq!(sql(&socket, "SELECT 2"), "2");

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn a_mariadbd_that_cannot_start_is_given_up_with_a_non_zero_status() {
    let dir = TempDir::new("e2e-bad");
    let mut args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", dir.join("no-such-datadir").display()),
        format!("--socket={}", dir.join("m.sock").display()),
        "--skip-networking".to_owned(),
    ];
    if nix::unistd::geteuid().is_root() {
        args.push("--user=mysql".to_owned());
    }
    let config = dir.join("jemsafe.toml");
    std::fs::write(
        &config,
        format!(
            "profile = \"standby\"\n[mysqld]\npath = \"/usr/sbin/mariadbd\"\nargs = {args:?}\n\
             [jemalloc]\nshim = {:?}\n[dumps]\ndir = {:?}\n[supervise]\nruntime_dir = {:?}\n\
             restart_delay_ms = 10\nmax_restarts = 2\n",
            shim().display().to_string(),
            dir.join("dumps").display().to_string(),
            dir.join("run").display().to_string(),
        ),
    )
    .unwrap();
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let code = js.wait_exit(START);
    let log = js.err.seen.join("\n");
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("giving up: mysqld was restarted 2 times"),
        "{log}"
    );
    assert_eq!(log.matches("started mysqld pid").count(), 3, "{log}");
}

#[test]
fn under_systemd_ready_is_relayed_from_jemsafes_pid_after_mariadbs_own() {
    let dir = sandbox_dir("e2e-notify");
    let mut systemd = NotifyListener::bind(dir.join("notify.sock"));
    let path = systemd.path.clone();
    let mut js = Running::start_with(&["sandbox", dir.join("sb").to_str().unwrap()], |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    js.wait_verified(START);
    let (pid, ready) = systemd.wait_for("READY=1", START);
    assert_eq!(pid, js.pid(), "{ready}");
    // MariaDB (linked with libsystemd) sent its own READY=1 to jemsafe first.
    js.err.wait_for("told systemd READY=1", T);
    let mariadb = js
        .err
        .seen
        .iter()
        .position(|l| l.contains("mysqld reports READY=1"));
    let relayed = js
        .err
        .seen
        .iter()
        .position(|l| l.contains("told systemd READY=1"));
    assert!(mariadb.is_some() && mariadb < relayed, "{:?}", js.err.seen);
    assert!(ready.contains("jemsafe: profile leak, verified"), "{ready}");
    js.signal(Signal::SIGTERM);
    systemd.wait_for("STOPPING=1", T);
    assert_eq!(js.wait_exit(T), 0);
    systemd.assert_all_from(js.pid());
}

/// Fills a MEMORY table with about 200 MB (the engine allocates its blocks with malloc).
const MEMORY_INSERT: &str = "SET SESSION max_heap_table_size = 1073741824; \
     CREATE DATABASE jemsafe_mem; USE jemsafe_mem; \
     CREATE TABLE jemsafe_mem.t (id INT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=MEMORY; \
     INSERT INTO jemsafe_mem.t SELECT seq, REPEAT('m', 1000) FROM seq_1_to_200000;";

/// The functions of the newest dump's report whose cumulative share is at least 50 %:
/// the MEMORY insert's allocation path, by name, sorted.
fn insert_path(config: &Path) -> (String, Vec<String>) {
    let out = cli(&["report", "-c", config.to_str().unwrap(), "--top", "0"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    let mut names = report
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|row| {
            // flat (2 words) flat% sum% cum (2 words) cum% function
            let words: Vec<&str> = row.split_whitespace().collect();
            let cum: f64 = words.get(6)?.strip_suffix('%')?.parse().ok()?;
            (cum >= 50.0).then(|| words[7..].join(" "))
        })
        .collect::<Vec<_>>();
    names.sort();
    (report, names)
}

#[test]
fn under_the_bundled_jemalloc_mariadbd_is_verified_dumps_and_reports_like_under_the_system_one() {
    let started = |tag: &str, extra: &[&str]| {
        let dir = sandbox_dir(tag);
        let mut args = vec!["sandbox", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let js = Running::start(&args);
        (dir, js)
    };
    let (bdir, mut bundled_js) = started("e2e-bundled", &["--library", "bundled"]);
    let (sdir, mut system_js) = started("e2e-system", &[]);

    let pid = bundled_js.wait_verified(START);
    let verified = bundled_js.err.wait_for("verified: mysqld pid", START);
    assert!(
        verified.contains("libjemsafe_jemalloc.so (bundled, the shim inside)")
            && verified.contains("opt.prof=true prof.active=true"),
        "{verified}"
    );
    let started = bundled_js.err.wait_for("started mysqld pid", START);
    assert!(started.contains("_RJEM_MALLOC_CONF=prof:true"), "{started}");
    bundled_js.err.wait_for("ready for connections", START);
    system_js.wait_verified(START);
    system_js.err.wait_for("ready for connections", START);

    // The bundled object is mariadbd's allocator; no system libjemalloc is loaded.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("/libjemsafe_jemalloc.so"), "{maps}");
    assert!(!maps.contains("libjemalloc.so"), "{maps}");
    assert!(!maps.contains("libjemsafe_shim.so"), "{maps}");

    let mut paths = Vec::new();
    for (dir, js) in [(&bdir, &mut bundled_js), (&sdir, &mut system_js)] {
        let socket = dir.join("mysqld/mysqld.sock");
        sql(&socket, MEMORY_INSERT);
        assert_eq!(sql(&socket, "SELECT COUNT(*) FROM jemsafe_mem.t"), "200000");
        js.signal(Signal::SIGUSR1);
        let dump = dump_path(&js.err.wait_for("heap dump written: ", T));
        assert!(dump.starts_with(dir.join("dumps")), "{}", dump.display());
        let config = dir.join("jemsafe.toml");
        let by_object = cli(&["report", "-c", config.to_str().unwrap(), "--by", "object"]);
        let by_object = String::from_utf8_lossy(&by_object.stdout);
        // No memory of mysqld's is attributed to the bundled allocator itself: its frames
        // are dropped (the shim's own start-up allocations may be sampled, at 512 KiB).
        assert!(
            flat_percent(&by_object, "libjemsafe_jemalloc.so") < 5.0,
            "{by_object}"
        );
        paths.push(insert_path(&config));
    }
    let (bundled_report, bundled_names) = &paths[0];
    let (system_report, system_names) = &paths[1];
    println!("the MEMORY insert's path under both: {bundled_names:?}");
    assert!(!bundled_report.contains("_rjem_"), "{bundled_report}");
    assert!(
        bundled_names.iter().any(|n| n == "my_malloc"),
        "{bundled_report}"
    );
    assert_eq!(
        bundled_names, system_names,
        "bundled:\n{bundled_report}\nsystem:\n{system_report}"
    );

    for js in [&mut bundled_js, &mut system_js] {
        js.signal(Signal::SIGTERM);
        assert_eq!(js.wait_exit(T), 0);
        assert!(
            js.err.seen.iter().any(|l| l.contains("Shutdown complete")),
            "MariaDB shut down cleanly: {:?}",
            js.err.seen
        );
    }
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}
