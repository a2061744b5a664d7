//! The `memory` request: jemalloc's accounting of its memory, read with mallctl on the
//! shim's thread (one `epoch` bump, then reads; no malloc_stats_print text parsing).

use super::{Backend, Jemalloc};
use jemsafe_proto::{Bin, Memory, Reply};
use std::ffi::{c_void, CStr, CString};
use std::mem::{size_of, MaybeUninit};

/// jemalloc's `MALLCTL_ARENAS_ALL`: the arena index that means all arenas merged.
const ARENAS_ALL: u32 = 4096;

impl<B: Backend> Jemalloc<B> {
    /// Reads a value of type `T` by a name built at run time.
    fn read_named<T: Copy>(&self, name: &str) -> Result<T, String> {
        let c = CString::new(name).map_err(|_| format!("bad mallctl name {name:?}"))?;
        let mut value = MaybeUninit::<T>::zeroed();
        let mut len = size_of::<T>();
        // SAFETY: value has room for exactly len == size_of::<T>() bytes; jemalloc answers
        // EINVAL when the sizes differ and writes nothing then.
        let rc = unsafe {
            self.0.mallctl(
                &c,
                value.as_mut_ptr().cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 {
            return Err(format!("mallctl {name} failed with errno {rc}"));
        }
        // SAFETY: zero-initialised, then filled by jemalloc (see above).
        Ok(unsafe { value.assume_init() })
    }

    fn read_size(&self, name: &str) -> Result<u64, String> {
        self.read_named::<usize>(name).map(|v| v as u64)
    }
}

fn snapshot<B: Backend>(j: &Jemalloc<B>) -> Result<Memory, String> {
    // A new epoch refreshes the statistics jemalloc caches.
    let mut epoch: u64 = 1;
    let mut len = size_of::<u64>();
    // SAFETY: epoch is read and written as a u64, as jemalloc documents.
    let rc = unsafe {
        j.0.mallctl(
            c"epoch",
            (&mut epoch as *mut u64).cast(),
            &mut len,
            (&mut epoch as *mut u64).cast(),
            size_of::<u64>(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mallctl epoch failed with errno {rc} (this jemalloc was built without statistics?)"
        ));
    }
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
    })
}

/// The reply to `memory`.
pub(crate) fn memory<B: Backend>(id: u64, j: &Jemalloc<B>) -> Reply {
    match snapshot(j) {
        Ok(m) => Reply::ok_with(id, &m),
        Err(why) => Reply::err(id, why),
    }
}
