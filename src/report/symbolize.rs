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

use super::names::{demangle, short_function_name};
use super::parse::MapEntry;
use addr2line::gimli;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{Object, ObjectSection, ObjectSegment};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One frame of a pc: jeprof's (short name, full name) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What reports show (`ShortFunctionName`).
    pub func: String,
    /// Demangled full name; names from the symbol table end in `<start address>`.
    pub full: String,
}

impl Frame {
    fn plain(name: String) -> Frame {
        Frame {
            func: name.clone(),
            full: name,
        }
    }
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
    /// Objects symbolized: (path, debug file used, addresses).
    pub objects: Vec<(String, Option<PathBuf>, usize)>,
}

/// Where to look for separate debug files (default `/usr/lib/debug`).
#[derive(Debug, Clone)]
pub struct Options {
    pub debug_dirs: Vec<PathBuf>,
    /// Show progress on stderr (on a terminal).
    pub progress: bool,
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
        }
    }
}

/// Keeps a file's bytes for the rest of the process: symbolization is done once per run
/// and the parsed structures borrow from the bytes.
fn map_file(path: &Path) -> std::io::Result<&'static [u8]> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the mapping is read-only and private; a file changed under us while we read
    // it can give wrong names, never memory unsafety in safe code that only reads bytes.
    let mmap = unsafe { memmap2::Mmap::map(&file)? };
    let leaked: &'static memmap2::Mmap = Box::leak(Box::new(mmap));
    Ok(&leaked[..])
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One symbol as `nm -n` lists it, after jeprof's handling of several symbols at one
/// address (the last text symbol there wins, else the first; only the first carries the
/// `<address>` tag).
#[derive(Debug, Clone)]
struct NmSym {
    start: u64,
    /// The raw (mangled) name; demangled only when an address needs it.
    raw: String,
    /// Whether jeprof tags it with its address.
    tagged: bool,
}

impl NmSym {
    /// (short, full) as jeprof has them.
    fn names(&self) -> (String, String) {
        let full = if self.tagged {
            format!("{}<{:016x}>", demangle(&self.raw), self.start)
        } else {
            demangle(&self.raw)
        };
        (short_function_name(&full), full)
    }
}

#[derive(Debug, Clone)]
struct RawSym {
    value: u64,
    name: String,
    text: bool,
}

/// `nm -n`'s order (address, then name) and jeprof's GetProcedureBoundariesViaNm.
fn nm_table(mut raw: Vec<RawSym>) -> Vec<NmSym> {
    raw.sort_by(|a, b| a.value.cmp(&b.value).then_with(|| a.name.cmp(&b.name)));
    let mut out: Vec<NmSym> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let value = raw[i].value;
        let mut j = i;
        while j < raw.len() && raw[j].value == value {
            j += 1;
        }
        let group = &raw[i..j];
        let (raw, tagged) = match group[1..].iter().rposition(|s| s.text) {
            // A later text symbol replaced the first one, untagged.
            Some(k) => (group[1 + k].name.clone(), false),
            None => (group[0].name.clone(), true),
        };
        out.push(NmSym {
            start: value,
            raw,
            tagged,
        });
        i = j;
    }
    out
}

/// jeprof's MapSymbolsWithNM for one address (`mpc`: in the object's address space):
/// the index of its symbol. None: beyond the last symbol (jeprof shows the address).
fn nm_index(table: &[NmSym], mpc: u64) -> Option<usize> {
    if table.is_empty() {
        return None;
    }
    let idx = table.partition_point(|s| s.start <= mpc);
    if idx == 0 {
        // jeprof gives addresses below the first symbol to the first symbol.
        return Some(0);
    }
    if idx == table.len() {
        // The last symbol has size 0 in jeprof.
        return None;
    }
    Some(idx - 1)
}

type Elf64 = object::elf::FileHeader64<object::Endianness>;

