// Read: couchbasedeps/jemalloc src/jemalloc.c @ 0bc3f58e3a70fbe04d46cfc3851d66ccf4e325e4 (jemalloc 5.3.0, malloc_conf_init_helper),
// compared with the 5.3.0 copy vendored by Redis/Valkey (deps/jemalloc/src/jemalloc.c, identical conf parser).
// Name arrays: extent_dss.c, arena.c, base.c, pages.c; bounds: tcache_types.h, nstime.h, sc.h, background_thread*.h (64-bit, 4 KiB pages).

//! Every option jemalloc 5.3 accepts in MALLOC_CONF, with the values it accepts.
//! Source: jemalloc 5.3.0 src/jemalloc.c, malloc_conf_init_helper().
//!
//! Notes on how jemalloc 5.3.0 parses values (what the kinds below model):
//! - Booleans must be exactly `true` or `false`.
//! - Numbers go through `malloc_strtoumax(v, &end, 0)`, so jemalloc itself would also take
//!   `0x..` hex and leading-zero octal; the whole value must be consumed.
//! - Where the source "clips" (`clip = true`), jemalloc silently clamps an out-of-range number
//!   instead of reporting it; the range recorded here is the one jemalloc clamps to, so jemsafe
//!   refuses a value jemalloc would not honour as written. Those entries say "clipped".
//! - `cache_oblivious` is *not* accepted by 5.3.0's parser ("Invalid conf pair"); the handler was
//!   added upstream after the release (jemalloc PR #2307, July 2022), so it is not listed.
//! - Sizes and bounds that depend on the platform are given for 64-bit Linux with 4 KiB pages and
//!   2 MiB huge pages (PAGE = 4096, HUGEPAGE = 2097152, HUGEPAGE_PAGES = 512).

/// What a value must look like for jemalloc to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Bool,
    /// Unsigned integer within [min, max] (inclusive); jemalloc's CONF_HANDLE_UNSIGNED/SIZE_T/UINT64.
    Unsigned {
        min: u64,
        max: u64,
    },
    /// Signed integer within [min, max] (inclusive); CONF_HANDLE_SSIZE_T/INT64.
    Signed {
        min: i64,
        max: i64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// Free text (e.g. stats_print_opts, slab_sizes, bin_shards); no check beyond "no comma".
    Text,
}

#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    /// One-line description for error messages ("number of arenas").
    pub about: &'static str,
}

/// 4 KiB: PAGE with LG_PAGE = 12.
const PAGE: u64 = 1 << 12;
/// 2 MiB: HUGEPAGE with LG_HUGEPAGE = 21.
const HUGEPAGE: u64 = 1 << 21;
/// HUGEPAGE / PAGE.
const HUGEPAGE_PAGES: u64 = HUGEPAGE / PAGE;
/// NSTIME_SEC_MAX (18446744072) * 1000, which is below SSIZE_MAX on 64-bit, so it is the bound
/// jemalloc uses for dirty_decay_ms / muzzy_decay_ms.
const DECAY_MS_MAX: i64 = 18_446_744_072 * 1000;
/// TCACHE_MAXCLASS_LIMIT = 1 << TCACHE_LG_MAXCLASS_LIMIT (23) = 8 MiB.
const TCACHE_LG_MAXCLASS_LIMIT: u64 = 23;
const TCACHE_MAXCLASS_LIMIT: u64 = 1 << TCACHE_LG_MAXCLASS_LIMIT;
/// SC_LARGE_MAXCLASS on 64-bit: SC_MAX_BASE (1 << 62) + 3 * SC_MAX_DELTA (1 << 60).
const SC_LARGE_MAXCLASS: u64 = (1 << 62) + 3 * (1 << 60);
/// opt_max_background_threads starts at MAX_BACKGROUND_THREAD_LIMIT + 1,
/// MAX_BACKGROUND_THREAD_LIMIT = MALLOCX_ARENA_LIMIT = (1 << 12) - 1.
const MAX_BACKGROUND_THREADS: u64 = ((1 << 12) - 1) + 1;

