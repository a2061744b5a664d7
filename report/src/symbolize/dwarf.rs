//! DWARF: debug sections decompressed within bounds, address lookups by compilation unit
//! (`.debug_aranges`), dwz supplementary files.

use super::debug_files::plain_file_name;
use super::files::{build_id_path, open_file};
use super::{Options, MAX_RATIO, MAX_SECTION};
use crate::names::demangle;
use crate::safe::FileStore;
use addr2line::gimli;
use object::{Object as _, ObjectSection as _};
use std::collections::HashMap;
use std::path::PathBuf;

/// Debug sections of one file, decompressed within bounds: each at most [`MAX_SECTION`],
/// all together at most [`MAX_RATIO`] times the file's size. All or nothing: when one is
/// too large none is decompressed, and Err names it (for a warning).
pub(super) fn debug_sections<'a>(
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
pub(super) fn decompress_section<'a>(
    store: &'a FileStore,
    c: object::CompressedData<'a>,
) -> Option<&'a [u8]> {
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

pub(super) type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// The DWARF sections of one file, decompressed once.
pub(super) struct DwarfData<'a> {
    pub(super) sections: HashMap<gimli::SectionId, &'a [u8]>,
    pub(super) endian: gimli::RunTimeEndian,
    pub(super) sup: Option<std::sync::Arc<gimli::Dwarf<Reader<'a>>>>,
}

/// The DWARF sections gimli reads, except location lists and type units: names need
/// neither, and not decompressing them saves much of the time on a distribution's debug
/// files.
pub(super) fn dwarf_section_ids() -> Vec<gimli::SectionId> {
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

pub(super) fn endian_of(file: &object::File<'_>) -> gimli::RunTimeEndian {
    if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

impl<'a> DwarfData<'a> {
    /// None: no DWARF; Err: DWARF too large to decompress (the reason, for a warning).
    pub(super) fn load(
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
    pub(super) fn dwarf(
        &self,
        unit: Option<std::ops::Range<usize>>,
    ) -> Option<gimli::Dwarf<Reader<'a>>> {
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
pub(super) struct DwarfIndex<'a> {
    /// (begin, end, unit offset) from `.debug_aranges`, sorted.
    pub(super) aranges: Vec<(u64, u64, usize)>,
    pub(super) units: HashMap<usize, addr2line::Context<Reader<'a>>>,
    /// For addresses `.debug_aranges` does not cover: the whole file.
    pub(super) whole: Option<addr2line::Context<Reader<'a>>>,
}

impl<'a> DwarfIndex<'a> {
    pub(super) fn unit_of(&self, addr: u64) -> Option<usize> {
        let idx = self.aranges.partition_point(|a| a.0 <= addr);
        let (begin, end, unit) = *self.aranges.get(idx.checked_sub(1)?)?;
        (begin <= addr && addr < end).then_some(unit)
    }

    pub(super) fn build(data: &DwarfData<'a>, addrs: &[u64]) -> Option<DwarfIndex<'a>> {
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

    pub(super) fn frames(&self, addr: u64) -> Vec<Option<String>> {
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

/// The dwz supplementary file a debug file refers to (`.gnu_debugaltlink`); it must carry
/// the build-id the link names.
pub(super) fn load_sup<'a>(
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

/// A file's DWARF, or None with a note when it is too large to decompress.
pub(super) fn dwarf_or_note<'a>(
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

/// DWARF frames for `addr`, innermost first: demangled names, None where DWARF has no
/// function (addr2line's `??`).
pub(super) fn dwarf_frames(ctx: &addr2line::Context<Reader<'_>>, addr: u64) -> Vec<Option<String>> {
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
