//! From parsed dumps to numbers, exactly as jeprof computes them: un-sampling per stack
//! (AdjustSamples), caller addresses minus one (FixCallerAddresses), base subtraction
//! (SubtractProfile), allocator frames dropped (RemoveUninterestingFrames), stacks of
//! function names (TranslateStack, ReduceProfile), and flat/cumulative totals.

use super::parse::{Dump, StackRecord};
use super::symbolize::{Frame, Symbols};
use std::collections::{BTreeSet, HashMap};

/// Which number of the four a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    InuseObjects = 0,
    InuseSpace = 1,
    AllocObjects = 2,
    AllocSpace = 3,
}

impl Metric {
    pub fn is_bytes(self) -> bool {
        matches!(self, Metric::InuseSpace | Metric::AllocSpace)
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::InuseObjects => "inuse_objects",
            Metric::InuseSpace => "inuse_space",
            Metric::AllocObjects => "alloc_objects",
            Metric::AllocSpace => "alloc_space",
        }
    }
}

pub use crate::counts::{unsample, Values};

/// Stacks of (adjusted) addresses, innermost first, with their un-sampled values.
#[derive(Debug, Clone, Default)]
pub struct AddrProfile {
    pub stacks: HashMap<Vec<u64>, Values>,
}

pub(crate) fn add(into: &mut Values, v: &Values, sign: f64) {
    for i in 0..4 {
        into[i] += sign * v[i];
    }
}

impl AddrProfile {
    /// [`AddrProfile::take_from_dump`], leaving the dump as it was.
    #[cfg(test)]
    pub fn from_dump(dump: &Dump) -> AddrProfile {
        Self::from_records(dump.rate, dump.stacks.iter().cloned())
    }

    /// Un-samples a dump, taking its stacks out (less memory); every address but the
    /// first is a return address and gets -1 so that it points into the call
    /// instruction (jeprof's FixCallerAddresses).
    pub fn take_from_dump(dump: &mut Dump) -> AddrProfile {
        Self::from_records(dump.rate, std::mem::take(&mut dump.stacks).into_iter())
    }

    fn from_records(rate: u64, records: impl ExactSizeIterator<Item = StackRecord>) -> AddrProfile {
        let mut stacks: HashMap<Vec<u64>, Values> = HashMap::with_capacity(records.len());
        for s in records {
            let v = unsample(rate, s.counts);
            let mut addrs = s.addrs;
            for a in addrs.iter_mut().skip(1) {
                *a = a.wrapping_sub(1);
            }
            add(stacks.entry(addrs).or_insert([0.0; 4]), &v, 1.0);
        }
        AddrProfile { stacks }
    }

    /// `self - base` per stack (jeprof's SubtractProfile; negative values are kept).
    pub fn subtract(&self, base: &AddrProfile) -> AddrProfile {
        let mut stacks = self.stacks.clone();
        for (k, v) in &base.stacks {
            add(stacks.entry(k.clone()).or_insert([0.0; 4]), v, -1.0);
        }
        AddrProfile { stacks }
    }

    #[cfg(test)]
    pub fn total(&self, m: Metric) -> f64 {
        self.stacks.values().map(|v| v[m as usize]).sum()
    }

    pub fn pcs(&self) -> BTreeSet<u64> {
        self.stacks.keys().flatten().copied().collect()
    }
}

/// Interned function names.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }
    pub fn get(&self, id: u32) -> &str {
        &self.list[id as usize]
    }
    /// The id of `name`, if it was interned.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }
}

/// Stacks of function names (innermost first), allocator frames removed, identical stacks
/// merged. Recursion is kept here (flame graphs want it); [`FlatCum`] counts each name
/// once per stack.
#[derive(Debug, Clone, Default)]
pub struct NameProfile {
    pub names: Names,
    pub stacks: Vec<(Vec<u32>, Values)>,
    /// Sum over all stacks before anything was removed (jeprof's `Total:`).
    pub total: Values,
}

