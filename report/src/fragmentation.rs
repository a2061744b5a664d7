//! Fragmentation by call stack: which code's objects live in the size classes whose slabs
//! waste memory. An offline join that needs no allocator change (the method a jemalloc
//! maintainer proposed in jemalloc PR #2988):
//!
//! 1. each stack of a heap dump gets one small size class from its objects' mean usable
//!    size (jemalloc counts `usize` per sampled object, so un-sampled bytes / objects is
//!    the stack's mean usable size);
//! 2. each size class's waste comes from the memory snapshot recorded with the dump:
//!    slab space not holding a live region, `(curslabs x nregs - curregs) x size`;
//! 3. a stack gets its class's waste in proportion to its share of the class's live
//!    regions.
//!
//! It is an estimate, and the report says how good: the stacks' objects are estimated
//! from samples, waste is a property of a class's slabs (not of a stack), and since
//! jemalloc 5.3 sampled small objects are moved out of their slabs (promoted), so which
//! stack pins which slab is never seen. With `opt.prof_stats` the snapshot also holds the
//! requested size of each class's live sampled objects: internal fragmentation per class.
//!
//! [`attribute`] and [`Attribution::render`] are pure; [`report`] runs them on a dump.

use crate::aggregate::{AddrProfile, Metric, NameProfile};
use crate::memory::{Bin, ClassRequests, JemallocMemory};
use crate::safe::shown;
use crate::{human_bytes, symbolize, Error, LoadedDump, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;

/// A stack's mean object size this far from its class's size is marked: several sizes
/// mixed in one stack, or too few samples to say.
const MIXED: f64 = 0.03;

/// One stack of a dump: frames innermost first, un-sampled live objects and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StackLive {
    pub frames: Vec<String>,
    pub objects: f64,
    pub bytes: f64,
}

/// One small size class: its slabs, their waste, and what the stacks in it account for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassWaste {
    pub size: u64,
    pub regions_per_slab: u64,
    pub regions: u64,
    pub slabs: u64,
    /// Bytes in the class's slabs that hold no live region.
    pub wasted: u64,
    /// Live regions over the slabs' regions.
    pub utilisation: f64,
    /// Live objects of the stacks placed in this class (estimated).
    pub stack_objects: f64,
    /// From `prof.stats.bins.<i>.live`: mean requested size and internal fragmentation.
    pub requested_mean: Option<f64>,
    pub internal: Option<f64>,
}

/// One stack's share of its class's waste.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackWaste {
    pub frames: Vec<String>,
    /// Its size class; None for a stack of large objects (pages of their own, no slab).
    pub class: Option<u64>,
    /// Its mean object size is more than 3% from the class's size.
    pub mixed: bool,
    pub objects: f64,
    pub bytes: f64,
    /// Its share of the class's live regions.
    pub share: f64,
    /// The class's waste times the share.
    pub waste: f64,
    /// Expected number of samples behind `objects` (the estimate's relative error is
    /// about 1/sqrt of it).
    pub samples: f64,
    /// Bytes asked for but not used inside its objects (class's internal fragmentation
    /// times its bytes), with prof_stats.
    pub internal_waste: Option<f64>,
}

/// The whole join.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// Mean bytes between samples (2^lg_prof_sample).
    pub rate: u64,
    /// `stats.active - stats.allocated`.
    pub fragmentation: u64,
    /// Slab waste summed over the small classes.
    pub slab_waste: u64,
    /// What the stacks were given of it.
    pub attributed: f64,
    /// Live bytes of stacks of large objects (no slab waste to share).
    pub large_bytes: f64,
    /// Whether the snapshot had prof_stats.
    pub prof_stats: bool,
    /// Most wasteful first.
    pub classes: Vec<ClassWaste>,
    /// Most attributed waste first.
    pub stacks: Vec<StackWaste>,
}

/// jemalloc's small size classes on 64-bit Linux (LG_QUANTUM 4, four classes per
/// doubling): 8, 16, 32, 48, 64, 80, ... up to the last one below 4 pages (14336 with
/// 4 KiB pages), which is where slabs end and large extents begin.
pub fn small_classes(page: u64) -> Vec<u64> {
    // jemalloc's pages are 4 to 64 KiB; a reading outside that (a damaged or hostile
    // snapshot) cannot make the table endless.
    let limit = page.clamp(4096, 64 << 10) * 4;
    let mut out = vec![8, 16, 32, 48, 64];
    let mut base: u64 = 64;
    while base < limit {
        let delta = base / 4;
        for k in 1..=4 {
            let size = base + k * delta;
            if size < limit {
                out.push(size);
            }
        }
        base *= 2;
    }
    out
}

