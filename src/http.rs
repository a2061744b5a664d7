//! `[http]`: Prometheus metrics, a Go-style pprof endpoint and a health check, for the
//! engines fleets already run (Prometheus; Grafana Pyroscope and Parca pull pprof), and
//! the live page.
//!
//! | route | access ([`access::route`], decided by [`access::decide`]) |
//! | --- | --- |
//! | `GET /metrics` | anyone on loopback, `Bearer` off it; any `Host` |
//! | `GET /healthz` | anyone on loopback, `Bearer` off it; any `Host` |
//! | `GET /debug/pprof/heap` | `Bearer` only, always; any `Host` |
//! | `GET /` | `Bearer` (any `Host`), or `Basic` with the token as password (`Host` the listen address or `[http] hosts`) |
//! | `POST /dump` | as `/`, plus the page's CSRF token and `Origin` |
//! | anything else (404) | as `/metrics` (`/debug/pprof/*`: as pprof) |
//!
//! Basic credentials, which a browser attaches by itself to any request to this server
//! (also one another local site makes it send), open only the page, and any request
//! carrying them must name this server in `Host` and must not be marked by the browser as
//! made by another site (`Sec-Fetch-Site` other than `same-origin` or `none`).
//!
//! The server runs on threads of its own and talks to the supervisor only as a client of
//! the control socket, like `jemsafe status` and `jemsafe dump` do: a slow or hostile HTTP
//! client can hold an HTTP thread, never the supervisor's loop (its signals, dumps and
//! restarts). Requests are bounded in size and time; connections are capped, per peer
//! address too, with slots kept for requests that arrive whole. /debug/pprof/heap renders
//! in a short-lived child process ([`render`]), one profile at a time, so that what the
//! analyzer maps never stays in the supervisor.

mod access;
pub mod budget;
pub mod child;
mod live_page;

pub use child::child_main as render_child_main;
pub use child::release_when_read;
pub use live_page::CSRF_ENV as PAGE_CSRF_ENV;

use crate::control::{self, DumpVia, Request, Status};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use access::{credential, decide, is_pprof, read_token, route, Denial, Route};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The request head (request line and headers) may take this long and this much: a
/// client that sends its request at once (as Prometheus, Pyroscope, Parca and curl do)
/// is far below both.
const HEAD_DEADLINE: Duration = Duration::from_secs(2);
const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; more get 503 at once.
const MAX_CONNECTIONS: usize = 8;
/// Of those, kept for requests whose head is already complete when they are accepted,
/// so that connections trickling their heads cannot take every slot. Two: a client's
/// next request may arrive while the thread that answered its last one is still ending.
const RESERVED: usize = 2;
/// Connections whose head is still coming, per peer address.
const MAX_PER_PEER: usize = 3;
/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A dump of a very large heap takes seconds; the supervisor answers within a minute.
const DUMP_TIMEOUT: Duration = Duration::from_secs(120);
/// Status answers within a second even when mysqld does not.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry-After (seconds) for a heap profile asked while another is being made.
const RETRY_PROFILE_S: u32 = 5;

/// `[http]` as the supervisor's plan holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    /// Whether /debug/pprof/heap is served (config validation requires the token then).
    pub pprof: bool,
    /// Names besides the listen address that the page may be asked for (`[http] hosts`).
    pub hosts: Vec<String>,
    /// A rendering child's address-space budget, MiB (`[http] render_memory_mb`).
    pub render_memory_mb: u64,
    /// Where the dumps and timeline the page at `/` shows are (`[dumps] dir` and `prefix`,
    /// `[timeline] max_mb`; None: no page).
    pub page: Option<crate::read::plan::ReadSettings>,
}

struct Shared {
    runtime_dir: PathBuf,
    token: Option<String>,
    pprof: bool,
    /// Listening on loopback: /metrics and /healthz need no token.
    loopback: bool,
    metrics: Arc<Metrics>,
    slots: Mutex<Slots>,
    /// A heap profile (dump + rendering) is being made.
    profiling: AtomicBool,
    /// The address the page's requests must name in `Host` (DNS rebinding), and the
    /// other names accepted (`[http] hosts`).
    bound: SocketAddr,
    hosts: Vec<String>,
    render_memory_mb: u64,
    page: Option<crate::read::plan::ReadSettings>,
    /// CSRF tokens of the pages served, newest last.
    csrf: Mutex<live_page::Tokens>,
}

