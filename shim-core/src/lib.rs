//! The shim's control thread, once, for both preloaded objects that carry it.
//!
//! At load time [`start`] takes the socket that jemsafe passed in `JEMSAFE_SHIM_FD`,
//! hides it from mysqld's children (FD_CLOEXEC, variable removed) and starts one thread,
//! `jemsafe-shim`, with every signal blocked. That thread answers jemsafe's requests by
//! calling `mallctl` and does nothing else: no signal handlers, no allocation hooks, no
//! work on mysqld's threads. Without the variable nothing happens at all.
//!
//! How `mallctl` is reached is the one thing that differs, so it is a [`Backend`]:
//! - `libjemsafe_shim.so` (next to a system libjemalloc) looks `mallctl` up at run time
//!   with `dlsym(RTLD_DEFAULT)` and checks that it comes from the object serving malloc;
//! - `libjemsafe_jemalloc.so` (the bundled jemalloc) *is* the allocator and calls its own
//!   statically linked jemalloc (tikv-jemalloc-sys).
//!
//! The backend is bound on the control thread at the first request, never in the loader's
//! initialiser.

mod asks;
mod memory;

pub use asks::{ask, ask_into, AskError, AskFn, ASK_FAILED, ASK_OK, ASK_SYMBOL, ASK_UNSUPERVISED};

use jemsafe_proto::{
    Answer, Binding, Bound, Capabilities, Command, Dumped, Failure, Hello, ProfState, Reply,
    Request, ResetDone, Stats, ENV_SHIM_FD, MAX_PACKET, PROTOCOL_VERSION,
};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::RawFd;
use std::time::Instant;

/// A failed mallctl call: which name, jemalloc's error number, and (when the backend has
/// one) its own description of the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub name: String,
    pub errno: c_int,
    /// The backend's text for the failure (tikv-jemalloc-ctl's: jemalloc's manual).
    pub text: Option<String>,
}

impl CtlError {
    /// A failure known by its errno only.
    pub fn errno(name: &CStr, errno: c_int) -> CtlError {
        CtlError {
            name: name.to_string_lossy().into_owned(),
            errno,
            text: None,
        }
    }
}

/// A way to reach the process's jemalloc `mallctl`, by name, with typed values.
pub trait Backend: Send + 'static {
    /// Reads `name` as a `T`.
    ///
    /// # Safety
    /// `T` must be the type jemalloc documents for `name` (jemalloc checks the size, not
    /// the type: `bool` read from a `u8` name is undefined behaviour).
    unsafe fn read<T: Copy>(&self, name: &CStr) -> Result<T, CtlError>;

    /// Writes `value` to `name`.
    ///
    /// # Safety
    /// As [`Backend::read`]; a pointer value must stay valid for the call.
    unsafe fn write<T: Copy>(&self, name: &CStr, value: T) -> Result<(), CtlError>;

    /// A new `epoch`: jemalloc refreshes the statistics it caches.
    fn advance_epoch(&self) -> Result<(), CtlError> {
        // SAFETY: `epoch` is a u64.
        unsafe { self.write::<u64>(c"epoch", 1) }
    }

    /// `stats.allocated/active/resident/mapped/retained` (after [`Backend::advance_epoch`]).
    fn global_stats(&self) -> Result<Stats, CtlError> {
        // SAFETY: these statistics are size_t.
        let read = |name| unsafe { self.read::<usize>(name) }.map(|v| v as u64);
        Ok(Stats {
            allocated: read(c"stats.allocated")?,
            active: read(c"stats.active")?,
            resident: read(c"stats.resident")?,
            mapped: read(c"stats.mapped")?,
            retained: read(c"stats.retained")?,
        })
    }

    /// The object the allocator lives in, as the handshake reports it.
    fn object(&self) -> &str;
}

/// A `mallctl` function, as the system shim finds it at run time.
pub type MallctlFn =
    unsafe extern "C" fn(*const c_char, *mut c_void, *mut usize, *mut c_void, usize) -> c_int;