/// The small class a stack of mean usable size `mean` lives in (the nearest one, by
/// ratio), and whether the mean is off by more than [`MIXED`]; None above the small
/// classes (large objects).
pub fn class_of(mean: f64, classes: &[u64]) -> Option<(u64, bool)> {
    let largest = *classes.last()? as f64;
    if mean.is_nan() || mean <= 0.0 || mean > largest * (1.0 + MIXED) {
        return None;
    }
    let ratio = |c: u64| (mean / c as f64).ln().abs();
    let class = classes
        .iter()
        .copied()
        .min_by(|&a, &b| ratio(a).total_cmp(&ratio(b)))?;
    Some((class, (mean / class as f64 - 1.0).abs() > MIXED))
}

/// Expected samples behind an estimate of `objects` objects of `size` bytes at `rate`:
/// each is sampled with probability 1 - exp(-size/rate).
fn expected_samples(objects: f64, size: f64, rate: u64) -> f64 {
    if rate <= 1 {
        return objects;
    }
    objects * (1.0 - (-size / rate as f64).exp())
}

/// Joins `stacks` (one dump's, un-sampled) with the memory snapshot `jem` taken with it.
pub fn attribute(stacks: &[StackLive], jem: &JemallocMemory, rate: u64) -> Attribution {
    let table = small_classes(jem.page);
    let bins: HashMap<u64, &Bin> = jem.bins.iter().map(|b| (b.size, b)).collect();
    let requests: HashMap<u64, &ClassRequests> = jem
        .prof_stats
        .iter()
        .flatten()
        .filter(|c| bins.contains_key(&c.size) || table.contains(&c.size))
        .map(|c| (c.size, c))
        .collect();
    let mut placed: Vec<(StackLive, Option<(u64, bool)>)> = stacks
        .iter()
        .filter(|s| s.objects > 0.0 && s.bytes > 0.0)
        .map(|s| (s.clone(), class_of(s.bytes / s.objects, &table)))
        .collect();
    let mut per_class: HashMap<u64, f64> = HashMap::new();
    for (s, c) in &placed {
        if let Some((size, _)) = c {
            *per_class.entry(*size).or_default() += s.objects;
        }
    }
    let internal_of = |size: u64| requests.get(&size).map(|c| c.internal());
    let mut classes: Vec<ClassWaste> = jem
        .bins
        .iter()
        .filter(|b| b.curslabs > 0)
        .map(|b| {
            let capacity = b.curslabs.saturating_mul(b.nregs);
            let req = requests.get(&b.size);
            ClassWaste {
                size: b.size,
                regions_per_slab: b.nregs,
                regions: b.curregs,
                slabs: b.curslabs,
                wasted: b.wasted(),
                utilisation: if capacity == 0 {
                    0.0
                } else {
                    b.curregs as f64 / capacity as f64
                },
                stack_objects: per_class.get(&b.size).copied().unwrap_or(0.0),
                requested_mean: req
                    .filter(|c| c.count > 0)
                    .map(|c| c.req_sum as f64 / c.count as f64),
                internal: req.map(|c| c.internal()),
            }
        })
        .collect();
    classes.sort_by(|a, b| b.wasted.cmp(&a.wasted).then(a.size.cmp(&b.size)));
    let mut large_bytes = 0.0;
    let mut out: Vec<StackWaste> = Vec::with_capacity(placed.len());
    for (s, c) in placed.drain(..) {
        let Some((size, mixed)) = c else {
            large_bytes += s.bytes;
            continue;
        };
        let (share, waste) = match bins.get(&size) {
            Some(b) => {
                // Shares never add up to more than the class: the stacks' estimates may
                // exceed the live regions by sampling noise (and by the sampled objects,
                // which are not in slabs); the regions no stack accounts for stay
                // unattributed.
                let denominator =
                    (b.curregs as f64).max(per_class.get(&size).copied().unwrap_or(0.0));
                let share = if denominator > 0.0 {
                    s.objects / denominator
                } else {
                    0.0
                };
                (share, share * b.wasted() as f64)
            }
            None => (0.0, 0.0),
        };
        out.push(StackWaste {
            samples: expected_samples(s.objects, size as f64, rate),
            internal_waste: internal_of(size).map(|i| i * s.bytes),
            frames: s.frames,
            class: Some(size),
            mixed,
            objects: s.objects,
            bytes: s.bytes,
            share,
            waste,
        });
    }
    out.sort_by(|a, b| {
        b.waste
            .total_cmp(&a.waste)
            .then(b.bytes.total_cmp(&a.bytes))
            .then_with(|| a.frames.cmp(&b.frames))
    });
    Attribution {
        rate,
        fragmentation: jem.active.saturating_sub(jem.allocated),
        slab_waste: jem
            .bins
            .iter()
            .map(Bin::wasted)
            .fold(0, u64::saturating_add),
        attributed: out.iter().map(|s| s.waste).sum(),
        large_bytes,
        prof_stats: jem.prof_stats.is_some(),
        classes,
        stacks: out,
    }
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// `a < b < c`, at most `n` frames, then `< ...`.
fn path(frames: &[String], n: usize) -> String {
    let mut s = frames
        .iter()
        .take(n)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" < ");
    if frames.len() > n {
        s.push_str(" < ...");
    }
    if s.is_empty() {
        s.push_str("(no frames outside the allocator)");
    }
    s
}

