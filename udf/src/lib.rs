//! jemsafe_udf.so: loadable functions for MariaDB and MySQL, so that a DBA with only a SQL
//! connection controls heap profiling (`SELECT jeprof_dump()`).
//!
//! The article's five INTEGER functions keep its names and values: `jeprof_dump`,
//! `jeprof_enable`, `jeprof_disable` (0 on success, 1 otherwise), `jeprof_prof_status`,
//! `jeprof_active_status` (1 on, 0 off). They call the `mallctl` of the jemalloc that
//! serves the process's `malloc`, looked up at run time as the shim does
//! ([`jemsafe_shim_core::process_mallctl`]): this library links no jemalloc of its own.
//!
//! Three worlds:
//! - **Supervised** (mysqld started by `jemsafe run`): the library asks jemsafe through the
//!   shim in the same process ([`jemsafe_shim_core::ASK_SYMBOL`], found with `dlsym`; no
//!   new socket, no new privilege). `jeprof_dump()` and `jemsafe_dump()` are dumps with the
//!   trigger `sql` (named, sidecar, storm control, metrics); `jeprof_enable/disable()` are
//!   `jemsafe prof on|off`; `jemsafe_status()` and `jemsafe_memory()` are jemsafe's JSON.
//!   jemsafe refuses what `[sql] allow` does not permit; each call waits a bounded time
//!   (`[sql] timeout_ms`). A refusal is the documented failure value, with the reason in
//!   the server's error log.
//! - **Preloaded by hand** (no shim, or a shim with no jemsafe): the `jeprof_*` functions
//!   call `mallctl` directly, as the article's library does; `jeprof_dump()` dumps at most
//!   once a second ([`MIN_DUMP_INTERVAL_MS`]; sooner, it returns 1). The `jemsafe_*`
//!   functions return NULL with a message that names `jemsafe run`.
//! - **No profiling jemalloc**: every `_init` refuses, with a message that says why (the
//!   server shows it to the caller).
//!
//! Every `_init` also refuses arguments. No panic crosses into the server ([`guarded`]).

use jemsafe_shim_core::{
    process_mallctl, raw_read, raw_write, AskFn, MallctlFn, ASK_FAILED, ASK_OK, ASK_SYMBOL,
};
use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ulong, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file name `CREATE FUNCTION … SONAME` names; the library is installed as exactly this.
pub const LIBRARY: &str = "jemsafe_udf.so";

/// The SQL return type of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    Integer,
    String,
}

impl Returns {
    /// The type as `CREATE FUNCTION … RETURNS` spells it.
    pub fn sql(self) -> &'static str {
        match self {
            Returns::Integer => "INTEGER",
            Returns::String => "STRING",
        }
    }
}

/// One exported function.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub name: &'static str,
    pub returns: Returns,
}

/// Every function the library exports (each with `_init` and `_deinit`).
pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "jeprof_dump",
        returns: Returns::Integer,
    },
    Function {
        name: "jeprof_enable",
        returns: Returns::Integer,
    },
    Function {
        name: "jeprof_disable",
        returns: Returns::Integer,
    },
    Function {
        name: "jeprof_prof_status",
        returns: Returns::Integer,
    },
    Function {
        name: "jeprof_active_status",
        returns: Returns::Integer,
    },
    Function {
        name: "jemsafe_dump",
        returns: Returns::String,
    },
    Function {
        name: "jemsafe_status",
        returns: Returns::String,
    },
    Function {
        name: "jemsafe_memory",
        returns: Returns::String,
    },
];

/// `UDF_INIT`: MariaDB's `include/mysql_com.h`, MySQL 8's
/// `include/mysql/udf_registration_types.h` (`my_bool` and C++ `bool` are both one byte).
#[repr(C)]
pub struct UdfInit {
    pub maybe_null: c_char,
    pub decimals: c_uint,
    pub max_length: c_ulong,
    pub ptr: *mut c_char,
    pub const_item: c_char,
    pub extension: *mut c_void,
}

/// `UDF_ARGS`, as [`UdfInit`]; only `arg_count` is read.
#[repr(C)]
pub struct UdfArgs {
    pub arg_count: c_uint,
    pub arg_type: *mut c_int,
    pub args: *mut *mut c_char,
    pub lengths: *mut c_ulong,
    pub maybe_null: *mut c_char,
    pub attributes: *mut *const c_char,
    pub attribute_lengths: *mut c_ulong,
    pub extension: *mut c_void,
}

/// `MYSQL_ERRMSG_SIZE`: the size of `_init`'s message buffer, its NUL included.
const MESSAGE_SIZE: usize = 512;