/// Connections being served: all of them, and those still reading their head per peer.
#[derive(Default)]
struct Slots {
    total: usize,
    reading: HashMap<IpAddr, usize>,
}

/// Binds `settings.listen` and serves it on a thread of its own, for as long as jemsafe runs.
pub fn start(
    settings: &HttpSettings,
    runtime_dir: &Path,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr> {
    let addr = settings.listen;
    let token = settings.token_file.as_deref().map(read_token).transpose()?;
    let listener = TcpListener::bind(addr).map_err(Error::io(format!(
        "[http] listen = {addr}: cannot listen there (another program on that port? \
         choose another in [http] listen)"
    )))?;
    defer_accept(&listener);
    let bound = listener
        .local_addr()
        .map_err(Error::io("cannot read the HTTP server's address"))?;
    let shared = Arc::new(Shared {
        runtime_dir: runtime_dir.to_owned(),
        token,
        pprof: settings.pprof,
        loopback: addr.ip().is_loopback(),
        metrics,
        slots: Mutex::new(Slots::default()),
        profiling: AtomicBool::new(false),
        bound,
        hosts: settings.hosts.clone(),
        render_memory_mb: settings.render_memory_mb,
        page: settings.page.clone(),
        csrf: Mutex::new(live_page::Tokens::default()),
    });
    std::thread::Builder::new()
        .name("jemsafe-http".into())
        .spawn(move || accept_loop(listener, shared))
        .map_err(Error::io("cannot start the HTTP server's thread"))?;
    let paths = if settings.pprof {
        "/metrics, /debug/pprof/heap, /healthz"
    } else {
        "/metrics, /healthz; pprof = false"
    };
    crate::info!("HTTP server on http://{bound}/ ({paths})");
    crate::info!(
        "HTTP renders run {} with {} MiB of address space, oom_score_adj 1000",
        budget::describe(&budget::open_render_group()),
        settings.render_memory_mb
    );
    Ok(bound)
}

/// TCP_DEFER_ACCEPT: a connection is accepted once its first data is in, so that a
/// request sent at once is whole when accepted (see [`admit`]) and an idle connection
/// holds no slot. Best effort: without it a request may merely look incomplete.
fn defer_accept(listener: &TcpListener) {
    let seconds: libc::c_int = HEAD_DEADLINE.as_secs() as libc::c_int;
    // SAFETY: setsockopt reads the local integer only.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        crate::debug!(
            "HTTP server: TCP_DEFER_ACCEPT: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Every slot is taken.
    Full,
    /// Only the reserved slot is left, and this head is not complete.
    Reserved,
    /// Its peer already has [`MAX_PER_PEER`] connections reading their heads.
    Peer,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Full => "connections",
            Refusal::Reserved => "reserved",
            Refusal::Peer => "peer_connections",
        }
    }
}

/// Whether a new connection gets a slot, given the connections served (`total`), those
/// of its peer still reading their heads (`peer_reading`), and whether its head was
/// complete on arrival. A complete head is answered at once, so it may take any slot,
/// the reserved one included; an incomplete one only a shared slot within its peer's share.
fn admit(total: usize, peer_reading: usize, complete: bool) -> std::result::Result<(), Refusal> {
    if total >= MAX_CONNECTIONS {
        Err(Refusal::Full)
    } else if complete {
        Ok(())
    } else if total >= MAX_CONNECTIONS - RESERVED {
        Err(Refusal::Reserved)
    } else if peer_reading >= MAX_PER_PEER {
        Err(Refusal::Peer)
    } else {
        Ok(())
    }
}

/// A connection's slot, given back when it is dropped (also when its thread panics).
struct Slot {
    shared: Arc<Shared>,
    /// The peer whose share this incomplete head counts against, until its head is in.
    reading: Option<IpAddr>,
}

impl Slot {
    fn take(
        shared: &Arc<Shared>,
        peer: IpAddr,
        complete: bool,
    ) -> std::result::Result<Slot, Refusal> {
        let mut slots = shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        let peer_reading = slots.reading.get(&peer).copied().unwrap_or(0);
        admit(slots.total, peer_reading, complete)?;
        slots.total += 1;
        if !complete {
            *slots.reading.entry(peer).or_insert(0) += 1;
        }
        Ok(Slot {
            shared: Arc::clone(shared),
            reading: (!complete).then_some(peer),
        })
    }

