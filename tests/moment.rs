//! Catching the moment with a real MariaDB in a memory cgroup (v1 on this machine): dumps
//! as mysqld nears its limit, the OOM kill explained, jemalloc's own dumps with memory
//! snapshots, and the memory timeline. Memory is used on request through the project's
//! test UDF (tests/udf/jemsafe_test_udf.c).

mod common;

use common::*;
use std::path::Path;
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
fn crossing_80_90_95_percent_of_a_512_mib_limit_dumps_once_per_level() {
    let port = free_port();
    let (dir, config) = prepared_sandbox(
        "moment-levels",
        &format!(
            "[triggers]\nlimit_percent = [80, 90, 95]\ncheck_ms = 200\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n"
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
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}
