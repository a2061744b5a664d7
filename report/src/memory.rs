//! Where a process's resident memory is: jemalloc's own accounting (read with mallctl
//! inside the process) laid beside what the kernel says (/proc/PID/smaps_rollup and
//! status), so that "RSS grows but the heap profile doesn't" has an answer:
//! fragmentation, freed pages not yet returned, jemalloc's metadata, or memory the
//! process maps without malloc (InnoDB's buffer pool, thread stacks). The readings are
//! the caller's to take; this module only accounts.
//!
//! The accounting is a pure function of the two readings; the lines add up to RSS, and
//! what does not fit is shown as the residual, never spread over the other lines.

use serde::{Deserialize, Serialize};

/// The format version of [`Snapshot`] this module writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The readings a breakdown is made of, kept with a dump (in its sidecar) as evidence:
/// the breakdown is computed when read, so a better accounting applies to old dumps too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub proc: ProcMemory,
    pub jemalloc: JemallocMemory,
    /// For a dump jemalloc wrote on its own (interval, gdump, final): how many ms after
    /// the file was closed the readings were taken (they follow it; on-demand dumps take
    /// theirs just before). Absent for on-demand dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_close_ms: Option<u64>,
}

impl Snapshot {
    pub fn new(proc: ProcMemory, jemalloc: JemallocMemory) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            proc,
            jemalloc,
            after_close_ms: None,
        }
    }

    /// The breakdown, or why this snapshot cannot be read.
    pub fn breakdown(&self) -> Result<Breakdown, String> {
        if self.version != SNAPSHOT_VERSION {
            return Err(format!(
                "its memory snapshot has format version {}, and this jemsafe reads version \
                 {SNAPSHOT_VERSION}: read it with the jemsafe that wrote it",
                self.version
            ));
        }
        Ok(breakdown(&self.proc, &self.jemalloc))
    }
}

/// jemalloc's accounting as the shim reads it with mallctl (bytes unless named): the
/// shim's message, kept in a sidecar as it came.
pub use jemsafe_proto::Memory as JemallocMemory;
/// One small size class (`Bin::wasted`) and the requested bytes of one class's live
/// sampled objects (`ClassRequests::internal`), as the shim reads them.
pub use jemsafe_proto::{Bin, ClassRequests};

/// What the kernel says about a process's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcMemory {
    /// `Rss` of smaps_rollup: resident pages, counted exactly.
    pub rss: u64,
    /// `Anonymous`: resident anonymous pages (malloc, mmap without a file, stacks).
    pub anonymous: u64,
    /// `LazyFree`: pages freed with MADV_FREE that the kernel has not taken back yet.
    pub lazy_free: u64,
    /// `RssShmem` of status: shared memory (SysV, tmpfs, memfd).
    pub shmem: u64,
    /// `Swap`: swapped out (not part of RSS).
    pub swap: u64,
}

impl ProcMemory {
    /// From the texts of smaps_rollup and status; missing fields count as 0.
    pub fn parse(smaps_rollup: &str, status: &str) -> ProcMemory {
        ProcMemory {
            rss: kib(smaps_rollup, "Rss"),
            anonymous: kib(smaps_rollup, "Anonymous"),
            lazy_free: kib(smaps_rollup, "LazyFree"),
            shmem: kib(status, "RssShmem"),
            swap: kib(smaps_rollup, "Swap"),
        }
    }

    /// From status alone (VmRSS, RssAnon, RssShmem, VmSwap), read without walking page
    /// tables as smaps_rollup does; LazyFree is not among them (0).
    pub fn from_status(status: &str) -> ProcMemory {
        ProcMemory {
            rss: kib(status, "VmRSS"),
            anonymous: kib(status, "RssAnon"),
            lazy_free: 0,
            shmem: kib(status, "RssShmem"),
            swap: kib(status, "VmSwap"),
        }
    }
}

/// The value of `key:  N kB` in a /proc text, in bytes; 0 when it is missing.
pub fn kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(1024)
}

