//! Calls from SQL: jemsafe_udf.so, on one of mysqld's connection threads, asks jemsafe
//! through the shim's channel ([`ASK_SYMBOL`], found with `dlsym`), and waits a
//! bounded time for the answer.
//!
//! The calling thread sends its [`Ask`] itself (one SEQPACKET packet: sends from several
//! threads never interleave) and waits on a slot of its own; the control thread, which
//! reads every packet jemsafe sends, puts each [`Answer`] into the slot with its id. The
//! list of slots is locked only to add, find or remove one, never while anyone waits, so
//! that any number of connections may call at once. When jemsafe goes away every waiter
//! hears so at once.

use jemsafe_proto::{Answer, Ask, SqlOp, DEFAULT_SQL_TIMEOUT_MS, ENV_SQL_TIMEOUT_MS};
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The channel to jemsafe; -1 when there is none (not supervised, or jemsafe went away).
static CHANNEL: AtomicI32 = AtomicI32::new(-1);
/// How long a call waits for jemsafe's answer ([`ENV_SQL_TIMEOUT_MS`]).
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_SQL_TIMEOUT_MS);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// The calls waiting for an answer, by ask id.
static WAITING: Mutex<Vec<(u64, Arc<Slot>)>> = Mutex::new(Vec::new());

#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Result<String, String>>>,
    came: Condvar,
}

impl Slot {
    fn fill(&self, result: Result<String, String>) {
        *lock(&self.answer) = Some(result);
        self.came.notify_all();
    }
}

/// A poisoned lock still guards valid data here (a slot, a list): go on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a call from SQL got no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskError {
    /// No jemsafe to ask: the caller may do without it (the `jeprof_*` functions do).
    Unsupervised(String),
    /// jemsafe refused, failed, did not answer in time or went away.
    Failed(String),
}

/// The wait for `value` (milliseconds) from the environment, when it is a number > 0.
pub fn timeout_from(value: Option<&str>) -> u64 {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_SQL_TIMEOUT_MS)
}

/// Reads and removes [`ENV_SQL_TIMEOUT_MS`]. Called from the loader's initialiser, before
/// any other thread of the host exists.
pub(crate) fn take_timeout_from_env() {
    let Ok(name) = CString::new(ENV_SQL_TIMEOUT_MS) else {
        return;
    };
    // SAFETY: single-threaded at load time (see take_channel_fd).
    let value = unsafe {
        let raw = libc::getenv(name.as_ptr());
        if raw.is_null() {
            return;
        }
        let value = CStr::from_ptr(raw).to_str().ok().map(str::to_owned);
        libc::unsetenv(name.as_ptr());
        value
    };
    TIMEOUT_MS.store(timeout_from(value.as_deref()), Ordering::Relaxed);
}

/// The control thread serves `fd`: calls may use it.
pub(crate) fn open(fd: RawFd) {
    CHANNEL.store(fd, Ordering::Release);
}

/// jemsafe's end closed: no answer will come. Every waiting call hears so now.
pub(crate) fn closed() {
    CHANNEL.store(-1, Ordering::Release);
    let waiting: Vec<_> = lock(&WAITING).drain(..).collect();
    for (_, slot) in waiting {
        slot.fill(Err("jemsafe went away while this call waited \
                       (its supervisor stopped or restarts)"
            .to_owned()));
    }
}

/// An answer from jemsafe, for the call that waits for it (a call that gave up already
/// is gone: its answer is dropped).
pub(crate) fn answered(answer: Answer) {
    let slot = {
        let mut waiting = lock(&WAITING);
        let at = waiting.iter().position(|(id, _)| *id == answer.id);
        at.map(|at| waiting.swap_remove(at).1)
    };
    if let Some(slot) = slot {
        slot.fill(answer.result);
    }
}

fn forget(id: u64) {
    lock(&WAITING).retain(|(waiting, _)| *waiting != id);
}