/// The symbols nm would list: `.symtab`, or `.dynsym` (with `@VERSION`/`@@VERSION`) when
/// there is no `.symtab`.
fn elf_symbols(data: &[u8]) -> Vec<RawSym> {
    let Ok(header) = Elf64::parse(data) else {
        return Vec::new();
    };
    let Ok(endian) = header.endian() else {
        return Vec::new();
    };
    let Ok(sections) = header.sections(endian, data) else {
        return Vec::new();
    };
    for kind in [object::elf::SHT_SYMTAB, object::elf::SHT_DYNSYM] {
        let Ok(table) = sections.symbols(endian, data, kind) else {
            continue;
        };
        let versions = if kind == object::elf::SHT_DYNSYM {
            sections.versions(endian, data).ok().flatten()
        } else {
            None
        };
        let strings = table.strings();
        let mut out = Vec::new();
        for (index, sym) in table.iter().enumerate() {
            if index == 0 || sym.is_undefined(endian) {
                continue;
            }
            let st_type = sym.st_type();
            if st_type == object::elf::STT_SECTION || st_type == object::elf::STT_FILE {
                continue;
            }
            let Ok(name) = sym.name(endian, strings) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let mut name = String::from_utf8_lossy(name).into_owned();
            if let Some(v) = &versions {
                let vi = v.version_index(endian, object::read::SymbolIndex(index));
                if let Ok(Some(version)) = v.version(vi) {
                    let sep = if vi.is_hidden() { "@" } else { "@@" };
                    name.push_str(sep);
                    name.push_str(&String::from_utf8_lossy(version.name()));
                }
            }
            let bind = sym.st_bind();
            let exec_section = {
                let shndx = sym.st_shndx(endian);
                shndx != object::elf::SHN_UNDEF
                    && shndx < object::elf::SHN_LORESERVE
                    && sections
                        .section(object::read::SectionIndex(shndx as usize))
                        .map(|s| s.sh_flags(endian) & object::elf::SHF_EXECINSTR as u64 != 0)
                        .unwrap_or(false)
            };
            // nm's 't'/'T': a local or global (not weak, not unique) non-ifunc symbol in
            // a code section.
            let text = exec_section
                && (bind == object::elf::STB_LOCAL || bind == object::elf::STB_GLOBAL)
                && st_type != object::elf::STT_GNU_IFUNC;
            out.push(RawSym {
                value: sym.st_value(endian),
                name,
                text,
            });
        }
        if !out.is_empty() {
            return out;
        }
    }
    Vec::new()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// The DWARF sections of one file, decompressed once.
struct DwarfData {
    sections: HashMap<gimli::SectionId, &'static [u8]>,
    endian: gimli::RunTimeEndian,
    sup: Option<std::sync::Arc<gimli::Dwarf<Reader>>>,
}

impl DwarfData {
    fn load(file: &object::File<'static>) -> Option<DwarfData> {
        file.section_by_name(".debug_info")?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let mut sections = HashMap::new();
        let _ = gimli::Dwarf::load(|id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            // Names need neither location lists nor type units: not decompressing them
            // saves much of the time on a distribution's debug files.
            if !matches!(
                id,
                gimli::SectionId::DebugLoc
                    | gimli::SectionId::DebugLocLists
                    | gimli::SectionId::DebugTypes
            ) {
                if let Some(s) = file.section_by_name(id.name()) {
                    let data: &'static [u8] = match s.uncompressed_data() {
                        Ok(Cow::Borrowed(b)) => b,
                        Ok(Cow::Owned(v)) => v.leak(),
                        Err(_) => &[],
                    };
                    sections.insert(id, data);
                }
            }
            Ok(gimli::EndianSlice::new(&[], endian))
        });
        Some(DwarfData {
            sections,
            endian,
            sup: None,
        })
    }

    /// A `Dwarf` over the sections; with `unit`, `.debug_info` is cut to that one unit
    /// (its unit-relative references stay valid) and `.debug_aranges` left out.
    fn dwarf(&self, unit: Option<std::ops::Range<usize>>) -> Option<gimli::Dwarf<Reader>> {
        let mut d = gimli::Dwarf::load(|id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data: &'static [u8] = self.sections.get(&id).copied().unwrap_or(&[]);
            let data = match (id, &unit) {
                (gimli::SectionId::DebugInfo, Some(r)) => data.get(r.clone()).unwrap_or(&[]),
                (gimli::SectionId::DebugAranges, Some(_)) => &[],
                _ => data,
            };
            Ok(gimli::EndianSlice::new(data, self.endian))
        })
        .ok()?;
        d.sup = self.sup.clone();
        Some(d)
    }
}

