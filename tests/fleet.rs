//! `[http]`: Prometheus scrapes jemsafe's /metrics, `go tool pprof` reads its
//! /debug/pprof/heap, and neither a bad token nor a slow client gets anywhere.
//! (The attacks on the server itself are in hardening_http.rs.)

use crate::common::*;
use nix::sys::signal::Signal;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// A jemsafe running the workload with `[http] listen` on a free loopback port and the
/// token of `token_file` (pprof needs it).
fn with_http(dir: &TempDir) -> (Running, PathBuf, SocketAddr) {
    let (config, addr) = http_workload_config(
        dir,
        "leak",
        &["--alloc-mb", "32"],
        "",
        "min_interval_ms = 0",
    );
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    wait_serving(&mut js);
    (js, config, addr)
}

/// Prometheus's answer to an instant query: the values of the result vector.
fn query(prom: SocketAddr, q: &str) -> Vec<f64> {
    let (code, body) = http_get(prom, &format!("/api/v1/query?query={q}"), &[], T);
    if code != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_metrics_by_host_name_that_promtool_accepts() {
    let dir = TempDir::new("fleet-prom");
    let (mut js, _config, addr) = with_http(&dir);
    // On loopback, /metrics needs no token: Prometheus scrapes it as it is.
    let (code, body) = http_get(addr, "/metrics", &[], T);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body).into_owned();
    for name in [
        "jemsafe_mysqld_up 1",
        "jemsafe_verification_ok 1",
        "jemsafe_prof_active 1",
        "jemsafe_lg_prof_sample 19",
        "jemsafe_jemalloc_allocated_bytes ",
        "jemsafe_memory_bytes{part=\"outside_jemalloc\"}",
        "jemsafe_restarts_total 0",
    ] {
        assert!(text.contains(name), "{name} not in:\n{text}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let prom_dir = dir.join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom_port = free_port();
    // By a name that is not the listen address, as a fleet's Prometheus scrapes
    // `db1:19104` (issue 23, item 9: every scrape was 421 and `up` stayed 0).
    let target = format!("db1.jemsafe.test:{}", addr.port());
    let _prometheus = start_prometheus(&prom_dir, prom_port, &target, &["db1.jemsafe.test"]);
    let prom = SocketAddr::from(([127, 0, 0, 1], prom_port));
    // Prometheus scrapes every second: wait (bounded) until it stored both series.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = std::net::TcpStream::connect(prom).is_ok() && query(prom, "up") == [1.0];
        let allocated = if up {
            query(prom, "jemsafe_jemalloc_allocated_bytes")
        } else {
            Vec::new()
        };
        if up
            && allocated
                .first()
                .is_some_and(|v| *v >= (32u64 << 20) as f64)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not store jemsafe's metrics within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500)); // polling an external server
    }
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// Total and top function of `go tool pprof -top` output.
fn pprof_top(text: &str) -> (String, String) {
    let total = text
        .lines()
        .find_map(|l| {
            l.split(" of ")
                .nth(1)?
                .strip_suffix(" total")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no total in:\n{text}"));
    let header = text
        .lines()
        .position(|l| l.trim_start().starts_with("flat"))
        .unwrap_or_else(|| panic!("no table in:\n{text}"));
    let top = text.lines().nth(header + 1).unwrap_or("");
    let name = top.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
    (total, name)
}

/// "34869.66kB" in bytes (pprof's units are binary).
fn pprof_bytes(v: &str) -> f64 {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let scale = match unit {
        "B" | "" => 1.0,
        "kB" => 1024.0,
        "MB" => 1048576.0,
        "GB" => 1073741824.0,
        other => panic!("unit {other:?} in {v:?}"),
    };
    num.parse::<f64>().unwrap_or_else(|_| panic!("{v:?}")) * scale
}

/// pprof's display of a function name: template and argument lists (`<...>`, `(...)`)
/// removed, as its reports shorten names.
fn shorten(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn go_tool_pprof_reads_the_heap_endpoint_like_jemsafe_report() {
    let dir = TempDir::new("fleet-pprof");
    let (mut js, config, addr) = with_http(&dir);
    let tmp = dir.join("pprof-home");
    std::fs::create_dir(&tmp).unwrap();
    // go tool pprof sends no Authorization header: fetch with the token, read the file.
    let (code, profile) = http_get(addr, "/debug/pprof/heap?gc=1", &[&bearer()], T);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&profile));
    let profile_path = tmp.join("heap.pb.gz");
    std::fs::write(&profile_path, profile).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&profile_path)
        .env("HOME", &tmp)
        .env("PPROF_TMPDIR", &tmp)
        .env("GOCACHE", tmp.join("gocache"))
        .output()
        .expect("run go tool pprof (apt-get install golang-go)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (total, top) = pprof_top(&text);
    // The dump the endpoint took is the newest, trigger http.
    let dumps = heap_files(&dir.join("dumps"));
    let http = dumps
        .iter()
        .find(|n| n.ends_with(".http.heap"))
        .unwrap_or_else(|| panic!("no http dump in {dumps:?}"));
    let report = cli(&[
        "report",
        "--bytes",
        "-c",
        config.to_str().unwrap(),
        dir.join("dumps").join(http).to_str().unwrap(),
    ]);
    let ours = String::from_utf8_lossy(&report.stdout).into_owned();
    let our_top = ours
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    assert_eq!(top, shorten(&our_top), "pprof:\n{text}\njemsafe:\n{ours}");
    // pprof prints 34869.66kB (binary units); ours the exact bytes.
    let ours_total: f64 = ours
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .and_then(|t| t.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no total in:\n{ours}"));
    let theirs = pprof_bytes(&total);
    assert!(
        (theirs - ours_total).abs() <= 0.001 * ours_total,
        "pprof total {total} vs ours {ours_total} B"
    );
    // raw=1: the jemalloc file itself.
    let (code, raw) = http_get(addr, "/debug/pprof/heap?raw=1&seconds=5", &[&bearer()], T);
    assert_eq!(code, 200);
    assert!(
        raw.starts_with(b"heap_v2/"),
        "{}",
        String::from_utf8_lossy(&raw[..64.min(raw.len())])
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

#[test]
fn pprof_needs_the_token_and_slow_clients_delay_nothing() {
    let dir = TempDir::new("fleet-auth");
    let (mut js, config, addr) = with_http(&dir);
    // On loopback /metrics and /healthz are open; /debug/pprof/* needs the token.
    assert_eq!(http_get(addr, "/metrics", &[], T).0, 200);
    assert_eq!(http_get(addr, "/healthz", &[], T).0, 200);
    assert_eq!(http_get(addr, "/debug/pprof/heap", &[], T).0, 401);
    assert_eq!(
        http_get(
            addr,
            "/debug/pprof/heap",
            &["Authorization: Bearer wrong"],
            T
        )
        .0,
        401
    );
    assert_eq!(
        http_get(addr, "/debug/pprof/heap?raw=1", &[&bearer()], T).0,
        200
    );

    // A client sending one byte a second: the supervisor does not wait for it.
    let slow = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for b in b"GET /metrics HTTP/1.1\r\n" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1)); // the attack itself
        }
    });
    let dump = cli(&["dump", "-c", config.to_str().unwrap()]);
    assert!(dump.status.success(), "{dump:?}");
    let status = cli(&["status", "-c", config.to_str().unwrap()]);
    assert!(status.status.success(), "{status:?}");
    assert!(
        !slow.is_finished(),
        "dump and status had to wait for the slow HTTP client"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    let _ = slow.join();
}

#[test]
fn remote_listening_needs_allow_remote_and_a_token() {
    let dir = TempDir::new("fleet-remote");
    let config = workload_config(&dir, "leak", &[], "[http]\nlisten = \"0.0.0.0:19104\"\n");
    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.listen") && err.contains("allow_remote"),
        "{err}"
    );
    let config = workload_config(
        &dir,
        "leak",
        &[],
        "[http]\nlisten = \"0.0.0.0:19104\"\nallow_remote = true\n",
    );
    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_file"));
}

/// The alert rules shipped in etc/ are valid Prometheus rules.
#[test]
fn shipped_alert_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/jemsafe-alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
