//! A series of dumps of one process, read one dump at a time: each dump's stacks are
//! folded into the series ([`Series::push`]: one id and one in-use value per stack that
//! holds memory, the dump's totals) and the dump's stacks are dropped. Distinct address
//! stacks are kept once for the whole series, and each is named once per naming group
//! ([`Series::name`]): dumps whose code mappings are alike (`naming::same_naming`) share
//! one symbolization, and each dump is named with its own group's, so an address a dump
//! did not map is never named through another dump's mappings.
//!
//! Memory: the distinct stacks, plus 12 bytes per (dump, stack holding memory), plus each
//! dump's small metadata (its sidecar, its code mappings; all mappings for the first dump
//! of each naming group): never the dumps themselves.

use crate::aggregate::{add, AddrProfile, Metric, Namer, Names, Values};
use crate::{naming, symbolize, LoadedDump};
use std::collections::{BTreeSet, HashMap};

/// The value a series keeps per stack and dump (`leaks` and `page` rank in-use bytes).
pub const METRIC: Metric = Metric::InuseSpace;

/// Dumps folded so far.
#[derive(Debug, Default)]
pub struct Series {
    /// The dumps, oldest first, their stacks taken out.
    pub dumps: Vec<LoadedDump>,
    stack_index: HashMap<Box<[u64]>, u32>,
    stacks: Vec<Box<[u64]>>,
    /// Each dump's naming group; each group's first dump and which stacks it saw.
    group_of: Vec<u32>,
    groups: Vec<(usize, Vec<bool>)>,
    entries: Entries,
    totals: Vec<Values>,
    /// The newest dump's profile whole (how its frames were named).
    newest: AddrProfile,
}

/// (stack id, in-use value) of every dump, the entries of dump `i` at
/// `offsets[i]..offsets[i + 1]`.
#[derive(Debug, Default)]
struct Entries {
    ids: Vec<u32>,
    values: Vec<f64>,
    offsets: Vec<usize>,
}

impl Entries {
    fn of(&self, dump: usize) -> impl Iterator<Item = (u32, f64)> + '_ {
        let start = self.offsets.get(dump).copied().unwrap_or(0);
        let end = self
            .offsets
            .get(dump + 1)
            .copied()
            .unwrap_or(self.ids.len());
        self.ids[start..end]
            .iter()
            .copied()
            .zip(self.values[start..end].iter().copied())
    }
}

impl Series {
    pub fn new() -> Series {
        Series::default()
    }

    pub fn len(&self) -> usize {
        self.dumps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dumps.is_empty()
    }

    /// Folds `dump` into the series (oldest first) and keeps it without its stacks.
    pub fn push(&mut self, mut dump: LoadedDump) {
        let profile = AddrProfile::take_from_dump(&mut dump.dump);
        let group = match self
            .groups
            .iter()
            .position(|(first, _)| naming::same_naming(&self.dumps[*first], &dump))
        {
            Some(g) => {
                // Named with its group's first dump's mappings: the code mappings are all
                // it still needs (the program's name), the same as that dump's.
                dump.dump.maps.retain(|m| m.executable());
                g
            }
            None => {
                self.groups.push((self.dumps.len(), Vec::new()));
                self.groups.len() - 1
            }
        };
        self.group_of.push(group as u32);
        self.entries.offsets.push(self.entries.ids.len());
        let mut total = [0.0; 4];
        for (addrs, v) in &profile.stacks {
            add(&mut total, v, 1.0);
            let id = match self.stack_index.get(&addrs[..]) {
                Some(&id) => id,
                None => {
                    let id = self.stacks.len() as u32;
                    let boxed: Box<[u64]> = addrs.clone().into_boxed_slice();
                    self.stacks.push(boxed.clone());
                    self.stack_index.insert(boxed, id);
                    id
                }
            };
            let seen = &mut self.groups[group].1;
            if seen.len() <= id as usize {
                seen.resize(id as usize + 1, false);
            }
            seen[id as usize] = true;
            let value = v[METRIC as usize];
            if value != 0.0 {
                self.entries.ids.push(id);
                self.entries.values.push(value);
            }
        }
        self.totals.push(total);
        self.newest = profile;
        self.dumps.push(dump);
    }