/// One small size class and what it wastes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeClass {
    /// Region size in bytes.
    pub size: u64,
    /// Regions in use, and slabs holding them (each slab has room for `regions_per_slab`).
    pub regions: u64,
    pub slabs: u64,
    pub regions_per_slab: u64,
    /// Bytes in this class's slabs that hold no live region.
    pub wasted: u64,
}

/// mysqld's RSS, line by line. Integer fields in bytes; the JSON names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub rss: u64,
    /// jemalloc's `stats.allocated`: what the heap profile accounts for.
    pub heap_in_use: u64,
    /// `stats.active - stats.allocated`: pages of active extents that hold no allocation.
    pub fragmentation: u64,
    /// Dirty and muzzy pages: freed, not yet returned to the kernel.
    pub dirty_pages: u64,
    /// jemalloc's own bookkeeping.
    pub metadata: u64,
    /// Anonymous memory jemalloc does not account for: mmap without malloc (InnoDB's
    /// buffer pool), thread stacks, other allocators.
    pub outside_jemalloc: u64,
    pub file_backed: u64,
    pub shmem: u64,
    /// Swapped out; not part of RSS.
    pub swap: u64,
    /// RSS minus the lines above (may be negative: jemalloc counts muzzy pages and
    /// metadata the kernel already took back or never paged in).
    pub residual: i64,
    /// Small size classes in use, most wasteful first.
    pub size_classes: Vec<SizeClass>,
    /// The knobs that decide the lines above.
    pub narenas: u64,
    pub dirty_decay_ms: i64,
    pub muzzy_decay_ms: i64,
    pub background_thread: bool,
}

/// One part of RSS: every name it goes by, its colour, and how it is computed from a
/// breakdown. [`PARTS`] is the one list of them: the table of `jemsafe memory`, the
/// timeline file, its CSV, text and chart, the page, all read it.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    /// Its name in JSON and CSV (the [`Breakdown`] field): `heap_in_use`.
    pub key: &'static str,
    /// Its key in a line of the timeline file (short: a line every few seconds).
    pub line_key: &'static str,
    /// For people: `jemsafe memory`'s table, the chart's legend, the page.
    pub label: &'static str,
    /// In a sentence (`jemsafe status`, the growth line of `leaks`).
    pub short: &'static str,
    /// The column of `jemsafe timeline`'s text view (9 characters at most).
    pub column: &'static str,
    /// What it is, beside its line in `jemsafe memory`.
    pub note: &'static str,
    /// Its colour on the chart and the page.
    pub colour: &'static str,
    /// Its bytes in a breakdown.
    pub of: fn(&Breakdown) -> u64,
}

/// The parts that make up RSS, bottom of the chart's stack first.
pub const PARTS: [Part; 7] = [
    Part {
        key: "heap_in_use",
        line_key: "heap",
        label: "heap in use",
        short: "heap in use",
        column: "heap",
        note: "what the heap profile shows",
        colour: "#4e79a7",
        of: |b| b.heap_in_use,
    },
    Part {
        key: "fragmentation",
        line_key: "frag",
        label: "fragmentation",
        short: "fragmentation",
        column: "frag",
        note: "active pages minus live allocations",
        colour: "#f28e2b",
        of: |b| b.fragmentation,
    },
    Part {
        key: "dirty_pages",
        line_key: "dirty",
        label: "freed, not yet returned",
        short: "freed not returned",
        column: "freed",
        note: "dirty + muzzy pages",
        colour: "#edc948",
        of: |b| b.dirty_pages,
    },
    Part {
        key: "metadata",
        line_key: "meta",
        label: "jemalloc metadata",
        short: "metadata",
        column: "metadata",
        note: "",
        colour: "#b07aa1",
        of: |b| b.metadata,
    },
    Part {
        key: "outside_jemalloc",
        line_key: "outside",
        label: "outside jemalloc",
        short: "outside jemalloc",
        column: "outside",
        note: "anonymous: buffer pool, thread stacks, mmap",
        colour: "#59a14f",
        of: |b| b.outside_jemalloc,
    },
    Part {
        key: "file_backed",
        line_key: "file",
        label: "file-backed",
        short: "file-backed",
        column: "files",
        note: "code, mapped files",
        colour: "#9c755f",
        of: |b| b.file_backed,
    },
    Part {
        key: "shmem",
        line_key: "shmem",
        label: "shared memory",
        short: "shmem",
        column: "shmem",
        note: "",
        colour: "#76b7b2",
        of: |b| b.shmem,
    },
];