/// Address lookups in DWARF. addr2line's context parses every unit of a file up front
/// (abbreviations, line program headers): for a distribution's libc that is most of the
/// time and memory of a report that needs a handful of its addresses. So where
/// `.debug_aranges` says which unit holds an address, only those units are parsed.
struct DwarfIndex {
    /// (begin, end, unit offset) from `.debug_aranges`, sorted.
    aranges: Vec<(u64, u64, usize)>,
    units: HashMap<usize, addr2line::Context<Reader>>,
    /// For addresses `.debug_aranges` does not cover: the whole file.
    whole: Option<addr2line::Context<Reader>>,
}

impl DwarfIndex {
    fn unit_of(&self, addr: u64) -> Option<usize> {
        let idx = self.aranges.partition_point(|a| a.0 <= addr);
        let (begin, end, unit) = *self.aranges.get(idx.checked_sub(1)?)?;
        (begin <= addr && addr < end).then_some(unit)
    }

    fn build(data: &DwarfData, addrs: &[u64]) -> Option<DwarfIndex> {
        let whole = data.dwarf(None)?;
        let mut aranges = Vec::new();
        let mut headers = whole.debug_aranges.headers();
        while let Ok(Some(h)) = headers.next() {
            let unit = h.debug_info_offset().0;
            let mut entries = h.entries();
            while let Ok(Some(e)) = entries.next() {
                let r = e.range();
                if r.end > r.begin {
                    aranges.push((r.begin, r.end, unit));
                }
            }
        }
        aranges.sort_unstable();
        let mut index = DwarfIndex {
            aranges,
            units: HashMap::new(),
            whole: None,
        };
        let mut uncovered = false;
        for &a in addrs {
            let Some(unit) = index.unit_of(a) else {
                uncovered = true;
                continue;
            };
            if index.units.contains_key(&unit) {
                continue;
            }
            let Ok(header) = whole
                .debug_info
                .header_from_offset(gimli::DebugInfoOffset(unit))
            else {
                uncovered = true;
                continue;
            };
            let range = unit..unit + header.length_including_self();
            match data
                .dwarf(Some(range))
                .and_then(|d| addr2line::Context::from_dwarf(d).ok())
            {
                Some(ctx) => {
                    index.units.insert(unit, ctx);
                }
                None => uncovered = true,
            }
        }
        if uncovered {
            index.whole = addr2line::Context::from_dwarf(whole).ok();
        }
        Some(index)
    }

    fn frames(&self, addr: u64) -> Vec<Option<String>> {
        if let Some(ctx) = self.unit_of(addr).and_then(|u| self.units.get(&u)) {
            let f = dwarf_frames(ctx, addr);
            if !f.is_empty() {
                return f;
            }
        }
        match &self.whole {
            Some(ctx) => dwarf_frames(ctx, addr),
            None => Vec::new(),
        }
    }
}

/// An object file ready to answer.
struct Loaded {
    nm: Vec<NmSym>,
    /// The separate debug file's own symbol table: what addr2line falls back to where
    /// DWARF has no function (it reads the debug file, nm does not).
    debug_syms: Vec<NmSym>,
    dwarf: Option<DwarfIndex>,
    /// (file offset, file size, vaddr) of PT_LOAD segments, to turn file offsets into
    /// addresses in the object.
    segments: Vec<(u64, u64, u64)>,
    /// .text's (vaddr - file offset), jeprof's adjustment, when no segment fits.
    text_adjust: Option<i128>,
    debug_file: Option<PathBuf>,
}