/// Where the frames of one pc (caller first) enter the allocator: the index of the
/// outermost allocator frame. `Some(0)`: the pc is in an allocator function; `Some(k)`:
/// an allocator wrapper (e.g. ld.so's `calloc`, which calls `__rtld_calloc`) is inlined
/// into the pc's function, and only the first `k` frames are the caller's.
pub fn allocator_cut(frames: &[Frame]) -> Option<usize> {
    frames
        .iter()
        .position(|f| f.allocator || super::names::is_allocator_frame(&f.func))
}

/// The frames of a pc that a report shows: those outside the allocator.
pub fn shown_frames(frames: &[Frame]) -> &[Frame] {
    match allocator_cut(frames) {
        Some(k) => &frames[..k],
        None => frames,
    }
}

/// jeprof's RemoveUninterestingFrames: an allocator function (malloc, operator new...)
/// throws away everything seen so far in the stack (allocator internals) and itself. An
/// allocator wrapper inlined into a caller does the same, and the pc stays for the
/// caller's frames ([`shown_frames`]).
pub fn without_allocator_frames(addrs: &[u64], symbols: &Symbols) -> Vec<u64> {
    let mut kept: Vec<u64> = Vec::with_capacity(addrs.len());
    for &pc in addrs {
        match symbols.get(&pc).and_then(|f| allocator_cut(f)) {
            Some(0) => kept.clear(),
            Some(_) => {
                kept.clear();
                kept.push(pc);
            }
            None => kept.push(pc),
        }
    }
    kept
}

/// jeprof's FillFullnameToShortnameMap: names from the symbol table carry their start
/// address (`foo(int)<00000000004005d0>`); when two different ones shorten to the same
/// name, both are shown as `name@address`.
fn disambiguation(symbols: &Symbols, pcs: &BTreeSet<u64>) -> HashMap<String, String> {
    let mut seen_once: HashMap<&str, &str> = HashMap::new();
    let mut more_than_once: std::collections::HashSet<&str> = Default::default();
    let outermost = pcs
        .iter()
        .filter_map(|pc| symbols.get(pc).and_then(|f| f.first()));
    for f in outermost.clone() {
        if !ends_with_address(&f.full) {
            continue;
        }
        match seen_once.get(f.func.as_str()) {
            Some(&full) if full != f.full => {
                more_than_once.insert(&f.func);
            }
            _ => {
                seen_once.insert(&f.func, &f.full);
            }
        }
    }
    let mut map = HashMap::new();
    for f in outermost {
        if more_than_once.contains(f.func.as_str()) && !map.contains_key(&f.full) {
            if let Some(addr) = address_tag(&f.full) {
                map.insert(f.full.clone(), format!("{}@{}", f.func, addr));
            }
        }
    }
    map
}

fn ends_with_address(full: &str) -> bool {
    address_tag_raw(full).is_some()
}

