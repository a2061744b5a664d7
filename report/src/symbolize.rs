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

use super::maps::MapEntry;
use super::names::{demangle, is_allocator_frame, short_function_name};
use super::safe::{escape_in_place, FileStore};
use addr2line::gimli;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{Object, ObjectSection, ObjectSegment};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

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
    /// No name: shown as `object+0xaddress` (or a raw address).
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
    /// Sampled addresses in it.
    pub addresses: usize,
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
    pub debuginfod: super::debuginfod::Config,
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
            debuginfod: super::debuginfod::Config::from_env(),
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
/// A file another user can write is read into memory rather than mapped: at most this.
const MAX_READ: u64 = 2 << 30;

/// An object or debug file, opened safely (see [`super::safe`]), its bytes kept in the
/// report's [`FileStore`]: the parsed structures borrow from them.
struct FileData<'a> {
    data: &'a [u8],
    meta: std::fs::Metadata,
    /// `statfs`'s f_type.
    fs_type: Option<nix::sys::statfs::FsType>,
}

/// Opens a file named by a dump (or found for one): a regular file only, never blocking,
/// `follow`: whether the last component may be a symbolic link. Err is the reason.
fn open_file<'a>(store: &'a FileStore, path: &Path, follow: bool) -> Result<FileData<'a>, String> {
    let opened = super::safe::open_regular(path, follow).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            e.to_string()
        } else {
            format!("cannot be read ({e})")
        }
    })?;
    let fs_type = nix::sys::statfs::fstatfs(&opened.file)
        .ok()
        .map(|s| s.filesystem_type());
    let data = store.file_bytes(&opened, MAX_READ)?;
    Ok(FileData {
        data,
        meta: opened.meta,
        fs_type,
    })
}

/// Debug sections of one file, decompressed within bounds: each at most [`MAX_SECTION`],
/// all together at most [`MAX_RATIO`] times the file's size. All or nothing: when one is
/// too large none is decompressed, and Err names it (for a warning).
fn debug_sections<'a>(
    store: &'a FileStore,
    file: &object::File<'a>,
    file_size: u64,
    ids: &[gimli::SectionId],
) -> Result<HashMap<gimli::SectionId, &'a [u8]>, String> {
    let budget = file_size.saturating_mul(MAX_RATIO);
    let mut wanted = Vec::new();
    let mut total: u64 = 0;
    for &id in ids {
        let Some(section) = file.section_by_name(id.name()) else {
            continue;
        };
        let Ok(c) = section.compressed_data() else {
            continue;
        };
        if c.format != object::CompressionFormat::None {
            let name = section.name().unwrap_or(id.name());
            total = total.saturating_add(c.uncompressed_size);
            if c.uncompressed_size > MAX_SECTION || total > budget {
                return Err(format!(
                    "its section {name} claims {} bytes once decompressed ({} compressed), \
                     more than jemsafe decompresses (at most {} MiB per section, and \
                     {MAX_RATIO} times the file's size, here {budget} bytes, in all): its \
                     debug information is not used",
                    c.uncompressed_size,
                    c.data.len(),
                    MAX_SECTION >> 20
                ));
            }
        }
        wanted.push((id, c));
    }
    let mut out = HashMap::new();
    for (id, c) in wanted {
        // A section that cannot be decompressed is left out, as before.
        let data = decompress_section(store, c).unwrap_or(&[]);
        out.insert(id, data);
    }
    Ok(out)
}