    /// The head is in: the peer's share is free again.
    fn head_read(&mut self) {
        if let Some(peer) = self.reading.take() {
            let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = slots.reading.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    slots.reading.remove(&peer);
                }
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.head_read();
        let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.total = slots.total.saturating_sub(1);
    }
}

/// Whether the connection's whole head (or something that is no head at all) has
/// arrived, looked at without consuming it and without waiting.
fn head_arrived(stream: &TcpStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut buf = [0u8; MAX_HEAD];
    match recv(
        stream.as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(n) if n > 0 => !matches!(parse_head(&buf[..n]), Ok(None)),
        _ => false,
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // EMFILE and the like: do not spin.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let peer = stream
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let mut slot = match Slot::take(&shared, peer, head_arrived(&stream)) {
            Ok(slot) => slot,
            Err(why) => {
                crate::debug!("HTTP server: connection from {peer} refused: {why:?}");
                shared.metrics.http_refused(why.label());
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                respond(
                    &stream,
                    &Response::text(503, "503: busy: too many connections\n").retry_after(1),
                );
                continue;
            }
        };
        let conn = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("jemsafe-http-conn".into())
            .spawn(move || serve(&stream, &conn, &mut slot));
        if spawned.is_err() {
            crate::warn!("HTTP server: cannot start a thread for a connection");
        }
    }
}

/// What a request asked for, once its head is in.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    host: Option<String>,
    origin: Option<String>,
    /// `Sec-Fetch-Site`, which a browser sends with every request it makes by itself.
    sec_fetch_site: Option<String>,
    content_length: Option<usize>,
    /// What came after the head in the bytes read with it (the start of a body).
    body: Vec<u8>,
}

/// Reads the request head within [`HEAD_DEADLINE`] and [`MAX_HEAD`] bytes; Err is the
/// status to answer with.
fn read_head(stream: &TcpStream) -> std::result::Result<Head, u16> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(408);
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => return Err(400),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(408),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse_head(&buf)? {
            return Ok(head);
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
    }
}

/// The head if `buf` holds a whole one; Err(400) for a malformed request.
fn parse_head(buf: &[u8]) -> std::result::Result<Option<Head>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(400),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::to_owned)
    };
    // Two Host headers (RFC 9112 §3.2: answer 400): a proxy and this server could read
    // different ones, and the Host check must judge the one that counts.
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 {
        return Err(400);
    }
    let content_length = match header("content-length") {
        Some(v) => Some(v.trim().parse().map_err(|_| 400u16)?),
        None => None,
    };
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        authorization: header("authorization"),
        host: header("host"),
        origin: header("origin"),
        sec_fetch_site: header("sec-fetch-site"),
        content_length,
        body: buf[end..].to_vec(),
    }))
}

/// The answer to a request refused by [`decide`].
fn denied(shared: &Shared, why: Denial) -> Response {
    match why {
        Denial::Host => {
            shared.metrics.http_refused("host");
            Response::text(
                421,
                &format!(
                    "421: the Host header must name this server ({}{}): the page and browser \
                     credentials are refused for another name (DNS rebinding); add a name \
                     to [http] hosts, or send the token as Bearer\n",
                    shared.bound,
                    if shared.hosts.is_empty() {
                        String::new()
                    } else {
                        format!(", or {}", shared.hosts.join(", "))
                    }
                ),
            )
        }
        Denial::CrossSite => {
            shared.metrics.http_refused("cross_site");
            Response::text(
                403,
                "403: browser credentials on a request another site made \
                 (Sec-Fetch-Site): only the page itself may use them\n",
            )
        }
        Denial::Unauthorized { basic_given } => {
            shared.metrics.http_refused("unauthorized");
            Response::text(
                401,
                if basic_given {
                    "401: a browser's credentials open only the page (/); send \
                     Authorization: Bearer <the token in [http] token_file>\n"
                } else {
                    "401: send Authorization: Bearer <the token in [http] token_file> (a \
                     browser, for the page: any user name, the token as the password)\n"
                },
            )
        }
    }
}