    /// Names the series' stacks: once per naming group, each dump with its own group's
    /// names. Notes of naming are added to `notes` once each.
    pub fn name(self, options: &symbolize::Options, notes: &mut Vec<String>) -> Named {
        let mut seen_notes: std::collections::HashSet<String> = notes.iter().cloned().collect();
        let mut names = Names::default();
        let mut name_stacks: Vec<Vec<u32>> = Vec::new();
        let mut name_index: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut of_group: Vec<Vec<u32>> = Vec::with_capacity(self.groups.len());
        let newest_group = self.group_of.last().copied().unwrap_or(0) as usize;
        let mut outcome = symbolize::Outcome::default();
        for (g, (first, seen)) in self.groups.iter().enumerate() {
            let ids: Vec<usize> = (0..seen.len()).filter(|&i| seen[i]).collect();
            let pcs: BTreeSet<u64> = ids
                .iter()
                .flat_map(|&i| self.stacks[i].iter().copied())
                .collect();
            let mut group_notes = Vec::new();
            let named = naming::symbolize_for(&self.dumps[*first], &pcs, options, &mut group_notes);
            notes.extend(
                group_notes
                    .into_iter()
                    .filter(|n| seen_notes.insert(n.clone())),
            );
            let mut namer = Namer::new(&pcs, &named.symbols, None);
            namer.name_all(&pcs, &mut names);
            let mut map = vec![u32::MAX; seen.len()];
            for i in ids {
                let stack = namer.stack(&self.stacks[i], &mut names);
                let next = name_stacks.len() as u32;
                map[i] = *name_index.entry(stack.clone()).or_insert_with(|| {
                    name_stacks.push(stack);
                    next
                });
            }
            of_group.push(map);
            drop(namer);
            if g == newest_group {
                outcome = named;
            }
        }
        Named {
            dumps: self.dumps,
            names,
            stacks: name_stacks,
            of_group,
            group_of: self.group_of,
            entries: self.entries,
            totals: self.totals,
            newest: self.newest,
            outcome,
        }
    }
}

/// A series whose stacks are named.
#[derive(Debug)]
pub struct Named {
    pub dumps: Vec<LoadedDump>,
    pub names: Names,
    /// Distinct stacks of names over the series, innermost first, allocator frames removed.
    pub stacks: Vec<Vec<u32>>,
    of_group: Vec<Vec<u32>>,
    group_of: Vec<u32>,
    entries: Entries,
    totals: Vec<Values>,
    /// The newest dump's profile and how its frames were named.
    pub newest: AddrProfile,
    pub outcome: symbolize::Outcome,
}

impl Named {
    /// The dump's totals over all its stacks (jeprof's `Total:`).
    pub fn total(&self, dump: usize) -> Values {
        self.totals.get(dump).copied().unwrap_or_default()
    }

    /// Dump `dump`'s in-use value of every name stack, into `values` (one per stack).
    pub fn values_into(&self, dump: usize, values: &mut Vec<f64>) {
        values.clear();
        values.resize(self.stacks.len(), 0.0);
        let map = &self.of_group[self.group_of[dump] as usize];
        for (id, v) in self.entries.of(dump) {
            if let Some(&s) = map.get(id as usize) {
                values[s as usize] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(text: &str) -> LoadedDump {
        LoadedDump::from_text(text)
    }

    const MAPS: &str = "\nMAPPED_LIBRARIES:\n\
        55d1c3800000-55d1c3a00000 r-xp 00001000 00:00 7 /nonexistent-jemsafe/mysqld\n";

    #[test]
    fn a_series_keeps_one_value_per_stack_and_dump_and_merges_stacks_named_alike() {
        let mut series = Series::new();
        // Two address stacks in the same unnamed object: named alike, so merged.
        series.push(dump(&format!(
            "heap_v2/1\n@ 0x55d1c3801000 0x55d1c3802000\n  t*: 1: 100 [0: 0]\n\
             @ 0x55d1c3801000\n  t*: 0: 0 [0: 0]\n{MAPS}"
        )));
        series.push(dump(&format!(
            "heap_v2/1\n@ 0x55d1c3801000 0x55d1c3802000\n  t*: 1: 300 [0: 0]\n{MAPS}"
        )));
        assert_eq!(series.len(), 2);
        // The stack holding nothing is not an entry; the dumps' stacks are gone.
        assert_eq!(series.entries.ids.len(), 2);
        assert!(series.dumps.iter().all(|d| d.dump.stacks.is_empty()));
        let mut notes = Vec::new();
        let opts = symbolize::Options {
            debug_dirs: Vec::new(),
            ..Default::default()
        };
        let named = series.name(&opts, &mut notes);
        let mut v = Vec::new();
        named.values_into(0, &mut v);
        let held: f64 = v.iter().sum();
        assert!((held - 100.0).abs() < 1.0, "{v:?}");
        named.values_into(1, &mut v);
        assert!((v.iter().sum::<f64>() - 300.0).abs() < 1.0, "{v:?}");
        assert_eq!(named.total(1)[METRIC as usize], v.iter().sum::<f64>());
    }
}
