//! The `memory` request: jemalloc's accounting of its memory, read with mallctl on the
//! shim's thread (one `epoch` bump, then reads; no malloc_stats_print text parsing).

use super::{Backend, CtlError, Jemalloc};
use jemsafe_proto::{Bin, ClassRequests, Memory, Reply};
use std::ffi::{CStr, CString};

/// jemalloc's `MALLCTL_ARENAS_ALL`: the arena index that means all arenas merged.
const ARENAS_ALL: u32 = 4096;

impl<B: Backend> Jemalloc<B> {
    /// Reads a value of type `T` by a name built at run time.
    fn read_named<T: Copy>(&self, name: &str) -> Result<T, String> {
        let c = CString::new(name).map_err(|_| format!("bad mallctl name {name:?}"))?;
        self.read::<T>(&c).map_err(|e| describe(&e))
    }

    fn read_size(&self, name: &str) -> Result<u64, String> {
        self.read_named::<usize>(name).map(|v| v as u64)
    }
}

/// "mallctl NAME failed with errno N (TEXT)".
fn describe(e: &CtlError) -> String {
    let mut s = format!("mallctl {} failed with errno {}", e.name, e.errno);
    if let Some(text) = &e.text {
        s.push_str(&format!(" ({text})"));
    }
    s
}

pub(crate) fn snapshot<B: Backend>(j: &Jemalloc<B>) -> Result<Memory, String> {
    // A new epoch refreshes the statistics jemalloc caches.
    j.0.advance_epoch().map_err(|e| {
        format!(
            "{} (this jemalloc was built without statistics?)",
            describe(&e)
        )
    })?;
    let page = j.read_size("arenas.page")?;
    let all = format!("stats.arenas.{ARENAS_ALL}");
    let nbins = j.read_named::<u32>("arenas.nbins")?;
    let mut bins = Vec::with_capacity(nbins as usize);
    for i in 0..nbins {
        bins.push(Bin {
            size: j.read_size(&format!("arenas.bin.{i}.size"))?,
            nregs: u64::from(j.read_named::<u32>(&format!("arenas.bin.{i}.nregs"))?),
            curregs: j.read_size(&format!("{all}.bins.{i}.curregs"))?,
            curslabs: j.read_size(&format!("{all}.bins.{i}.curslabs"))?,
        });
    }
    let thp = j.read_named::<*const std::ffi::c_char>("opt.thp")?;
    Ok(Memory {
        allocated: j.read_size("stats.allocated")?,
        active: j.read_size("stats.active")?,
        metadata: j.read_size("stats.metadata")?,
        resident: j.read_size("stats.resident")?,
        mapped: j.read_size("stats.mapped")?,
        retained: j.read_size("stats.retained")?,
        dirty: j.read_size(&format!("{all}.pdirty"))?.saturating_mul(page),
        muzzy: j.read_size(&format!("{all}.pmuzzy"))?.saturating_mul(page),
        page,
        narenas: u64::from(j.read_named::<u32>("opt.narenas")?),
        dirty_decay_ms: j.read_named::<isize>("opt.dirty_decay_ms")? as i64,
        muzzy_decay_ms: j.read_named::<isize>("opt.muzzy_decay_ms")? as i64,
        background_thread: j.read_named::<u8>("background_thread")? != 0,
        thp: if thp.is_null() {
            String::new()
        } else {
            // SAFETY: jemalloc returns a pointer to its own static, NUL-terminated string.
            unsafe { CStr::from_ptr(thp) }
                .to_string_lossy()
                .into_owned()
        },
        bins,
        prof_stats: prof_stats(j, nbins)?,
    })
}

/// `prof.stats.bins.<i>.live` of the small size classes with live sampled objects (large
/// ones are left out: in 5.3.1 their usable sizes are page multiples, not the class's
/// size, so their class would overstate what was not asked for); None when jemalloc keeps no such statistics (`opt.prof_stats` off, or a
/// jemalloc before 5.3).
fn prof_stats<B: Backend>(
    j: &Jemalloc<B>,
    nbins: u32,
) -> Result<Option<Vec<ClassRequests>>, String> {
    let on = |name: &CStr| matches!(j.read::<u8>(name), Ok(v) if v != 0);
    if !(on(c"config.prof") && on(c"opt.prof") && on(c"opt.prof_stats")) {
        return Ok(None);
    }
    // prof_stats_t: { uint64_t req_sum; uint64_t count; }
    let live = |name: String| j.read_named::<[u64; 2]>(&name);
    let mut out = Vec::new();
    for i in 0..nbins {
        let [req_sum, count] = live(format!("prof.stats.bins.{i}.live"))?;
        if count > 0 {
            let size = j.read_size(&format!("arenas.bin.{i}.size"))?;
            out.push(ClassRequests {
                size,
                req_sum,
                count,
            });
        }
    }
    Ok(Some(out))
}

/// The reply to `memory`.
pub(crate) fn memory<B: Backend>(id: u64, j: &Jemalloc<B>) -> Reply {
    match snapshot(j) {
        Ok(m) => Reply::ok_with(id, &m),
        Err(why) => Reply::err(id, why),
    }
}