/// [`Backend::read`] through a raw `mallctl`.
///
/// # Safety
/// As [`Backend::read`]; `mallctl` must be jemalloc's.
pub unsafe fn raw_read<T: Copy>(mallctl: MallctlFn, name: &CStr) -> Result<T, CtlError> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>();
    let rc = mallctl(
        name.as_ptr(),
        value.as_mut_ptr().cast(),
        &mut len,
        std::ptr::null_mut(),
        0,
    );
    if rc != 0 {
        return Err(CtlError::errno(name, rc));
    }
    // Zero-initialised, then filled by jemalloc with exactly len == size_of::<T>() bytes
    // (jemalloc answers EINVAL when the sizes differ).
    Ok(value.assume_init())
}

/// [`Backend::write`] through a raw `mallctl`.
///
/// # Safety
/// As [`Backend::write`]; `mallctl` must be jemalloc's.
pub unsafe fn raw_write<T: Copy>(
    mallctl: MallctlFn,
    name: &CStr,
    mut value: T,
) -> Result<(), CtlError> {
    let ptr: *mut T = &mut value;
    match mallctl(
        name.as_ptr(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        ptr.cast(),
        size_of::<T>(),
    ) {
        0 => Ok(()),
        rc => Err(CtlError::errno(name, rc)),
    }
}

/// Call from the preloaded object's initialiser: takes the channel and starts the control
/// thread; `bind` runs on that thread at the first request. Never panics.
pub fn start<B: Backend>(bind: fn() -> Result<B, String>) {
    let _ = std::panic::catch_unwind(|| {
        let Some(fd) = take_channel_fd() else {
            return;
        };
        asks::take_timeout_from_env();
        if spawn_control_thread(fd, bind).is_err() {
            // Nothing to report to: jemsafe notices the missing handshake and says so.
            // SAFETY: fd was validated as our socket; no thread owns it.
            unsafe { libc::close(fd) };
        }
    });
}

/// Reads and removes `JEMSAFE_SHIM_FD`; returns the fd only if it is a SEQPACKET socket.
fn take_channel_fd() -> Option<RawFd> {
    let name = CString::new(ENV_SHIM_FD).ok()?;
    // SAFETY: runs from the loader's initialiser, before main and before any thread of
    // the host exists, so nothing else reads or writes the environment concurrently.
    let value = unsafe {
        let raw = libc::getenv(name.as_ptr());
        if raw.is_null() {
            return None;
        }
        let value = CStr::from_ptr(raw).to_str().ok().map(str::to_owned);
        libc::unsetenv(name.as_ptr());
        value
    }?;
    let fd: RawFd = value.trim().parse().ok()?;
    let mut kind: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: plain syscalls on an fd number; failure is reported through the return value.
    unsafe {
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut c_int).cast(),
            &mut len,
        ) != 0
            || kind != libc::SOCK_SEQPACKET
        {
            return None;
        }
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Some(fd)
}

/// Starts the control thread with every signal blocked, so that no process-directed
/// signal (SIGTERM!) can ever be delivered to it instead of to mysqld's signal thread.
fn spawn_control_thread<B: Backend>(
    fd: RawFd,
    bind: fn() -> Result<B, String>,
) -> Result<(), std::io::Error> {
    // SAFETY: sigset manipulation on local storage; pthread_sigmask on the calling thread.
    let saved = unsafe {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        let mut saved = MaybeUninit::<libc::sigset_t>::uninit();
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), saved.as_mut_ptr());
        saved.assume_init()
    };
    let spawned = std::thread::Builder::new()
        .name(jemsafe_proto::THREAD_NAME.to_owned())
        .stack_size(256 * 1024)
        .spawn(move || serve(fd, bind));
    // SAFETY: restores the mask saved above on the same thread.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    spawned.map(|_| ())
}

