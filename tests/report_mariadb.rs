//! `jemsafe report` on real MariaDB dumps agrees with jeprof (total and top functions,
//! plain and with --base); `jemsafe leaks` runs on the series.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;

const START: Duration = Duration::from_secs(180);
const T: Duration = Duration::from_secs(60);
const MARIADBD: &str = "/usr/sbin/mariadbd";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mariadb_dumps_match_jeprof_and_leaks_runs() {
    let tmp = TempDir::new("report-maria");
    // The sandbox is a subdirectory: mysqld (as the mysql user) must be able to reach it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.join("sb");
    let mut js = Running::start(&["sandbox", dir.to_str().unwrap()]);
    js.wait_verified(START);
    js.err.wait_for("ready for connections", START);
    let socket = dir.join("mysqld/mysqld.sock");
    sql(
        &socket,
        "CREATE DATABASE r; USE r; CREATE TABLE r.t (id INT PRIMARY KEY AUTO_INCREMENT, pad TEXT) ENGINE=InnoDB; \
         INSERT INTO r.t (pad) SELECT REPEAT('x', 2000) FROM seq_1_to_2000;",
    );
    js.signal(Signal::SIGUSR1);
    let a = dump_path(&js.err.wait_for_nth("heap dump written: ", 1, T));
    // Grow: more tables (table cache, dictionary), a bigger buffer of rows.
    let mut ddl = String::from("USE r; ");
    for i in 0..60 {
        ddl.push_str(&format!(
            "CREATE TABLE r.g{i} (id INT PRIMARY KEY, v VARCHAR(200), KEY(v)) ENGINE=InnoDB; \
             INSERT INTO r.g{i} SELECT seq, REPEAT('y', 150) FROM seq_1_to_300;"
        ));
    }
    sql(&socket, &ddl);
    // Distinct dump names need distinct seconds only for the time stamp; the seq differs.
    js.signal(Signal::SIGUSR1);
    let b = dump_path(&js.err.wait_for_nth("heap dump written: ", 2, T));
    assert_ne!(a, b);

    let config = dir.join("jemsafe.toml");
    let ours = run(Command::new(jemsafe_bin())
        .args(["report", "--bytes", "--top", "0"])
        .arg(&b));
    let oracle = run(Command::new("jeprof")
        .args(["--text", "--show_bytes", MARIADBD])
        .arg(&b));
    assert_parity(&ours, &oracle, 15);
    assert!(ours.contains("my_malloc"), "{ours}");

    let ours = run(Command::new(jemsafe_bin())
        .args(["report", "--bytes", "--top", "0", "-c"])
        .arg(&config)
        .args(["--base", "previous"]));
    assert!(ours.contains(&format!("Base: {}", a.display())), "{ours}");
    let oracle = run(Command::new("jeprof")
        .args(["--text", "--show_bytes"])
        .arg(format!("--base={}", a.display()))
        .arg(MARIADBD)
        .arg(&b));
    assert_parity(&ours, &oracle, 10);

    let leaks = run(Command::new(jemsafe_bin())
        .args(["leaks", "-c"])
        .arg(&config));
    assert!(
        leaks.contains("Leak suspects in 2 dumps of mariadbd"),
        "{leaks}"
    );
    assert!(leaks.contains("Most likely leak"), "{leaks}");

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}