/// dss_prec_names[0 .. dss_prec_limit) (src/extent_dss.c).
const DSS_PREC_NAMES: &[&str] = &["disabled", "primary", "secondary"];
/// percpu_arena_mode_names[percpu_arena_mode_names_base .. percpu_arena_mode_names_limit) (src/arena.c).
const PERCPU_ARENA_MODE_NAMES: &[&str] = &["percpu", "phycpu", "disabled"];
/// metadata_thp_mode_names[0 .. metadata_thp_mode_limit) (src/base.c).
const METADATA_THP_MODE_NAMES: &[&str] = &["disabled", "auto", "always"];
/// thp_mode_names[0 .. thp_mode_names_limit) (src/pages.c); "not supported" is not accepted.
const THP_MODE_NAMES: &[&str] = &["default", "always", "never"];
/// The CONF_MATCH_VALUE branches of "junk".
const JUNK_VALUES: &[&str] = &["true", "false", "alloc", "free"];
/// The CONF_MATCH_VALUE branches of "zero_realloc" (zero_realloc_mode_names).
const ZERO_REALLOC_VALUES: &[&str] = &["alloc", "free", "abort"];
/// The CONF_MATCH_VALUE branches of "prof_time_resolution".
const PROF_TIME_RESOLUTION_VALUES: &[&str] = &["default", "high"];

/// The highest lg_prof_sample jemalloc accepts (a sample every 2^63 bytes).
pub const LG_PROF_SAMPLE_MAX: u64 = 63;

const fn unsigned(min: u64, max: u64) -> OptionKind {
    OptionKind::Unsigned { min, max }
}

const fn signed(min: i64, max: i64) -> OptionKind {
    OptionKind::Signed { min, max }
}

const fn opt(name: &'static str, kind: OptionKind, about: &'static str) -> OptionSpec {
    OptionSpec { name, kind, about }
}