impl Attribution {
    /// The report: classes, stacks ranked, and how good the estimate is. `top` rows per
    /// table (0: all, stacks without waste too).
    pub fn render(&self, top: usize) -> String {
        let rows = |n: usize| if top == 0 { n } else { n.min(top) };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Fragmentation by call stack (an estimate from sampled data: see \"How good this is\")"
        );
        let _ = writeln!(
            s,
            "  fragmentation (active - allocated) {}; of it, slab space holding no live region {} \
             in {} small size classes (the rest is outside slabs: large allocations' page \
             rounding, and the pages of sampled small objects); given to the stacks below {}",
            human_bytes(self.fragmentation as f64),
            human_bytes(self.slab_waste as f64),
            self.classes.iter().filter(|c| c.wasted > 0).count(),
            human_bytes(self.attributed)
        );
        let wasteful: Vec<&ClassWaste> = self.classes.iter().filter(|c| c.wasted > 0).collect();
        if !wasteful.is_empty() {
            let _ = writeln!(s, "\n  size classes by waste:");
            let _ = writeln!(
                s,
                "  {:>8}  {:>11}  {:>5}  {:>17}  {:>13}  requested (prof_stats)",
                "class", "wasted", "util", "live / regions", "stacks' share"
            );
            for c in &wasteful[..rows(wasteful.len())] {
                let share = if c.regions == 0 {
                    0.0
                } else {
                    (c.stack_objects / c.regions as f64).min(1.0)
                };
                let requested = match (c.requested_mean, c.internal) {
                    (Some(m), Some(i)) => {
                        format!("{m:.0} B on average, {} internal", pct(i))
                    }
                    _ if self.prof_stats => "(no live sampled object)".to_owned(),
                    _ => "-".to_owned(),
                };
                let _ = writeln!(
                    s,
                    "  {:>6} B  {:>11}  {:>5}  {:>17}  {:>13}  {requested}",
                    c.size,
                    human_bytes(c.wasted as f64),
                    pct(c.utilisation),
                    format!(
                        "{}/{}",
                        c.regions,
                        c.slabs.saturating_mul(c.regions_per_slab)
                    ),
                    pct(share)
                );
            }
        }
        let _ = writeln!(s, "\n  stacks by waste attributed:");
        // Less than a byte is nothing to act on: stacks in classes without waste are listed
        // only when all rows are asked for (top 0).
        let ranked: Vec<&StackWaste> = self
            .stacks
            .iter()
            .filter(|st| top == 0 || st.waste >= 1.0)
            .collect();
        let unlisted = self.stacks.len() - ranked.len();
        if ranked.is_empty() {
            let _ = writeln!(
                s,
                "  (no stack of small objects in a size class that wastes)"
            );
        } else {
            let _ = writeln!(
                s,
                "  {:>4}  {:>11}  {:>9}  {:>5}  {:>6}  {:>11}  {:>6}  {}where (innermost frame first)",
                "rank",
                "waste",
                "class",
                "util",
                "share",
                "live",
                "+/-",
                if self.prof_stats { "internal  " } else { "" }
            );
            for (i, st) in ranked[..rows(ranked.len())].iter().enumerate() {
                let class = st.class.unwrap_or(0);
                let util = self
                    .classes
                    .iter()
                    .find(|c| c.size == class)
                    .map_or_else(|| "-".to_owned(), |c| pct(c.utilisation));
                let error = if st.samples > 0.0 {
                    pct(1.0 / st.samples.sqrt())
                } else {
                    "-".to_owned()
                };
                let internal = match (self.prof_stats, st.internal_waste) {
                    (false, _) => String::new(),
                    (true, Some(w)) => format!("{:>8}  ", human_bytes(w)),
                    (true, None) => format!("{:>8}  ", "-"),
                };
                let _ = writeln!(
                    s,
                    "  {:>4}  {:>11}  {:>7} B{}  {:>5}  {:>6}  {:>11}  {:>6}  {internal}{}",
                    i + 1,
                    human_bytes(st.waste),
                    class,
                    if st.mixed { "~" } else { " " },
                    util,
                    pct(st.share),
                    human_bytes(st.bytes),
                    error,
                    path(&st.frames, 4)
                );
            }
        }
        if unlisted > 0 {
            let _ = writeln!(
                s,
                "  ({unlisted} stacks of small objects in size classes without waste are not listed)"
            );
        }
        if self.large_bytes > 0.0 {
            let _ = writeln!(
                s,
                "  (stacks of large objects, {} live, are not listed: large objects have pages of \
                 their own, no slab to waste)",
                human_bytes(self.large_bytes)
            );
        }
        s.push_str(&self.caveats());
        s
    }

