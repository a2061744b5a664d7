//! libjemsafe_jemalloc.so: a profiling jemalloc of jemsafe's own, for hosts that have none.
//!
//! jemalloc 5.3 with `--enable-prof` and `--enable-stats`, built from C sources by the
//! `tikv-jemalloc-sys` crate and linked statically into this object, plus jemsafe's
//! control thread (`jemsafe-shim-core`). One object in LD_PRELOAD does both jobs that a
//! system libjemalloc and libjemsafe_shim.so do together.
//!
//! - The sys crate's default build prefixes jemalloc's symbols (`_rjem_malloc`, ...), and
//!   a cdylib exports only Rust `#[no_mangle]` items, so the C allocator is invisible
//!   to mysqld until the wrappers below export it under its standard names: the whole
//!   malloc family that glibc's "replacing malloc" asks for, and mallctl,
//!   mallctlnametomib, mallctlbymib, malloc_stats_print.
//! - Because of the prefix, this jemalloc reads its options from `_RJEM_MALLOC_CONF`,
//!   not from `MALLOC_CONF` (jemsafe sets the right one).
//! - Here the jemalloc linked into the object *is* the process's allocator, so the
//!   control thread calls it directly (no run-time lookup). It still checks, at the first
//!   request, that `malloc` as the process resolves it is this object's: if something
//!   else serves malloc, it refuses to act on an idle heap and says why.

// These are C's malloc family: their contract is C's, documented in malloc(3).
#![allow(clippy::missing_safety_doc)]

use jemsafe_proto::Stats;
use jemsafe_shim_core::{errno_of_ctl_text, object_at, object_of, Backend, CtlError};
use std::ffi::{c_char, c_int, c_void, CStr};
use tikv_jemalloc_ctl as ctl;
use tikv_jemalloc_sys as je;

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = jemsafe_jemalloc_on_load;

extern "C" fn jemsafe_jemalloc_on_load() {
    // Without JEMSAFE_SHIM_FD (mysqld's children, `jemsafe env` users) nothing starts.
    jemsafe_shim_core::start(bind);
}

// Calls from SQL: jemsafe_udf.so finds this with dlsym.
jemsafe_shim_core::export_ask!();

extern "C" {
    // Part of the same static jemalloc; the sys crate does not declare them.
    #[link_name = "_rjem_memalign"]
    fn je_memalign(alignment: usize, size: usize) -> *mut c_void;
    #[link_name = "_rjem_valloc"]
    fn je_valloc(size: usize) -> *mut c_void;
}

/// Returns what an allocating entry point got from jemalloc, so that the call into
/// jemalloc is not a tail call: the exported frame (`malloc`, `realloc`, ...) then stays
/// on every stack jemalloc's profiler records, and reports drop everything inside the
/// allocator at it, as jeprof does at libjemalloc's entry points. Without it the static
/// functions behind them (`do_rallocx`, `imalloc_body`) would show as allocation sites.
#[inline(always)]
fn kept<T>(value: T) -> T {
    std::hint::black_box(value)
}

#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    kept(je::malloc(size))
}

#[no_mangle]
pub unsafe extern "C" fn calloc(number: usize, size: usize) -> *mut c_void {
    kept(je::calloc(number, size))
}

#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    kept(je::realloc(ptr, size))
}

#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    je::free(ptr)
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    ptr: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    kept(je::posix_memalign(ptr, alignment, size))
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    kept(je::aligned_alloc(alignment, size))
}

#[no_mangle]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    kept(je_memalign(alignment, size))
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    kept(je_valloc(size))
}

/// valloc with the size rounded up to a whole number of pages (at least one), as glibc's.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = match libc::sysconf(libc::_SC_PAGESIZE) {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    match size.max(1).checked_next_multiple_of(page) {
        Some(rounded) => kept(je_valloc(rounded)),
        None => {
            *libc::__errno_location() = libc::ENOMEM;
            std::ptr::null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    je::malloc_usable_size(ptr)
}

