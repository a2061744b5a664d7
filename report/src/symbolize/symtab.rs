//! Symbol tables as `nm -n` lists them (`.symtab`, else `.dynsym` with versions), and
//! the lookups jeprof makes in them: the closest symbol below an address, and the symbol
//! whose extent holds it.

use super::NAME_RATIO;
use crate::names::{demangle, short_function_name};
use object::read::elf::{FileHeader as _, SectionHeader as _, Sym as _};

/// One symbol as `nm -n` lists it, after jeprof's handling of several symbols at one
/// address (the last text symbol there wins, else the first; only the first carries the
/// `<address>` tag).
#[derive(Debug, Clone)]
pub(super) struct NmSym {
    pub(super) start: u64,
    /// The end of its extent: the largest `st_value + st_size` of the symbols at `start`
    /// (`start` itself for symbols of size 0, which hold no address).
    pub(super) end: u64,
    /// The raw (mangled) name; demangled only when an address needs it.
    pub(super) raw: String,
    /// Whether jeprof tags it with its address.
    pub(super) tagged: bool,
}

impl NmSym {
    /// (short, full) as jeprof has them.
    pub(super) fn names(&self) -> (String, String) {
        let full = if self.tagged {
            format!("{}<{:016x}>", demangle(&self.raw), self.start)
        } else {
            demangle(&self.raw)
        };
        (short_function_name(&full), full)
    }
}

#[derive(Debug, Clone)]
pub(super) struct RawSym {
    pub(super) value: u64,
    pub(super) size: u64,
    pub(super) name: String,
    pub(super) text: bool,
}

/// `nm -n`'s order (address, then name) and jeprof's GetProcedureBoundariesViaNm.
pub(super) fn nm_table(mut raw: Vec<RawSym>) -> Vec<NmSym> {
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
pub(super) fn nm_index(table: &[NmSym], mpc: u64) -> Option<usize> {
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
pub(super) fn covering_index(table: &[NmSym], max_end: &[u64], mpc: u64) -> Option<usize> {
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
pub(super) fn max_ends(table: &[NmSym]) -> Vec<u64> {
    let mut m = 0;
    table
        .iter()
        .map(|s| {
            m = m.max(s.end);
            m
        })
        .collect()
}

pub(super) type Elf64 = object::elf::FileHeader64<object::Endianness>;

/// The symbols nm would list: `.symtab`, or `.dynsym` (with `@VERSION`/`@@VERSION`) when
/// there is no `.symtab`. Names are copied; in an ordinary file they add up to about its
/// string table, so more than [`NAME_RATIO`] times the file's size means entries that
/// share one long name over and over, and the table is refused (Err says so).
pub(super) fn elf_symbols(data: &[u8]) -> Result<Vec<RawSym>, String> {
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
