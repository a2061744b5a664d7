//! A series of dumps read one at a time (`leaks`, `page`): the ranking is the one computed
//! by hand from the series, and memory grows with the series' distinct stacks, not with
//! the number of dumps.

use crate::common::*;
use crate::report_hostile::jemsafe_bounded;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(300);
const MIB: u64 = 1 << 20;
/// Where the (absent) library of the dumps' frames is mapped.
const LIB: u64 = 0x7f3a_0000_0000;

/// One stack of a series: return addresses (innermost first) and its bytes in each dump
/// (0: not in that dump).
struct Stack {
    addrs: Vec<u64>,
    bytes: Vec<u64>,
}

/// Writes `dumps` dumps of `stacks`, 10 minutes apart (mtimes), sampled at 1 in 1 byte so
/// that un-sampling leaves every value as written. Their frames are in a library that is
/// not on this machine: each is named `libseries.so+0xOFFSET`, without reading anything.
fn write_series(dir: &TempDir, dumps: usize, stacks: &[Stack]) -> Vec<PathBuf> {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
    (0..dumps)
        .map(|i| {
            let mut text = String::from("heap_v2/1\n  t*: 0: 0 [0: 0]\n");
            for s in stacks.iter().filter(|s| s.bytes[i] > 0) {
                text.push('@');
                for a in &s.addrs {
                    text.push_str(&format!(" 0x{a:x}"));
                }
                text.push_str(&format!("\n  t*: 1: {} [0: 0]\n", s.bytes[i]));
            }
            text.push_str(&format!(
                "\nMAPPED_LIBRARIES:\n{LIB:x}-{:x} r-xp 00000000 00:00 7 \
                 /nonexistent-jemsafe/libseries.so\n",
                LIB + 0x10_0000
            ));
            let path = dir.join(&format!("series.{i:04}.heap"));
            std::fs::write(&path, text).expect("write a dump");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open the dump");
            f.set_modified(t0 + Duration::from_secs(600 * i as u64))
                .expect("set the dump's mtime");
            path
        })
        .collect()
}

fn leaks(paths: &[PathBuf]) -> crate::report_hostile::Measured {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("leaks"),
        OsStr::new("-c"),
        OsStr::new("/nonexistent-jemsafe.toml"),
        OsStr::new("--top"),
        OsStr::new("0"),
    ];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let m = jemsafe_bounded(&args, std::path::Path::new("/nonexistent-jemsafe-debug"), T);
    assert_eq!(m.code, 0, "jemsafe leaks failed: {}", m.stderr);
    m
}

#[test]
fn leaks_over_a_series_ranks_what_the_series_says_computed_by_hand() {
    let dir = TempDir::new("series-hand");
    let root = LIB + 0x9000;
    let stack = |leaf: u64, bytes: [u64; 5]| Stack {
        addrs: vec![LIB + leaf, root],
        bytes: bytes.iter().map(|b| b * MIB).collect(),
    };
    let paths = write_series(
        &dir,
        5,
        &[
            // Grows in every interval: the leak.
            stack(0x1010, [1, 2, 3, 4, 5]),
            // Appears in the third dump and stays: a cache warming up.
            stack(0x2010, [0, 0, 8, 8, 8]),
            // Steady, and shrinking: never suspects.
            stack(0x3010, [2, 2, 2, 2, 2]),
            stack(0x4010, [5, 4, 3, 2, 1]),
        ],
    );
    let out = leaks(&paths).out();
    let lines: Vec<&str> = out.lines().collect();
    let line_with = |needle: &str| -> &str {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
    };
    assert!(
        out.contains("Leak suspects in 5 dumps of libseries.so"),
        "{out}"
    );
    // Each dump's total: the sum of its stacks.
    for (i, total) in [8, 8, 16, 16, 16].iter().enumerate() {
        let row = line_with(&format!("series.{i:04}.heap"));
        assert!(row.contains(&format!("{total}.0 MiB")), "{row}");
    }
    // Stacks: the leak first (+4 MiB in 40 minutes, grew in 4 of 4 intervals), then the
    // cache (+8 MiB, once); the steady and the shrinking stacks are not listed.
    let stacks = &out[out.find("Stacks by steady growth").expect("stacks table")..];
    let stacks = &stacks[..stacks.find("\n\n").unwrap_or(stacks.len())];
    let rows: Vec<&str> = stacks
        .lines()
        .filter(|l| l.contains("libseries.so"))
        .collect();
    assert_eq!(rows.len(), 2, "{stacks}");
    for want in [
        "+4.0 MiB",
        "+6.0 MiB/h",
        "4/4",
        "1.0 MiB -> 5.0 MiB",
        "libseries.so+0x1010",
    ] {
        assert!(rows[0].contains(want), "{want:?} not in {:?}", rows[0]);
    }
    for want in ["+8.0 MiB", "1/4", "0 B -> 8.0 MiB", "libseries.so+0x2010"] {
        assert!(rows[1].contains(want), "{want:?} not in {:?}", rows[1]);
    }
    // Functions (cumulative): the leaf of the leak first; the root holds every stack
    // (8, 8, 16, 16, 16 MiB: grew once).
    let funcs = &out[out
        .find("Functions by steady growth")
        .expect("functions table")..];
    let first = funcs
        .lines()
        .find(|l| l.contains("libseries.so"))
        .expect("a function row");
    assert!(
        first.contains("libseries.so+0x1010") && first.contains("4/4"),
        "{funcs}"
    );
    let root_row = line_with("libseries.so+0x8fff");
    assert!(
        root_row.contains("+8.0 MiB") && root_row.contains("1/4"),
        "{root_row}"
    );
    assert!(
        out.contains("held per dump: 1.0 MiB, 2.0 MiB, 3.0 MiB, 4.0 MiB, 5.0 MiB"),
        "{out}"
    );
}

#[test]
fn memory_grows_with_the_distinct_stacks_not_with_the_number_of_dumps() {
    let dir = TempDir::new("series-memory");
    // 4,000 stacks of 12 frames, the same in every dump, a few of them growing.
    let dumps = 40;
    let stacks: Vec<Stack> = (0..4000u64)
        .map(|k| Stack {
            addrs: (0..12u64)
                .map(|j| LIB + 0x1000 + ((k * 7919 + j * 104_729) % 0xF_0000))
                .collect(),
            bytes: (0..dumps as u64)
                .map(|i| 64 * (1 + k % 50) + if k % 100 == 7 { 4096 * i } else { 0 })
                .collect(),
        })
        .collect();
    let paths = write_series(&dir, dumps, &stacks);
    let few = leaks(&paths[..8]);
    let many = leaks(&paths);
    assert!(many.out().contains("Leak suspects in 40 dumps"));
    // Folded one dump at a time, 32 more dumps add 12 bytes per stack each (1.5 MiB);
    // holding them whole would add some 2 MiB per dump.
    let grown_kb = many.max_rss_kb - few.max_rss_kb;
    assert!(
        grown_kb < 12 * 1024,
        "peak RSS {} KiB for 8 dumps, {} KiB for 40: +{grown_kb} KiB for 32 more dumps",
        few.max_rss_kb,
        many.max_rss_kb
    );
}