fn serve<B: Backend>(fd: RawFd, bind: fn() -> Result<B, String>) {
    let mut buf = [0u8; MAX_PACKET];
    let mut binding: Option<Result<Jemalloc<B>, String>> = None;
    asks::open(fd);
    loop {
        // SAFETY: buf is valid for MAX_PACKET bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 0 {
            break; // jemsafe closed its end: stay out of the way from now on
        }
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        let packet = &buf[..n as usize];
        // jemsafe's answer to a call from SQL: for the connection thread that waits.
        if let Some(answer) = Answer::decode(packet) {
            if let Ok(answer) = answer {
                asks::answered(answer);
            }
            continue;
        }
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let bound = binding.get_or_insert_with(|| bind().map(Jemalloc));
            match Request::decode(packet) {
                Ok(request) => handle(request, bound),
                // Echo the id when there is one, so that the sender is not left waiting.
                Err(e) => Reply::err(leading_id(packet), format!("undecodable request: {e}")),
            }
        }))
        .unwrap_or_else(|_| Reply::err(0, "the shim failed internally handling this request"));
        let out = reply.encode();
        // SAFETY: out is a live buffer; MSG_NOSIGNAL keeps a vanished peer from raising SIGPIPE.
        let sent = unsafe { libc::send(fd, out.as_ptr().cast(), out.len(), libc::MSG_NOSIGNAL) };
        if sent < 0 {
            break;
        }
    }
    asks::closed();
    // Shut down, not closed: a connection thread that read the fd number just before
    // `closed()` may still send on it, and must get EPIPE, not reach whatever file a
    // reused number would name. jemsafe sees end-of-file all the same.
    // SAFETY: a plain syscall on our socket.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// The request id a malformed packet starts with, or 0.
fn leading_id(packet: &[u8]) -> u64 {
    let digits: Vec<u8> = packet
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// The address of `symbol` as the process resolves it (`dlsym(RTLD_DEFAULT)`) and the
/// object it comes from (`dladdr`).
pub fn object_of(symbol: &CStr) -> Option<(*mut c_void, String)> {
    // SAFETY: dlsym with a valid C string.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr()) };
    if addr.is_null() {
        return None;
    }
    Some((addr, object_at(addr as usize)))
}

/// The `mallctl` of the jemalloc that serves this process's `malloc`, and the object it
/// comes from; refused (with the reason) when there is none or it belongs to a copy of
/// jemalloc that does not allocate for the process. Used by the shim and by
/// jemsafe_udf.so, which both look it up at run time instead of linking a jemalloc.
pub fn process_mallctl() -> Result<(MallctlFn, String), String> {
    let Some((addr, path)) = object_of(c"mallctl") else {
        return Err("no mallctl symbol in this process: jemalloc is not loaded \
                    (is libjemalloc first in LD_PRELOAD?)"
            .to_owned());
    };
    let malloc_from = object_of(c"malloc").map(|(_, p)| p).unwrap_or_default();
    if malloc_from != path {
        return Err(format!(
            "mallctl comes from {path} but malloc is served by {malloc_from}: \
             that jemalloc does not allocate for this process, refusing to use it"
        ));
    }
    // SAFETY: `mallctl` has had this signature in every jemalloc release.
    let mallctl = unsafe { std::mem::transmute::<*mut c_void, MallctlFn>(addr) };
    Ok((mallctl, path))
}

/// The object that contains the code or data at `addr` (`dladdr`, which only compares
/// the address with the loaded objects' ranges), or "(unknown object)".
pub fn object_at(addr: usize) -> String {
    // SAFETY: dladdr fills info; dli_fname points into the loader's data.
    unsafe {
        let mut info = MaybeUninit::<libc::Dl_info>::zeroed();
        if libc::dladdr(addr as *const c_void, info.as_mut_ptr()) != 0
            && !(*info.as_ptr()).dli_fname.is_null()
        {
            CStr::from_ptr((*info.as_ptr()).dli_fname)
                .to_string_lossy()
                .into_owned()
        } else {
            "(unknown object)".to_owned()
        }
    }
}

/// A bound backend with typed access.
struct Jemalloc<B>(B);

impl<B: Backend> Jemalloc<B> {
    fn read<T: Copy>(&self, name: &CStr) -> Result<T, CtlError> {
        // SAFETY: every name read through here is read as the type jemalloc documents
        // (size_t as usize, ssize_t as isize, unsigned as u32, bool as u8, strings as
        // pointers): see the callers.
        unsafe { self.0.read(name) }
    }

    fn write<T: Copy>(&self, name: &CStr, value: T) -> Result<(), CtlError> {
        // SAFETY: as in `read`.
        unsafe { self.0.write(name, value) }
    }

    fn read_bool(&self, name: &CStr) -> Result<bool, CtlError> {
        self.read::<u8>(name).map(|b| b != 0)
    }

    fn read_str(&self, name: &CStr) -> Result<String, CtlError> {
        let ptr = self.read::<*const c_char>(name)?;
        if ptr.is_null() {
            return Ok(String::new());
        }
        // SAFETY: jemalloc returns pointers to its own static, NUL-terminated strings.
        Ok(unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned())
    }
}

fn errno_name(errno: c_int) -> &'static str {
    match errno {
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::EPERM => "EPERM",
        libc::EAGAIN => "EAGAIN",
        libc::EFAULT => "EFAULT",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::ENOSPC => "ENOSPC",
        _ => "EUNKNOWN",
    }
}