/// Why `name_init` refuses `arg_count` arguments, if it does: none of the functions
/// takes any (as in the article's library).
pub fn arguments_refusal(name: &str, arg_count: u32) -> Option<String> {
    (arg_count != 0).then(|| format!("{name}() takes no arguments (got {arg_count})"))
}

/// How much of an `_init` message the servers show the caller: MariaDB's and MySQL's
/// ER_CANT_INITIALIZE_UDF format it with `%-.80s`. Every refusal says its reason in fewer
/// bytes; the whole text also goes to the error log.
pub const SHOWN_BYTES: usize = 80;

/// Why a process without a usable jemalloc (`error`: what the lookup found) cannot serve.
pub fn no_jemalloc_refusal(error: &str) -> String {
    format!(
        "no usable jemalloc in mysqld: start it with `jemsafe run` ({error}; or preload \
         libjemalloc with MALLOC_CONF prof:true by hand, see `jemsafe env`)"
    )
}

/// Why a jemalloc whose `opt.prof` read gave `opt_prof` cannot serve the functions, if it
/// cannot. `object` is the file the jemalloc was loaded from.
pub fn profiling_refusal(object: &str, opt_prof: Result<bool, String>) -> Option<String> {
    match opt_prof {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "jemalloc's opt.prof is false: mysqld started without prof:true ({object}; \
             `jemsafe run` with a profile other than off switches it on)"
        )),
        Err(e) => Some(format!(
            "jemalloc cannot profile (built without --enable-prof): {e} ({object}; \
             jemsafe's bundled one can: [jemalloc] library = \"bundled\")"
        )),
    }
}

/// The process's jemalloc `mallctl`, if it is a profiling one; otherwise why not.
fn profiling_jemalloc() -> Result<MallctlFn, String> {
    let (mallctl, object) = process_mallctl().map_err(|e| no_jemalloc_refusal(&e))?;
    // SAFETY: jemalloc's mallctl; opt.prof is a bool.
    let opt_prof = unsafe { raw_read::<bool>(mallctl, c"opt.prof") }
        .map_err(|e| format!("mallctl {} failed with errno {}", e.name, e.errno));
    match profiling_refusal(&object, opt_prof) {
        None => Ok(mallctl),
        Some(reason) => Err(reason),
    }
}

