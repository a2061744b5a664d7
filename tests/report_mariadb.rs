//! `jemsafe report` on real MariaDB dumps agrees with jeprof (total and top functions,
//! plain and with --base); `jemsafe leaks` runs on the series.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const START: Duration = Duration::from_secs(180);
const T: Duration = Duration::from_secs(60);
const MARIADBD: &str = "/usr/sbin/mariadbd";

fn sql(socket: &Path, query: &str) {
    let out = Command::new("mariadb")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "--batch", "-e", query])
        .output()
        .expect("run the mariadb client");
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (total, name -> (flat, cum), names in order) of jeprof --show_bytes or jemsafe --bytes text.
fn table(text: &str, ours: bool) -> (f64, Vec<(String, f64, f64)>) {
    let total_line = text
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .unwrap_or_else(|| panic!("no total:\n{text}"));
    let total = if ours {
        total_line.split('(').nth(1).unwrap_or("")
    } else {
        total_line
    }
    .split_whitespace()
    .next()
    .and_then(|t| t.parse().ok())
    .unwrap_or_else(|| panic!("bad total line {total_line:?}"));
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.starts_with("Shrank since the base") {
            break;
        }
        let p: Vec<&str> = line.split_whitespace().collect();
        if p.len() >= 6 && p[1].ends_with('%') {
            if let (Ok(f), Ok(c)) = (p[0].parse(), p[3].parse()) {
                rows.push((p[5..].join(" "), f, c));
            }
        }
    }
    (total, rows)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.005 * a.abs().max(b.abs()) + 2.0
}

/// Every allocation site jeprof lists (flat != 0, up to `top`) agrees in flat and cum;
/// nearly all other rows agree too (see tests/report_jeprof.rs on inlined frames).
fn compare(ours: &str, oracle: &str, top: usize) {
    let (ot, orows) = table(ours, true);
    let (jt, jrows) = table(oracle, false);
    let ctx = format!("\n--- jemsafe\n{ours}\n--- jeprof\n{oracle}");
    assert!(close(ot, jt), "total {ot} vs {jt}{ctx}");
    let by_name: HashMap<&str, (f64, f64)> = orows
        .iter()
        .map(|(n, f, c)| (n.as_str(), (*f, *c)))
        .collect();
    for (name, f, c) in jrows.iter().filter(|r| r.1 != 0.0).take(top) {
        let (of, oc) = by_name
            .get(name.as_str())
            .copied()
            .unwrap_or_else(|| panic!("{name} missing{ctx}"));
        assert!(
            close(of, *f) && close(oc, *c),
            "{name}: {of} {oc} vs {f} {c}{ctx}"
        );
    }
    let others: Vec<_> = jrows.iter().filter(|r| r.1 == 0.0).collect();
    let same = others
        .iter()
        .filter(|(n, _, c)| {
            by_name
                .get(n.as_str())
                .is_some_and(|&(f, oc)| f == 0.0 && close(oc, *c))
        })
        .count();
    assert!(
        same * 10 >= others.len() * 9,
        "only {same} of {} other rows agree{ctx}",
        others.len()
    );
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
    compare(&ours, &oracle, 15);
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
    compare(&ours, &oracle, 10);

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