/// One section's data, decompressed into exactly its declared size (checked above): the
/// output never grows beyond it, whatever the compressed stream holds.
fn decompress_section<'a>(store: &'a FileStore, c: object::CompressedData<'a>) -> Option<&'a [u8]> {
    use std::io::Read;
    if c.format == object::CompressionFormat::None {
        return Some(c.data);
    }
    let size = usize::try_from(c.uncompressed_size).ok()?;
    let mut out = Vec::new();
    out.try_reserve_exact(size).ok()?;
    match c.format {
        object::CompressionFormat::Zlib => {
            // decompress_vec writes into the spare capacity only: at most `size` bytes.
            flate2::Decompress::new(true)
                .decompress_vec(c.data, &mut out, flate2::FlushDecompress::Finish)
                .ok()?;
        }
        object::CompressionFormat::Zstandard => {
            let mut input = c.data;
            while !input.is_empty() && out.len() <= size {
                let decoder = ruzstd::StreamingDecoder::new(&mut input).ok()?;
                let room = (size - out.len()) as u64 + 1;
                decoder.take(room).read_to_end(&mut out).ok()?;
            }
        }
        _ => return None,
    }
    (out.len() == size).then(|| store.buffer(out))
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
    /// The end of its extent: the largest `st_value + st_size` of the symbols at `start`
    /// (`start` itself for symbols of size 0, which hold no address).
    end: u64,
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
    size: u64,
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
        let end = group
            .iter()
            .map(|s| s.value.saturating_add(s.size))
            .max()
            .unwrap_or(value);
        out.push(NmSym {
            start: value,
            end,
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

/// The symbol whose extent `[start, end)` holds `mpc`: the closest one at or below it, or
/// failing that an earlier, larger one around it (`max_end[i]`: the largest end among
/// `table[..=i]`). None: no symbol holds the address, any name would be a guess.
fn covering_index(table: &[NmSym], max_end: &[u64], mpc: u64) -> Option<usize> {
    let idx = table.partition_point(|s| s.start <= mpc);
    let mut i = idx.checked_sub(1)?;
    loop {
        if table[i].end > mpc {
            return Some(i);
        }
        if *max_end.get(i)? <= mpc {
            return None;
        }
        i = i.checked_sub(1)?;
    }
}

/// The running maximum of the extents' ends, for [`covering_index`].
fn max_ends(table: &[NmSym]) -> Vec<u64> {
    let mut m = 0;
    table
        .iter()
        .map(|s| {
            m = m.max(s.end);
            m
        })
        .collect()
}

type Elf64 = object::elf::FileHeader64<object::Endianness>;

/// The symbols nm would list: `.symtab`, or `.dynsym` (with `@VERSION`/`@@VERSION`) when
/// there is no `.symtab`. Names are copied; in an ordinary file they add up to about its
/// string table, so more than [`NAME_RATIO`] times the file's size means entries that
/// share one long name over and over, and the table is refused (Err says so).
fn elf_symbols(data: &[u8]) -> Result<Vec<RawSym>, String> {
    let Ok(header) = Elf64::parse(data) else {
        return Ok(Vec::new());
    };
    let Ok(endian) = header.endian() else {
        return Ok(Vec::new());
    };
    let Ok(sections) = header.sections(endian, data) else {
        return Ok(Vec::new());
    };
    let budget = (data.len() as u64).saturating_mul(NAME_RATIO);
    let mut copied: u64 = 0;
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
            copied = copied.saturating_add(name.len() as u64);
            if copied > budget {
                return Err(format!(
                    "its symbol names add up to more than {NAME_RATIO} times the file's size \
                     (many symbols share a name): its symbol table is not used"
                ));
            }
            let mut name = String::from_utf8_lossy(name).into_owned();
            if let Some(v) = &versions {
                let vi = v.version_index(endian, object::read::SymbolIndex(index));
                if let Ok(Some(version)) = v.version(vi) {
                    copied = copied.saturating_add(version.name().len() as u64);
                    if copied > budget {
                        return Err(format!(
                            "its symbol versions add up to more than {NAME_RATIO} times the \
                             file's size: its symbol table is not used"
                        ));
                    }
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
                size: sym.st_size(endian),
                name,
                text,
            });
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Ok(Vec::new())
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

type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// The DWARF sections of one file, decompressed once.
struct DwarfData<'a> {
    sections: HashMap<gimli::SectionId, &'a [u8]>,
    endian: gimli::RunTimeEndian,
    sup: Option<std::sync::Arc<gimli::Dwarf<Reader<'a>>>>,
}

/// The DWARF sections gimli reads, except location lists and type units: names need
/// neither, and not decompressing them saves much of the time on a distribution's debug
/// files.
fn dwarf_section_ids() -> Vec<gimli::SectionId> {
    let mut ids = Vec::new();
    let _ = gimli::Dwarf::load(|id: gimli::SectionId| -> Result<Reader<'_>, gimli::Error> {
        if !matches!(
            id,
            gimli::SectionId::DebugLoc
                | gimli::SectionId::DebugLocLists
                | gimli::SectionId::DebugTypes
        ) {
            ids.push(id);
        }
        Ok(gimli::EndianSlice::new(&[], gimli::RunTimeEndian::Little))
    });
    ids
}

fn endian_of(file: &object::File<'_>) -> gimli::RunTimeEndian {
    if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

impl<'a> DwarfData<'a> {
    /// None: no DWARF; Err: DWARF too large to decompress (the reason, for a warning).
    fn load(
        store: &'a FileStore,
        file: &object::File<'a>,
        file_size: u64,
    ) -> Result<Option<DwarfData<'a>>, String> {
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let sections = debug_sections(store, file, file_size, &dwarf_section_ids())?;
        Ok(Some(DwarfData {
            sections,
            endian: endian_of(file),
            sup: None,
        }))
    }

    /// A `Dwarf` over the sections; with `unit`, `.debug_info` is cut to that one unit
    /// (its unit-relative references stay valid) and `.debug_aranges` left out.
    fn dwarf(&self, unit: Option<std::ops::Range<usize>>) -> Option<gimli::Dwarf<Reader<'a>>> {
        let mut d =
            gimli::Dwarf::load(|id: gimli::SectionId| -> Result<Reader<'a>, gimli::Error> {
                let data: &'a [u8] = self.sections.get(&id).copied().unwrap_or(&[]);
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
struct DwarfIndex<'a> {
    /// (begin, end, unit offset) from `.debug_aranges`, sorted.
    aranges: Vec<(u64, u64, usize)>,
    units: HashMap<usize, addr2line::Context<Reader<'a>>>,
    /// For addresses `.debug_aranges` does not cover: the whole file.
    whole: Option<addr2line::Context<Reader<'a>>>,
}

impl<'a> DwarfIndex<'a> {
    fn unit_of(&self, addr: u64) -> Option<usize> {
        let idx = self.aranges.partition_point(|a| a.0 <= addr);
        let (begin, end, unit) = *self.aranges.get(idx.checked_sub(1)?)?;
        (begin <= addr && addr < end).then_some(unit)
    }

    fn build(data: &DwarfData<'a>, addrs: &[u64]) -> Option<DwarfIndex<'a>> {
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
struct Loaded<'a> {
    nm: Vec<NmSym>,
    nm_max_end: Vec<u64>,
    debug_max_end: Vec<u64>,
    build_id: Option<String>,
    /// The separate debug file's own symbol table: what addr2line falls back to where
    /// DWARF has no function (it reads the debug file, nm does not).
    debug_syms: Vec<NmSym>,
    dwarf: Option<DwarfIndex<'a>>,
    /// (file offset, file size, vaddr) of PT_LOAD segments, to turn file offsets into
    /// addresses in the object.
    segments: Vec<(u64, u64, u64)>,
    /// .text's (vaddr - file offset), jeprof's adjustment, when no segment fits.
    text_adjust: Option<i128>,
    debug_file: Option<PathBuf>,
}

impl Loaded<'_> {
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

/// A separate debug file found for an object.
struct DebugFile<'a> {
    path: PathBuf,
    data: &'a [u8],
    file: object::File<'a>,
}

/// A `.gnu_debuglink` or `.gnu_debugaltlink` name usable under a directory: one plain
/// file name, no `/`, not `.` or `..` (the object may be someone else's file).
fn plain_file_name(name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']))
        .then(|| name.to_owned())
}

/// A separate debug file for `path`: by build-id, by path, by .gnu_debuglink; it must have
/// the same build-id when both have one. Candidates may be symbolic links (the
/// `.build-id` tree is made of them) but must lead to regular files.
fn find_debug_file<'a>(
    store: &'a FileStore,
    path: &Path,
    file: &object::File<'_>,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Option<DebugFile<'a>> {
    let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(id) = &build_id {
        candidates.push(super::debuginfod::cached(
            &opts.debuginfod.cache,
            id,
            super::debuginfod::Kind::Debuginfo,
        ));
    }
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
        if let (Some(link), Some(parent)) = (plain_file_name(link), path.parent()) {
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
        // Missing candidates are the rule; anything else found there is worth a word.
        if c == path || std::fs::metadata(&c).is_err() {
            continue;
        }
        let opened = match open_file(store, &c, true) {
            Ok(o) => o,
            Err(why) => {
                notes.push(format!("debug file {} {why}; not used", c.display()));
                continue;
            }
        };
        let Ok(dbg) = object::File::parse(opened.data) else {
            continue;
        };
        let dbg_id = dbg.build_id().ok().flatten();
        // An object with a build-id takes only a debug file with the same build-id.
        match (&build_id, dbg_id) {
            (Some(a), b) if b != Some(&a[..]) => continue,
            _ => {}
        }
        return Some(DebugFile {
            path: c,
            data: opened.data,
            file: dbg,
        });
    }
    None
}

/// The separate debug file jemsafe would use for the object at `path` (by build-id, by
/// path, by `.gnu_debuglink`, or in the debuginfod cache), for packing it with a dump.
pub fn debug_file_for(path: &Path, opts: &Options) -> Option<PathBuf> {
    let store = FileStore::default();
    let opened = open_file(&store, path, true).ok()?;
    let file = object::File::parse(opened.data).ok()?;
    find_debug_file(&store, path, &file, opts, &mut Vec::new()).map(|d| d.path)
}

/// The dwz supplementary file a debug file refers to (`.gnu_debugaltlink`); it must carry
/// the build-id the link names.
fn load_sup<'a>(
    store: &'a FileStore,
    target: &mut DwarfData<'a>,
    file: &object::File<'_>,
    opts: &Options,
    notes: &mut Vec<String>,
) {
    let mut dwarf = gimli::Dwarf::<Reader<'a>>::default();
    let Ok(Some((name, id))) = file.gnu_debugaltlink() else {
        return;
    };
    let mut candidates = vec![];
    for dir in &opts.debug_dirs {
        candidates.extend(build_id_path(dir, id));
    }
    match std::str::from_utf8(name) {
        Ok(n) if n.starts_with('/') && !n.contains('\0') => candidates.push(PathBuf::from(n)),
        _ => {
            if let Some(n) = plain_file_name(name) {
                for dir in &opts.debug_dirs {
                    candidates.push(dir.join(".dwz").join(&n));
                }
            }
        }
    }
    for c in candidates {
        let Ok(opened) = open_file(store, &c, true) else {
            continue;
        };
        let Ok(sup) = object::File::parse(opened.data) else {
            continue;
        };
        if sup.build_id().ok().flatten() != Some(id) {
            continue;
        }
        let sections = match debug_sections(store, &sup, opened.meta.len(), &dwarf_section_ids()) {
            Ok(s) => s,
            Err(why) => {
                notes.push(format!("{}: {why}", c.display()));
                return;
            }
        };
        let endian = endian_of(&sup);
        let loaded = dwarf.load_sup(
            |sid: gimli::SectionId| -> Result<Reader<'a>, gimli::Error> {
                let data: &'a [u8] = sections.get(&sid).copied().unwrap_or(&[]);
                Ok(gimli::EndianSlice::new(data, endian))
            },
        );
        if loaded.is_ok() {
            target.sup = dwarf.sup.take();
            return;
        }
    }
}

const OVERLAYFS: nix::sys::statfs::FsType = nix::sys::statfs::OVERLAYFS_SUPER_MAGIC;
const BTRFS: nix::sys::statfs::FsType = nix::sys::statfs::BTRFS_SUPER_MAGIC;

/// Whether the file at a maps line's path (device `dev`, inode `ino` by fstat, on a
/// file system of type `fs_type`) is the file that was mapped. The inode must match, and
/// so must the device, except where the kernel's maps and stat disagree by design:
/// overlayfs (before Linux 6.8 the maps show the lower layer's device; the same rule as
/// `verify`) and btrfs (stat shows a subvolume's anonymous device).
fn same_file(
    entry: &MapEntry,
    dev: (u32, u32),
    ino: u64,
    fs_type: Option<nix::sys::statfs::FsType>,
) -> Result<(), String> {
    if ino != entry.inode {
        return Err(format!(
            "is not the file that was mapped (inode {ino} now, {} in the dump): it was \
             replaced after the dump, e.g. by a package upgrade",
            entry.inode
        ));
    }
    if dev != entry.dev && !matches!(fs_type, Some(t) if t == OVERLAYFS || t == BTRFS) {
        return Err(format!(
            "is not the file that was mapped (device {:02x}:{:02x} now, {:02x}:{:02x} in \
             the dump, same inode number): another file system is mounted there now",
            dev.0, dev.1, entry.dev.0, entry.dev.1
        ));
    }
    Ok(())
}

/// A file's DWARF, or None with a note when it is too large to decompress.
fn dwarf_or_note<'a>(
    store: &'a FileStore,
    file: &object::File<'a>,
    size: u64,
    shown: &str,
    notes: &mut Vec<String>,
) -> Option<DwarfData<'a>> {
    DwarfData::load(store, file, size).unwrap_or_else(|why| {
        notes.push(format!("{shown}: {why}"));
        None
    })
}

