//! Fragmentation by call stack on a real MariaDB, under the system libjemalloc and the
//! bundled one: a UDF of the project's own (tests/udf/jemsafe_frag_udf.c) fragments the
//! 1 KiB size class from one function and keeps the same live bytes densely in the
//! 1.5 KiB class from another. `jemsafe report --fragmentation` must rank the fragmenting
//! function first and give the dense one next to nothing, although both hold similar live
//! bytes in the heap profile. The truth it is measured against: jemalloc's own slab
//! counters for the two classes before and after the calls (`jemsafe memory --json`, then
//! the snapshot recorded with the dump).

use crate::common::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// MariaDB's first start includes creating the datadir; CI machines can be slow.
const START: Duration = Duration::from_secs(240);
const T: Duration = Duration::from_secs(60);

/// 1000-byte objects allocated by the fragmenting function; 1 in 16 stays.
const FRAGMENT_OBJECTS: u64 = 131_072;
/// KiB the dense function keeps: what the fragmenting one keeps (8000 KiB).
const DENSE_KIB: u64 = FRAGMENT_OBJECTS / 16 * 1000 / 1024;

/// One sample per 16 KiB on average: some 6% of 1 KiB objects are sampled, enough for a
/// few hundred samples of what each function keeps.
const PROFILE: &str = "\n[profiles.frag]\ninherits = \"leak\"\nlg_prof_sample = 14\n\
                       extra = { prof_stats = true }\n";

fn sandbox_dir(tag: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The UDF, built into `dir`/plugin (readable by mysqld's user).
fn build_udf(dir: &TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let plugin = dir.join("plugin");
    std::fs::create_dir(&plugin).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/udf/jemsafe_frag_udf.c");
    let so = plugin.join("jemsafe_frag_udf.so");
    let status = Command::new("gcc")
        .args([
            "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o",
        ])
        .arg(&so)
        .arg(&source)
        .status()
        .expect("gcc (apt-get install gcc)");
    assert!(status.success(), "gcc {} failed", source.display());
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o644)).unwrap();
    plugin
}

/// Wasted bytes per size class, from `jemsafe memory --json` (live or a dump's).
fn wasted(args: &[&str]) -> HashMap<u64, u64> {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["size_classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["size"].as_u64().unwrap(), c["wasted"].as_u64().unwrap()))
        .collect()
}

/// One row of the stack table of `report --fragmentation`.
#[derive(Debug, Clone)]
struct Row {
    rank: usize,
    waste: f64,
    class: u64,
    live: f64,
    internal: Option<f64>,
    line: String,
}

/// `12.0 MiB` / `512 B` in bytes.
fn bytes(number: &str, unit: &str) -> f64 {
    let n: f64 = number.parse().unwrap();
    n * match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        other => panic!("unit {other}"),
    }
}

fn rows(report: &str) -> Vec<Row> {
    report
        .lines()
        .skip_while(|l| !l.contains("stacks by waste attributed"))
        .skip(2)
        .take_while(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            // rank waste(2) class(2) util share live(2) +/- internal(2) where...
            let w: Vec<&str> = l.split_whitespace().collect();
            Row {
                rank: w[0].parse().unwrap(),
                waste: bytes(w[1], w[2]),
                class: w[3].parse().unwrap(),
                live: bytes(w[7], w[8]),
                internal: (w[10] != "-").then(|| bytes(w[10], w[11])),
                line: l.to_owned(),
            }
        })
        .collect()
}

/// What one library showed, for the closing figures.
struct Outcome {
    library: &'static str,
    report: String,
    fragment: Row,
    dense: Row,
    true_fragment_waste: f64,
    true_dense_waste: f64,
}

