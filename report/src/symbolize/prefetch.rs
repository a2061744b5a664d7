//! Debug files fetched from debuginfod before symbolization, several at once, for
//! the objects that have none at hand.

use super::debug_files::local_debug_info;
use super::files::mapped_file;
use super::{basename, Options};
use crate::maps::MapEntry;
use crate::safe::FileStore;
use object::Object as _;
use std::collections::BTreeSet;

/// Fetches from debuginfod, several at once, the debug files of the objects holding
/// `pcs` that have none at hand (and the executable of an object that is gone or was
/// replaced), into the cache where the lookups find them.
pub(super) fn prefetch(
    store: &FileStore,
    maps: &[MapEntry],
    pcs: &BTreeSet<u64>,
    opts: &Options,
    recorded_id: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> crate::debuginfod::Fetched {
    use crate::debuginfod::{Kind, Want};
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
    crate::debuginfod::fetch_all(cfg, &wants)
}