/// Opens `path` as mapped by `entry`; Err is the reason it cannot be used. Warnings
/// (e.g. debug information too large to decompress) go to `notes`.
fn load_object<'a>(
    store: &'a FileStore,
    path: &str,
    entry: &MapEntry,
    file_offsets: &[u64],
    opts: &Options,
    notes: &mut Vec<String>,
    recorded: Option<&[u8]>,
) -> Result<Loaded<'a>, String> {
    let (data, file) = match mapped_file(store, path, entry, recorded) {
        Ok(found) => found,
        Err(why) => match recorded.and_then(|id| by_build_id(store, id, opts, notes)) {
            // The build that was mapped, found by the build-id its sidecar recorded.
            Some(found) => found,
            None => {
                return Err(match recorded {
                    Some(id) => format!(
                        "{why}; the build that was mapped (build-id {}) was not found by \
                         build-id either (in {})",
                        hex(id),
                        shown_dirs(opts)
                    ),
                    None => why,
                })
            }
        },
    };
    build_loaded(store, path, data, file, file_offsets, opts, notes)
}

fn shown_dirs(opts: &Options) -> String {
    let dirs: Vec<String> = opts
        .debug_dirs
        .iter()
        .map(|d| d.join(".build-id").display().to_string())
        .collect();
    if dirs.is_empty() {
        "no debug directory".into()
    } else {
        dirs.join(", ")
    }
}