fn serve(stream: &TcpStream, shared: &Shared, slot: &mut Slot) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = read_head(stream);
    slot.head_read();
    let head = match head {
        Ok(h) => h,
        Err(code) => {
            if code == 408 {
                shared.metrics.http_refused("head_timeout");
            }
            respond(
                stream,
                &Response::text(code, &format!("{code}: {}\n", reason(code))),
            );
            return;
        }
    };
    if is_pprof(&head.path) && !shared.pprof {
        respond(
            stream,
            &Response::text(
                404,
                "404: pprof is off in this jemsafe ([http] pprof = false)\n",
            ),
        );
        return;
    }
    let host_ok = live_page::host_ok(head.host.as_deref(), shared.bound, &shared.hosts);
    let cred = credential(shared.token.as_deref(), head.authorization.as_deref());
    let (route, access) = route(&head.path);
    let verdict = decide(
        access,
        shared.loopback,
        cred,
        host_ok,
        head.sec_fetch_site.as_deref(),
    );
    if let Err(why) = verdict {
        respond(stream, &denied(shared, why));
        return;
    }
    let method_ok = if route == Route::Dump {
        head.method == "POST"
    } else {
        head.method == "GET"
    };
    let response = if !method_ok {
        Response::text(
            405,
            if route == Route::Dump {
                "405: POST only (the page's button)\n"
            } else {
                "405: only GET\n"
            },
        )
    } else {
        match route {
            Route::Metrics => metrics(shared),
            Route::Healthz => healthz(shared),
            Route::Heap => heap(shared, &head.query),
            Route::Page => live_page::page(shared),
            Route::Dump => live_page::dump_now(shared, &head, stream),
            Route::NotFound => Response::text(404, "404: /metrics, /debug/pprof/heap, /healthz\n"),
        }
    };
    respond(stream, &response);
}

/// What to answer.
struct Response {
    code: u16,
    kind: &'static str,
    body: Body,
    retry_after: Option<u32>,
}

enum Body {
    Bytes(Vec<u8>),
    /// A file of this length, copied as it is sent (a raw dump may be large).
    File(std::fs::File, u64),
}

impl Response {
    fn text(code: u16, text: &str) -> Response {
        Response::bytes(code, "text/plain", text.as_bytes().to_vec())
    }

    fn bytes(code: u16, kind: &'static str, body: Vec<u8>) -> Response {
        Response {
            code,
            kind,
            body: Body::Bytes(body),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: u32) -> Response {
        self.retry_after = Some(seconds);
        self
    }
}

fn status(shared: &Shared) -> std::result::Result<Status, String> {
    control::call(&shared.runtime_dir, &Request::Status, STATUS_TIMEOUT)
        .and_then(Status::from_reply)
        .map_err(|e| e.to_string())
}

fn metrics(shared: &Shared) -> Response {
    match status(shared) {
        Ok(st) => Response::bytes(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(&st, std::time::SystemTime::now()),
        ),
        Err(why) => Response::text(503, &format!("503: {why}\n")),
    }
}

fn healthz(shared: &Shared) -> Response {
    let (code, text) = match status(shared) {
        Ok(st) => health(&st),
        Err(why) => (503, format!("503: {why}\n")),
    };
    Response::text(code, &text)
}

/// /healthz from a status: 200 only when mysqld runs, answers (what `jemsafe status`
/// flags as not answering is unhealthy: stopped, stuck) and passed verification.
fn health(st: &Status) -> (u16, String) {
    match (st.mysqld_pid, &st.mysqld_not_answering, &st.verification) {
        (None, _, _) => (
            503,
            format!(
                "503: mysqld is not running (between restarts){}\n",
                st.last_exit
                    .as_deref()
                    .map(|e| format!("; last exit: {e}"))
                    .unwrap_or_default()
            ),
        ),
        (Some(_), Some(why), _) => (503, format!("503: {why}\n")),
        (Some(pid), None, Some(v)) if v.ok => (200, format!("ok: mysqld pid {pid}, verified\n")),
        (Some(pid), None, v) => (
            503,
            format!(
                "503: mysqld pid {pid} runs, but {}\n",
                v.as_ref()
                    .map(|v| v.message.clone())
                    .unwrap_or_else(|| "verification is not over".into())
            ),
        ),
    }
}

/// One heap profile at a time: held while a request dumps and renders.
struct Turn<'a>(&'a AtomicBool);