fn ctl_failure(id: u64, e: CtlError) -> Reply {
    let name = e.name.as_str();
    let hint = match (name, e.errno) {
        (name, libc::ENOENT) if name.starts_with("prof.") => {
            "profiling is not enabled in this process (opt.prof is false): \
             restart mysqld with a profile that sets prof = true"
        }
        (name, libc::ENOENT) if name.starts_with("stats.") || name == "epoch" => {
            "this jemalloc was built without statistics (--disable-stats)"
        }
        (_, libc::ENOENT) => "this jemalloc does not know this mallctl (built without it?)",
        ("prof.dump", libc::EFAULT) => {
            "jemalloc could not write the heap file: the directory is missing or not \
             writable by mysqld's user, or the disk is full"
        }
        _ => "jemalloc refused the request",
    };
    let message = match &e.text {
        Some(text) => format!("{hint} (jemalloc: {text})"),
        None => hint.to_owned(),
    };
    Reply::failed(
        id,
        &Failure {
            message,
            mallctl: Some(e.name.clone()),
            error: Some(errno_name(e.errno).to_owned()),
            errno: Some(e.errno),
        },
    )
}

/// The errno behind a tikv-jemalloc-ctl error, from its text: the crate keeps the number
/// private and prints jemalloc's manual's description of each documented error (or
/// `Unknown error code: "N".` for any other), one text per number. Mapped back so that
/// both backends report failures alike on the wire (`error`, `errno`), which jemsafe's
/// hints and tests key on; the text itself travels in the message.
pub fn errno_of_ctl_text(text: &str) -> Option<c_int> {
    const DESCRIPTIONS: [(&str, c_int); 5] = [
        (
            "`newp` is not `NULL`, and `newlen` is too large or too small",
            libc::EINVAL,
        ),
        (
            "`name` or `mib` specifies an unknown/invalid value",
            libc::ENOENT,
        ),
        ("Attempt to read or write `void` value", libc::EPERM),
        ("A memory allocation failure occurred", libc::EAGAIN),
        ("An interface with side effects failed", libc::EFAULT),
    ];
    if let Some(code) = text.strip_prefix("Unknown error code: \"") {
        return code.split('"').next()?.parse().ok();
    }
    DESCRIPTIONS
        .iter()
        .find(|(prefix, _)| text.starts_with(prefix))
        .map(|&(_, errno)| errno)
}