/// `text` as one line on the server's stderr, its error log. write(2), not eprint!: a
/// closed stderr must not panic inside the server.
fn log_line(text: &str) {
    let line = format!("jemsafe_udf: {text}\n");
    // SAFETY: a valid buffer of line.len() bytes.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// `f()`, or `fallback` if it panicked: no unwinding into the server.
fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// `text` into the server's message buffer: truncated at a character boundary to fit,
/// NUL-terminated.
///
/// # Safety
/// `message` points to [`MESSAGE_SIZE`] writable bytes.
unsafe fn write_message(message: *mut c_char, text: &str) {
    let mut end = text.len().min(MESSAGE_SIZE - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::ptr::copy_nonoverlapping(text.as_ptr(), message.cast::<u8>(), end);
    *message.add(end) = 0;
}

/// What a function keeps between its `_init` and `_deinit` (in `initid->ptr`), so that
/// its calls look nothing up.
struct State {
    mallctl: MallctlFn,
    /// The shim's entry point for asking jemsafe, when the shim is in this process.
    ask: Option<AskFn>,
    /// The text of jemsafe's answer (or of why there is none), and a STRING result.
    out: Vec<u8>,
}

/// The longest answer a call reads: one packet of the shim's channel.
const ANSWER_BYTES: usize = jemsafe_proto::MAX_PACKET;

/// The shim's entry point for asking jemsafe, if the shim is in this process.
fn shim_ask() -> Option<AskFn> {
    // SAFETY: dlsym with a valid C string.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, ASK_SYMBOL.as_ptr()) };
    // SAFETY: the shim defines the symbol with this signature (export_ask!).
    (!addr.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, AskFn>(addr) })
}

/// Every `name_init`: no arguments, a profiling jemalloc; its `mallctl` and the shim's
/// entry point are kept in a [`State`] at `initid->ptr`. 0 to accept, 1 to refuse with
/// `message`.
///
/// # Safety
/// The server's `UDF_INIT`, `UDF_ARGS` and message buffer.
unsafe fn init(
    name: &str,
    returns: Returns,
    initid: *mut UdfInit,
    args: *const UdfArgs,
    message: *mut c_char,
) -> c_char {
    guarded(1, || {
        let refusal = match arguments_refusal(name, (*args).arg_count) {
            Some(reason) => Err(reason),
            None => profiling_jemalloc(),
        };
        match refusal {
            Ok(mallctl) => {
                let state = State {
                    mallctl,
                    ask: shim_ask(),
                    out: vec![0; ANSWER_BYTES + 1],
                };
                (*initid).ptr = Box::into_raw(Box::new(state)).cast();
                if returns == Returns::String {
                    (*initid).max_length = ANSWER_BYTES as c_ulong;
                }
                (*initid).maybe_null = c_char::from(returns == Returns::String);
                (*initid).const_item = 0;
                0
            }
            Err(reason) => {
                write_message(message, &reason);
                log_line(&format!("{name}() refused: {reason}"));
                1
            }
        }
    })
}

/// The [`State`] that `init` kept.
///
/// # Safety
/// `initid` went through a successful [`init`] and not yet through `_deinit`; the server
/// calls one function instance from one thread at a time.
unsafe fn kept<'a>(initid: *const UdfInit) -> &'a mut State {
    &mut *(*initid).ptr.cast::<State>()
}

/// Frees what `init` kept.
///
/// # Safety
/// The server's `UDF_INIT`, once per successful init.
unsafe fn release(initid: *mut UdfInit) {
    let ptr = (*initid).ptr.cast::<State>();
    if !ptr.is_null() {
        drop(Box::from_raw(ptr));
        (*initid).ptr = std::ptr::null_mut();
    }
}

/// What jemsafe said to a call from SQL.
enum Asked {
    Value(String),
    /// Refused, failed, no answer in time: the call's failure value.
    Failed(String),
    /// No jemsafe to ask (no shim, or a shim with no supervisor).
    Unsupervised(String),
}

/// Asks jemsafe for `op` (an op word of the shim's) through the shim, if it is here.
fn ask(state: &mut State, op: &CStr) -> Asked {
    let Some(ask) = state.ask else {
        return Asked::Unsupervised("jemsafe's shim is not in this process".to_owned());
    };
    // SAFETY: `out` has out.len() writable bytes; `op` is NUL-terminated.
    let code = unsafe { ask(op.as_ptr(), state.out.as_mut_ptr().cast(), state.out.len()) };
    let text = CStr::from_bytes_until_nul(&state.out)
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    match code {
        ASK_OK => Asked::Value(text),
        ASK_FAILED => Asked::Failed(text),
        _ => Asked::Unsupervised(text),
    }
}

/// An INTEGER function's supervised path: 0 when jemsafe did `op`, 1 (and the reason in
/// the error log) when it did not; None when there is no jemsafe to ask.
fn supervised_code(state: &mut State, name: &str, op: &CStr) -> Option<c_longlong> {
    match ask(state, op) {
        Asked::Value(_) => Some(0),
        Asked::Failed(why) => {
            log_line(&format!("{name}() failed: {why}"));
            Some(1)
        }
        Asked::Unsupervised(_) => None,
    }
}

/// An INTEGER function's call: `op`'s value, or NULL with the error flag when it has none.
///
/// # Safety
/// The server's arguments to an INTEGER function.
unsafe fn integer(
    initid: *const UdfInit,
    is_null: *mut c_char,
    error: *mut c_char,
    op: unsafe fn(&mut State) -> Option<c_longlong>,
) -> c_longlong {
    match guarded(None, || op(kept(initid))) {
        Some(value) => value,
        None => {
            *is_null = 1;
            *error = 1;
            0
        }
    }
}

/// 0 when `result` is Ok, 1 otherwise: the article's convention.
fn success_code<E>(result: Result<(), E>) -> Option<c_longlong> {
    Some(c_longlong::from(result.is_err()))
}

/// A bool mallctl as 1 or 0.
unsafe fn flag(mallctl: MallctlFn, name: &CStr) -> Option<c_longlong> {
    raw_read::<bool>(mallctl, name).ok().map(c_longlong::from)
}

/// The least time between two `jeprof_dump()` dumps of one mysqld with no jemsafe to
/// ask. Every account that can connect may call it, and without jemsafe's storm control
/// (`[dumps] min_interval_ms`) this floor is what keeps a loop of calls from filling the
/// disk with dumps.
pub const MIN_DUMP_INTERVAL_MS: u64 = 1000;

/// Monotonic milliseconds of the last `jeprof_dump()` dump (0: none yet).
static LAST_DUMP_MS: AtomicU64 = AtomicU64::new(0);

/// Whether a dump asked for at `now_ms` may be taken after one at `last_ms` (0: none).
pub fn dump_due(last_ms: u64, now_ms: u64) -> bool {
    last_ms == 0 || now_ms.saturating_sub(last_ms) >= MIN_DUMP_INTERVAL_MS
}

/// CLOCK_MONOTONIC in milliseconds, at least 1 (0 means "never" in [`LAST_DUMP_MS`]).
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; CLOCK_MONOTONIC is always there on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let ms = u64::try_from(now.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(now.tv_nsec / 1_000_000).unwrap_or(0);
    ms.max(1)
}

unsafe fn dump(state: &mut State) -> Option<c_longlong> {
    if let Some(code) = supervised_code(state, "jeprof_dump", c"dump") {
        return Some(code);
    }
    let mallctl = state.mallctl;
    let now = monotonic_ms();
    let last = LAST_DUMP_MS.load(Ordering::Relaxed);
    // Lock-free: of callers racing for the same slot, one wins and the rest return 1.
    if !dump_due(last, now)
        || LAST_DUMP_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return success_code(Err(()));
    }
    // A NULL file name: jemalloc names the file after opt.prof_prefix.
    let rc = mallctl(
        c"prof.dump".as_ptr(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        0,
    );
    success_code(if rc == 0 { Ok(()) } else { Err(rc) })
}

unsafe fn enable(state: &mut State) -> Option<c_longlong> {
    if let Some(code) = supervised_code(state, "jeprof_enable", c"prof-on") {
        return Some(code);
    }
    success_code(raw_write(state.mallctl, c"prof.active", true))
}

unsafe fn disable(state: &mut State) -> Option<c_longlong> {
    if let Some(code) = supervised_code(state, "jeprof_disable", c"prof-off") {
        return Some(code);
    }
    success_code(raw_write(state.mallctl, c"prof.active", false))
}

/// The two status functions read jemalloc directly, supervised or not: reading changes
/// nothing, and the article's scripts poll them.
unsafe fn prof_status(state: &mut State) -> Option<c_longlong> {
    flag(state.mallctl, c"opt.prof")
}

unsafe fn active_status(state: &mut State) -> Option<c_longlong> {
    flag(state.mallctl, c"prof.active")
}

/// Why a `jemsafe_*` function returns NULL without a jemsafe to ask.
pub fn unsupervised_refusal(name: &str, why: &str) -> String {
    format!(
        "{name}() needs mysqld started by `jemsafe run` ({why}); jeprof_dump() and the \
         other jeprof_* functions work without it"
    )
}

/// A STRING `jemsafe_*` function's call: jemsafe's answer to `op`, or NULL with the
/// reason on the server's stderr (its error log).
///
/// # Safety
/// The server's arguments to a STRING function, after a successful init.
unsafe fn jemsafe_function(
    name: &str,
    op: &CStr,
    initid: *const UdfInit,
    length: *mut c_ulong,
    is_null: *mut c_char,
) -> *mut c_char {
    let answer = guarded(None, || {
        let state = kept(initid);
        match ask(state, op) {
            Asked::Value(value) => {
                let len = value.len().min(ANSWER_BYTES);
                state.out[..len].copy_from_slice(&value.as_bytes()[..len]);
                Some((state.out.as_mut_ptr().cast::<c_char>(), len))
            }
            Asked::Failed(why) => {
                log_line(&format!("{name}() returned NULL: {why}"));
                None
            }
            Asked::Unsupervised(why) => {
                log_line(&unsupervised_refusal(name, &why));
                None
            }
        }
    });
    match answer {
        Some((ptr, len)) => {
            *length = len as c_ulong;
            ptr
        }
        None => {
            *is_null = 1;
            std::ptr::null_mut()
        }
    }
}

/// A function's `_init` (checks, with the reason in the server's message) and `_deinit`.
macro_rules! init_and_deinit {
    ($name:ident, $init:ident, $deinit:ident, $returns:expr) => {
        /// # Safety
        /// Called by the server with its `UDF_INIT`, `UDF_ARGS` and message buffer.
        #[no_mangle]
        pub unsafe extern "C" fn $init(
            initid: *mut UdfInit,
            args: *mut UdfArgs,
            message: *mut c_char,
        ) -> c_char {
            init(stringify!($name), $returns, initid, args, message)
        }

        /// # Safety
        /// Called by the server once per successful init.
        #[no_mangle]
        pub unsafe extern "C" fn $deinit(initid: *mut UdfInit) {
            guarded((), || release(initid))
        }
    };
}

/// The three exported symbols of an INTEGER function.
macro_rules! integer_function {
    ($name:ident, $init:ident, $deinit:ident, $op:expr) => {
        init_and_deinit!($name, $init, $deinit, Returns::Integer);

        /// # Safety
        /// Called by the server after a successful init.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            initid: *mut UdfInit,
            _args: *mut UdfArgs,
            is_null: *mut c_char,
            error: *mut c_char,
        ) -> c_longlong {
            integer(initid, is_null, error, $op)
        }
    };
}