/// `<0*hex>` at the end: the hex digits (with leading zeros), if any.
fn address_tag_raw(full: &str) -> Option<&str> {
    let body = full.strip_suffix('>')?;
    let open = body.rfind('<')?;
    let hex = &body[open + 1..];
    (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn address_tag(full: &str) -> Option<String> {
    // Perl: /<0*([^>]*)>$/
    let hex = address_tag_raw(full)?;
    Some(hex.trim_start_matches('0').to_owned())
}

/// The frames of one pc as names, innermost first: every inlined frame gets " (inline)"
/// (jeprof's TranslateStack at function granularity).
fn translate(frames: &[Frame], map: &HashMap<String, String>, out: &mut Vec<String>) {
    for (j, f) in frames.iter().enumerate().rev() {
        let mut name = map.get(&f.full).cloned().unwrap_or_else(|| f.func.clone());
        if j > 0 {
            name.push_str(" (inline)");
        }
        out.push(name);
    }
}

/// Turns address stacks into stacks of name ids: each pc translated once (its names and
/// where it enters the allocator), allocator frames dropped as
/// [`without_allocator_frames`] drops them, names disambiguated over `pcs` (all the pcs
/// that will be named).
pub struct Namer<'a> {
    symbols: &'a Symbols,
    display: Option<&'a Symbols>,
    map: HashMap<String, String>,
    per_pc: HashMap<u64, PcNames>,
}

/// One pc's names (innermost first) and its [`allocator_cut`].
struct PcNames {
    cut: Option<usize>,
    names: Vec<u32>,
}

impl<'a> Namer<'a> {
    /// With `display`, allocator frames are still recognised with `symbols` but the names
    /// shown come from `display` (e.g. object names).
    pub fn new(pcs: &BTreeSet<u64>, symbols: &'a Symbols, display: Option<&'a Symbols>) -> Self {
        Namer {
            symbols,
            display,
            map: disambiguation(display.unwrap_or(symbols), pcs),
            per_pc: HashMap::with_capacity(pcs.len()),
        }
    }

    fn pc(&mut self, pc: u64, names: &mut Names) -> &PcNames {
        let (symbols, display, map) = (self.symbols, self.display, &self.map);
        self.per_pc.entry(pc).or_insert_with(|| {
            let cut = symbols.get(&pc).and_then(|f| allocator_cut(f));
            // Kernel-looking addresses are fake entries (jeprof skips them).
            if pc > 0x7fff_ffff_ffff_ffff {
                return PcNames {
                    cut,
                    names: Vec::new(),
                };
            }
            let shown = display.unwrap_or(symbols);
            let mut v = Vec::new();
            let frames = match (display, symbols.get(&pc)) {
                (None, Some(f)) => Some(shown_frames(f)),
                _ => shown.get(&pc).map(Vec::as_slice),
            };
            match frames {
                Some(frames) if !frames.is_empty() => translate(frames, map, &mut v),
                _ => v.push(super::symbolize::unnamed(None, 0)),
            }
            PcNames {
                cut,
                names: v.iter().map(|n| names.id(n)).collect(),
            }
        })
    }

    /// Names every pc of `pcs` in their order, so that name ids follow addresses (as
    /// every rendering has always listed them).
    pub fn name_all(&mut self, pcs: &BTreeSet<u64>, names: &mut Names) {
        for &pc in pcs {
            self.pc(pc, names);
        }
    }

    /// The names of `addrs` (innermost first), allocator frames removed.
    pub fn stack(&mut self, addrs: &[u64], names: &mut Names) -> Vec<u32> {
        let mut stack = Vec::with_capacity(addrs.len());
        for &pc in addrs {
            let p = self.pc(pc, names);
            match p.cut {
                Some(0) => stack.clear(),
                Some(_) => {
                    stack.clear();
                    stack.extend_from_slice(&p.names);
                }
                None => stack.extend_from_slice(&p.names),
            }
        }
        stack
    }
}

impl NameProfile {
    /// Names from `symbols`, or shown from `display` ([`Namer::new`]).
    pub fn build(
        profile: &AddrProfile,
        symbols: &Symbols,
        display: Option<&Symbols>,
    ) -> NameProfile {
        let pcs = profile.pcs();
        let mut namer = Namer::new(&pcs, symbols, display);
        let mut names = Names::default();
        namer.name_all(&pcs, &mut names);
        let mut merged: HashMap<Vec<u32>, Values> = HashMap::with_capacity(profile.stacks.len());
        let mut total = [0.0; 4];
        for (addrs, v) in &profile.stacks {
            add(&mut total, v, 1.0);
            let stack = namer.stack(addrs, &mut names);
            add(merged.entry(stack).or_insert([0.0; 4]), v, 1.0);
        }
        let mut stacks: Vec<(Vec<u32>, Values)> = merged.into_iter().collect();
        stacks.sort_by(|a, b| a.0.cmp(&b.0));
        NameProfile {
            names,
            stacks,
            total,
        }
    }
}

/// Flat (first name of a stack) and cumulative (every distinct name of a stack) values per
/// function: jeprof's ReduceProfile + FlatProfile + CumulativeProfile.
#[derive(Debug, Clone, Default)]
pub struct FlatCum {
    pub flat: HashMap<u32, Values>,
    pub cum: HashMap<u32, Values>,
    /// Sum of flat: what jeprof's percentages are relative to.
    pub total: Values,
}

impl FlatCum {
    pub fn of(profile: &NameProfile) -> FlatCum {
        let mut fc = FlatCum::default();
        let mut seen = std::collections::HashSet::new();
        for (stack, v) in &profile.stacks {
            let Some(&first) = stack.first() else {
                continue;
            };
            add(fc.flat.entry(first).or_insert([0.0; 4]), v, 1.0);
            add(&mut fc.total, v, 1.0);
            seen.clear();
            for &n in stack {
                if seen.insert(n) {
                    add(fc.cum.entry(n).or_insert([0.0; 4]), v, 1.0);
                }
            }
        }
        fc
    }

    /// Rows (name id, flat, cum) in jeprof's order: flat descending, then name.
    pub fn rows(&self, names: &Names, m: Metric) -> Vec<(u32, f64, f64)> {
        let mut rows: Vec<(u32, f64, f64)> = self
            .cum
            .iter()
            .map(|(&id, c)| {
                let f = self.flat.get(&id).map_or(0.0, |v| v[m as usize]);
                (id, f, c[m as usize])
            })
            .filter(|&(_, f, c)| f != 0.0 || c != 0.0)
            .collect();
        rows.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| names.get(a.0).cmp(names.get(b.0)))
        });
        rows
    }
}

