//! Addresses to function names, with the mappings the dump recorded.
//!
//! For every executable file mapping that holds sampled addresses, the object is opened
//! where the dump says it was (and checked to be the same file: same inode), its separate
//! debug file is looked up by build-id (`/usr/lib/debug/.build-id/xx/yyyy.debug`), by path
//! (`/usr/lib/debug/<path>`) and by `.gnu_debuglink`, and each address is turned into
//! frames the way jeprof does it with `addr2line -f -C -i` and `nm -n --demangle`:
//!
//! - DWARF (with inlined frames) where present, innermost frame first;
//! - the symbol table as `nm -n` sees it (`.symtab`, else `.dynsym` with symbol versions):
//!   an address belongs to the closest symbol at or below it, of any type, and where the
//!   DWARF name is a prefix of that symbol's name (or there is no DWARF name) the symbol's
//!   name wins; it carries its start address, `foo(int)<0000000000401000>`, which the
//!   report uses to tell apart different functions with the same short name.
//!
//! An object that is missing, or is not the file that was mapped, is reported once, and its
//! addresses are shown as `object+0xoffset`, never with a name that could be wrong.

mod debug_files;
mod dwarf;
mod files;
mod loaded;
mod prefetch;
mod symtab;

pub use debug_files::debug_file_for;

use crate::maps::MapEntry;
use crate::safe::{escape_in_place, FileStore};
use loaded::{frames_for, load_object, Loaded};
use prefetch::prefetch;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// Where the name of a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// DWARF: the function (or inlined function) that holds the address.
    Dwarf,
    /// A symbol table entry whose extent `[st_value, st_value + st_size)` holds the address.
    #[default]
    Symtab,
    /// `--names jeprof` only: the closest symbol below an address outside its extent
    /// (jeprof's naming; possibly another function's name).
    Guess,
    /// No name: shown as [`unnamed`] says (`object+0xoffset`, or [`UNMAPPED`]).
    Unnamed,
}

/// One frame of a pc: jeprof's (short name, full name) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What reports show (`ShortFunctionName`).
    pub func: String,
    /// Demangled full name; names from the symbol table end in `<start address>`.
    pub full: String,
    pub source: Source,
    /// Whether jeprof's name for this frame (the closest symbol below, even outside its
    /// extent) is an allocator function's: jeprof drops such frames, and so do reports,
    /// whatever name they show.
    pub allocator: bool,
}

impl Frame {
    fn plain(name: String, source: Source) -> Frame {
        Frame {
            func: name.clone(),
            full: name,
            source,
            allocator: false,
        }
    }
}

/// How addresses outside every symbol's extent are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameMode {
    /// Only names that hold the address: DWARF, or a symbol whose extent holds it;
    /// anything else is `object+0xaddress`.
    #[default]
    Exact,
    /// jeprof's naming: the closest symbol at or below the address, whatever its size
    /// (for comparisons with jeprof).
    Jeprof,
}

/// One object that held sampled addresses.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// The path in the dump's maps.
    pub path: String,
    /// Its file name, as addresses in it are shown (`mariadbd+0x...`).
    pub label: String,
    /// Its GNU build-id (hex), when the object could be read.
    pub build_id: Option<String>,
    /// The separate debug file used.
    pub debug_file: Option<PathBuf>,
    /// Whether any DWARF was used (from the object or its debug file).
    pub dwarf: bool,
    /// Why it could not be read, if so.
    pub error: Option<String>,
}

/// pc -> frames, caller (outermost) first, as jeprof keeps them.
pub type Symbols = HashMap<u64, Vec<Frame>>;

/// What symbolization had to say: one line per object that could not be used.
#[derive(Debug, Default)]
pub struct Outcome {
    pub symbols: Symbols,
    /// pc -> the object it is in (file name), or its raw name when it is in none.
    pub object: HashMap<u64, String>,
    pub notes: Vec<String>,
    /// Objects that held sampled addresses, by path.
    pub objects: Vec<ObjectInfo>,
}