    fn caveats(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n  How good this is:");
        let lines = [
            format!(
                "jemalloc samples one allocation per {} allocated on average; each stack's live \
                 objects are estimated from its samples (+/-: one standard error, 1/sqrt(samples))",
                human_bytes(self.rate as f64)
            ),
            "waste belongs to a size class's slabs, not to a stack: each stack gets its class's \
             waste in proportion to its share of the class's live regions, so stacks in one class \
             get the same waste per object whether they fragment it or not: read a row as \"this \
             class wastes, and this stack lives in it\"; the regions no stack accounts for \
             (unsampled objects, thread caches) keep their share unattributed"
                .to_owned(),
            "a stack is placed in one class by its mean object size; ~ marks a mean more than 3% \
             from the class (several sizes from one stack, or few samples)"
                .to_owned(),
            "since jemalloc 5.3 a sampled small object is moved out of its slab onto a page of \
             its own (promotion): the slabs counted hold the unsampled objects only, so which \
             stack pins which slab is never seen (the join is by class, not by slab), and a \
             class's live regions are fewer than its stacks' estimate by the sampled objects"
                .to_owned(),
            if self.prof_stats {
                "internal: bytes inside the stack's objects that were not asked for, from the \
                 class's requested sizes (prof_stats) times the stack's live bytes"
                    .to_owned()
            } else {
                "requested vs usable size per class (internal fragmentation) needs jemalloc's \
                 prof_stats: `extra = { prof_stats = true }` in the jemsafe profile (jemalloc 5.3; \
                 it costs one global lock per sampled allocation and per free of one, nothing for \
                 the others)"
                    .to_owned()
            },
        ];
        for l in lines {
            let _ = writeln!(s, "  - {l}");
        }
        s
    }
}

/// Un-sampled live stacks of `profile`, named with `symbols`, each name stack kept apart
/// per size class (two address stacks that name alike but allocate different sizes stay
/// two rows).
pub fn stacks_of(profile: &AddrProfile, symbols: &symbolize::Symbols, page: u64) -> Vec<StackLive> {
    let table = small_classes(page);
    let o = Metric::InuseObjects as usize;
    let b = Metric::InuseSpace as usize;
    let mut parts: HashMap<Option<u64>, AddrProfile> = HashMap::new();
    for (addrs, v) in &profile.stacks {
        if v[o] <= 0.0 || v[b] <= 0.0 {
            continue;
        }
        let class = class_of(v[b] / v[o], &table).map(|(c, _)| c);
        parts
            .entry(class)
            .or_default()
            .stacks
            .insert(addrs.clone(), *v);
    }
    let mut out = Vec::new();
    for part in parts.values() {
        let np = NameProfile::build(part, symbols, None);
        for (ids, v) in &np.stacks {
            out.push(StackLive {
                frames: ids.iter().map(|&id| np.names.get(id).to_owned()).collect(),
                objects: v[o],
                bytes: v[b],
            });
        }
    }
    out
}