/// A file found by build-id (a separate debug file: symbols and DWARF, no code), checked
/// to carry that build-id.
fn by_build_id<'a>(
    store: &'a FileStore,
    id: &[u8],
    opts: &Options,
    notes: &mut Vec<String>,
) -> Option<(&'a [u8], object::File<'a>)> {
    use super::debuginfod::{cached, Kind};
    let in_cache =
        [Kind::Debuginfo, Kind::Executable].map(|k| cached(&opts.debuginfod.cache, id, k));
    let local = opts.debug_dirs.iter().flat_map(|d| {
        // `xx/rest.debug`, the debug file; `xx/rest`, the object itself (as Fedora's
        // .build-id trees and `jemsafe archive` have it).
        let debug = build_id_path(d, id);
        let exe = debug
            .as_ref()
            .map(|p| p.with_extension(""))
            .filter(|p| p.extension().is_none());
        exe.into_iter().chain(debug)
    });
    for c in local.chain(in_cache) {
        if std::fs::metadata(&c).is_err() {
            continue;
        }
        let opened = match open_file(store, &c, true) {
            Ok(o) => o,
            Err(why) => {
                notes.push(format!("debug file {} {why}; not used", c.display()));
                continue;
            }
        };
        let Ok(file) = object::File::parse(opened.data) else {
            continue;
        };
        if file.build_id().ok().flatten() == Some(id) {
            return Some((opened.data, file));
        }
    }
    None
}

