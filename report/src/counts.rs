//! The counts of a stack as jemalloc writes them (sampled: jemalloc records one
//! allocation in 2^lg_prof_sample bytes on average), and jeprof's formulas for the counts
//! it would have seen without sampling.

/// Counts of one `tN:` line: `<objs>: <bytes> [<accobjs>: <accbytes>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
}

/// `[inuse_objects, inuse_space, alloc_objects, alloc_space]`, un-sampled (floats, as in jeprof).
pub type Values = [f64; 4];

/// jeprof's AdjustSamples for `heap_v2` (Poisson sampling): each pair is scaled by
/// `1 / (1 - exp(-(bytes/objects)/rate))`, independently.
pub fn unsample(rate: u64, c: Counts) -> Values {
    let scale = |n: u64, s: u64| -> f64 {
        if n == 0 || rate == 0 {
            return 1.0;
        }
        let ratio = (s as f64 / n as f64) / rate as f64;
        let denom = 1.0 - (-ratio).exp();
        if denom > 0.0 {
            1.0 / denom
        } else {
            1.0
        }
    };
    let a = scale(c.inuse_objects, c.inuse_bytes);
    let b = scale(c.alloc_objects, c.alloc_bytes);
    [
        c.inuse_objects as f64 * a,
        c.inuse_bytes as f64 * a,
        c.alloc_objects as f64 * b,
        c.alloc_bytes as f64 * b,
    ]
}
