//! The capability table of `check` and `status` on both libraries: Debian's libjemalloc2
//! (5.3.0: no prof_bt_max, and a note that points to the bundled 5.3.1) and jemsafe's own
//! (5.3.1), with a profile that switches prof_stats on, in real processes (the workload).

use crate::common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

const PROFILE: &str = "[profiles.stats]\ninherits = \"leak\"\nextra = { prof_stats = true }\n";

fn stdout(args: &[&str]) -> String {
    let out = cli(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `check`, then `status` (text and JSON) of a running workload, under `config`.
fn tables(config: &std::path::Path) -> (String, String, serde_json::Value) {
    let config = config.to_str().unwrap();
    let check = stdout(&["check", "-c", config]);
    let mut js = Running::start(&["run", "-c", config]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let status = stdout(&["status", "-c", config]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["status", "-c", config, "--json"])).unwrap();
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    (check, status, json)
}

#[test]
fn check_and_status_show_what_each_library_can_do() {
    let dir = TempDir::new("caps-system");
    let system = workload_config(&dir, "stats", &["--alloc-mb", "8"], PROFILE);
    let (check, status, json) = tables(&system);
    assert!(
        check.contains("can do       version               5.3.0-"),
        "{check}"
    );
    assert!(check.contains("prof_stats            on   "), "{check}");
    assert!(
        check.contains("prof_bt_max           -    not in this jemalloc"),
        "{check}"
    );
    assert!(check.contains("prof_sys_thread_name  off  "), "{check}");
    assert!(
        status.contains(
            "can do      prof on, prof_stats on, prof_recent off, prof_sys_thread_name off, \
             prof_bt_max -, background_thread off"
        ),
        "{status}"
    );
    assert!(
        check.contains("note         this is jemalloc 5.3.0; 5.3.1 changes profiling")
            && check.contains("opt.prof_bt_max")
            && check.contains("library = \"bundled\""),
        "{check}"
    );
    let caps = &json["jemalloc"]["capabilities"];
    assert_eq!(caps["prof_stats"], true, "{json}");
    assert!(caps["prof_bt_max"].is_null(), "{json}");
    assert_eq!(caps["known"], true, "{json}");

    let dir = TempDir::new("caps-bundled");
    let bundled = bundled_workload_config(&dir, "stats", &["--alloc-mb", "8"], PROFILE);
    let (check, status, json) = tables(&bundled);
    assert!(check.contains("version               5.3.1-"), "{check}");
    assert!(check.contains("prof_stats            on   "), "{check}");
    assert!(check.contains("prof                  on   "), "{check}");
    assert!(!check.contains("this is jemalloc 5.3.0"), "{check}");
    let depth = json["jemalloc"]["capabilities"]["prof_bt_max"]
        .as_u64()
        .expect("5.3.1 has prof_bt_max");
    assert!(depth > 0, "{json}");
    assert!(
        check.contains(&format!("prof_bt_max           {depth:<4} frames")),
        "{check}"
    );
    assert!(
        status.contains(&format!("prof on, prof_stats on, prof_recent off, prof_sys_thread_name off, prof_bt_max {depth}, ")),
        "{status}"
    );
}
