//! Property tests (fuzzing) of the heap-dump parser: it never panics, errors point at a
//! line that exists, well-formed dumps parse to what was written, and the rest of the
//! pipeline copes with whatever the parser accepts.

use crate::aggregate::{AddrProfile, FlatCum, Metric, NameProfile};
use crate::parse::{decompress, decompress_limited, parse, Counts, MapEntry};
use crate::symbolize::{symbolize, Frame, Options, Symbols};
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt;

const VALID: &str = "heap_v2/524288\n  t*: 3: 200 [0: 0]\n  t0: 3: 200 [0: 0]\n\
@ 0x55d1c3a4b5c6 0x55d1c3a4b000 0x7f0000001234\n  t*: 2: 100 [5: 500]\n  t0: 2: 100 [5: 500]\n\
@ 0x55d1c3a4b5c7 0x7f0000001234\n  t*: 1: 100 [1: 100]\n  t0: 1: 100 [1: 100]\n\
\nMAPPED_LIBRARIES:\n\
55d1c3800000-55d1c3a00000 r-xp 00001000 fe:00 247030                     /usr/sbin/mariadbd\n\
7f0000000000-7f0000100000 r-xp 00000000 fe:00 11                         /lib/libc.so.6\n";

fn lines_in(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n').count()
}