/// Where to look for separate debug files (default `/usr/lib/debug`).
#[derive(Debug, Clone)]
pub struct Options {
    pub debug_dirs: Vec<PathBuf>,
    /// Show progress on stderr (on a terminal).
    pub progress: bool,
    pub names: NameMode,
    /// debuginfod servers, cache and limits. Its cache is searched even with no server.
    pub debuginfod: crate::debuginfod::Config,
}

impl Default for Options {
    /// `/usr/lib/debug`, or the colon-separated directories in `JEMSAFE_DEBUG_DIRS`
    /// (empty: no separate debug files).
    fn default() -> Self {
        let debug_dirs = match std::env::var_os("JEMSAFE_DEBUG_DIRS") {
            Some(v) => std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            None => vec![PathBuf::from("/usr/lib/debug")],
        };
        Options {
            debug_dirs,
            progress: false,
            names: NameMode::Exact,
            debuginfod: crate::debuginfod::Config::from_env(),
        }
    }
}

/// The largest section jemsafe decompresses (`SHF_COMPRESSED`, `.zdebug_*`).
pub const MAX_SECTION: u64 = 1 << 30;
/// The decompressed sections of one file add up to at most this many times its size.
/// (Debian's libc6-dbg files reach 13x at most; zlib can reach 1000x.)
pub const MAX_RATIO: u64 = 64;
/// Symbol names copied from one file add up to at most this many times its size.
pub const NAME_RATIO: u64 = 4;
/// What a frame in no mapping of its dump is shown as.
pub const UNMAPPED: &str = "[unmapped]";