/// The file at `path` if it is the one that was mapped: same device and inode as the
/// dump's maps say, or (when the dump's sidecar recorded one) the same build-id.
fn mapped_file<'a>(
    store: &'a FileStore,
    path: &str,
    entry: &MapEntry,
    recorded: Option<&[u8]>,
) -> Result<(&'a [u8], object::File<'a>), String> {
    if path.ends_with(" (deleted)") {
        return Err("was deleted after it was mapped (replaced by an upgrade?)".into());
    }
    if entry.inode == 0 && recorded.is_none() {
        // No file has inode 0: the line is not a file mapping or was forged, and without
        // the inode a replaced object cannot be told from the one that was mapped.
        return Err(
            "has inode 0 in the dump's maps, so it cannot be checked to be the \
             file that was mapped"
                .into(),
        );
    }
    let p = Path::new(path);
    // The kernel writes resolved paths in the maps: the last component is never a link.
    let opened = open_file(store, p, false)?;
    let same = {
        use std::os::unix::fs::MetadataExt;
        let st_dev = opened.meta.dev();
        let dev = (libc::major(st_dev), libc::minor(st_dev));
        same_file(entry, dev, opened.meta.ino(), opened.fs_type)
    };
    let data = opened.data;
    let file = object::File::parse(data).map_err(|e| format!("is not an ELF object ({e})"))?;
    match recorded {
        // The build-id decides: the same build elsewhere (another machine, a copy) is
        // the file; a file rewritten in place is not.
        Some(id) => {
            let now = file.build_id().ok().flatten();
            if now == Some(id) {
                Ok((data, file))
            } else {
                same?;
                Err(format!(
                    "is not the build that was mapped (build-id {} now, {} when the dump \
                     was taken)",
                    now.map(hex).unwrap_or_else(|| "none".into()),
                    hex(id)
                ))
            }
        }
        None => same.map(|()| (data, file)),
    }
}