fn handle<B: Backend>(request: Request, binding: &Result<Jemalloc<B>, String>) -> Reply {
    let id = request.id;
    let jemalloc = match binding {
        Ok(j) => j,
        Err(reason) if request.command == Command::Hello => {
            return Reply::ok_with(
                id,
                &hello_with(Binding::Missing {
                    reason: reason.clone(),
                }),
            )
        }
        Err(reason) => {
            return Reply::failed(
                id,
                &Failure {
                    error: Some("NOJEMALLOC".into()),
                    ..Failure::new(reason.as_str())
                },
            )
        }
    };
    let result = match request.command {
        Command::Hello => hello(id, jemalloc),
        Command::Dump(path) => dump(id, jemalloc, path),
        Command::Activate => set_active(id, jemalloc, Some(true)),
        Command::Deactivate => set_active(id, jemalloc, Some(false)),
        Command::Toggle => set_active(id, jemalloc, None),
        Command::Reset(lg) => reset(id, jemalloc, lg),
        Command::Stats => stats(id, jemalloc),
        Command::Memory => return memory::memory(id, jemalloc),
    };
    result.unwrap_or_else(|e| ctl_failure(id, e))
}

fn hello_with(jemalloc: Binding) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        shim_version: env!("CARGO_PKG_VERSION").to_owned(),
        // SAFETY: getpid cannot fail.
        pid: unsafe { libc::getpid() },
        jemalloc,
    }
}

fn hello<B: Backend>(id: u64, j: &Jemalloc<B>) -> Result<Reply, CtlError> {
    let config_prof = j.read_bool(c"config.prof")?;
    let mut bound = Bound {
        path: j.0.object().to_owned(),
        version: j.read_str(c"version")?,
        config_prof,
        opt_prof: false,
        prof_active: false,
        prof_prefix: None,
        lg_prof_interval: None,
        lg_prof_sample: None,
        prof_gdump: None,
        capabilities: None,
    };
    if config_prof {
        bound.opt_prof = j.read_bool(c"opt.prof")?;
        bound.prof_prefix = Some(j.read_str(c"opt.prof_prefix")?);
        bound.lg_prof_interval = Some(j.read::<isize>(c"opt.lg_prof_interval")? as i64);
        if bound.opt_prof {
            bound.prof_active = j.read_bool(c"prof.active")?;
            bound.lg_prof_sample = Some(j.read::<usize>(c"prof.lg_sample")? as u32);
            bound.prof_gdump = Some(j.read_bool(c"prof.gdump")?);
        } else {
            bound.lg_prof_sample = Some(j.read::<usize>(c"opt.lg_prof_sample")? as u32);
        }
    }
    bound.capabilities = Some(capabilities(j)?);
    Ok(Reply::ok_with(id, &hello_with(Binding::Bound(bound))))
}

/// What this jemalloc can do beyond profiling itself; an option it does not have (ENOENT:
/// an older release, or built without profiling) is None.
fn capabilities<B: Backend>(j: &Jemalloc<B>) -> Result<Capabilities, CtlError> {
    Ok(Capabilities {
        prof_stats: known(j.read_bool(c"opt.prof_stats"))?,
        prof_recent_alloc_max: known(j.read::<isize>(c"opt.prof_recent_alloc_max"))?
            .map(|v| v as i64),
        prof_sys_thread_name: known(j.read_bool(c"opt.prof_sys_thread_name"))?,
        prof_bt_max: known(j.read::<u32>(c"opt.prof_bt_max"))?,
        background_thread: known(j.read_bool(c"background_thread"))?,
    })
}

/// `Ok(None)` for a name this jemalloc does not have (ENOENT).
fn known<T>(r: Result<T, CtlError>) -> Result<Option<T>, CtlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.errno == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