/// Stacks of names (innermost first) with their in-use bytes, named as given (unit
/// tests).
#[cfg(test)]
pub(crate) fn profile_of_names(stacks: &[(&[&str], f64)]) -> NameProfile {
    let mut p = AddrProfile::default();
    let mut s = Symbols::new();
    let mut pcs: HashMap<String, u64> = HashMap::new();
    for (names, v) in stacks {
        let addrs: Vec<u64> = names
            .iter()
            .map(|n| {
                let next = 0x1000 + 0x10 * pcs.len() as u64;
                *pcs.entry(n.to_string()).or_insert(next)
            })
            .collect();
        for (n, &pc) in names.iter().zip(&addrs) {
            s.insert(
                pc,
                vec![Frame {
                    func: n.to_string(),
                    full: n.to_string(),
                    source: Default::default(),
                    allocator: false,
                }],
            );
        }
        *p.stacks.entry(addrs).or_insert([0.0; 4]) = [1.0, *v, 0.0, 0.0];
    }
    NameProfile::build(&p, &s, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;

    fn frame(func: &str) -> Frame {
        Frame {
            func: func.into(),
            full: func.into(),
            source: Default::default(),
            allocator: false,
        }
    }

    #[test]
    fn unsample_matches_jeprofs_formula() {
        // One 4096-byte object at the default rate: p = 1 - exp(-4096/524288).
        let v = unsample(
            524288,
            Counts {
                inuse_objects: 1,
                inuse_bytes: 4096,
                alloc_objects: 0,
                alloc_bytes: 0,
            },
        );
        let scale = 1.0 / (1.0 - (-4096.0f64 / 524288.0).exp());
        assert!((v[1] - 4096.0 * scale).abs() < 1e-6);
        assert!((v[0] - scale).abs() < 1e-9);
        assert_eq!((v[2], v[3]), (0.0, 0.0));
        // Large objects are (nearly) always sampled: scale ~1.
        let big = unsample(
            524288,
            Counts {
                inuse_objects: 1,
                inuse_bytes: 64 << 20,
                ..Default::default()
            },
        );
        assert!((big[1] - (64u64 << 20) as f64).abs() < 1.0);
    }

    fn profile() -> (AddrProfile, Symbols) {
        let mut p = AddrProfile::default();
        // innermost first; 0x1 is inside malloc, 0x2 is a jemalloc internal frame.
        p.stacks
            .insert(vec![0x2, 0x1, 0x10, 0x20, 0x30], [1.0, 100.0, 0.0, 0.0]);
        p.stacks.insert(vec![0x11, 0x30], [1.0, 50.0, 0.0, 0.0]);
        p.stacks
            .insert(vec![0x10, 0x10, 0x30], [1.0, 10.0, 0.0, 0.0]);
        let mut s = Symbols::new();
        s.insert(0x1, vec![frame("malloc")]);
        s.insert(0x2, vec![frame("je_internal")]);
        // 0x10: leaf() inlined into mid(): caller first.
        s.insert(0x10, vec![frame("mid"), frame("leaf")]);
        s.insert(0x11, vec![frame("other")]);
        s.insert(0x20, vec![frame("mid")]);
        s.insert(0x30, vec![frame("main")]);
        (p, s)
    }

    #[test]
    fn frames_are_translated_reduced_and_counted_like_jeprof() {
        let (p, s) = profile();
        let np = NameProfile::build(&p, &s, None);
        assert_eq!(np.total[1], 160.0);
        let fc = FlatCum::of(&np);
        let rows = fc.rows(&np.names, Metric::InuseSpace);
        let named: Vec<(&str, f64, f64)> = rows
            .iter()
            .map(|&(id, f, c)| (np.names.get(id), f, c))
            .collect();
        assert_eq!(
            named,
            vec![
                ("leaf (inline)", 110.0, 110.0),
                ("other", 50.0, 50.0),
                ("main", 0.0, 160.0),
                ("mid", 0.0, 110.0),
            ]
        );
        assert_eq!(fc.total[1], 160.0);
    }

    #[test]
    fn an_allocator_wrapper_inlined_into_its_caller_is_dropped_with_what_it_called() {
        // ld.so: calloc (rtld_malloc.h, inlined) in _dl_new_object calls __rtld_calloc.
        let mut p = AddrProfile::default();
        p.stacks
            .insert(vec![0x1, 0x2, 0x10, 0x30], [1.0, 64.0, 0.0, 0.0]);
        let mut s = Symbols::new();
        s.insert(0x1, vec![frame("je_internal")]);
        s.insert(0x2, vec![frame("__minimal_calloc")]);
        s.insert(0x10, vec![frame("_dl_new_object"), frame("calloc")]);
        s.insert(0x30, vec![frame("main")]);
        let np = NameProfile::build(&p, &s, None);
        let names: Vec<&str> = np.stacks[0].0.iter().map(|&i| np.names.get(i)).collect();
        assert_eq!(names, vec!["_dl_new_object", "main"]);
    }

    #[test]
    fn base_subtraction_keeps_negative_stacks() {
        let (p, _) = profile();
        let mut base = AddrProfile::default();
        base.stacks.insert(vec![0x11, 0x30], [2.0, 80.0, 0.0, 0.0]);
        base.stacks.insert(vec![0x99], [1.0, 5.0, 0.0, 0.0]);
        let d = p.subtract(&base);
        assert_eq!(d.stacks[&vec![0x11, 0x30]][1], -30.0);
        assert_eq!(d.stacks[&vec![0x99]][1], -5.0);
        assert_eq!(d.total(Metric::InuseSpace), 160.0 - 85.0);
    }

    #[test]
    fn same_short_name_at_two_addresses_is_disambiguated() {
        let mut p = AddrProfile::default();
        p.stacks.insert(vec![0x10], [1.0, 1.0, 0.0, 0.0]);
        p.stacks.insert(vec![0x20], [1.0, 2.0, 0.0, 0.0]);
        let mut s = Symbols::new();
        s.insert(
            0x10,
            vec![Frame {
                func: "f".into(),
                full: "f(int)<0000000000001000>".into(),
                source: Default::default(),
                allocator: false,
            }],
        );
        s.insert(
            0x20,
            vec![Frame {
                func: "f".into(),
                full: "f(char)<0000000000002000>".into(),
                source: Default::default(),
                allocator: false,
            }],
        );
        let np = NameProfile::build(&p, &s, None);
        let mut names = np.names.list.clone();
        names.sort();
        assert_eq!(names, vec!["f@1000", "f@2000"]);
    }
}