/// Asks jemsafe for `op` and waits at most the configured time for its answer.
pub fn ask(op: SqlOp) -> Result<String, AskError> {
    let timeout = Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed));
    let deadline = Instant::now() + timeout;
    let fd = CHANNEL.load(Ordering::Acquire);
    if fd < 0 {
        return Err(AskError::Unsupervised(
            "mysqld is not supervised by `jemsafe run` (or jemsafe went away)".to_owned(),
        ));
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let slot = Arc::new(Slot::default());
    lock(&WAITING).push((id, Arc::clone(&slot)));
    // jemsafe may have gone between the load and the push: closed() drained before us.
    if CHANNEL.load(Ordering::Acquire) < 0 {
        forget(id);
        return Err(AskError::Failed("jemsafe went away".to_owned()));
    }
    if let Err(e) = send(fd, &Ask { id, op }.encode(), deadline) {
        forget(id);
        return Err(AskError::Failed(e));
    }
    let mut answer = lock(&slot.answer);
    loop {
        if let Some(result) = answer.take() {
            return result.map_err(AskError::Failed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            drop(answer);
            forget(id);
            return Err(AskError::Failed(format!(
                "no answer from jemsafe within {} ms (`[sql] timeout_ms`)",
                timeout.as_millis()
            )));
        }
        answer = slot
            .came
            .wait_timeout(answer, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Sends `packet` on `fd`, waiting for room until `deadline` (jemsafe reads its end all
/// the time: a full buffer means it is busy, not gone).
fn send(fd: RawFd, packet: &[u8], deadline: Instant) -> Result<(), String> {
    loop {
        // SAFETY: a live buffer; MSG_NOSIGNAL: a vanished peer is EPIPE, not SIGPIPE.
        let sent = unsafe {
            libc::send(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if sent >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("jemsafe's channel stayed full until the deadline".to_owned());
                }
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                let ms = c_int::try_from(left.as_millis())
                    .unwrap_or(c_int::MAX)
                    .max(1);
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, ms) };
            }
            _ => return Err(format!("cannot reach jemsafe: {e}")),
        }
    }
}

/// What [`jemsafe_shim_ask`] returns.
pub const ASK_OK: c_int = 0;
pub const ASK_FAILED: c_int = 1;
pub const ASK_UNSUPERVISED: c_int = 2;

/// `text` into `out` (`out_len` bytes), cut at a character boundary, NUL-terminated.
///
/// # Safety
/// `out` points to `out_len` writable bytes (or `out_len` is 0).
unsafe fn write_out(out: *mut c_char, out_len: usize, text: &str) {
    if out.is_null() || out_len == 0 {
        return;
    }
    let mut end = text.len().min(out_len - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), end);
    *out.add(end) = 0;
}

/// The name jemsafe_udf.so looks up with `dlsym`; [`export_ask!`] defines it.
pub const ASK_SYMBOL: &CStr = c"jemsafe_shim_ask";

/// The C signature of [`ASK_SYMBOL`].
pub type AskFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> c_int;

/// What [`ASK_SYMBOL`] does: asks jemsafe for `op` (an [`SqlOp`] word: "dump",
/// "prof-on", "prof-off", "status", "memory") and writes the answer, or why there is
/// none, into `out` (NUL-terminated, cut to `out_len` bytes). Returns [`ASK_OK`],
/// [`ASK_FAILED`] or [`ASK_UNSUPERVISED`]. Blocks the calling thread at most the
/// configured time; never panics into the caller.
///
/// # Safety
/// `op` is a NUL-terminated string; `out` points to `out_len` writable bytes.
pub unsafe fn ask_into(op: *const c_char, out: *mut c_char, out_len: usize) -> c_int {
    let outcome = std::panic::catch_unwind(|| {
        let word = if op.is_null() {
            ""
        } else {
            CStr::from_ptr(op).to_str().unwrap_or("")
        };
        match SqlOp::parse(word) {
            Some(op) => ask(op),
            None => Err(AskError::Failed(format!("unknown operation {word:?}"))),
        }
    })
    .unwrap_or_else(|_| Err(AskError::Failed("the shim failed internally".to_owned())));
    let (code, text) = match &outcome {
        Ok(value) => (ASK_OK, value.as_str()),
        Err(AskError::Failed(why)) => (ASK_FAILED, why.as_str()),
        Err(AskError::Unsupervised(why)) => (ASK_UNSUPERVISED, why.as_str()),
    };
    write_out(out, out_len, text);
    code
}

/// Defines [`ASK_SYMBOL`] in the preloaded object that invokes it (the shim and the
/// bundled jemalloc): a macro, not a function here, so that jemsafe_udf.so, which links
/// this crate for its lookups, does not export it too.
#[macro_export]
macro_rules! export_ask {
    () => {
        /// Calls from SQL (jemsafe_udf.so): see `jemsafe_shim_core::ask_into`.
        ///
        /// # Safety
        /// As `jemsafe_shim_core::ask_into`.
        #[no_mangle]
        pub unsafe extern "C" fn jemsafe_shim_ask(
            op: *const ::std::ffi::c_char,
            out: *mut ::std::ffi::c_char,
            out_len: usize,
        ) -> ::std::ffi::c_int {
            $crate::ask_into(op, out, out_len)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_comes_from_the_environment_when_it_is_a_positive_number() {
        assert_eq!(timeout_from(Some("2500")), 2500);
        assert_eq!(timeout_from(Some("0")), DEFAULT_SQL_TIMEOUT_MS);
        assert_eq!(timeout_from(Some("soon")), DEFAULT_SQL_TIMEOUT_MS);
        assert_eq!(timeout_from(None), DEFAULT_SQL_TIMEOUT_MS);
    }

    /// One test drives the process-wide channel, so that no other test races it.
    #[test]
    fn calls_get_their_own_answers_and_all_hear_when_jemsafe_goes() {
        let mut fds = [0; 2];
        // SAFETY: a valid array of two fds.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        let (shim_end, jemsafe_end) = (fds[0], fds[1]);
        assert!(matches!(ask(SqlOp::Dump), Err(AskError::Unsupervised(_))));
        open(shim_end);
        // jemsafe: answers each ask with its own op's word, in reverse order of arrival.
        let callers: Vec<_> = SqlOp::ALL
            .into_iter()
            .map(|op| std::thread::spawn(move || (op, ask(op))))
            .collect();
        let mut asks = Vec::new();
        let mut buf = [0u8; 256];
        while asks.len() < callers.len() {
            // SAFETY: a valid buffer.
            let n = unsafe { libc::recv(jemsafe_end, buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert!(n > 0);
            asks.push(Ask::decode(&buf[..n as usize]).unwrap().unwrap());
        }
        for a in asks.iter().rev() {
            answered(Answer {
                id: a.id,
                result: Ok(a.op.word().to_owned()),
            });
        }
        for caller in callers {
            let (op, result) = caller.join().unwrap();
            assert_eq!(result, Ok(op.word().to_owned()));
        }
        // A call waiting when jemsafe goes hears so at once, not at its deadline.
        let started = Instant::now();
        let waiting = std::thread::spawn(|| ask(SqlOp::Status));
        // SAFETY: a valid buffer.
        let n = unsafe { libc::recv(jemsafe_end, buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(n > 0, "the ask is sent before jemsafe goes");
        closed();
        let result = waiting.join().unwrap();
        assert!(
            matches!(&result, Err(AskError::Failed(why)) if why.contains("went away")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(DEFAULT_SQL_TIMEOUT_MS));
        assert!(matches!(ask(SqlOp::Dump), Err(AskError::Unsupervised(_))));
        // SAFETY: both ends are ours.
        unsafe {
            libc::close(shim_end);
            libc::close(jemsafe_end);
        }
    }
}