fn run_with(library: &'static str) -> Outcome {
    let dir = sandbox_dir(&format!("frag-{library}"));
    let plugin = build_udf(&dir);
    // The sandbox makes the datadir and the config; its first mysqld is only for that.
    let sandbox = dir.join("sb");
    let mut js = Running::start(&["sandbox", sandbox.to_str().unwrap(), "--library", library]);
    js.wait_verified(START);
    js.err.wait_for("ready for connections", START);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    drop(js);

    let config = sandbox.join("jemsafe.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(PROFILE);
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let plugin_arg = format!("--plugin-dir={}", plugin.display());
    let mut js = Running::start(&["run", "-c", &config, "-p", "frag", "--", &plugin_arg]);
    js.wait_verified(START);
    let verified = js.err.wait_for("verified: mysqld pid", T);
    assert!(verified.contains("prof.active=true"), "{verified}");
    js.err.wait_for("ready for connections", START);
    let socket = sandbox.join("mysqld/mysqld.sock");
    sql(
        &socket,
        "CREATE FUNCTION jemsafe_fragment_kb RETURNS INTEGER SONAME 'jemsafe_frag_udf.so'; \
         CREATE FUNCTION jemsafe_dense_kb RETURNS INTEGER SONAME 'jemsafe_frag_udf.so';",
    );
    let before = wasted(&["memory", "-c", &config, "--json"]);
    let first = cli(&["dump", "-c", &config]);
    assert!(first.status.success());
    let kept_fragment: u64 = sql(
        &socket,
        &format!("SELECT jemsafe_fragment_kb({FRAGMENT_OBJECTS})"),
    )
    .parse()
    .unwrap();
    let kept_dense: u64 = sql(&socket, &format!("SELECT jemsafe_dense_kb({DENSE_KIB})"))
        .parse()
        .unwrap();
    assert_eq!(kept_fragment, FRAGMENT_OBJECTS / 16 * 1000);
    assert!(kept_dense.abs_diff(kept_fragment) < 2000, "{kept_dense}");
    let out = cli(&["dump", "-c", &config]);
    assert!(out.status.success());
    let dump = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let after = wasted(&["memory", &dump, "--json"]);
    let delta = |class: u64| {
        after.get(&class).copied().unwrap_or(0) as f64
            - before.get(&class).copied().unwrap_or(0) as f64
    };

    let out = cli(&["report", &dump, "--fragmentation", "--top", "0"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&report);
    let find = |name: &str| {
        rows.iter()
            .filter(|r| r.line.contains(name))
            .max_by(|a, b| a.waste.total_cmp(&b.waste))
            .unwrap_or_else(|| panic!("no row for {name}:\n{report}"))
    };
    let fragment = find("jemsafe_frag_alloc_1k < jemsafe_fragment_kb");
    let dense = find("jemsafe_dense_alloc_1536 < jemsafe_dense_kb");
    assert_eq!(fragment.rank, 1, "{report}");
    assert_eq!((fragment.class, dense.class), (1024, 1536), "{report}");
    // Similar live bytes in the heap profile (each estimated from a few hundred samples).
    let ratio = fragment.live / dense.live;
    assert!((0.75..1.33).contains(&ratio), "live {ratio}:\n{report}");
    // The dense one gets next to nothing.
    assert!(dense.waste < 0.02 * fragment.waste, "{report}");
    // prof_stats: 1000 bytes asked for in a 1024-byte class: 2.3% not asked for.
    let internal = fragment.internal.expect("internal with prof_stats") / fragment.live;
    assert!((0.01..0.05).contains(&internal), "{internal}:\n{report}");
    assert!(report.contains("How good this is"), "{report}");

    // `memory DUMP` and `leaks` carry the section when fragmentation is above its advice
    // threshold, as it is here.
    let out = cli(&["memory", &dump]);
    let memory = String::from_utf8_lossy(&out.stdout);
    assert!(memory.contains("advice: fragmentation is"), "{memory}");
    assert!(
        memory.contains("Fragmentation by call stack") && memory.contains("jemsafe_frag_alloc_1k"),
        "{memory}"
    );
    let out = cli(&["leaks", "-c", &config]);
    let leaks = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{leaks}");
    assert!(
        leaks.contains("Fragmentation by call stack") && leaks.contains("jemsafe_frag_alloc_1k"),
        "{leaks}"
    );

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    Outcome {
        library,
        fragment: fragment.clone(),
        dense: dense.clone(),
        report,
        true_fragment_waste: delta(1024),
        true_dense_waste: delta(1536),
    }
}

#[test]
fn a_dump_without_a_memory_snapshot_is_refused_with_the_reason() {
    let dir = TempDir::new("frag-nosidecar");
    let dump = dir.join("jeprof.1.0.m0.heap");
    std::fs::write(
        &dump,
        "heap_v2/524288\n  t*: 1: 1024 [0: 0]\n  t0: 1: 1024 [0: 0]\n@ 0x1 0x2\n  \
         t*: 1: 1024 [0: 0]\n  t0: 1: 1024 [0: 0]\n\nMAPPED_LIBRARIES:\n",
    )
    .unwrap();
    let out = cli(&["report", dump.to_str().unwrap(), "--fragmentation"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(
        err.contains(&format!("{} has no memory snapshot", dump.display()))
            && err.contains("take dumps with jemsafe"),
        "{err}"
    );
    let out = cli(&[
        "report",
        dump.to_str().unwrap(),
        "--fragmentation",
        "--format",
        "svg",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let out = cli(&[
        "report",
        dump.to_str().unwrap(),
        "--fragmentation",
        "--base",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn the_fragmenting_function_ranks_first_and_the_dense_one_gets_next_to_nothing() {
    let outcomes = std::thread::scope(|s| {
        let system = s.spawn(|| run_with("auto"));
        let bundled = s.spawn(|| run_with("bundled"));
        [system.join().unwrap(), bundled.join().unwrap()]
    });
    for o in &outcomes {
        let error = o.fragment.waste / o.true_fragment_waste - 1.0;
        println!(
            "{}: fragmenting stack: attributed {:.1} MiB, true {:.1} MiB ({:+.0}%), live {:.1} MiB; \
             dense stack: attributed {:.2} MiB, true {:.2} MiB, live {:.1} MiB\n{}",
            o.library,
            o.fragment.waste / 1048576.0,
            o.true_fragment_waste / 1048576.0,
            100.0 * error,
            o.fragment.live / 1048576.0,
            o.dense.waste / 1048576.0,
            o.true_dense_waste / 1048576.0,
            o.dense.live / 1048576.0,
            o.report
        );
        // The estimate against jemalloc's own counters: within a third.
        assert!(error.abs() < 0.33, "{}: {error}\n{}", o.library, o.report);
    }
}