impl Loaded {
    fn object_address(&self, file_offset: u64) -> u64 {
        object_address(&self.segments, self.text_adjust, file_offset)
    }
}

/// A file offset as an address in the object: through the PT_LOAD segment holding it,
/// else jeprof's .text adjustment.
fn object_address(
    segments: &[(u64, u64, u64)],
    text_adjust: Option<i128>,
    file_offset: u64,
) -> u64 {
    for &(off, size, vaddr) in segments {
        if file_offset >= off && file_offset < off.saturating_add(size.max(1)) {
            return (file_offset - off).wrapping_add(vaddr);
        }
    }
    match text_adjust {
        Some(adj) => (file_offset as i128 + adj) as u64,
        None => file_offset,
    }
}

fn build_id_path(dir: &Path, id: &[u8]) -> Option<PathBuf> {
    if id.len() < 2 {
        return None;
    }
    let h = hex(id);
    Some(
        dir.join(".build-id")
            .join(&h[..2])
            .join(format!("{}.debug", &h[2..])),
    )
}

/// A separate debug file for `path`: by build-id, by path, by .gnu_debuglink; it must have
/// the same build-id when both have one.
fn find_debug_file(
    path: &Path,
    file: &object::File<'static>,
    opts: &Options,
) -> Option<(PathBuf, object::File<'static>)> {
    let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
    let mut candidates: Vec<PathBuf> = Vec::new();
    for dir in &opts.debug_dirs {
        if let Some(id) = &build_id {
            candidates.extend(build_id_path(dir, id));
        }
        if let Ok(rel) = path.strip_prefix("/") {
            candidates.push(dir.join(rel));
            let mut with_ext = dir.join(rel).into_os_string();
            with_ext.push(".debug");
            candidates.push(with_ext.into());
        }
    }
    if let Ok(Some((link, _crc))) = file.gnu_debuglink() {
        let link = String::from_utf8_lossy(link).into_owned();
        if let Some(parent) = path.parent() {
            candidates.push(parent.join(&link));
            candidates.push(parent.join(".debug").join(&link));
            for dir in &opts.debug_dirs {
                if let Ok(rel) = parent.strip_prefix("/") {
                    candidates.push(dir.join(rel).join(&link));
                }
            }
        }
    }
    for c in candidates {
        if c == path || !c.is_file() {
            continue;
        }
        let Ok(data) = map_file(&c) else { continue };
        let Ok(dbg) = object::File::parse(data) else {
            continue;
        };
        let dbg_id = dbg.build_id().ok().flatten();
        // An object with a build-id takes only a debug file with the same build-id.
        match (&build_id, dbg_id) {
            (Some(a), b) if b != Some(&a[..]) => continue,
            _ => {}
        }
        return Some((c, dbg));
    }
    None
}

/// The dwz supplementary file a debug file refers to (`.gnu_debugaltlink`).
fn load_sup(target: &mut DwarfData, file: &object::File<'static>, opts: &Options) {
    let mut dwarf = gimli::Dwarf::<Reader>::default();
    let Ok(Some((name, id))) = file.gnu_debugaltlink() else {
        return;
    };
    let name = PathBuf::from(String::from_utf8_lossy(name).into_owned());
    let mut candidates = vec![];
    for dir in &opts.debug_dirs {
        candidates.extend(build_id_path(dir, id));
    }
    if name.is_absolute() {
        candidates.push(name);
    } else {
        for dir in &opts.debug_dirs {
            candidates.push(dir.join(".dwz").join(&name));
        }
    }
    for c in candidates {
        let Ok(data) = map_file(&c) else { continue };
        let Ok(sup) = object::File::parse(data) else {
            continue;
        };
        let endian = if sup.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let loaded = dwarf.load_sup(|sid: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data: &'static [u8] = match sup.section_by_name(sid.name()) {
                Some(s) => match s.uncompressed_data() {
                    Ok(Cow::Borrowed(b)) => b,
                    Ok(Cow::Owned(v)) => v.leak(),
                    Err(_) => &[],
                },
                None => &[],
            };
            Ok(gimli::EndianSlice::new(data, endian))
        });
        if loaded.is_ok() {
            target.sup = dwarf.sup.take();
            return;
        }
    }
}