/// How every output but pprof shows a frame without a name: the object's file name and
/// the offset in that file (`libfoo.so+0x1a2b`), or [`UNMAPPED`] when no mapping of the
/// dump holds it. Never the absolute address: with ASLR, that tells whoever reads a
/// report where mysqld's libraries are in memory. (pprof carries addresses with their
/// mappings by design; README, Security.)
pub fn unnamed(object: Option<&str>, file_offset: u64) -> String {
    match object {
        Some(label) => format!("{label}+0x{file_offset:x}"),
        None => UNMAPPED.to_owned(),
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Bytes of an even-length hex string (at most 64 bytes, as build-ids are).
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Symbolizes `pcs` with the dump's mappings (the pipeline passes the sidecar's objects
/// too: [`symbolize_recorded`]).
#[cfg(test)]
pub fn symbolize(maps: &[MapEntry], pcs: &BTreeSet<u64>, opts: &Options) -> Outcome {
    symbolize_recorded(maps, pcs, opts, &[])
}

/// [`symbolize`], with the objects the dump's sidecar recorded: an object whose file was
/// replaced or is elsewhere is found by the build-id recorded for its path.
pub fn symbolize_recorded(
    maps: &[MapEntry],
    pcs: &BTreeSet<u64>,
    opts: &Options,
    recorded: &[crate::sidecar::Object],
) -> Outcome {
    let recorded_id = |path: &str| -> Option<Vec<u8>> {
        let o = recorded.iter().find(|o| o.path == path)?;
        unhex(o.build_id.as_deref()?)
    };
    let mut out = Outcome::default();
    // Everything read for this report lives until it is done, then is freed.
    let store = FileStore::default();
    let prefetched = prefetch(&store, maps, pcs, opts, &recorded_id);
    out.notes.extend(prefetched.notes);
    let mut exec: Vec<&MapEntry> = maps
        .iter()
        .filter(|m| m.executable() && m.path.as_deref().is_some_and(|p| p.starts_with('/')))
        .collect();
    exec.sort_by_key(|m| m.start);
    // pcs per mapping (by index in `exec`); the rest have no object.
    let mut by_map: Vec<Vec<u64>> = vec![Vec::new(); exec.len()];
    for &pc in pcs {
        let idx = exec.partition_point(|m| m.start <= pc);
        if idx > 0 && pc < exec[idx - 1].end {
            by_map[idx - 1].push(pc);
        } else {
            let name = match maps.iter().find(|m| m.start <= pc && pc < m.end) {
                Some(MapEntry {
                    path: Some(p),
                    start,
                    offset,
                    ..
                }) => unnamed(Some(basename(p)), (pc - start).wrapping_add(*offset)),
                _ => unnamed(None, 0),
            };
            out.object.insert(pc, name.clone());
            out.symbols
                .insert(pc, vec![Frame::plain(name, Source::Unnamed)]);
        }
    }
    // One load per object path.
    let mut loaded: HashMap<String, Result<Loaded, String>> = HashMap::new();
    let total_objects = by_map.iter().filter(|v| !v.is_empty()).count();
    let mut done_objects = 0;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (m, pcs) in exec.iter().zip(&by_map) {
        if pcs.is_empty() {
            continue;
        }
        let path = m.path.clone().unwrap_or_default();
        done_objects += 1;
        if opts.progress {
            eprint!(
                "\rsymbolizing {done_objects}/{total_objects}: {} ({} addresses)\x1b[K",
                crate::safe::escape(basename(&path)),
                pcs.len()
            );
        }
        let obj = loaded.entry(path.clone()).or_insert_with(|| {
            let offsets: Vec<u64> = pcs
                .iter()
                .map(|pc| (pc - m.start).wrapping_add(m.offset))
                .collect();
            let id = recorded_id(&path);
            load_object(
                &store,
                &path,
                m,
                &offsets,
                opts,
                &mut out.notes,
                id.as_deref(),
            )
        });
        *counts.entry(path.clone()).or_default() += pcs.len();
        let label = basename(&path).to_owned();
        let mut cache = HashMap::new();
        for &pc in pcs {
            let file_offset = (pc - m.start).wrapping_add(m.offset);
            let frames = match obj {
                Ok(l) => {
                    let mpc = l.object_address(file_offset);
                    frames_for(l, &mut cache, mpc, &label, opts.names)
                }
                Err(_) => vec![Frame::plain(
                    unnamed(Some(&label), file_offset),
                    Source::Unnamed,
                )],
            };
            out.symbols.insert(pc, frames);
            out.object.insert(pc, label.clone());
        }
    }
    if opts.progress && total_objects > 0 {
        eprint!("\r\x1b[K");
    }
    let mut paths: Vec<&String> = loaded.keys().collect();
    paths.sort();
    for path in paths {
        let n = counts.get(path).copied().unwrap_or(0);
        let mut info = ObjectInfo {
            path: path.clone(),
            label: basename(path).to_owned(),
            build_id: recorded_id(path).map(|id| hex(&id)),
            debug_file: None,
            dwarf: false,
            error: None,
        };
        match &loaded[path] {
            Ok(l) => {
                info.build_id = l.build_id.clone();
                info.debug_file = l.debug_file.clone();
                info.dwarf = l.dwarf.is_some();
            }
            Err(why) => {
                out.notes.push(format!(
                    "{path} {why}; its {n} address{} shown as {}+0xOFFSET",
                    if n == 1 { " is" } else { "es are" },
                    basename(path)
                ));
                info.error = Some(why.clone());
            }
        }
        out.objects.push(info);
    }
    // Names come from files and dumps other users can write: no control character
    // reaches a terminal, a flame graph or a pprof file.
    for frames in out.symbols.values_mut() {
        for f in frames {
            escape_in_place(&mut f.func);
            escape_in_place(&mut f.full);
        }
    }
    out.object.values_mut().for_each(escape_in_place);
    out.notes.iter_mut().for_each(escape_in_place);
    for o in &mut out.objects {
        escape_in_place(&mut o.path);
        escape_in_place(&mut o.label);
        o.error.iter_mut().for_each(escape_in_place);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::debug_files::*;
    use super::dwarf::*;
    use super::files::*;

    use super::symtab::*;
    use super::*;

    fn raw(value: u64, name: &str, text: bool) -> RawSym {
        sized(value, 0, name, text)
    }

    fn sized(value: u64, size: u64, name: &str, text: bool) -> RawSym {
        RawSym {
            value,
            size,
            name: name.into(),
            text,
        }
    }

    fn entry(dev: (u32, u32), inode: u64) -> MapEntry {
        MapEntry {
            start: 0x1000,
            end: 0x2000,
            perms: "r-xp".into(),
            offset: 0,
            dev,
            inode,
            path: Some("/usr/lib/x.so".into()),
        }
    }

    #[test]
    fn an_object_must_have_the_mapped_device_and_inode() {
        let ext4 = Some(nix::sys::statfs::EXT4_SUPER_MAGIC);
        assert!(same_file(&entry((0xfe, 0), 42), (0xfe, 0), 42, ext4).is_ok());
        let e = same_file(&entry((0xfe, 0), 42), (0xfe, 0), 43, ext4).unwrap_err();
        assert!(e.contains("inode 43 now, 42 in the dump"), "{e}");
        let e = same_file(&entry((0x12, 0x34), 42), (0xfe, 0), 42, ext4).unwrap_err();
        assert!(e.contains("device fe:00 now, 12:34 in the dump"), "{e}");
        // overlayfs (maps show the lower layer's device) and btrfs (stat shows the
        // subvolume's): the inode decides.
        for fs in [OVERLAYFS, BTRFS] {
            assert!(same_file(&entry((0x12, 0x34), 42), (0, 0x2f), 42, Some(fs)).is_ok());
            assert!(same_file(&entry((0x12, 0x34), 42), (0, 0x2f), 7, Some(fs)).is_err());
        }
    }

    #[test]
    fn link_names_are_plain_file_names() {
        assert_eq!(
            plain_file_name(b"libc.so.6.debug").as_deref(),
            Some("libc.so.6.debug")
        );
        for bad in [
            &b"../../etc/shadow"[..],
            b"/etc/shadow",
            b"..",
            b".",
            b"",
            b"a\0b",
            b"\xff",
        ] {
            assert_eq!(plain_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sections_beyond_the_bounds_are_not_decompressed() {
        // The test binary's own sections are not compressed: nothing to refuse.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let file = object::File::parse(&exe[..]).unwrap();
        let store = FileStore::default();
        assert!(debug_sections(&store, &file, 1, &dwarf_section_ids()).is_ok());
    }

    #[test]
    fn nm_table_follows_jeprofs_rules_for_shared_addresses() {
        let t = nm_table(vec![
            raw(0x2000, "_ZN3THDC2Ev", true),
            raw(0x2000, "_ZN3THDC1Ev", true),
            raw(0x1000, "data_alias", false),
            raw(0x1000, "a_first", false),
            raw(0x3000, "weak_only", false),
        ]);
        assert_eq!(t.len(), 3);
        // Only non-text symbols at 0x1000: the first by name, tagged.
        assert_eq!(
            t[0].names(),
            ("a_first".into(), "a_first<0000000000001000>".into())
        );
        // C1 sorts first and is queued; C2 (text) replaces it, untagged.
        assert_eq!(t[1].names(), ("THD::THD".into(), "THD::THD()".into()));
        assert_eq!(t[2].names().0, "weak_only");
    }

    /// A minimal ELF64 (little-endian) with a `.symtab` of `count` function symbols that
    /// all use one name of `name_len` bytes (what a string table shared by every entry
    /// costs nothing to write).
    fn elf_with_shared_name(count: usize, name_len: usize) -> Vec<u8> {
        let mut strtab = vec![0u8];
        strtab.extend(std::iter::repeat(b'n').take(name_len));
        strtab.push(0);
        let mut symtab = vec![0u8; 24]; // the null symbol
        for i in 0..count {
            let mut sym = [0u8; 24];
            sym[0..4].copy_from_slice(&1u32.to_le_bytes()); // st_name
            sym[4] = 0x12; // STB_GLOBAL, STT_FUNC
            sym[6..8].copy_from_slice(&0xfff1u16.to_le_bytes()); // SHN_ABS
            sym[8..16].copy_from_slice(&(0x1000 + i as u64).to_le_bytes());
            symtab.extend_from_slice(&sym);
        }
        let shstrtab = b"\0.strtab\0.symtab\0.shstrtab\0".to_vec();
        let mut data = vec![0u8; 64];
        let place = |data: &mut Vec<u8>, bytes: &[u8]| {
            let at = data.len() as u64;
            data.extend_from_slice(bytes);
            at
        };
        let str_at = place(&mut data, &strtab);
        let sym_at = place(&mut data, &symtab);
        let shstr_at = place(&mut data, &shstrtab);
        let shoff = data.len() as u64;
        let section = |name: u32, kind: u32, off: u64, size: u64, link: u32, entsize: u64| {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            h[48..56].copy_from_slice(&1u64.to_le_bytes());
            h[56..64].copy_from_slice(&entsize.to_le_bytes());
            h
        };
        data.extend_from_slice(&[0u8; 64]);
        data.extend_from_slice(&section(1, 3, str_at, strtab.len() as u64, 0, 0));
        data.extend_from_slice(&section(9, 2, sym_at, symtab.len() as u64, 1, 24));
        data.extend_from_slice(&section(17, 3, shstr_at, shstrtab.len() as u64, 0, 0));
        data[0..4].copy_from_slice(b"\x7fELF");
        data[4] = 2; // ELFCLASS64
        data[5] = 1; // little-endian
        data[6] = 1; // EV_CURRENT
        data[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        data[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        data[20..24].copy_from_slice(&1u32.to_le_bytes());
        data[40..48].copy_from_slice(&shoff.to_le_bytes());
        data[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        data[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        data[60..62].copy_from_slice(&4u16.to_le_bytes()); // e_shnum
        data[62..64].copy_from_slice(&3u16.to_le_bytes()); // e_shstrndx
        data
    }

    #[test]
    fn symbol_names_shared_by_many_entries_are_not_copied_without_bound() {
        // An ordinary table is read whole.
        let ok = elf_symbols(&elf_with_shared_name(3, 10)).unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].name, "nnnnnnnnnn");
        // 20000 entries naming one 64 KiB string: 0.5 MB of file, 1.3 GB if copied.
        let e = elf_symbols(&elf_with_shared_name(20_000, 64 * 1024)).unwrap_err();
        assert!(e.contains("symbol table is not used"), "{e}");
    }

    #[test]
    fn nm_lookup_is_the_closest_symbol_below_and_the_last_has_no_size() {
        let t = nm_table(vec![
            raw(0x1000, "a", true),
            raw(0x2000, "b", true),
            raw(0x3000, "c", true),
        ]);
        assert_eq!(nm_index(&t, 0x10), Some(0));
        assert_eq!(nm_index(&t, 0x1000), Some(0));
        assert_eq!(nm_index(&t, 0x1fff), Some(0));
        assert_eq!(nm_index(&t, 0x2000), Some(1));
        assert_eq!(nm_index(&t, 0x3000), None);
        assert_eq!(nm_index(&t, 0x9000), None);
    }

    fn loaded(nm: Vec<NmSym>) -> Loaded<'static> {
        Loaded {
            nm_max_end: max_ends(&nm),
            debug_max_end: vec![],
            build_id: None,
            nm,
            debug_syms: vec![],
            dwarf: None,
            segments: vec![],
            text_adjust: None,
            debug_file: None,
        }
    }

    #[test]
    fn without_dwarf_names_come_from_the_symbol_table() {
        // The last symbol has no size (jeprof), so a second one bounds the first.
        let l = loaded(nm_table(vec![
            raw(0x1000, "_Z3fooi", true),
            raw(0x2000, "_end", false),
        ]));
        let f = frames_for(&l, &mut HashMap::new(), 0x1010, "x", NameMode::Jeprof);
        assert_eq!(
            f,
            vec![Frame {
                func: "foo".into(),
                full: "foo(int)<0000000000001000>".into(),
                source: Source::Guess,
                allocator: false,
            }]
        );
        let none = loaded(vec![]);
        assert_eq!(
            frames_for(
                &none,
                &mut HashMap::new(),
                0x1010,
                "libx.so",
                NameMode::Exact
            )[0]
            .func,
            "libx.so+0x1010"
        );
    }

    #[test]
    fn exact_names_only_inside_a_symbols_extent() {
        // foo: [0x1000, 0x1100); bar: [0x2000, 0x2800) holds baz: [0x2100, 0x2110).
        let l = loaded(nm_table(vec![
            sized(0x1000, 0x100, "_Z3fooi", true),
            sized(0x2000, 0x800, "bar", true),
            sized(0x2100, 0x10, "baz", true),
            sized(0x3000, 0, "_end", false),
        ]));
        let name = |mpc: u64, mode| {
            let f = frames_for(&l, &mut HashMap::new(), mpc, "x", mode);
            (f[0].func.clone(), f[0].source)
        };
        use NameMode::*;
        assert_eq!(name(0x1010, Exact), ("foo".into(), Source::Symtab));
        assert_eq!(name(0x1010, Jeprof), ("foo".into(), Source::Symtab));
        // Past foo's end: no name (jeprof still says foo, a guess).
        assert_eq!(name(0x1200, Exact), ("x+0x1200".into(), Source::Unnamed));
        assert_eq!(name(0x1200, Jeprof), ("foo".into(), Source::Guess));
        // Past baz but inside bar: bar.
        assert_eq!(name(0x2200, Exact), ("bar".into(), Source::Symtab));
        assert_eq!(name(0x2200, Jeprof), ("baz".into(), Source::Guess));
        assert_eq!(name(0x2108, Exact), ("baz".into(), Source::Symtab));
        // Below the first symbol and after the last.
        assert_eq!(name(0x10, Exact), ("x+0x10".into(), Source::Unnamed));
        assert_eq!(name(0x3004, Exact), ("x+0x3004".into(), Source::Unnamed));
        // Distinct addresses, distinct names.
        assert_ne!(name(0x1200, Exact).0, name(0x1204, Exact).0);
    }

    #[test]
    fn unmapped_and_missing_objects_get_raw_names_and_one_note() {
        let maps = vec![
            MapEntry {
                start: 0x1000,
                end: 0x2000,
                perms: "r-xp".into(),
                offset: 0x400,
                dev: (0, 0),
                inode: 1,
                path: Some("/nonexistent/libgone.so".into()),
            },
            MapEntry {
                start: 0x3000,
                end: 0x4000,
                perms: "r-xp".into(),
                offset: 0,
                dev: (0, 0),
                inode: 0,
                path: Some("[vdso]".into()),
            },
        ];
        let pcs: BTreeSet<u64> = [0x1010, 0x1020, 0x3004, 0x9000].into_iter().collect();
        let out = symbolize(&maps, &pcs, &Options::default());
        assert_eq!(out.symbols[&0x1010][0].func, "libgone.so+0x410");
        assert_eq!(out.symbols[&0x3004][0].func, "[vdso]+0x4");
        assert_eq!(out.symbols[&0x9000][0].func, UNMAPPED);
        assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
        assert!(out.notes[0].contains("/nonexistent/libgone.so"));
        assert!(out.notes[0].contains("2 addresses"));
    }
}