fn dump<B: Backend>(id: u64, j: &Jemalloc<B>, path: Option<String>) -> Result<Reply, CtlError> {
    // The dump's memory snapshot, read just before it in the same request: a jemalloc
    // without statistics still dumps, without one.
    let memory = memory::snapshot(j).ok();
    let started = Instant::now();
    let c_path = match path.as_deref().map(CString::new) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            let failure = Failure {
                error: Some("EINVAL".into()),
                ..Failure::new("dump path contains a NUL byte")
            };
            return Ok(Reply::failed(id, &failure));
        }
    };
    // A null file name is jemalloc's "no argument": its own name, prof_prefix.pid.seq.m.
    let name: *const c_char = c_path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    j.write(c"prof.dump", name)?;
    let dumped = Dumped {
        dump_us: started.elapsed().as_micros() as u64,
        path,
        memory,
    };
    let reply = Reply::ok_with(id, &dumped);
    if reply.encoded_len() <= MAX_PACKET {
        return Ok(reply);
    }
    // A path so long that the reading does not fit beside it: the dump still counts.
    Ok(Reply::ok_with(
        id,
        &Dumped {
            memory: None,
            ..dumped
        },
    ))
}

fn set_active<B: Backend>(id: u64, j: &Jemalloc<B>, want: Option<bool>) -> Result<Reply, CtlError> {
    let was = j.read_bool(c"prof.active")?;
    let now = want.unwrap_or(!was);
    j.write::<u8>(c"prof.active", u8::from(now))?;
    Ok(Reply::ok_with(
        id,
        &ProfState {
            was_active: was,
            prof_active: now,
        },
    ))
}

fn reset<B: Backend>(id: u64, j: &Jemalloc<B>, lg: Option<u32>) -> Result<Reply, CtlError> {
    // Without a new rate, prof.reset keeps the current one: writing it back is the same.
    let lg = match lg {
        Some(lg) => lg as usize,
        None => j.read::<usize>(c"prof.lg_sample")?,
    };
    j.write::<usize>(c"prof.reset", lg)?;
    let lg_prof_sample = j.read::<usize>(c"prof.lg_sample")? as u32;
    Ok(Reply::ok_with(id, &ResetDone { lg_prof_sample }))
}

fn stats<B: Backend>(id: u64, j: &Jemalloc<B>) -> Result<Reply, CtlError> {
    j.0.advance_epoch()?;
    Ok(Reply::ok_with(id, &j.0.global_stats()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_texts_map_back_to_their_errno() {
        // tikv-jemalloc-ctl 0.7's texts (error.rs), as its Display prints them.
        let cases = [
            ("`newp` is not `NULL`, and `newlen` is too large or too small. Alternatively, `*oldlenp` is too large or too small; in this case as much data as possible are read despite the error.", libc::EINVAL),
            ("`name` or `mib` specifies an unknown/invalid value.", libc::ENOENT),
            ("Attempt to read or write `void` value, or attempt to write read-only value.", libc::EPERM),
            ("A memory allocation failure occurred.", libc::EAGAIN),
            ("An interface with side effects failed in some way not directly related to `mallctl*()` read/write processing.", libc::EFAULT),
            ("Unknown error code: \"14\".", 14),
        ];
        for (text, errno) in cases {
            assert_eq!(errno_of_ctl_text(text), Some(errno), "{text}");
        }
        assert_eq!(errno_of_ctl_text("something else"), None);
    }

    #[test]
    fn a_failure_carries_the_backends_text_and_the_errno() {
        let reply = ctl_failure(
            3,
            CtlError {
                name: "prof.dump".into(),
                errno: libc::EFAULT,
                text: Some("An interface with side effects failed".into()),
            },
        );
        let f = reply.body::<Stats>().unwrap_err();
        assert_eq!(f.error.as_deref(), Some("EFAULT"));
        assert_eq!(f.errno, Some(libc::EFAULT));
        assert!(f.message.contains("could not write the heap file"), "{f}");
        assert!(
            f.message
                .contains("(jemalloc: An interface with side effects failed)"),
            "{f}"
        );
    }
}