/// What is left of RSS beyond [`PARTS`] on the chart (label, colour): the top layer.
pub const OTHER: (&str, &str) = ("other", "#d3d3d3");

/// The chart's stack of one reading: [`PARTS`], then [`OTHER`].
pub type Stack = [u64; PARTS.len() + 1];

/// RSS's parts in [`PARTS`] order, in bytes, and swap (not part of RSS): what a timeline
/// sample keeps of a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parts {
    pub bytes: [u64; PARTS.len()],
    pub swap: u64,
}

impl Parts {
    pub fn from_breakdown(b: &Breakdown) -> Parts {
        Parts {
            bytes: PARTS.map(|p| (p.of)(b)),
            swap: b.swap,
        }
    }

    /// Each part's key ([`Part::key`], the CSV and JSON name) with its bytes, bottom of
    /// the stack first.
    pub fn resident(&self) -> [(&'static str, u64); PARTS.len()] {
        let mut out = [("", 0); PARTS.len()];
        for ((o, p), b) in out.iter_mut().zip(&PARTS).zip(self.bytes) {
            *o = (p.key, b);
        }
        out
    }

    /// The bytes of the part named `key` ([`Part::key`]).
    pub fn get(&self, key: &str) -> Option<u64> {
        PARTS
            .iter()
            .position(|p| p.key == key)
            .map(|i| self.bytes[i])
    }

    /// These parts with the part named `key` set to `bytes` (unknown keys change nothing).
    pub fn with(mut self, key: &str, bytes: u64) -> Parts {
        if let Some(i) = PARTS.iter().position(|p| p.key == key) {
            self.bytes[i] = bytes;
        }
        self
    }

    /// The chart's stack for a reading of `rss`: the parts, then what is left of RSS.
    pub fn stack(&self, rss: u64) -> Stack {
        let sum = self.bytes.iter().fold(0u64, |a, b| a.saturating_add(*b));
        let mut out = [0; PARTS.len() + 1];
        out[..PARTS.len()].copy_from_slice(&self.bytes);
        out[PARTS.len()] = rss.saturating_sub(sum);
        out
    }
}

/// The breakdown of one process's RSS from the kernel's and jemalloc's readings.
pub fn breakdown(proc: &ProcMemory, jem: &JemallocMemory) -> Breakdown {
    let fragmentation = jem.active.saturating_sub(jem.allocated);
    let dirty_pages = jem.dirty.saturating_add(jem.muzzy);
    let jemalloc = jem
        .allocated
        .saturating_add(fragmentation)
        .saturating_add(dirty_pages)
        .saturating_add(jem.metadata);
    let outside_jemalloc = proc.anonymous.saturating_sub(jemalloc);
    let file_backed = proc
        .rss
        .saturating_sub(proc.anonymous)
        .saturating_sub(proc.shmem);
    let mut size_classes: Vec<SizeClass> = jem
        .bins
        .iter()
        .filter(|b| b.curslabs > 0)
        .map(|b| SizeClass {
            size: b.size,
            regions: b.curregs,
            slabs: b.curslabs,
            regions_per_slab: b.nregs,
            wasted: b.wasted(),
        })
        .collect();
    size_classes.sort_by(|a, b| b.wasted.cmp(&a.wasted).then(a.size.cmp(&b.size)));
    let mut b = Breakdown {
        rss: proc.rss,
        heap_in_use: jem.allocated,
        fragmentation,
        dirty_pages,
        metadata: jem.metadata,
        outside_jemalloc,
        file_backed,
        shmem: proc.shmem,
        swap: proc.swap,
        residual: 0,
        size_classes,
        narenas: jem.narenas,
        dirty_decay_ms: jem.dirty_decay_ms,
        muzzy_decay_ms: jem.muzzy_decay_ms,
        background_thread: jem.background_thread,
    };
    b.residual = proc.rss as i64 - PARTS.iter().map(|p| (p.of)(&b) as i64).sum::<i64>();
    b
}

impl Breakdown {
    /// Whether fragmentation is large enough for advice (more than a quarter of the heap
    /// in use): then `memory DUMP` and `leaks` also say which stacks live in the wasteful
    /// size classes.
    pub fn fragmentation_advised(&self) -> bool {
        self.fragmentation as f64 > 0.25 * self.heap_in_use.max(1) as f64
    }

