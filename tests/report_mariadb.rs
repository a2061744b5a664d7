//! `jemsafe report` on real MariaDB dumps agrees with jeprof (total and top functions,
//! plain and with --base); `jemsafe leaks` runs on the series.

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
    let (mut js, dir, a, b) = mariadb_grown_dumps(&tmp, 60);
    assert_ne!(a, b);

    let config = dir.join("jemsafe.toml");
    let ours = run(Command::new(jemsafe_bin())
        .args(["report", "--bytes", "--top", "0", "--names", "jeprof"])
        .arg(&b));
    let oracle = run(Command::new("jeprof")
        .args(["--text", "--show_bytes", MARIADBD])
        .arg(&b));
    assert_parity(&ours, &oracle, 15);
    assert!(ours.contains("my_malloc"), "{ours}");

    let ours = run(Command::new(jemsafe_bin())
        .args(["report", "--bytes", "--top", "0", "--names", "jeprof", "-c"])
        .arg(&config)
        .args(["--base", "previous"]));
    assert!(ours.contains(&format!("Base: {}", a.display())), "{ours}");
    let oracle = run(Command::new("jeprof")
        .args(["--text", "--show_bytes"])
        .arg(format!("--base={}", a.display()))
        .arg(MARIADBD)
        .arg(&b));
    assert_parity(&ours, &oracle, 10);

    no_name_outside_a_symbols_extent(&tmp, &b);

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

/// mariadbd is stripped (`.dynsym` only): in the default report, every mariadbd address
/// with a name lies inside the extent `[value, value + size)` of a symbol `nm -D -S` lists,
/// every other one is shown as `mariadbd+0xADDRESS`, and there are such addresses.
fn no_name_outside_a_symbols_extent(tmp: &TempDir, dump: &Path) {
    let nm = run(Command::new("nm").args(["-D", "--defined-only", "-S", MARIADBD]));
    let mut extents: Vec<(u64, u64)> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let start = u64::from_str_radix(f.next()?, 16).ok()?;
            let size = u64::from_str_radix(f.next()?, 16).ok()?;
            Some((start, start + size))
        })
        .collect();
    extents.sort_unstable();
    assert!(extents.len() > 1000, "{nm}");
    let covered = |a: u64| extents.iter().any(|&(s, e)| s <= a && a < e);

    let pb = tmp.join("exact.pb.gz");
    run(Command::new(jemsafe_bin())
        .args(["report", "--format", "pprof", "-o"])
        .arg(&pb)
        .arg(dump));
    let raw = jemsafe_report::decompress(std::fs::read(&pb).unwrap()).unwrap();
    use prost::Message;
    let p = jemsafe_report::pprof::Profile::decode(&raw[..]).unwrap();
    let s = |i: i64| p.string_table[i as usize].as_str();
    // Every mapping of mariadbd carries its build-id, so that Parca and Pyroscope can
    // symbolize it server-side; it has names from the symbol table, no DWARF here.
    let id = jemsafe_report::sidecar::build_id(&std::fs::File::open(MARIADBD).unwrap())
        .map(|b| jemsafe_report::sidecar::hex(&b))
        .expect("mariadbd has a build-id");
    let ours: Vec<_> = p
        .mapping
        .iter()
        .filter(|m| s(m.filename) == MARIADBD)
        .collect();
    assert!(!ours.is_empty(), "no mapping of {MARIADBD}");
    for m in ours {
        assert_eq!(s(m.build_id), id, "{m:?}");
        assert!(m.has_functions && !m.has_inline_frames, "{m:?}");
    }
    let (mut named, mut unnamed) = (0, 0);
    for loc in &p.location {
        let Some(m) = p.mapping.iter().find(|m| m.id == loc.mapping_id) else {
            continue;
        };
        if s(m.filename) != MARIADBD {
            continue;
        }
        // mariadbd's text segment has vaddr == file offset.
        let vaddr = loc.address - m.memory_start + m.file_offset;
        let function = |l: &jemsafe_report::pprof::Line| {
            let f = p.function.iter().find(|f| f.id == l.function_id).unwrap();
            s(f.name).to_owned()
        };
        let names: Vec<String> = loc.line.iter().map(function).collect();
        assert_eq!(names.len(), 1, "no DWARF for mariadbd here: {names:?}");
        if let Some(hex) = names[0].strip_prefix("mariadbd+0x") {
            assert_eq!(u64::from_str_radix(hex, 16).unwrap(), vaddr);
            assert!(!covered(vaddr), "{} is inside a symbol", names[0]);
            unnamed += 1;
        } else {
            assert!(
                covered(vaddr),
                "{:#x} is named {:?} outside every symbol",
                vaddr,
                names[0]
            );
            named += 1;
        }
    }
    assert!(
        named > 10 && unnamed > 5,
        "named {named}, unnamed {unnamed}"
    );
    eprintln!("mariadbd addresses: {named} named, {unnamed} outside every symbol (unnamed)");
    let text = run(Command::new(jemsafe_bin())
        .args(["report", "--top", "0"])
        .arg(dump));
    assert!(text.contains("mariadbd+0x"), "{text}");
    let hint = text
        .lines()
        .find(|l| l.starts_with("Hint: ") && l.contains("/usr/sbin/mariadbd (build-id "))
        .unwrap_or_else(|| panic!("no hint for mariadbd:\n{text}"));
    assert!(hint.contains("DEBUGINFOD_URLS="), "{hint}");
}