/// Sorted by name (byte order), so [`lookup`] can binary-search.
pub static OPTIONS: &[OptionSpec] = &[
    opt("abort", OptionKind::Bool, "abort on warnings"),
    opt(
        "abort_conf",
        OptionKind::Bool,
        "abort at startup on an invalid conf option",
    ),
    opt(
        "background_thread",
        OptionKind::Bool,
        "purge dirty pages from background threads",
    ),
    opt(
        "bin_shards",
        OptionKind::Text,
        "shards per bin size range, \"start-end:nshards|...\"",
    ),
    opt(
        "confirm_conf",
        OptionKind::Bool,
        "print each conf source and accepted option at startup",
    ),
    opt(
        "dirty_decay_ms",
        signed(-1, DECAY_MS_MAX),
        "dirty page decay time in ms, -1 = never purge",
    ),
    opt(
        "dss",
        OptionKind::Choice(DSS_PREC_NAMES),
        "sbrk(2) precedence versus mmap(2)",
    ),
    opt(
        "experimental_infallible_new",
        OptionKind::Bool,
        "experimental: abort instead of throwing from operator new; only in builds with C++ support",
    ),
    opt(
        "hpa",
        OptionKind::Bool,
        "use the hugepage allocator (disabled with a warning where unsupported)",
    ),
    opt(
        "hpa_dirty_mult",
        OptionKind::Text,
        "HPA dirty/active ratio: \"-1\" or a fixed-point number such as 0.25",
    ),
    opt(
        "hpa_hugification_threshold",
        unsigned(PAGE, HUGEPAGE),
        "HPA bytes active in a hugepage before hugifying it (clipped)",
    ),
    opt(
        "hpa_hugification_threshold_ratio",
        OptionKind::Text,
        "HPA hugification threshold as a fixed-point fraction of a hugepage, at most 1",
    ),
    opt(
        "hpa_hugify_delay_ms",
        unsigned(0, u64::MAX),
        "HPA delay in ms before hugifying a hugepage",
    ),
    opt(
        "hpa_min_purge_interval_ms",
        unsigned(0, u64::MAX),
        "HPA minimum interval in ms between purges",
    ),
    opt(
        "hpa_sec_batch_fill_extra",
        unsigned(0, HUGEPAGE_PAGES),
        "HPA small-extent cache extra extents per batch fill (clipped)",
    ),
    opt(
        "hpa_sec_bytes_after_flush",
        unsigned(PAGE, u64::MAX),
        "HPA small-extent cache bytes kept after a flush (clipped up to one page)",
    ),
    opt(
        "hpa_sec_max_alloc",
        unsigned(PAGE, u64::MAX),
        "HPA small-extent cache largest cached size (clipped up to one page)",
    ),
    opt(
        "hpa_sec_max_bytes",
        unsigned(PAGE, u64::MAX),
        "HPA small-extent cache bytes per shard (clipped up to one page)",
    ),
    opt(
        "hpa_sec_nshards",
        unsigned(0, u64::MAX),
        "HPA small-extent cache shard count, 0 = off",
    ),
    opt(
        "hpa_slab_max_alloc",
        unsigned(PAGE, HUGEPAGE),
        "HPA largest allocation served from a hugepage slab (clipped)",
    ),
    opt(
        "junk",
        OptionKind::Choice(JUNK_VALUES),
        "junk-fill allocations; only in builds with --enable-fill",
    ),
    opt(
        "lg_extent_max_active_fit",
        unsigned(0, 64),
        "log2 of the max active extent size / request size ratio",
    ),
    opt(
        "lg_prof_interval",
        signed(-1, 63),
        "log2 bytes allocated between profile dumps, -1 = off; only with --enable-prof",
    ),
    opt(
        "lg_prof_sample",
        unsigned(0, LG_PROF_SAMPLE_MAX),
        "log2 mean bytes between allocation samples (clipped); only with --enable-prof",
    ),
    opt(
        "lg_san_uaf_align",
        signed(-1, 63),
        "log2 alignment sampled for use-after-free checks, -1 = off (values below LG_PAGE raised to it); only with --enable-uaf-detection",
    ),
    opt(
        "lg_tcache_flush_large_div",
        unsigned(1, 16),
        "log2 of the fraction of a large tcache bin flushed (clipped)",
    ),
    opt(
        "lg_tcache_flush_small_div",
        unsigned(1, 16),
        "log2 of the fraction of a small tcache bin flushed (clipped)",
    ),
    opt(
        "lg_tcache_max",
        unsigned(0, TCACHE_LG_MAXCLASS_LIMIT),
        "deprecated log2 spelling of tcache_max, still accepted (clipped)",
    ),
    opt(
        "lg_tcache_nslots_mul",
        signed(-16, 16),
        "log2 multiplier of tcache slots per small bin",
    ),
    opt(
        "log",
        OptionKind::Text,
        "internal log variable names, '|'-separated; only with --enable-log",
    ),
    opt(
        "max_background_threads",
        unsigned(1, MAX_BACKGROUND_THREADS),
        "maximum number of background threads (clipped)",
    ),
    opt(
        "metadata_thp",
        OptionKind::Choice(METADATA_THP_MODE_NAMES),
        "transparent huge pages for metadata",
    ),
    opt(
        "mutex_max_spin",
        signed(-1, i64::MAX),
        "mutex spin count before blocking, -1 = default",
    ),
    opt(
        "muzzy_decay_ms",
        signed(-1, DECAY_MS_MAX),
        "muzzy page decay time in ms, -1 = never purge",
    ),
    opt(
        "narenas",
        unsigned(1, u32::MAX as u64),
        "number of arenas (jemalloc also takes the word \"default\")",
    ),
    opt(
        "narenas_ratio",
        OptionKind::Text,
        "arenas per CPU as a fixed-point number such as 4 or 0.5",
    ),
    opt(
        "oversize_threshold",
        unsigned(0, SC_LARGE_MAXCLASS),
        "bytes from which allocations use the dedicated huge arena, 0 = off",
    ),
    opt(
        "percpu_arena",
        OptionKind::Choice(PERCPU_ARENA_MODE_NAMES),
        "per-CPU arenas (error where getcpu is unavailable)",
    ),
    opt(
        "prof",
        OptionKind::Bool,
        "heap profiling; only with --enable-prof",
    ),
    opt(
        "prof_accum",
        OptionKind::Bool,
        "cumulative counts in profile dumps; only with --enable-prof",
    ),
    opt(
        "prof_active",
        OptionKind::Bool,
        "profiling active at startup; only with --enable-prof",
    ),
    opt(
        "prof_final",
        OptionKind::Bool,
        "dump a profile at exit; only with --enable-prof",
    ),
    opt(
        "prof_gdump",
        OptionKind::Bool,
        "dump a profile when total virtual memory grows; only with --enable-prof",
    ),
    opt(
        "prof_leak",
        OptionKind::Bool,
        "report leaks at exit; only with --enable-prof",
    ),
    opt(
        "prof_leak_error",
        OptionKind::Bool,
        "exit with an error when leaks are found (needs prof_final); only with --enable-prof",
    ),
    opt(
        "prof_log",
        OptionKind::Bool,
        "allocation logging from startup; only with --enable-prof",
    ),
    opt(
        "prof_prefix",
        OptionKind::Text,
        "profile dump filename prefix; only with --enable-prof",
    ),
    opt(
        "prof_recent_alloc_max",
        signed(-1, i64::MAX),
        "recent sampled allocations kept, -1 = unlimited; only with --enable-prof",
    ),
    opt(
        "prof_stats",
        OptionKind::Bool,
        "per-size-class profiling stats; only with --enable-prof",
    ),
    opt(
        "prof_sys_thread_name",
        OptionKind::Bool,
        "record system thread names in profiles; only with --enable-prof",
    ),
    opt(
        "prof_thread_active_init",
        OptionKind::Bool,
        "initial thread.prof.active of new threads; only with --enable-prof",
    ),
    opt(
        "prof_time_resolution",
        OptionKind::Choice(PROF_TIME_RESOLUTION_VALUES),
        "profiling timestamp resolution (\"high\" needs a high-resolution clock); only with --enable-prof",
    ),
    opt(
        "prof_unbias",
        OptionKind::Bool,
        "undocumented: correct jeprof sampling bias; only with --enable-prof",
    ),
    opt(
        "retain",
        OptionKind::Bool,
        "retain unused virtual memory instead of munmap(2)",
    ),
    opt(
        "san_guard_large",
        unsigned(0, u64::MAX),
        "guard every Nth large extent with guard pages, 0 = off",
    ),
    opt(
        "san_guard_small",
        unsigned(0, u64::MAX),
        "guard every Nth small extent with guard pages, 0 = off",
    ),
    opt(
        "slab_sizes",
        OptionKind::Text,
        "slab pages per size range, \"start-end:pages|...\" or \"default\"",
    ),
    opt(
        "stats_interval",
        signed(-1, i64::MAX),
        "bytes allocated between stats prints, -1 = off",
    ),
    opt(
        "stats_interval_opts",
        OptionKind::Text,
        "malloc_stats_print option letters for stats_interval",
    ),
    opt("stats_print", OptionKind::Bool, "print stats at exit"),
    opt(
        "stats_print_opts",
        OptionKind::Text,
        "malloc_stats_print option letters for stats_print",
    ),
    opt("tcache", OptionKind::Bool, "thread-specific caching"),
    opt(
        "tcache_gc_delay_bytes",
        unsigned(0, u64::MAX),
        "bytes allocated before tcache GC of a refilled bin",
    ),
    opt(
        "tcache_gc_incr_bytes",
        unsigned(1024, u64::MAX),
        "bytes allocated between tcache GC events (clipped up to 1024)",
    ),
    opt(
        "tcache_max",
        unsigned(0, TCACHE_MAXCLASS_LIMIT),
        "largest size class cached in the tcache, in bytes (clipped)",
    ),
    opt(
        "tcache_nslots_large",
        unsigned(1, 2048),
        "tcache slots per large bin (clipped)",
    ),
    opt(
        "tcache_nslots_small_max",
        unsigned(1, 2048),
        "maximum tcache slots per small bin (clipped)",
    ),
    opt(
        "tcache_nslots_small_min",
        unsigned(1, 2048),
        "minimum tcache slots per small bin (clipped)",
    ),
    opt(
        "thp",
        OptionKind::Choice(THP_MODE_NAMES),
        "transparent huge pages for all mappings (error where THP is unsupported)",
    ),
    opt(
        "trust_madvise",
        OptionKind::Bool,
        "trust MADV_DONTNEED to zero pages",
    ),
    opt(
        "utrace",
        OptionKind::Bool,
        "utrace(2) tracing; only with --enable-utrace (BSD)",
    ),
    opt(
        "xmalloc",
        OptionKind::Bool,
        "abort on out-of-memory; only with --enable-xmalloc",
    ),
    opt(
        "zero",
        OptionKind::Bool,
        "zero-fill allocations; only in builds with --enable-fill",
    ),
    opt(
        "zero_realloc",
        OptionKind::Choice(ZERO_REALLOC_VALUES),
        "what realloc(ptr, 0) does",
    ),
];