    /// Advice, only where a threshold is crossed: which knob, and how to set it in a
    /// jemsafe profile.
    pub fn advice(&self) -> Vec<String> {
        let mut out = Vec::new();
        let share = |v: u64| v as f64 / self.rss.max(1) as f64;
        if share(self.dirty_pages) > 0.10 {
            out.push(format!(
                "{:.0}% of RSS is freed pages jemalloc has not returned yet (dirty_decay_ms = {}, \
                 muzzy_decay_ms = {}, background_thread = {}): return them sooner with, in your \
                 jemsafe profile, `extra = {{ dirty_decay_ms = 1000, muzzy_decay_ms = 0 }}`, or let \
                 jemalloc purge on threads of its own with `extra = {{ background_thread = true }}`",
                100.0 * share(self.dirty_pages),
                self.dirty_decay_ms,
                self.muzzy_decay_ms,
                self.background_thread
            ));
        }
        if self.fragmentation_advised() {
            let worst: Vec<String> = self
                .size_classes
                .iter()
                .take(3)
                .map(|c| format!("{} B ({} wasted)", c.size, human(c.wasted)))
                .collect();
            out.push(format!(
                "fragmentation is {:.0}% of the heap in use: freed regions are scattered over \
                 slabs that stay active; the most wasteful size classes are {}. Fewer arenas \
                 (now {}) pack allocations tighter: `extra = {{ narenas = N }}` in your jemsafe \
                 profile, at some cost in lock contention",
                100.0 * self.fragmentation as f64 / self.heap_in_use.max(1) as f64,
                if worst.is_empty() {
                    "none in particular (large allocations)".to_owned()
                } else {
                    worst.join(", ")
                },
                self.narenas
            ));
        }
        out
    }

    /// One line for `jemsafe status`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = PARTS
            .iter()
            .map(|p| format!("{} {}", p.short, human((p.of)(self))))
            .collect();
        format!(
            "RSS {}: {} (details: jemsafe memory)",
            human(self.rss),
            parts.join(", ")
        )
    }

    /// The breakdown as a table: bytes and % of RSS on every line.
    pub fn render(&self) -> String {
        let pct = |v: i64| 100.0 * v as f64 / self.rss.max(1) as f64;
        let mut s = String::new();
        let mut line = |name: &str, v: i64, note: &str| {
            let row = format!(
                "  {name:<26} {:>12}  {:>5.1}%  {note}",
                human_signed(v),
                pct(v)
            );
            s.push_str(row.trim_end());
            s.push('\n');
        };
        line("RSS", self.rss as i64, "");
        for p in &PARTS {
            line(p.label, (p.of)(self) as i64, p.note);
        }
        line("residual", self.residual, "RSS minus the lines above");
        s.push_str(&format!(
            "  swapped out: {}; narenas {}, dirty_decay_ms {}, muzzy_decay_ms {}, background_thread {}\n",
            human(self.swap),
            self.narenas,
            self.dirty_decay_ms,
            self.muzzy_decay_ms,
            self.background_thread
        ));
        let wasteful: Vec<&SizeClass> = self
            .size_classes
            .iter()
            .filter(|c| c.wasted > 0)
            .take(5)
            .collect();
        if !wasteful.is_empty() {
            s.push_str("  size classes wasting most:\n");
            for c in wasteful {
                s.push_str(&format!(
                    "    {:>7} B  {:>10} wasted  {} regions in {} slabs of {}\n",
                    c.size,
                    human(c.wasted),
                    c.regions,
                    c.slabs,
                    c.regions_per_slab
                ));
            }
        }
        for a in self.advice() {
            s.push_str(&format!("  advice: {a}\n"));
        }
        s
    }
}