/// An object (or the debug file standing in for it) ready to answer.
fn build_loaded<'a>(
    store: &'a FileStore,
    path: &str,
    data: &'a [u8],
    file: object::File<'a>,
    file_offsets: &[u64],
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<Loaded<'a>, String> {
    let p = Path::new(path);
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
    let debug = find_debug_file(store, p, &file, opts, notes);
    // Symbols as `nm` lists them for the object itself (its .symtab, else .dynsym): nm
    // does not follow debug links, and jeprof's names depend on exactly this table. The
    // debug file's DWARF still gives the names of functions the table lacks.
    let mut symbols_or_note = |data: &[u8], shown: &str| {
        elf_symbols(data).unwrap_or_else(|why| {
            notes.push(format!("{shown}: {why}"));
            Vec::new()
        })
    };
    let nm = nm_table(symbols_or_note(data, path));
    let debug_syms = match &debug {
        Some(d) => nm_table(symbols_or_note(d.data, &d.path.display().to_string())),
        None => Vec::new(),
    };
    let from_debug = debug.as_ref().and_then(|d| {
        let shown = d.path.display().to_string();
        dwarf_or_note(store, &d.file, d.data.len() as u64, &shown, notes)
    });
    let dwarf = match (from_debug, &debug) {
        (Some(mut d), Some(dbg)) => {
            load_sup(store, &mut d, &dbg.file, opts, notes);
            Some(d)
        }
        _ => dwarf_or_note(store, &file, data.len() as u64, path, notes),
    }
    .and_then(|d| {
        let addrs: Vec<u64> = file_offsets
            .iter()
            .map(|&off| object_address(&segments, text_adjust, off))
            .collect();
        DwarfIndex::build(&d, &addrs)
    });
    Ok(Loaded {
        nm_max_end: max_ends(&nm),
        debug_max_end: max_ends(&debug_syms),
        build_id: file.build_id().ok().flatten().map(hex),
        nm,
        debug_syms,
        dwarf,
        segments,
        text_adjust,
        debug_file: debug.map(|d| d.path),
    })
}