/// Opens `path` as mapped by `entry`; Err is the reason it cannot be used.
fn load_object(
    path: &str,
    entry: &MapEntry,
    file_offsets: &[u64],
    opts: &Options,
) -> Result<Loaded, String> {
    if path.ends_with(" (deleted)") {
        return Err("was deleted after it was mapped (replaced by an upgrade?)".into());
    }
    let p = Path::new(path);
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot be read ({e})"))?;
    {
        use std::os::unix::fs::MetadataExt;
        // The inode must match. (Overlay filesystems may show another device in the maps
        // than stat does, so a device mismatch alone does not condemn the file; a
        // different inode always does.)
        if entry.inode != 0 && meta.ino() != entry.inode {
            return Err(format!(
                "is not the file that was mapped (inode {} now, {} in the dump): it was \
                 replaced after the dump, e.g. by a package upgrade",
                meta.ino(),
                entry.inode
            ));
        }
    }
    let data = map_file(p).map_err(|e| format!("cannot be read ({e})"))?;
    let file = object::File::parse(data).map_err(|e| format!("is not an ELF object ({e})"))?;
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (off, size, s.address())
        })
        .collect();
    let text_adjust = file.section_by_name(".text").and_then(|s| {
        let (off, _) = s.file_range()?;
        Some(s.address() as i128 - off as i128)
    });
    let debug = find_debug_file(p, &file, opts);
    // Symbols as `nm` lists them for the object itself (its .symtab, else .dynsym): nm
    // does not follow debug links, and jeprof's names depend on exactly this table. The
    // debug file's DWARF still gives the names of functions the table lacks.
    let raw = elf_symbols(data);
    let nm = nm_table(raw);
    let debug_syms = match &debug {
        Some((dpath, _)) => nm_table(map_file(dpath).map(elf_symbols).unwrap_or_default()),
        None => Vec::new(),
    };
    let dwarf = match &debug {
        Some((_, dbg)) => DwarfData::load(dbg).map(|mut d| {
            load_sup(&mut d, dbg, opts);
            d
        }),
        None => None,
    }
    .or_else(|| DwarfData::load(&file))
    .and_then(|d| {
        let addrs: Vec<u64> = file_offsets
            .iter()
            .map(|&off| object_address(&segments, text_adjust, off))
            .collect();
        DwarfIndex::build(&d, &addrs)
    });
    Ok(Loaded {
        nm,
        debug_syms,
        dwarf,
        segments,
        text_adjust,
        debug_file: debug.map(|(p, _)| p),
    })
}

/// DWARF frames for `addr`, innermost first: demangled names, None where DWARF has no
/// function (addr2line's `??`).
fn dwarf_frames(ctx: &addr2line::Context<Reader>, addr: u64) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let Ok(mut frames) = ctx.find_frames(addr).skip_all_loads() else {
        return out;
    };
    while let Ok(Some(frame)) = frames.next() {
        let name = frame
            .function
            .as_ref()
            .and_then(|f| f.raw_name().ok())
            .map(|n| demangle(&n));
        out.push(name);
    }
    out
}

