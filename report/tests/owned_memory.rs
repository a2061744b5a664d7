//! The analyzer owns what it reads: rendering the same dump many times in one process
//! (as the supervisor's HTTP endpoint does) leaves the process's memory and mappings flat.
//! The objects, debug files and decompressed sections a report reads are freed when it
//! is done.

use jemsafe_report::render::{self, By, Format, ReportOptions};
use jemsafe_report::{DumpLimits, Metric, SymbolizeOptions};
use std::path::PathBuf;

/// A function of this test binary, whose address a dump's stack holds: the binary has
/// DWARF (a debug build), so each report maps it and parses its debug sections.
#[inline(never)]
fn planted_allocation_site() -> usize {
    std::hint::black_box(planted_allocation_site as *const () as usize)
}

fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// A dump of this very process: stacks in this binary and in libc, its maps as
/// MAPPED_LIBRARIES.
fn dump_of_self(dir: &std::path::Path) -> PathBuf {
    let here = planted_allocation_site() as u64 + 4;
    let libc_pc = libc::getpid as *const () as usize as u64 + 4;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let text = format!(
        "heap_v2/524288\n  t*: 3: 12288 [0: 0]\n  t0: 3: 12288 [0: 0]\n\
         @ 0x{here:x} 0x{libc_pc:x}\n  t*: 2: 8192 [0: 0]\n  t0: 2: 8192 [0: 0]\n\
         @ 0x{libc_pc:x}\n  t*: 1: 4096 [0: 0]\n  t0: 1: 4096 [0: 0]\n\
         \nMAPPED_LIBRARIES:\n{maps}"
    );
    let path = dir.join("self.heap");
    std::fs::write(&path, text).unwrap();
    path
}

fn render_once(path: &std::path::Path) -> usize {
    let limits = DumpLimits::new(jemsafe_report::DEFAULT_MAX_DUMP_MB, true);
    let dump = jemsafe_report::load(path, &limits).expect("load the dump");
    let options = ReportOptions {
        metric: Metric::InuseSpace,
        format: Format::Pprof,
        by: By::Function,
        top: 0,
        exact: false,
        symbolize: SymbolizeOptions {
            debug_dirs: Vec::new(),
            debuginfod: jemsafe_report::debuginfod::Config {
                offline: true,
                ..jemsafe_report::debuginfod::Config::from_env()
            },
            ..Default::default()
        },
    };
    render::report(dump, None, &options)
        .expect("render the dump")
        .data
        .len()
}

#[test]
fn rendering_200_times_keeps_memory_and_mappings_flat() {
    let dir = std::env::temp_dir().join(format!("jemsafe-owned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dump_of_self(&dir);
    // Warm up: allocator arenas, lazily built tables.
    for _ in 0..20 {
        assert!(render_once(&path) > 0);
    }
    let (rss_before, maps_before) = (status_kib("VmRSS:"), mappings());
    for _ in 0..200 {
        render_once(&path);
    }
    let (rss_after, maps_after) = (status_kib("VmRSS:"), mappings());
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!(
        "200 renders: VmRSS {rss_before} -> {rss_after} kB, mappings {maps_before} -> {maps_after}"
    );
    // Each render maps this binary (tens of MB with its debug info) and libc: kept, 200
    // renders would add 400 mappings and hundreds of MiB.
    assert!(
        maps_after <= maps_before + 4,
        "mappings {maps_before} -> {maps_after} after 200 renders"
    );
    assert!(
        rss_after < rss_before + 10 * 1024,
        "VmRSS {rss_before} kB -> {rss_after} kB after 200 renders"
    );
}
