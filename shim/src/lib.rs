//! libjemsafe_shim.so: jemsafe's guest inside mysqld, next to a system libjemalloc.
//!
//! Loaded through LD_PRELOAD after libjemalloc. At load time it takes the socket that
//! jemsafe passed in `JEMSAFE_SHIM_FD`, hides it from mysqld's children (FD_CLOEXEC,
//! variable removed) and starts one thread, `jemsafe-shim`, with every signal blocked.
//! That thread answers jemsafe's requests by calling `mallctl` and does nothing else:
//! no signal handlers, no allocation hooks, no work on mysqld's threads. The thread and
//! the protocol handling are `jemsafe-shim-core`, shared with the bundled jemalloc.
//!
//! `mallctl` is looked up at run time (`dlsym(RTLD_DEFAULT)`) instead of being linked:
//! the shim carries no jemalloc of its own and no DT_NEEDED on one, so it can only ever
//! talk to the allocator that LD_PRELOAD put in front of mysqld's malloc. It checks that
//! too (`dladdr` of `mallctl` and of `malloc` name the same object) and refuses to act
//! on any other copy. Without the variable (mysqld's children inherit LD_PRELOAD) the
//! shim does nothing at all.

use jemsafe_shim_core::{raw_read, raw_write, Backend, CtlError, MallctlFn};
use std::ffi::CStr;

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = jemsafe_shim_on_load;

extern "C" fn jemsafe_shim_on_load() {
    // A panic must never unwind into the dynamic loader of someone else's database
    // (start catches it).
    jemsafe_shim_core::start(bind);
}

/// The process's jemalloc, as found at run time.
struct Dlsym {
    mallctl: MallctlFn,
    /// The object `mallctl` came from (dladdr).
    path: String,
}

impl Backend for Dlsym {
    unsafe fn read<T: Copy>(&self, name: &CStr) -> Result<T, CtlError> {
        raw_read(self.mallctl, name)
    }

    unsafe fn write<T: Copy>(&self, name: &CStr, value: T) -> Result<(), CtlError> {
        raw_write(self.mallctl, name, value)
    }

    fn object(&self) -> &str {
        &self.path
    }
}

fn bind() -> Result<Dlsym, String> {
    let (mallctl, path) = jemsafe_shim_core::process_mallctl()?;
    Ok(Dlsym { mallctl, path })
}

// Calls from SQL: jemsafe_udf.so finds this with dlsym.
jemsafe_shim_core::export_ask!();