/// The join for one dump taken by jemsafe (its sidecar holds the memory snapshot).
pub fn of_dump(
    mut dump: LoadedDump,
    options: &symbolize::Options,
    notes: &mut Vec<String>,
) -> Result<Attribution> {
    let shown_path = shown(&dump.path);
    let snapshot = dump
        .sidecar
        .as_ref()
        .and_then(|s| s.memory_snapshot())
        .ok_or_else(|| {
            Error::BadDump(format!(
                "{shown_path} has no memory snapshot in a sidecar ({shown_path}.json): \
                 fragmentation by stack needs the size classes' slabs as they were at the \
                 dump; take dumps with jemsafe (`jemsafe dump`, SIGUSR1 to jemsafe)"
            ))
        })?
        .map_err(|why| Error::BadDump(format!("{shown_path}: {why}")))?;
    notes.extend(dump.notes.iter().cloned());
    let rate = dump.dump.rate;
    let profile = AddrProfile::take_from_dump(&mut dump.dump);
    let recorded = dump.sidecar.as_ref().map_or(&[][..], |s| &s.objects[..]);
    let outcome = symbolize::symbolize_recorded(&dump.dump.maps, &profile.pcs(), options, recorded);
    notes.extend(outcome.notes.iter().cloned());
    let stacks = stacks_of(&profile, &outcome.symbols, snapshot.jemalloc.page);
    Ok(attribute(&stacks, &snapshot.jemalloc, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;

    #[test]
    fn the_small_classes_are_jemallocs() {
        let c = small_classes(4096);
        assert_eq!(
            &c[..14],
            &[8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
        );
        assert!(c.contains(&1024) && c.contains(&1280) && c.contains(&1536));
        assert_eq!(c.last(), Some(&14336));
        assert_eq!(c.len(), 36, "jemalloc 5.3 has 36 bins with 4 KiB pages");
        assert_eq!(small_classes(65536).last(), Some(&229376));
        // A page no jemalloc has (a hostile snapshot) ends the table all the same.
        assert_eq!(small_classes(1 << 62), small_classes(65536));
        assert_eq!(small_classes(0), c);
    }

    #[test]
    fn a_mean_finds_its_class_and_mixed_means_are_marked() {
        let c = small_classes(4096);
        assert_eq!(class_of(1024.0, &c), Some((1024, false)));
        assert_eq!(class_of(1023.5, &c), Some((1024, false)));
        // Half 64 B, half 1 KiB objects: a mean of 544 B, nearest 512, marked.
        assert_eq!(class_of(544.0, &c), Some((512, true)));
        assert_eq!(class_of(14336.0, &c), Some((14336, false)));
        assert_eq!(class_of(16384.0, &c), None);
        assert_eq!(class_of(0.0, &c), None);
        assert_eq!(class_of(f64::NAN, &c), None);
    }

    /// 1 KiB class: 4 regions per slab, a quarter used; 1.5 KiB class: full.
    fn snapshot() -> JemallocMemory {
        JemallocMemory {
            allocated: 10 << 20,
            active: 22 << 20,
            page: 4096,
            bins: vec![
                Bin {
                    size: 1024,
                    nregs: 4,
                    curregs: 4096,
                    curslabs: 4096,
                },
                Bin {
                    size: 1536,
                    nregs: 8,
                    curregs: 2728,
                    curslabs: 341,
                },
            ],
            ..Default::default()
        }
    }

    fn stack(name: &str, objects: f64, size: f64) -> StackLive {
        StackLive {
            frames: vec![name.into(), "caller".into()],
            objects,
            bytes: objects * size,
        }
    }

    #[test]
    fn the_fragmenting_stack_gets_its_class_waste_and_the_dense_one_none() {
        let stacks = [
            stack("fragment", 3900.0, KIB),
            stack("other_1k", 100.0, KIB),
            stack("dense", 2700.0, 1.5 * KIB),
            stack("big", 10.0, 64.0 * KIB),
        ];
        let a = attribute(&stacks, &snapshot(), 1 << 19);
        assert_eq!(a.slab_waste, 4096 * 3 * 1024);
        assert_eq!(a.stacks[0].frames[0], "fragment");
        // 3900 of 4096 live regions: 95% of 12 MiB.
        let expected = 3900.0 / 4096.0 * (4096.0 * 3.0 * 1024.0);
        assert!((a.stacks[0].waste - expected).abs() < 1.0, "{a:?}");
        assert_eq!(a.stacks[1].frames[0], "other_1k");
        let dense = a.stacks.iter().find(|s| s.frames[0] == "dense").unwrap();
        assert_eq!(dense.waste, 0.0);
        assert_eq!(a.large_bytes, 640.0 * KIB);
        assert!(a.stacks.iter().all(|s| s.frames[0] != "big"));
        assert_eq!(a.classes[0].size, 1024);
        assert!((a.classes[0].utilisation - 0.25).abs() < 1e-9);
        let text = a.render(10);
        assert!(text.contains("How good this is"), "{text}");
        assert!(text.contains("fragment < caller"), "{text}");
        assert!(text.contains("prof_stats = true"), "{text}");
    }

    #[test]
    fn shares_never_exceed_the_class() {
        // The stacks' estimates add up to twice the live regions: shares are of their sum.
        let stacks = [stack("a", 6000.0, KIB), stack("b", 2192.0, KIB)];
        let a = attribute(&stacks, &snapshot(), 1 << 19);
        let total: f64 = a.stacks.iter().map(|s| s.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!((a.attributed - a.slab_waste as f64).abs() < 1.0);
    }

    #[test]
    fn prof_stats_give_internal_fragmentation() {
        let mut jem = snapshot();
        jem.prof_stats = Some(vec![ClassRequests {
            size: 1024,
            req_sum: 10 * 1000,
            count: 10,
        }]);
        let a = attribute(&[stack("fragment", 4096.0, KIB)], &jem, 1 << 19);
        let c = &a.classes[0];
        assert_eq!(c.requested_mean, Some(1000.0));
        let internal = c.internal.unwrap();
        assert!((internal - 24.0 / 1024.0).abs() < 1e-9);
        let w = a.stacks[0].internal_waste.unwrap();
        assert!((w - internal * 4096.0 * KIB).abs() < 1e-6);
        let text = a.render(0);
        assert!(text.contains("1000 B on average, 2% internal"), "{text}");
        assert!(!text.contains("prof_stats = true"), "{text}");
    }

    #[test]
    fn stacks_that_name_alike_but_allocate_other_sizes_stay_apart() {
        use crate::symbolize::Frame;
        let frame = |name: &str, allocator: bool| Frame {
            func: name.into(),
            full: name.into(),
            source: Default::default(),
            allocator,
        };
        // malloc at 0x10, the caller at 0x21 and 0x31 (return addresses, adjusted by -1
        // to 0x20 and 0x30): two call sites of one function.
        let symbols: symbolize::Symbols = [
            (0x10, vec![frame("malloc", true)]),
            (0x20, vec![frame("caller", false)]),
            (0x30, vec![frame("caller", false)]),
        ]
        .into_iter()
        .collect();
        let mut profile = AddrProfile::default();
        profile
            .stacks
            .insert(vec![0x10, 0x20], [100.0, 100.0 * KIB, 0.0, 0.0]);
        profile
            .stacks
            .insert(vec![0x10, 0x30], [10.0, 10.0 * 64.0, 0.0, 0.0]);
        profile
            .stacks
            .insert(vec![0x10, 0x40], [0.0, 0.0, 5.0, 50.0]);
        let mut stacks = stacks_of(&profile, &symbols, 4096);
        stacks.sort_by(|a, b| a.bytes.total_cmp(&b.bytes));
        assert_eq!(stacks.len(), 2, "{stacks:?}");
        assert_eq!(stacks[0].frames, ["caller"]);
        assert_eq!((stacks[0].objects, stacks[0].bytes), (10.0, 640.0));
        assert_eq!((stacks[1].objects, stacks[1].bytes), (100.0, 100.0 * KIB));
    }

    #[test]
    fn expected_samples_follow_the_sampling_law() {
        // 1 KiB objects at one sample per 512 KiB: about 1 in 512.
        let n = expected_samples(4096.0, 1024.0, 1 << 19);
        assert!((n - 8.0).abs() < 0.05, "{n}");
        assert_eq!(expected_samples(10.0, 1024.0, 1), 10.0);
    }
}