/// The three exported symbols of a STRING `jemsafe_*` function.
macro_rules! string_function {
    ($name:ident, $init:ident, $deinit:ident, $op:expr) => {
        init_and_deinit!($name, $init, $deinit, Returns::String);

        /// # Safety
        /// Called by the server after a successful init.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            initid: *mut UdfInit,
            _args: *mut UdfArgs,
            _result: *mut c_char,
            length: *mut c_ulong,
            is_null: *mut c_char,
            _error: *mut c_char,
        ) -> *mut c_char {
            jemsafe_function(stringify!($name), $op, initid, length, is_null)
        }
    };
}

integer_function!(jeprof_dump, jeprof_dump_init, jeprof_dump_deinit, dump);
integer_function!(
    jeprof_enable,
    jeprof_enable_init,
    jeprof_enable_deinit,
    enable
);
integer_function!(
    jeprof_disable,
    jeprof_disable_init,
    jeprof_disable_deinit,
    disable
);
integer_function!(
    jeprof_prof_status,
    jeprof_prof_status_init,
    jeprof_prof_status_deinit,
    prof_status
);
integer_function!(
    jeprof_active_status,
    jeprof_active_status_init,
    jeprof_active_status_deinit,
    active_status
);
string_function!(
    jemsafe_dump,
    jemsafe_dump_init,
    jemsafe_dump_deinit,
    c"dump"
);
string_function!(
    jemsafe_status,
    jemsafe_status_init,
    jemsafe_status_deinit,
    c"status"
);
string_function!(
    jemsafe_memory,
    jemsafe_memory_init,
    jemsafe_memory_deinit,
    c"memory"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_function_takes_arguments() {
        assert_eq!(arguments_refusal("jeprof_dump", 0), None);
        let refusal = arguments_refusal("jeprof_dump", 2).unwrap();
        assert!(
            refusal.contains("jeprof_dump() takes no arguments (got 2)"),
            "{refusal}"
        );
    }

    /// The part of `message` the caller sees.
    fn shown(message: &str) -> &str {
        &message[..message.len().min(SHOWN_BYTES)]
    }

    #[test]
    fn a_jemalloc_without_profiling_is_refused_with_the_reason_in_what_the_caller_sees() {
        let object = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
        assert_eq!(profiling_refusal(object, Ok(true)), None);
        let off = profiling_refusal(object, Ok(false)).unwrap();
        assert!(shown(&off).contains("opt.prof is false"), "{off}");
        assert!(off.contains(object), "{off}");
        let unbuilt = profiling_refusal(object, Err("errno 2".into())).unwrap();
        assert!(shown(&unbuilt).contains("--enable-prof"), "{unbuilt}");
        let none = no_jemalloc_refusal("no mallctl symbol in this process");
        assert!(
            shown(&none).contains("start it with `jemsafe run`"),
            "{none}"
        );
    }

    #[test]
    fn jemsafe_functions_name_jemsafe_run_without_the_shim() {
        let why = unsupervised_refusal("jemsafe_dump", "jemsafe's shim is not in this process");
        assert!(why.contains("`jemsafe run`"), "{why}");
        assert!(why.contains("shim is not in this process"), "{why}");
    }

    #[test]
    fn long_messages_fit_the_server_buffer() {
        let mut buffer = [1 as c_char; MESSAGE_SIZE];
        let text = "é".repeat(MESSAGE_SIZE);
        // SAFETY: the buffer has MESSAGE_SIZE bytes.
        unsafe { write_message(buffer.as_mut_ptr(), &text) };
        let written = unsafe { CStr::from_ptr(buffer.as_ptr()) };
        assert_eq!(written.to_bytes().len(), MESSAGE_SIZE - 2);
        assert!(std::str::from_utf8(written.to_bytes()).is_ok());
    }

    #[test]
    fn jeprof_dumps_are_at_least_the_floor_apart() {
        assert!(dump_due(0, 1));
        assert!(!dump_due(5_000, 5_000 + MIN_DUMP_INTERVAL_MS - 1));
        assert!(dump_due(5_000, 5_000 + MIN_DUMP_INTERVAL_MS));
        // A clock that seems to go back never allows a dump early.
        assert!(!dump_due(5_000, 4_000));
    }

    #[test]
    fn every_function_is_listed_once() {
        let mut names: Vec<_> = FUNCTIONS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 8);
    }
}
