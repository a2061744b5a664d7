//! An object ready to answer, and the frames of one address as jeprof gives them
//! (DWARF where present, the symbol table's name and address tag).

use super::debug_files::find_debug_file;
use super::dwarf::{dwarf_or_note, load_sup, DwarfIndex};
use super::files::{by_build_id, mapped_file, shown_dirs};
use super::symtab::{covering_index, elf_symbols, max_ends, nm_index, nm_table, NmSym};
use super::{hex, unnamed, Frame, NameMode, Options, Source};
use crate::maps::MapEntry;
use crate::names::{demangle, is_allocator_frame, short_function_name};
use crate::safe::FileStore;
use object::{Object as _, ObjectSection as _, ObjectSegment as _};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An object file ready to answer.
pub(super) struct Loaded<'a> {
    pub(super) nm: Vec<NmSym>,
    pub(super) nm_max_end: Vec<u64>,
    pub(super) debug_max_end: Vec<u64>,
    pub(super) build_id: Option<String>,
    /// The separate debug file's own symbol table: what addr2line falls back to where
    /// DWARF has no function (it reads the debug file, nm does not).
    pub(super) debug_syms: Vec<NmSym>,
    pub(super) dwarf: Option<DwarfIndex<'a>>,
    /// (file offset, file size, vaddr) of PT_LOAD segments, to turn file offsets into
    /// addresses in the object.
    pub(super) segments: Vec<(u64, u64, u64)>,
    /// .text's (vaddr - file offset), jeprof's adjustment, when no segment fits.
    pub(super) text_adjust: Option<i128>,
    pub(super) debug_file: Option<PathBuf>,
}

impl Loaded<'_> {
    pub(super) fn object_address(&self, file_offset: u64) -> u64 {
        object_address(&self.segments, self.text_adjust, file_offset)
    }
}

/// A file offset as an address in the object: through the PT_LOAD segment holding it,
/// else jeprof's .text adjustment.
pub(super) fn object_address(
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

/// Opens `path` as mapped by `entry`; Err is the reason it cannot be used. Warnings
/// (e.g. debug information too large to decompress) go to `notes`.
pub(super) fn load_object<'a>(
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

/// An object (or the debug file standing in for it) ready to answer.
pub(super) fn build_loaded<'a>(
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

/// A symbol table's answer for one address: its (short, full) names and whether its
/// extent holds the address.
pub(super) type NmAnswer = Option<((String, String), bool)>;

/// jeprof's MapToSymbols for one pc (`mpc`: its address in the object's file's terms):
/// frames caller first. With [`NameMode::Exact`], a
/// symbol names an address only when its extent holds it.
pub(super) fn frames_for(
    loaded: &Loaded<'_>,
    cache: &mut HashMap<usize, (String, String)>,
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
                // jeprof prints the raw address here; the object and offset say as much
                // without telling where the object was loaded.
                let a = unnamed(Some(label), mpc);
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
                    _ if *nm_func == unnamed(Some(label), mpc) => Source::Unnamed,
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
            frame = Frame::plain(unnamed(Some(label), mpc), Source::Unnamed);
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
        let jeprof = frames_for(loaded, cache, mpc, label, NameMode::Jeprof);
        let same_depth = jeprof.len() == symlist.len();
        for (i, f) in symlist.iter_mut().enumerate() {
            if (i == 0 || same_depth) && jeprof.get(i).is_some_and(|j| j.allocator) {
                f.allocator = true;
            }
        }
    }
    symlist
}