#[no_mangle]
pub unsafe extern "C" fn mallctl(
    name: *const c_char,
    oldp: *mut c_void,
    oldlenp: *mut usize,
    newp: *mut c_void,
    newlen: usize,
) -> c_int {
    je::mallctl(name, oldp, oldlenp, newp, newlen)
}

#[no_mangle]
pub unsafe extern "C" fn mallctlnametomib(
    name: *const c_char,
    mibp: *mut usize,
    miblenp: *mut usize,
) -> c_int {
    je::mallctlnametomib(name, mibp, miblenp)
}

#[no_mangle]
pub unsafe extern "C" fn mallctlbymib(
    mib: *const usize,
    miblen: usize,
    oldp: *mut c_void,
    oldlenp: *mut usize,
    newp: *mut c_void,
    newlen: usize,
) -> c_int {
    je::mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen)
}

#[no_mangle]
pub unsafe extern "C" fn malloc_stats_print(
    write_cb: Option<unsafe extern "C" fn(*mut c_void, *const c_char)>,
    cbopaque: *mut c_void,
    opts: *const c_char,
) {
    je::malloc_stats_print(write_cb, cbopaque, opts)
}

/// The jemalloc inside this object.
struct Bundled {
    path: String,
}

/// A tikv-jemalloc-ctl failure as the shim reports it: the crate keeps jemalloc's error
/// number private and shows jemalloc's description of it; the number is recovered from
/// that text (one text per number), so the wire carries the same `error`/`errno` as with
/// the system library, and the text goes along in the message.
fn failed(name: &CStr, e: ctl::Error) -> CtlError {
    let text = e.to_string();
    CtlError {
        name: name.to_string_lossy().into_owned(),
        // -1: a text this mapping does not know (a newer ctl): shown as EUNKNOWN, with the text.
        errno: errno_of_ctl_text(&text).unwrap_or(-1),
        text: Some(text),
    }
}

/// The jemalloc inside this object, through tikv-jemalloc-ctl (which calls the sys
/// crate's `_rjem_mallctl`: this object's jemalloc, the process's allocator once `bind`
/// has checked that).
impl Backend for Bundled {
    unsafe fn read<T: Copy>(&self, name: &CStr) -> Result<T, CtlError> {
        ctl::raw::read::<T>(name.to_bytes_with_nul()).map_err(|e| failed(name, e))
    }

    unsafe fn write<T: Copy>(&self, name: &CStr, value: T) -> Result<(), CtlError> {
        ctl::raw::write::<T>(name.to_bytes_with_nul(), value).map_err(|e| failed(name, e))
    }

    fn advance_epoch(&self) -> Result<(), CtlError> {
        ctl::epoch::advance()
            .map(drop)
            .map_err(|e| failed(c"epoch", e))
    }

    fn global_stats(&self) -> Result<Stats, CtlError> {
        use ctl::stats;
        let size =
            |r: ctl::Result<usize>, name: &CStr| r.map(|v| v as u64).map_err(|e| failed(name, e));
        Ok(Stats {
            allocated: size(stats::allocated::read(), c"stats.allocated")?,
            active: size(stats::active::read(), c"stats.active")?,
            resident: size(stats::resident::read(), c"stats.resident")?,
            mapped: size(stats::mapped::read(), c"stats.mapped")?,
            retained: size(stats::retained::read(), c"stats.retained")?,
        })
    }

    fn object(&self) -> &str {
        &self.path
    }
}

fn bind() -> Result<Bundled, String> {
    // This object, found through a function no one can interpose (taking `malloc`'s
    // address would go through the GOT and name whichever object won `malloc`).
    let ours = object_at(bind as *const () as usize);
    let served_by = object_of(c"malloc").map_or_else(|| "(nothing)".to_owned(), |(_, p)| p);
    if served_by != ours {
        return Err(format!(
            "malloc is served by {served_by}, not by {ours}: the bundled jemalloc does not \
             allocate for this process (it must be first in LD_PRELOAD), refusing to use it"
        ));
    }
    Ok(Bundled { path: ours })
}