/// Parsing anything: no panic; an error names a line of the input (or none).
fn check(data: &[u8]) {
    match parse(data) {
        Ok(d) => {
            // Whatever parses can go through the numbers without panicking.
            let p = AddrProfile::from_dump(&d);
            let mut s = Symbols::new();
            for pc in p.pcs() {
                s.insert(
                    pc,
                    vec![Frame {
                        func: format!("f{}", pc % 7),
                        full: format!("f{}", pc % 7),
                        source: Default::default(),
                        allocator: false,
                    }],
                );
            }
            let np = NameProfile::build(&p, &s, None);
            let fc = FlatCum::of(&np);
            let _ = fc.rows(&np.names, Metric::InuseSpace);
        }
        Err(e) => {
            assert!(
                e.line <= lines_in(data),
                "line {} of {}",
                e.line,
                lines_in(data)
            );
            assert!(!e.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&data);
        let _ = decompress(data);
    }

    #[test]
    fn arbitrary_text_with_dump_words_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("heap_v2/524288\n".to_string()),
                Just("@ 0x1 0x2\n".to_string()),
                Just("  t*: 1: 8 [0: 0]\n".to_string()),
                Just("  t3: 1: 8 [0: 0]\n".to_string()),
                Just("MAPPED_LIBRARIES:\n".to_string()),
                Just("1000-2000 r-xp 00000000 fe:00 1 /bin/x\n".to_string()),
                Just("\n".to_string()),
                "[ -~]{0,30}\n?",
            ],
            0..24,
        )
    ) {
        check(parts.concat().as_bytes());
    }

    #[test]
    fn truncated_or_damaged_valid_dumps_never_panic(cut in 0..VALID.len(), flip in 0..VALID.len(), byte in any::<u8>()) {
        check(&VALID.as_bytes()[..cut]);
        let mut damaged = VALID.as_bytes().to_vec();
        damaged[flip] = byte;
        check(&damaged);
    }

    #[test]
    fn well_formed_dumps_parse_to_what_was_written(
        rate in 1u64..1_000_000,
        stacks in proptest::collection::vec(
            (proptest::collection::vec(1u64..u64::MAX, 1..20), 0u64..1000, 0u64..1_000_000, 0u64..1000, 0u64..1_000_000),
            0..20,
        )
    ) {
        // jemalloc writes a pair as both zero or both non-zero.
        let stacks: Vec<_> = stacks
            .into_iter()
            .map(|(a, n1, s1, n2, s2)| (a, n1, if n1 == 0 { 0 } else { s1 }, n2, if n2 == 0 { 0 } else { s2 }))
            .collect();
        let mut text = format!("heap_v2/{rate}\n  t*: 0: 0 [0: 0]\n");
        for (addrs, n1, s1, n2, s2) in &stacks {
            let a: Vec<String> = addrs.iter().map(|a| format!("0x{a:x}")).collect();
            text.push_str(&format!("@ {}\n  t*: {n1}: {s1} [{n2}: {s2}]\n  t0: {n1}: {s1} [{n2}: {s2}]\n", a.join(" ")));
        }
        text.push_str("\nMAPPED_LIBRARIES:\n1000-2000 r-xp 00000000 00:00 0 /bin/x\n");
        let d = parse(text.as_bytes()).unwrap();
        prop_assert_eq!(d.rate, rate);
        prop_assert_eq!(d.stacks.len(), stacks.len());
        for (rec, (addrs, n1, s1, n2, s2)) in d.stacks.iter().zip(&stacks) {
            prop_assert_eq!(&rec.addrs, addrs);
            prop_assert_eq!(rec.counts, Counts { inuse_objects: *n1, inuse_bytes: *s1, alloc_objects: *n2, alloc_bytes: *s2 });
        }
        prop_assert_eq!(d.maps.len(), 1);
        // Un-sampling never makes a value smaller nor non-finite.
        let p = AddrProfile::from_dump(&d);
        for v in p.stacks.values() {
            prop_assert!(v.iter().all(|x| x.is_finite()));
        }
        let raw: f64 = stacks.iter().map(|s| s.2 as f64).sum();
        prop_assert!(p.total(Metric::InuseSpace) + 1e-6 >= raw);
    }

    #[test]
    fn symbolizing_with_arbitrary_mappings_never_panics(
        maps in proptest::collection::vec((any::<u64>(), 0u64..1 << 20, any::<u64>(), any::<bool>(), 0u8..4), 0..6),
        pcs in proptest::collection::btree_set(any::<u64>(), 0..20),
    ) {
        // /usr/bin/true as it is (so that it is loaded and read), or with inode 0.
        let real = std::fs::metadata("/usr/bin/true").unwrap();
        let real_dev = (libc::major(real.dev()), libc::minor(real.dev()));
        let entries: Vec<MapEntry> = maps
            .iter()
            .map(|&(start, len, offset, exec, path)| MapEntry {
                start,
                end: start.saturating_add(len),
                perms: if exec { "r-xp".into() } else { "r--p".into() },
                offset,
                dev: if path == 2 { real_dev } else { (0, 0) },
                inode: if path == 2 { real.ino() } else { 0 },
                path: match path {
                    0 => None,
                    1 => Some("/nonexistent/lib.so".into()),
                    _ => Some("/usr/bin/true".into()),
                },
            })
            .collect();
        let out = symbolize(&entries, &pcs, &Options::default());
        for pc in &pcs {
            prop_assert!(out.symbols.get(pc).is_some_and(|f| !f.is_empty()));
        }
    }

    #[test]
    fn counts_of_any_size_give_totals_that_fit_or_an_error_at_their_line(
        rate_log in 0u32..64,
        counts in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), 1..6),
    ) {
        let mut text = format!("heap_v2/{}\n", 1u64 << rate_log);
        for (i, (n1, s1, n2, s2)) in counts.iter().enumerate() {
            text.push_str(&format!("@ 0x{:x}\n  t*: {n1}: {s1} [{n2}: {s2}]\n", i + 1));
        }
        text.push_str("MAPPED_LIBRARIES:\n");
        match parse(text.as_bytes()) {
            Ok(d) => {
                // Nothing that parsed can overflow: every total fits in 64 bits.
                let p = AddrProfile::from_dump(&d);
                for m in [Metric::InuseObjects, Metric::InuseSpace, Metric::AllocObjects, Metric::AllocSpace] {
                    let t = p.total(m);
                    prop_assert!(t.is_finite() && (0.0..18_446_744_073_709_551_616.0).contains(&t), "{t}");
                }
                for c in d.stacks.iter().map(|s| s.counts) {
                    prop_assert!(c.inuse_objects != 0 || c.inuse_bytes == 0);
                    prop_assert!(c.alloc_objects != 0 || c.alloc_bytes == 0);
                }
            }
            Err(e) => {
                // The error is at a `t*:` line (lines 3, 5, ...), and says why.
                prop_assert!(e.line >= 3 && e.line % 2 == 1, "{e}");
                prop_assert!(e.message.contains("2^64") || e.message.contains("0 objects"), "{e}");
            }
        }
    }

    #[test]
    fn decompression_never_exceeds_its_limit(
        chunk in proptest::collection::vec(any::<u8>(), 1..64),
        repeat in 1usize..20_000,
        max in 0u64..100_000,
    ) {
        use std::io::Write;
        let data: Vec<u8> = chunk.iter().copied().cycle().take(chunk.len() * repeat).collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let gz = enc.finish().unwrap();
        match decompress_limited(gz, max) {
            Ok(out) => {
                prop_assert!(out.len() as u64 <= max);
                prop_assert_eq!(out, data);
            }
            Err(e) => {
                prop_assert!(data.len() as u64 > max, "{e}");
                prop_assert!(e.message.contains("more than"), "{e}");
            }
        }
    }
}