/// DWARF frames for `addr`, innermost first: demangled names, None where DWARF has no
/// function (addr2line's `??`).
fn dwarf_frames(ctx: &addr2line::Context<Reader<'_>>, addr: u64) -> Vec<Option<String>> {
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

/// A symbol table's answer for one address: its (short, full) names and whether its
/// extent holds the address.
type NmAnswer = Option<((String, String), bool)>;

/// jeprof's MapToSymbols for one pc: frames caller first. With [`NameMode::Exact`], a
/// symbol names an address only when its extent holds it.
fn frames_for(
    loaded: &Loaded<'_>,
    cache: &mut HashMap<usize, (String, String)>,
    pc: u64,
    mpc: u64,
    label: &str,
    mode: NameMode,
) -> Vec<Frame> {
    let closest = nm_index(&loaded.nm, mpc);
    let covering = covering_index(&loaded.nm, &loaded.nm_max_end, mpc);
    let chosen = match mode {
        NameMode::Exact => covering,
        NameMode::Jeprof => closest,
    };
    let nms: NmAnswer = if loaded.nm.is_empty() {
        None
    } else {
        match chosen {
            Some(i) => Some((
                cache
                    .entry(i)
                    .or_insert_with(|| loaded.nm[i].names())
                    .clone(),
                covering == Some(i),
            )),
            None if mode == NameMode::Jeprof => {
                let a = format!("0x{pc:016x}");
                Some(((a.clone(), a), false))
            }
            None => None,
        }
    };
    let mut dwarf: Vec<(Option<String>, Source)> = match &loaded.dwarf {
        Some(index) => index
            .frames(mpc)
            .into_iter()
            .map(|n| (n, Source::Dwarf))
            .collect(),
        None => Vec::new(),
    };
    if dwarf.is_empty() {
        dwarf.push((None, Source::Unnamed));
    }
    // Where DWARF has no function, addr2line names the closest symbol (demangled, without
    // nm's address tag) of the debug file, else of the object, or says `??`.
    if let Some(first @ (None, _)) = dwarf.first_mut() {
        let (table, ends) = if loaded.debug_syms.is_empty() {
            (&loaded.nm, &loaded.nm_max_end)
        } else {
            (&loaded.debug_syms, &loaded.debug_max_end)
        };
        let cover = covering_index(table, ends, mpc);
        let pick = match mode {
            NameMode::Exact => cover,
            NameMode::Jeprof => nm_index(table, mpc),
        };
        if let Some(i) = pick {
            let source = if cover == Some(i) {
                Source::Symtab
            } else {
                Source::Guess
            };
            *first = (Some(demangle(&table[i].raw)), source);
        }
    }
    let mut symlist: Vec<Frame> = Vec::with_capacity(dwarf.len());
    for (name, source) in dwarf {
        let mut frame = match name {
            Some(full) => Frame {
                func: short_function_name(&full),
                full,
                source,
                allocator: false,
            },
            None => Frame::plain("??".into(), Source::Unnamed),
        };
        if let Some(((nm_func, nm_full), covers)) = &nms {
            if frame.full == "??" || nm_full.starts_with(&frame.func) {
                // Where DWARF named the function, the symbol only adds its address tag.
                let source = match (frame.source, covers) {
                    (Source::Dwarf, _) => Source::Dwarf,
                    (_, true) => Source::Symtab,
                    _ if nm_func.starts_with("0x") => Source::Unnamed,
                    _ => Source::Guess,
                };
                frame = Frame {
                    func: nm_func.clone(),
                    full: nm_full.clone(),
                    source,
                    allocator: false,
                };
            }
        }
        if frame.func == "??" {
            frame = Frame::plain(format!("{label}+0x{mpc:x}"), Source::Unnamed);
        }
        frame.allocator = is_allocator_frame(&frame.func);
        symlist.push(frame);
    }
    symlist.reverse(); // caller first
    if mode == NameMode::Exact
        && (closest != covering || symlist.iter().any(|f| f.source == Source::Unnamed))
    {
        // jeprof's names decide which frames are the allocator's (inside libjemalloc,
        // internal functions have no symbol of their own: jeprof calls them `malloc`...).
        let jeprof = frames_for(loaded, cache, pc, mpc, label, NameMode::Jeprof);
        let same_depth = jeprof.len() == symlist.len();
        for (i, f) in symlist.iter_mut().enumerate() {
            if (i == 0 || same_depth) && jeprof.get(i).is_some_and(|j| j.allocator) {
                f.allocator = true;
            }
        }
    }
    symlist
}

/// Whether debug information for build `id` is at hand without a download: a separate
/// debug file by build-id, one in the debuginfod cache, or DWARF in the object itself.
fn local_debug_info(id: &[u8], object: Option<&object::File<'_>>, opts: &Options) -> bool {
    if object.is_some_and(|f| f.section_by_name(".debug_info").is_some()) {
        return true;
    }
    let cache = super::debuginfod::cached(
        &opts.debuginfod.cache,
        id,
        super::debuginfod::Kind::Debuginfo,
    );
    cache.exists()
        || opts
            .debug_dirs
            .iter()
            .filter_map(|d| build_id_path(d, id))
            .any(|p| p.exists())
}

/// Fetches from debuginfod, several at once, the debug files of the objects holding
/// `pcs` that have none at hand (and the executable of an object that is gone or was
/// replaced), into the cache where the lookups find them.
fn prefetch(
    store: &FileStore,
    maps: &[MapEntry],
    pcs: &BTreeSet<u64>,
    opts: &Options,
    recorded_id: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> super::debuginfod::Fetched {
    use super::debuginfod::{Kind, Want};
    let cfg = &opts.debuginfod;
    if cfg.urls.is_empty() || cfg.offline {
        return Default::default();
    }
    let mut seen = BTreeSet::new();
    let mut wants: Vec<Want> = Vec::new();
    for m in maps.iter().filter(|m| m.executable()) {
        let Some(path) = m.path.as_deref().filter(|p| p.starts_with('/')) else {
            continue;
        };
        if !seen.insert(path) || pcs.range(m.start..m.end).next().is_none() {
            continue;
        }
        let recorded = recorded_id(path);
        let mapped = mapped_file(store, path, m, recorded.as_deref()).ok();
        let Some(id) = recorded.or_else(|| {
            mapped
                .as_ref()
                .and_then(|(_, f)| f.build_id().ok().flatten().map(<[u8]>::to_vec))
        }) else {
            continue;
        };
        if local_debug_info(&id, mapped.as_ref().map(|(_, f)| f), opts) {
            continue;
        }
        let label = basename(path).to_owned();
        if mapped.is_none() {
            wants.push(Want {
                id: id.clone(),
                kind: Kind::Executable,
                label: label.clone(),
            });
        }
        wants.push(Want {
            id,
            kind: Kind::Debuginfo,
            label,
        });
    }
    super::debuginfod::fetch_all(cfg, &wants)
}

/// Symbolizes `pcs` with the dump's mappings.
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
                }) => format!("{}+0x{:x}", basename(p), (pc - start).wrapping_add(*offset)),
                _ => format!("0x{pc:016x}"),
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
                super::safe::escape(basename(&path)),
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
                    frames_for(l, &mut cache, pc, mpc, &label, opts.names)
                }
                Err(_) => vec![Frame::plain(
                    format!("{label}+0x{file_offset:x}"),
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
            addresses: n,
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
        let f = frames_for(
            &l,
            &mut HashMap::new(),
            0x5555_0000_1010,
            0x1010,
            "x",
            NameMode::Jeprof,
        );
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
                0x1,
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
            let f = frames_for(&l, &mut HashMap::new(), 0x7000_0000 + mpc, mpc, "x", mode);
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
        assert_eq!(out.symbols[&0x9000][0].func, "0x0000000000009000");
        assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
        assert!(out.notes[0].contains("/nonexistent/libgone.so"));
        assert!(out.notes[0].contains("2 addresses"));
    }
}
