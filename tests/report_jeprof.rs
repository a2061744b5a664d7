//! `jemsafe report` and `jemsafe leaks` against the oracle, Debian's jeprof: the same total
//! and the same top functions with the same flat and cum values (within 0.5%), plain and
//! with --base, on dumps of our workload (Rust, DWARF) and of a C program with thousands
//! of distinct stacks, inlined frames and recursion (built here with gcc -g).

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

// BEGIN C (bench/report-vs-jeprof.sh extracts this program)
const STACKS_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocation sites with 2^depth distinct call stacks, an inlined frame, recursion, and
   heap dumps taken with mallctl("prof.dump") at the points named on the command line.
   stacks DEPTH ROUNDS DUMP...  (one dump after each round) */

typedef int (*mallctl_t)(const char *, void *, size_t *, void *, size_t);
static void **keep;
static size_t nkeep, capkeep;

static void hold(void *p) {
    if (nkeep == capkeep) {
        capkeep = capkeep ? capkeep * 2 : 1024;
        keep = realloc(keep, capkeep * sizeof *keep);
    }
    keep[nkeep++] = p;
}

__attribute__((noinline)) void *stacks_leaf_alloc(size_t n) {
    void *p = malloc(n);
    memset(p, 1, n);
    return p;
}

static inline __attribute__((always_inline)) void *stacks_inlined_alloc(size_t n) {
    return stacks_leaf_alloc(n + 16);
}

void descend(unsigned path, int level, int depth, size_t n);

#define PAIR(k)                                                                    \
    __attribute__((noinline)) void stacks_a##k(unsigned path, int depth, size_t n) { \
        descend(path, k + 1, depth, n);                                            \
        __asm__ volatile("");                                                      \
    }                                                                              \
    __attribute__((noinline)) void stacks_b##k(unsigned path, int depth, size_t n) { \
        descend(path, k + 1, depth, n);                                            \
        __asm__ volatile("");                                                      \
    }
PAIR(0) PAIR(1) PAIR(2) PAIR(3) PAIR(4) PAIR(5) PAIR(6) PAIR(7)
PAIR(8) PAIR(9) PAIR(10) PAIR(11) PAIR(12) PAIR(13) PAIR(14) PAIR(15)

#define STEP(k) case k: if (path & (1u << k)) stacks_a##k(path, depth, n); else stacks_b##k(path, depth, n); break;

void descend(unsigned path, int level, int depth, size_t n) {
    if (level >= depth) {
        if (path % 3 == 0)
            hold(stacks_inlined_alloc(n));
        else
            hold(stacks_leaf_alloc(n));
        return;
    }
    switch (level) {
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
        STEP(8) STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15)
    }
}

__attribute__((noinline)) void stacks_recurse(int k, size_t n) {
    if (k == 0) {
        hold(stacks_leaf_alloc(n));
        return;
    }
    stacks_recurse(k - 1, n);
    __asm__ volatile("");
}

__attribute__((noinline)) void stacks_steady_leak(size_t n) { hold(stacks_leaf_alloc(n)); }
__attribute__((noinline)) void stacks_one_jump(size_t n) { hold(stacks_leaf_alloc(n)); }

__attribute__((noinline)) void stacks_temporary(void) {
    for (int i = 0; i < 100; i++) free(stacks_leaf_alloc(4096));
}

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 8;
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (depth > 16) depth = 16;
    mallctl_t mallctl = (mallctl_t)dlsym(RTLD_DEFAULT, "mallctl");
    for (int r = 0; r < rounds; r++) {
        if (r == 0) {
            for (unsigned path = 0; path < (1u << depth); path++)
                descend(path, 0, depth, 64 + (path % 7) * 48);
            stacks_recurse(6, 3000);
        }
        if (r == 1) stacks_one_jump(8 << 20);
        for (int i = 0; i < 64; i++) stacks_steady_leak(16384);
        stacks_temporary();
        if (argc > 3 + r) {
            const char *file = argv[3 + r];
            if (!mallctl || mallctl("prof.dump", NULL, NULL, &file, sizeof file) != 0) {
                fprintf(stderr, "prof.dump failed (is libjemalloc preloaded with prof:true?)\n");
                return 1;
            }
        }
    }
    printf("held %zu\n", nkeep);
    return 0;
}
"#;
// END C