/// The spec of a MALLOC_CONF key, matched exactly as jemalloc's CONF_MATCH does.
pub fn lookup(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .binary_search_by(|o| o.name.cmp(name))
        .ok()
        .map(|i| &OPTIONS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        for pair in OPTIONS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{:?} must sort before {:?} (and not repeat)",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn every_option_is_found_by_lookup() {
        assert_eq!(OPTIONS.len(), 74);
        for o in OPTIONS {
            assert_eq!(lookup(o.name).map(|s| s.name), Some(o.name));
        }
    }

    #[test]
    fn kinds_are_well_formed() {
        for o in OPTIONS {
            assert!(!o.about.is_empty(), "{}", o.name);
            match o.kind {
                OptionKind::Unsigned { min, max } => assert!(min <= max, "{}", o.name),
                OptionKind::Signed { min, max } => assert!(min <= max, "{}", o.name),
                OptionKind::Choice(words) => {
                    assert!(!words.is_empty(), "{}", o.name);
                    assert!(words.iter().all(|w| !w.is_empty() && !w.contains(',')));
                }
                OptionKind::Bool | OptionKind::Text => {}
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            lookup("lg_prof_sample").unwrap().kind,
            OptionKind::Unsigned { min: 0, max: 63 }
        );
        assert_eq!(
            lookup("lg_prof_interval").unwrap().kind,
            OptionKind::Signed { min: -1, max: 63 }
        );
        assert_eq!(lookup("background_thread").unwrap().kind, OptionKind::Bool);
        match lookup("thp").unwrap().kind {
            OptionKind::Choice(words) => assert!(words.contains(&"never")),
            other => panic!("thp should be a choice, got {other:?}"),
        }
        assert_eq!(
            lookup("dirty_decay_ms").unwrap().kind,
            OptionKind::Signed {
                min: -1,
                max: 18_446_744_072_000
            }
        );
        assert_eq!(
            lookup("narenas").unwrap().kind,
            OptionKind::Unsigned {
                min: 1,
                max: 4_294_967_295
            }
        );
        assert_eq!(
            lookup("tcache_max").unwrap().kind,
            OptionKind::Unsigned {
                min: 0,
                max: 8 << 20
            }
        );
    }

    #[test]
    fn unknown_and_post_5_3_names_are_absent() {
        for name in [
            "",
            "lg_sample",
            "Background_thread",
            "background_thread ",
            // Only in the parser after 5.3.0.
            "cache_oblivious",
            "experimental_hpa_start_huge_if_thp_always",
            // Removed before 5.x.
            "lg_chunk",
            "lg_dirty_mult",
            "quarantine",
            "redzone",
        ] {
            assert!(lookup(name).is_none(), "{name:?}");
        }
    }
}