impl<'a> Turn<'a> {
    fn take(flag: &'a AtomicBool) -> Option<Turn<'a>> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Turn(flag))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A dump through the supervisor's normal path (throttle, retention, trigger `http`),
/// returned as gzipped profile.proto rendered in a child process, or with `raw=1` as
/// jemalloc wrote it. One at a time: another request meanwhile gets 503 and Retry-After
/// (before it causes a dump).
fn heap(shared: &Shared, query: &str) -> Response {
    let Some(_turn) = Turn::take(&shared.profiling) else {
        shared.metrics.http_refused("profile_busy");
        return Response::text(
            503,
            "503: another heap profile is being made; retry in a few seconds\n",
        )
        .retry_after(RETRY_PROFILE_S);
    };
    let raw = query
        .split('&')
        .any(|kv| matches!(kv, "raw=1" | "raw=true"));
    let reply = match control::call(
        &shared.runtime_dir,
        &Request::Dump { via: DumpVia::Http },
        DUMP_TIMEOUT,
    ) {
        Ok(r) => r,
        Err(e) => return Response::text(503, &format!("503: {e}\n")).retry_after(RETRY_PROFILE_S),
    };
    let Ok(dumped) = control::from_reply::<control::Dumped>(reply, "dump") else {
        return Response::text(500, "500: no path in jemsafe's answer\n");
    };
    let path = PathBuf::from(dumped.path);
    if raw {
        return raw_dump(&path);
    }
    match child::render(&path, shared.render_memory_mb) {
        Ok(profile) => Response::bytes(200, "application/octet-stream", profile),
        Err(why) => {
            crate::warn!(
                "/debug/pprof/heap: {}: {why}",
                jemsafe_report::safe::shown(&path)
            );
            Response::text(500, &format!("500: {why}\n"))
        }
    }
}

/// The dump file itself, sent as it is read, up to the dump size limit. The dump
/// directory is mysqld's user's, who could put another file under the name between the
/// dump and this read: only a regular file with one link, owned by the directory's
/// owner, is sent (no symlink, and no hard link to a file root can read).
fn raw_dump(path: &Path) -> Response {
    let limits = jemsafe_report::DumpLimits::new(jemsafe_report::DEFAULT_MAX_DUMP_MB, false);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Response::text(500, "500: not a dump path\n");
    };
    let opened = crate::dumpdir::files::open_dir(dir)
        .map_err(|e| e.to_string())
        .and_then(|dir_fd| {
            let owner = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&dir_fd))
                .map_err(|e| e.to_string())?
                .st_uid;
            crate::dumpdir::files::open_checked(
                &dir_fd,
                name,
                nix::fcntl::OFlag::O_RDONLY,
                Some((owner, "the dump directory's")),
            )
            .map_err(|e| e.to_string())
        });
    let file = match opened {
        Ok(f) => f,
        Err(e) => return Response::text(500, &format!("500: {e}\n")),
    };
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Response::text(500, &format!("500: {e}\n")),
    };
    if len > limits.max_bytes {
        return Response::text(
            500,
            &format!(
                "500: the dump is larger than {} MiB\n",
                limits.max_bytes >> 20
            ),
        );
    }
    Response {
        code: 200,
        kind: "application/octet-stream",
        body: Body::File(file, len),
        retry_after: None,
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(stream: &TcpStream, r: &Response) {
    let len = match &r.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, len) => *len,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: close\r\n",
        r.code,
        reason(r.code),
        r.kind,
    );
    if r.code == 401 {
        // Basic first: a browser prompts for it (and skips the scheme it does not know).
        head.push_str("WWW-Authenticate: Basic realm=\"jemsafe\", charset=\"UTF-8\"\r\n");
        head.push_str("WWW-Authenticate: Bearer realm=\"jemsafe\"\r\n");
    }
    if r.kind.starts_with("text/html") {
        head.push_str(&live_page::html_headers());
    }
    if let Some(s) = r.retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = stream;
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let _ = match &r.body {
        Body::Bytes(b) => out.write_all(b),
        // The length announced is what is sent: a file that changed is cut, not overrun.
        Body::File(f, len) => std::io::copy(&mut f.take(*len), &mut out).map(|_| ()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_dump_is_sent_only_if_it_is_the_file_mysqld_wrote() {
        let dir = std::env::temp_dir().join(format!("jemsafe-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dump = dir.join("a.heap");
        std::fs::write(&dump, "heap_v2/524288\n").unwrap();
        assert_eq!(raw_dump(&dump).code, 200);
        // A second link (to a file root can read, say): not sent.
        std::fs::hard_link(&dump, dir.join("other")).unwrap();
        let r = raw_dump(&dump);
        assert_eq!(r.code, 500);
        std::fs::remove_file(dir.join("other")).unwrap();
        // A symlink under the dump's name: not followed.
        let link = dir.join("b.heap");
        std::os::unix::fs::symlink(&dump, &link).unwrap();
        assert_eq!(raw_dump(&link).code, 500);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn heads_parse_with_query_and_authorization() {
        use super::access::Credential;
        let h = parse_head(b"GET /debug/pprof/heap?gc=1&raw=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.path, "/debug/pprof/heap");
        assert_eq!(h.query, "gc=1&raw=1");
        let t = Some("s3cret");
        assert_eq!(
            credential(t, h.authorization.as_deref()),
            Credential::Bearer { valid: true }
        );
        assert_eq!(
            credential(t, Some("Bearer s3cre")),
            Credential::Bearer { valid: false }
        );
        // "dba:s3cret", "dba:wrong"
        assert_eq!(
            credential(t, Some("Basic ZGJhOnMzY3JldA==")),
            Credential::Basic { valid: true }
        );
        assert_eq!(
            credential(t, Some("Basic ZGJhOndyb25n")),
            Credential::Basic { valid: false }
        );
        assert_eq!(
            credential(None, Some("Bearer s3cret")),
            Credential::Bearer { valid: false }
        );
        assert_eq!(credential(t, None), Credential::None);
        // Two Host headers: which one counts is ambiguous, so neither does.
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nHost: evil:1\r\n\r\n"),
            Err(400)
        );
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost"), Ok(None));
        assert_eq!(parse_head(b"\x01\x02 nonsense\r\n\r\n"), Err(400));
    }

    #[test]
    fn trickling_heads_get_a_few_slots_per_peer_and_never_the_reserved_one() {
        // A peer's incomplete heads: up to MAX_PER_PEER.
        assert_eq!(admit(0, 0, false), Ok(()));
        assert_eq!(admit(2, MAX_PER_PEER - 1, false), Ok(()));
        assert_eq!(admit(3, MAX_PER_PEER, false), Err(Refusal::Peer));
        // Other peers fill the shared slots, never the reserved one.
        assert_eq!(admit(MAX_CONNECTIONS - RESERVED - 1, 0, false), Ok(()));
        assert_eq!(
            admit(MAX_CONNECTIONS - RESERVED, 0, false),
            Err(Refusal::Reserved)
        );
        // A complete head takes the reserved slot, whatever its peer holds.
        assert_eq!(
            admit(MAX_CONNECTIONS - RESERVED, MAX_PER_PEER, true),
            Ok(())
        );
        assert_eq!(admit(MAX_CONNECTIONS, 0, true), Err(Refusal::Full));
    }

    #[test]
    fn health_is_503_with_the_reason_whenever_status_flags_mysqld() {
        let verified = Some(crate::control::Verification {
            ok: true,
            message: "verified".into(),
        });
        let ok = Status {
            mysqld_pid: Some(7),
            verification: verified.clone(),
            ..Default::default()
        };
        assert_eq!(health(&ok).0, 200);
        let stopped = Status {
            mysqld_not_answering: Some(
                "mysqld pid 7 is not answering (it is stopped: SIGSTOP or SIGTSTP; `kill -CONT` resumes it)"
                    .into(),
            ),
            ..ok.clone()
        };
        let (code, text) = health(&stopped);
        assert_eq!(code, 503);
        assert!(text.contains("it is stopped"), "{text}");
        let down = Status {
            mysqld_pid: None,
            last_exit: Some("pid 7 killed by SIGKILL".into()),
            ..ok.clone()
        };
        let (code, text) = health(&down);
        assert_eq!(code, 503);
        assert!(
            text.contains("not running") && text.contains("SIGKILL"),
            "{text}"
        );
        let unverified = Status {
            verification: None,
            ..ok
        };
        assert_eq!(health(&unverified).0, 503);
    }

    #[test]
    fn one_heap_profile_at_a_time() {
        let flag = AtomicBool::new(false);
        let first = Turn::take(&flag).unwrap();
        assert!(Turn::take(&flag).is_none());
        drop(first);
        assert!(Turn::take(&flag).is_some());
    }
}
