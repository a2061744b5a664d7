//! How a dump's frames are named: with its own mappings and the objects its sidecar
//! recorded; dumps whose code is mapped alike share one naming (a series names each such
//! group once).

use crate::safe::shown;
use crate::symbolize;
use crate::LoadedDump;
use std::collections::BTreeSet;

/// Names `pcs` with the mappings (and recorded objects) of `dump`.
pub(crate) fn symbolize_for(
    dump: &LoadedDump,
    pcs: &BTreeSet<u64>,
    options: &symbolize::Options,
    notes: &mut Vec<String>,
) -> symbolize::Outcome {
    let recorded = dump.sidecar.as_ref().map_or(&[][..], |s| &s.objects[..]);
    let outcome = symbolize::symbolize_recorded(&dump.dump.maps, pcs, options, recorded);
    notes.extend(outcome.notes.iter().cloned());
    if dump.dump.maps.is_empty() {
        notes.push(format!(
            "{}: the dump lists no mapped objects; its frames are shown as {}",
            shown(&dump.path),
            symbolize::UNMAPPED
        ));
    }
    outcome
}

/// Whether two dumps' frames are named alike: the same executable mappings (where
/// return addresses are; the anonymous memory jemalloc maps changes between any two
/// dumps) and the same objects recorded in their sidecars.
pub(crate) fn same_naming(a: &LoadedDump, b: &LoadedDump) -> bool {
    fn code(d: &LoadedDump) -> impl Iterator<Item = &crate::maps::MapEntry> {
        d.dump.maps.iter().filter(|m| m.executable())
    }
    fn recorded(d: &LoadedDump) -> Option<&Vec<crate::sidecar::Object>> {
        d.sidecar.as_ref().map(|s| &s.objects)
    }
    code(a).eq(code(b)) && recorded(a) == recorded(b)
}