/// Builds the C program with full DWARF.
pub(crate) fn build_stacks(dir: &TempDir) -> PathBuf {
    let src = dir.join("stacks.c");
    std::fs::write(&src, STACKS_C).unwrap();
    let bin = dir.join("stacks");
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run gcc (apt-get install gcc)");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Runs the C program under profiling (every allocation sampled); returns its dumps.
pub(crate) fn run_stacks(dir: &TempDir, bin: &Path, depth: u32, rounds: u32) -> Vec<PathBuf> {
    let pid_tag = std::process::id();
    let dumps: Vec<PathBuf> = (0..rounds)
        .map(|r| {
            dir.join(&format!(
                "stacks.{pid_tag}.20261126T10{:02}00.{:04}.cli.heap",
                r * 10,
                r + 1
            ))
        })
        .collect();
    let out = Command::new(bin)
        .arg(depth.to_string())
        .arg(rounds.to_string())
        .args(&dumps)
        .env("LD_PRELOAD", libjemalloc())
        .env("MALLOC_CONF", "prof:true,lg_prof_sample:0,prof_accum:true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stacks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for d in &dumps {
        assert!(d.is_file(), "{} missing", d.display());
    }
    dumps
}

fn jeprof(args: &[&str], binary: &Path, dump: &Path) -> String {
    let all: Vec<&str> = ["--text", "--show_bytes"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    jeprof_with(&all, binary, dump)
}

/// `jemsafe report` with jeprof's closest-symbol naming, for comparisons with jeprof.
fn jemsafe(args: &[&str]) -> String {
    jemsafe_names("jeprof", args)
}

fn jemsafe_names(names: &str, args: &[&str]) -> String {
    let out = Command::new(jemsafe_bin())
        .arg("report")
        .args(["--bytes", "--top", "0", "--names", names])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jemsafe report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn c_program_with_thousands_of_stacks_matches_jeprof_plain_and_with_base() {
    let dir = TempDir::new("report-c");
    let bin = build_stacks(&dir);
    let dumps = run_stacks(&dir, &bin, 10, 2);
    let (a, b) = (&dumps[0], &dumps[1]);
    let ours = jemsafe(&[b.to_str().unwrap()]);
    let oracle = jeprof(&[], &bin, b);
    assert_parity(&ours, &oracle, 15);
    assert!(ours.contains("stacks_leaf_alloc"), "{ours}");
    assert!(ours.contains("stacks_inlined_alloc (inline)"), "{ours}");

    let ours = jemsafe(&[b.to_str().unwrap(), "--base", a.to_str().unwrap()]);
    let oracle = jeprof(&[&format!("--base={}", a.display())], &bin, b);
    assert_parity(&ours, &oracle, 10);
    // `previous` finds the same base by pid and time in the file names.
    let prev = jemsafe(&[b.to_str().unwrap(), "--base", "previous"]);
    assert_eq!(
        prev.lines()
            .filter(|l| !l.starts_with("Base:"))
            .collect::<Vec<_>>(),
        ours.lines()
            .filter(|l| !l.starts_with("Base:"))
            .collect::<Vec<_>>()
    );

    // alloc_space (prof_accum) agrees too.
    let ours = jemsafe(&[b.to_str().unwrap(), "--alloc"]);
    let oracle = jeprof(&["--alloc_space"], &bin, b);
    assert_parity(&ours, &oracle, 10);

    // By default no name is a guess. libstdc++ is stripped (.dynsym only): its emergency
    // exception pool, allocated at start-up by a static constructor, lies outside every
    // exported symbol's extent, and jeprof names it after the exported function below it.
    let oracle = jeprof(&[], &bin, b);
    assert!(oracle.contains("std::__throw_ios_failure"), "{oracle}");
    let exact = jemsafe_names("exact", &[b.to_str().unwrap()]);
    assert!(!exact.contains("__throw_ios_failure"), "{exact}");
    let unnamed = parse_jemsafe(&exact)
        .rows
        .into_iter()
        .find(|r| r.0.starts_with("libstdc++.so.6.0.30+0x"))
        .unwrap_or_else(|| panic!("no libstdc++ address row:\n{exact}"));
    // Same numbers as jeprof's guessed row; only the name differs.
    let guessed = parse_jeprof(&oracle)
        .rows
        .into_iter()
        .find(|r| r.0.starts_with("std::__throw_ios_failure"))
        .unwrap();
    assert_eq!((unnamed.1, unnamed.2), (guessed.1, guessed.2), "{exact}");
    // The report says where its names came from.
    let names = exact.lines().find(|l| l.starts_with("Names: ")).unwrap();
    assert!(
        names.contains("frames from DWARF") && names.contains("unnamed"),
        "{names}"
    );
    let parity = parse_jemsafe(&exact);
    assert_eq!(parity.total, parse_jeprof(&oracle).total);
}

#[test]
fn workload_dump_matches_jeprof() {
    let dir = TempDir::new("report-wl");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "32"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGUSR1);
    let dump = dump_path(&js.err.wait_for("heap dump written: ", T));
    let ours = jemsafe(&[dump.to_str().unwrap()]);
    let oracle = jeprof(&[], &workload(), &dump);
    assert_parity(&ours, &oracle, 10);
    assert!(ours.contains("jemsafe_workload_leak_marker"), "{ours}");
    // Without a DUMP: the newest in the config's dump directory.
    let newest = Command::new(jemsafe_bin())
        .args(["report", "--bytes", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(newest.status.success());
    let newest = String::from_utf8_lossy(&newest.stdout);
    assert!(
        newest.contains(&format!("File: {}", dump.display())),
        "{newest}"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// `jemsafe report ... | head`: a reader that stops reading is not an error, in any
/// format (ripgrep and the classic Unix filters behave the same).
#[test]
fn a_closed_pipe_ends_every_format_quietly_with_status_0() {
    let dir = TempDir::new("report-pipe");
    let bin = build_stacks(&dir);
    let dumps = run_stacks(&dir, &bin, 6, 1);
    for format in ["text", "collapsed", "svg", "pprof", "dot", "callgraph"] {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read); // the reader is gone before the first byte
        let out = Command::new(jemsafe_bin())
            .args(["report", "--top", "0", "--format", format])
            .arg(&dumps[0])
            .stdout(std::process::Stdio::from(write))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(!stderr.contains("error"), "{format}: {stderr}");
    }
}

#[test]
fn collapsed_svg_and_pprof_outputs() {
    let dir = TempDir::new("report-fmt");
    let bin = build_stacks(&dir);
    let dumps = run_stacks(&dir, &bin, 6, 1);
    let d = dumps[0].to_str().unwrap();
    let folded = jemsafe(&[d, "--format", "collapsed"]);
    let lines: Vec<&str> = folded.lines().collect();
    assert!(lines.len() >= 64, "{folded}");
    let sum: u64 = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let text = parse_jemsafe(&jemsafe(&[d]));
    assert!(close(sum as f64, text.total), "{sum} vs {}", text.total);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(";main;descend;stacks_b0;descend;")
                && l.contains(";stacks_leaf_alloc ")),
        "{folded}"
    );

    let svg = dir.join("out.svg");
    jemsafe(&[d, "--format", "svg", "-o", svg.to_str().unwrap()]);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("stacks_leaf_alloc"));
    assert!(svg.contains("stacks pid"), "title names the process");

    let pb = dir.join("heap.pb.gz");
    jemsafe(&[d, "--format", "pprof", "-o", pb.to_str().unwrap()]);
    let data = std::fs::read(&pb).unwrap();
    assert_eq!(&data[..2], &[0x1f, 0x8b], "gzipped");
    let raw = jemsafe_report::decompress(data).unwrap();
    use prost::Message;
    let p = jemsafe_report::pprof::Profile::decode(&raw[..]).unwrap();
    let types: Vec<&str> = p
        .sample_type
        .iter()
        .map(|t| p.string_table[t.r#type as usize].as_str())
        .collect();
    assert_eq!(types, vec!["inuse_objects", "inuse_space"]);
    assert!(p.string_table.iter().any(|s| s == "stacks_leaf_alloc"));
    assert!(p
        .mapping
        .iter()
        .any(|m| p.string_table[m.filename as usize].ends_with("/stacks")));
    let space: i64 = p.sample.iter().map(|s| s.value[1]).sum();
    assert!(close(space as f64, text.total), "{space} vs {}", text.total);
}

#[test]
fn leaks_ranks_steady_growth_first_and_shows_its_stack() {
    let dir = TempDir::new("report-leaks");
    let bin = build_stacks(&dir);
    let dumps = run_stacks(&dir, &bin, 4, 4);
    let out = Command::new(jemsafe_bin())
        .arg("leaks")
        .args(dumps.iter().rev())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stacks = text.split("Functions by steady growth").next().unwrap();
    let first = stacks
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(first.contains("3/3"), "{text}");
    assert!(
        text.contains("Most likely leak") && text.contains("    stacks_steady_leak"),
        "{text}"
    );
    // The one-time 8 MiB jump is ranked below the steady 1 MiB-per-round leak.
    let pos = |needle: &str| text.find(needle);
    let leak_fn = text.split("Functions by steady growth").nth(1).unwrap();
    let steady = leak_fn.find("stacks_steady_leak");
    let jump = leak_fn.find("stacks_one_jump");
    assert!(
        steady.is_some() && (jump.is_none() || steady < jump),
        "{text}"
    );
    assert!(pos("per hour").is_some());
}

#[test]
fn broken_dumps_are_refused_with_the_line() {
    let dir = TempDir::new("report-bad");
    let bad = dir.join("bad.heap");
    std::fs::write(&bad, "heap_v2/524288\n@ 0x1 0xzz\n  t*: 1: 8 [0: 0]\n").unwrap();
    let out = Command::new(jemsafe_bin())
        .args(["report", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.heap: line 2:"), "{err}");
    let cut = dir.join("cut.heap");
    std::fs::write(&cut, "heap_v2/524288\n@ 0x1\n  t*: 1: 8 [0: 0]\n").unwrap();
    let out = Command::new(jemsafe_bin())
        .args(["report", cut.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated"), "{err}");
}

/// Runs `program args` under profiling with a final dump at exit; returns the dump.
fn final_dump(dir: &TempDir, tag: &str, program: &str, args: &[&str]) -> PathBuf {
    let prefix = dir.join(tag);
    let child = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", libjemalloc())
        .env(
            "MALLOC_CONF",
            format!("prof:true,prof_final:true,prof_prefix:{}", prefix.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // jemalloc's name for the final dump: <prefix>.<pid>.<seq>.f.heap
    let dump = dir.join(&format!("{tag}.{pid}.0.f.heap"));
    assert!(dump.is_file(), "{} missing", dump.display());
    dump
}

/// Programs other than mysqld, stripped distribution binaries: with `--names jeprof` the
/// numbers and names are jeprof's; by default the same total, and no row is named after
/// a symbol that does not hold its address.
#[test]
fn python3_and_perl_dumps_match_jeprof() {
    let dir = TempDir::new("report-interp");
    let py = final_dump(
        &dir,
        "py",
        "python3",
        &["-c", "x = [str(i) * 20 for i in range(300000)]"],
    );
    let perl = final_dump(
        &dir,
        "pl",
        "perl",
        &["-e", "my @a = map { 'x' x 100 } 1 .. 200000;"],
    );
    for (dump, program) in [(py, "/usr/bin/python3"), (perl, "/usr/bin/perl")] {
        let program = std::fs::canonicalize(program).unwrap();
        let d = dump.to_str().unwrap();
        let oracle = jeprof(&[], &program, &dump);
        assert_parity(&jemsafe(&[d]), &oracle, 10);
        let exact = jemsafe_names("exact", &[d]);
        assert_eq!(
            parse_jemsafe(&exact).total,
            parse_jeprof(&oracle).total,
            "{exact}"
        );
        assert!(exact.lines().any(|l| l.starts_with("Names: ")), "{exact}");
    }
}