/// Which part of RSS grew from `first` to `last`, as the opening of a leak ranking:
/// stacks explain only the heap's growth, so when most of it is elsewhere that comes first.
pub fn growth(first: &Breakdown, last: &Breakdown) -> String {
    let d = |a: u64, b: u64| b as i64 - a as i64;
    let rss = d(first.rss, last.rss);
    let heap = d(first.heap_in_use, last.heap_in_use);
    let parts: Vec<(&str, i64)> = PARTS
        .iter()
        .map(|p| (p.short, d((p.of)(first), (p.of)(last))))
        .collect();
    let mut s = format!(
        "RSS {}{}, of which {}.\n",
        if rss >= 0 { "+" } else { "" },
        human_signed(rss),
        parts
            .iter()
            .map(|(name, v)| format!(
                "{name} {}{}",
                if *v >= 0 { "+" } else { "" },
                human_signed(*v)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if rss > 0 && heap < rss / 2 {
        let (name, v) = parts[1..]
            .iter()
            .max_by_key(|(_, v)| *v)
            .copied()
            .unwrap_or(("elsewhere", 0));
        s.push_str(&format!(
            "Most of the growth is not in the heap (largest: {name} {}): the stacks below explain \
             only the heap's {}; see `jemsafe memory` for the rest.\n",
            human_signed(v),
            human_signed(heap)
        ));
    }
    s
}

fn human(v: u64) -> String {
    human_signed(v as i64)
}

fn human_signed(v: i64) -> String {
    crate::units::bytes(v as f64, crate::units::BREAKDOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn jem() -> JemallocMemory {
        JemallocMemory {
            allocated: 100 * MIB,
            active: 150 * MIB,
            metadata: 5 * MIB,
            dirty: 20 * MIB,
            muzzy: 0,
            page: 4096,
            narenas: 8,
            dirty_decay_ms: 10000,
            bins: vec![
                Bin {
                    size: 1024,
                    nregs: 4,
                    curregs: 4,
                    curslabs: 1,
                },
                Bin {
                    size: 64,
                    nregs: 64,
                    curregs: 1,
                    curslabs: 10,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_lines_add_up_to_rss() {
        let proc = ProcMemory {
            rss: 600 * MIB,
            anonymous: 500 * MIB,
            shmem: 10 * MIB,
            ..Default::default()
        };
        let b = breakdown(&proc, &jem());
        assert_eq!(b.heap_in_use, 100 * MIB);
        assert_eq!(b.fragmentation, 50 * MIB);
        assert_eq!(b.dirty_pages, 20 * MIB);
        assert_eq!(b.outside_jemalloc, 500 * MIB - 175 * MIB);
        assert_eq!(b.file_backed, 90 * MIB);
        assert_eq!(b.residual, 0);
        let sum = b.heap_in_use
            + b.fragmentation
            + b.dirty_pages
            + b.metadata
            + b.outside_jemalloc
            + b.file_backed
            + b.shmem;
        assert_eq!(sum as i64 + b.residual, b.rss as i64);
        // Most wasteful class first: 64 B, 10 slabs of 64 with one region used.
        assert_eq!(b.size_classes[0].size, 64);
        assert_eq!(b.size_classes[0].wasted, (640 - 1) * 64);
    }

    /// Each part's key is the breakdown's JSON field of the same bytes, and the parts
    /// with the residual add up to RSS.
    #[test]
    fn every_part_is_named_as_the_breakdown_names_it() {
        let proc = ProcMemory {
            rss: 600 * MIB,
            anonymous: 500 * MIB,
            shmem: 7 * MIB,
            ..Default::default()
        };
        let b = breakdown(&proc, &jem());
        let json = serde_json::to_value(&b).unwrap();
        let parts = Parts::from_breakdown(&b);
        for (p, (key, bytes)) in PARTS.iter().zip(parts.resident()) {
            assert_eq!(json[p.key].as_u64(), Some((p.of)(&b)), "{}", p.key);
            assert_eq!((key, bytes), (p.key, (p.of)(&b)));
            assert!(p.column.len() <= 9 && !p.label.is_empty());
        }
        let stack = parts.stack(b.rss);
        assert_eq!(stack.iter().sum::<u64>(), b.rss);
        assert_eq!(stack[PARTS.len()] as i64, b.residual.max(0));
        assert_eq!(parts.get("shmem"), Some(7 * MIB));
        assert_eq!(Parts::default().with("no such part", 1), Parts::default());
    }

    #[test]
    fn jemalloc_counting_more_than_the_kernel_shows_as_a_negative_residual() {
        let proc = ProcMemory {
            rss: 150 * MIB,
            anonymous: 140 * MIB,
            ..Default::default()
        };
        let b = breakdown(&proc, &jem());
        assert_eq!(b.outside_jemalloc, 0);
        assert_eq!(b.residual, 140 * MIB as i64 - 175 * MIB as i64);
    }

    #[test]
    fn advice_only_past_its_threshold() {
        let proc = ProcMemory {
            rss: 600 * MIB,
            anonymous: 500 * MIB,
            ..Default::default()
        };
        let b = breakdown(&proc, &jem());
        // dirty 20 MiB of 600 (3%): no advice on decay; fragmentation 50% of heap: advice.
        let a = b.advice();
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].contains("narenas") && a[0].contains("64 B"), "{a:?}");
        let mut j = jem();
        j.active = j.allocated;
        j.dirty = 200 * MIB;
        let a = breakdown(&proc, &j).advice();
        assert!(a.len() == 1 && a[0].contains("dirty_decay_ms"), "{a:?}");
    }

    #[test]
    fn growth_says_where_rss_grew_and_warns_when_not_in_the_heap() {
        let proc = ProcMemory {
            rss: 600 * MIB,
            anonymous: 500 * MIB,
            ..Default::default()
        };
        let first = breakdown(&proc, &jem());
        let mut later = proc;
        later.rss += 200 * MIB;
        later.anonymous += 200 * MIB;
        let last = breakdown(&later, &jem());
        let g = growth(&first, &last);
        assert!(
            g.starts_with("RSS +200.0 MiB, of which heap in use +0 KiB"),
            "{g}"
        );
        assert!(g.contains("outside jemalloc +200.0 MiB"), "{g}");
        assert!(
            g.contains("Most of the growth is not in the heap (largest: outside jemalloc"),
            "{g}"
        );
        let mut j = jem();
        j.allocated += 200 * MIB;
        j.active += 200 * MIB;
        let g = growth(&first, &breakdown(&later, &j));
        assert!(!g.contains("Most of the growth"), "{g}");
    }

    #[test]
    fn proc_fields_parse_in_kib() {
        let p = ProcMemory::parse(
            "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:              123 kB\nAnonymous:         100 kB\nLazyFree:            4 kB\nSwap:                7 kB\n",
            "Name:\tmariadbd\nRssShmem:\t       8 kB\n",
        );
        assert_eq!(
            p,
            ProcMemory {
                rss: 123 * 1024,
                anonymous: 100 * 1024,
                lazy_free: 4096,
                shmem: 8 * 1024,
                swap: 7 * 1024,
            }
        );
    }
}