/// jeprof's MapToSymbols for one pc: frames caller first.
fn frames_for(
    loaded: &Loaded,
    cache: &mut HashMap<usize, (String, String)>,
    pc: u64,
    mpc: u64,
    label: &str,
) -> Vec<Frame> {
    let index = nm_index(&loaded.nm, mpc);
    let nms = if loaded.nm.is_empty() {
        None
    } else {
        Some(match index {
            Some(i) => cache
                .entry(i)
                .or_insert_with(|| loaded.nm[i].names())
                .clone(),
            None => {
                let a = format!("0x{pc:016x}");
                (a.clone(), a)
            }
        })
    };
    let mut dwarf = match &loaded.dwarf {
        Some(index) => index.frames(mpc),
        None => Vec::new(),
    };
    if dwarf.is_empty() {
        dwarf.push(None);
    }
    // Where DWARF has no function, addr2line names the closest symbol (demangled, without
    // nm's address tag) of the debug file, else of the object, or says `??`.
    if let Some(first @ None) = dwarf.first_mut() {
        let fallback = if loaded.debug_syms.is_empty() {
            index.map(|i| &loaded.nm[i])
        } else {
            nm_index(&loaded.debug_syms, mpc).map(|i| &loaded.debug_syms[i])
        };
        *first = fallback.map(|s| demangle(&s.raw));
    }
    let mut symlist: Vec<Frame> = Vec::with_capacity(dwarf.len());
    for name in dwarf {
        let mut frame = match name {
            Some(full) => Frame {
                func: short_function_name(&full),
                full,
            },
            None => Frame::plain("??".into()),
        };
        if let Some((nm_func, nm_full)) = &nms {
            if frame.full == "??" || nm_full.starts_with(&frame.func) {
                frame = Frame {
                    func: nm_func.clone(),
                    full: nm_full.clone(),
                };
            }
        }
        if frame.func == "??" {
            frame = Frame::plain(format!("{label}+0x{mpc:x}"));
        }
        symlist.push(frame);
    }
    symlist.reverse(); // caller first
    symlist
}

/// Symbolizes `pcs` with the dump's mappings.
pub fn symbolize(maps: &[MapEntry], pcs: &BTreeSet<u64>, opts: &Options) -> Outcome {
    let mut out = Outcome::default();
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
                }) => format!("{}+0x{:x}", basename(p), (pc - start).wrapping_add(*offset)),
                _ => format!("0x{pc:016x}"),
            };
            out.object.insert(pc, name.clone());
            out.symbols.insert(pc, vec![Frame::plain(name)]);
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
                basename(&path),
                pcs.len()
            );
        }
        let obj = loaded.entry(path.clone()).or_insert_with(|| {
            let offsets: Vec<u64> = pcs
                .iter()
                .map(|pc| (pc - m.start).wrapping_add(m.offset))
                .collect();
            load_object(&path, m, &offsets, opts)
        });
        *counts.entry(path.clone()).or_default() += pcs.len();
        let label = basename(&path).to_owned();
        let mut cache = HashMap::new();
        for &pc in pcs {
            let file_offset = (pc - m.start).wrapping_add(m.offset);
            let frames = match obj {
                Ok(l) => {
                    let mpc = l.object_address(file_offset);
                    frames_for(l, &mut cache, pc, mpc, &label)
                }
                Err(_) => vec![Frame::plain(format!("{label}+0x{file_offset:x}"))],
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
        match &loaded[path] {
            Ok(l) => out.objects.push((path.clone(), l.debug_file.clone(), n)),
            Err(why) => out.notes.push(format!(
                "{path} {why}; its {n} address{} shown as {}+0xOFFSET",
                if n == 1 { " is" } else { "es are" },
                basename(path)
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: u64, name: &str, text: bool) -> RawSym {
        RawSym {
            value,
            name: name.into(),
            text,
        }
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

    fn loaded(nm: Vec<NmSym>) -> Loaded {
        Loaded {
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
        let f = frames_for(&l, &mut HashMap::new(), 0x5555_0000_1010, 0x1010, "x");
        assert_eq!(
            f,
            vec![Frame {
                func: "foo".into(),
                full: "foo(int)<0000000000001000>".into()
            }]
        );
        let none = loaded(vec![]);
        assert_eq!(
            frames_for(&none, &mut HashMap::new(), 0x1, 0x1010, "libx.so")[0].func,
            "libx.so+0x1010"
        );
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
        assert_eq!(out.symbols[&0x9000][0].func, "0x0000000000009000");
        assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
        assert!(out.notes[0].contains("/nonexistent/libgone.so"));
        assert!(out.notes[0].contains("2 addresses"));
    }
}
