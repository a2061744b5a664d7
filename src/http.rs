//! `[http]`: Prometheus metrics, a Go-style pprof endpoint and a health check, for the
//! engines fleets already run (Prometheus; Grafana Pyroscope and Parca pull pprof).
//!
//! The server runs on threads of its own and talks to the supervisor only as a client of
//! the control socket, like `jemsafe status` and `jemsafe dump` do: a slow or hostile HTTP
//! client can hold an HTTP thread, never the supervisor's loop (its signals, dumps and
//! restarts). Requests are bounded in size and time; connections are capped.

use crate::control::{self, DumpVia, Request, Status};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The request head (request line and headers) may take this long and this much.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; more get 503 at once.
const MAX_CONNECTIONS: usize = 8;
/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A dump of a very large heap takes seconds; the supervisor answers within a minute.
const DUMP_TIMEOUT: Duration = Duration::from_secs(120);
/// Status answers within a second even when mysqld does not.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    runtime_dir: PathBuf,
    token: Option<String>,
    metrics: Arc<Metrics>,
    busy: AtomicUsize,
}

/// Binds `addr` and serves it on a thread of its own, for as long as jemsafe runs.
pub fn start(
    addr: SocketAddr,
    token_file: Option<&Path>,
    runtime_dir: &Path,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr> {
    let token = token_file.map(read_token).transpose()?;
    let listener = TcpListener::bind(addr).map_err(Error::io(format!(
        "[http] listen = {addr}: cannot listen there (another program on that port? \
         choose another in [http] listen)"
    )))?;
    let bound = listener
        .local_addr()
        .map_err(Error::io("cannot read the HTTP server's address"))?;
    let shared = Arc::new(Shared {
        runtime_dir: runtime_dir.to_owned(),
        token,
        metrics,
        busy: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("jemsafe-http".into())
        .spawn(move || accept_loop(listener, shared))
        .map_err(Error::io("cannot start the HTTP server's thread"))?;
    crate::info!("HTTP server on http://{bound}/ (/metrics, /debug/pprof/heap, /healthz)");
    Ok(bound)
}

/// The bearer token: the file's first line, which must not be empty.
fn read_token(path: &Path) -> Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(Error::io(format!("[http] token_file {}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(Error::Refused(format!(
            "[http] token_file {} is empty: write the bearer token clients will send on its first line",
            path.display()
        )));
    }
    Ok(token)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // EMFILE and the like: do not spin.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if shared.busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            respond(&stream, 503, "text/plain", b"busy: too many connections\n");
            continue;
        }
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("jemsafe-http-conn".into())
            .spawn(move || {
                serve(&stream, &shared);
                shared.busy.fetch_sub(1, Ordering::SeqCst);
            });
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
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(400),
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let authorization = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_owned);
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        authorization,
    }))
}

/// Whether `authorization` carries `token` (compared in constant time).
fn authorized(token: &str, authorization: Option<&str>) -> bool {
    let Some(given) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn serve(stream: &TcpStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = match read_head(stream) {
        Ok(h) => h,
        Err(code) => {
            respond(stream, code, "text/plain", reason(code).as_bytes());
            return;
        }
    };
    if let Some(token) = &shared.token {
        if !authorized(token, head.authorization.as_deref()) {
            respond(
                stream,
                401,
                "text/plain",
                b"401: send Authorization: Bearer <the token in [http] token_file>\n",
            );
            return;
        }
    }
    if head.method != "GET" {
        respond(stream, 405, "text/plain", b"405: only GET\n");
        return;
    }
    let (code, kind, body) = match head.path.as_str() {
        "/metrics" => metrics(shared),
        "/healthz" => healthz(shared),
        "/debug/pprof/heap" => heap(shared, &head.query),
        _ => (
            404,
            "text/plain",
            b"404: /metrics, /debug/pprof/heap, /healthz\n".to_vec(),
        ),
    };
    respond(stream, code, kind, &body);
}

fn status(shared: &Shared) -> std::result::Result<Status, String> {
    control::call(&shared.runtime_dir, &Request::Status, STATUS_TIMEOUT)
        .and_then(Status::from_reply)
        .map_err(|e| e.to_string())
}

fn metrics(shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    match status(shared) {
        Ok(st) => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(&st, std::time::SystemTime::now()),
        ),
        Err(why) => (503, "text/plain", format!("503: {why}\n").into_bytes()),
    }
}

fn healthz(shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    match status(shared) {
        Ok(st) => match (st.mysqld_pid, &st.verification) {
            (Some(pid), Some(v)) if v.ok => (
                200,
                "text/plain",
                format!("ok: mysqld pid {pid}, verified\n").into_bytes(),
            ),
            (Some(pid), v) => (
                503,
                "text/plain",
                format!(
                    "503: mysqld pid {pid} runs, but {}\n",
                    v.as_ref()
                        .map(|v| v.message.clone())
                        .unwrap_or_else(|| "verification is not over".into())
                )
                .into_bytes(),
            ),
            (None, _) => (
                503,
                "text/plain",
                b"503: mysqld is not running (between restarts)\n".to_vec(),
            ),
        },
        Err(why) => (503, "text/plain", format!("503: {why}\n").into_bytes()),
    }
}

/// A dump through the supervisor's normal path (throttle, retention, trigger `http`),
/// returned as gzipped profile.proto, or with `raw=1` as jemalloc wrote it.
fn heap(shared: &Shared, query: &str) -> (u16, &'static str, Vec<u8>) {
    let raw = query
        .split('&')
        .any(|kv| matches!(kv, "raw=1" | "raw=true"));
    let reply = match control::call(
        &shared.runtime_dir,
        &Request::Dump { via: DumpVia::Http },
        DUMP_TIMEOUT,
    ) {
        Ok(r) => r,
        Err(e) => return (503, "text/plain", format!("503: {e}\n").into_bytes()),
    };
    let Some(path) = reply
        .get("path")
        .and_then(|p| p.as_str())
        .map(PathBuf::from)
    else {
        return (
            500,
            "text/plain",
            b"500: no path in jemsafe's answer\n".to_vec(),
        );
    };
    let limits = jemsafe_report::DumpLimits::new(jemsafe_report::DEFAULT_MAX_DUMP_MB, false);
    if raw {
        return match jemsafe_report::safe::open_regular(&path, false) {
            Ok(opened) => {
                let mut data = Vec::new();
                match opened.file.take(limits.max_bytes).read_to_end(&mut data) {
                    Ok(_) => (200, "application/octet-stream", data),
                    Err(e) => (500, "text/plain", format!("500: {e}\n").into_bytes()),
                }
            }
            Err(e) => (500, "text/plain", format!("500: {e}\n").into_bytes()),
        };
    }
    let rendered = jemsafe_report::load(&path, &limits).and_then(|mut dump| {
        let (pid, stamp) = crate::report::select::name_info(&path);
        dump.pid = pid;
        dump.time = stamp.or(dump.time);
        let options = jemsafe_report::render::ReportOptions {
            metric: jemsafe_report::aggregate::Metric::InuseSpace,
            format: jemsafe_report::render::Format::Pprof,
            by: jemsafe_report::render::By::Function,
            top: 0,
            exact: false,
            symbolize: jemsafe_report::symbolize::Options::default(),
        };
        jemsafe_report::render::report(dump, None, &options)
    });
    match rendered {
        Ok(r) => (200, "application/octet-stream", r.data),
        Err(e) => (500, "text/plain", format!("500: {e}\n").into_bytes()),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(stream: &TcpStream, code: u16, kind: &str, body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(code),
        body.len()
    );
    if code == 401 {
        head.push_str("WWW-Authenticate: Bearer realm=\"jemsafe\"\r\n");
    }
    head.push_str("\r\n");
    let _ = (&*stream)
        .write_all(head.as_bytes())
        .and_then(|_| (&*stream).write_all(body));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_query_and_authorization() {
        let h = parse_head(b"GET /debug/pprof/heap?gc=1&raw=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.path, "/debug/pprof/heap");
        assert_eq!(h.query, "gc=1&raw=1");
        assert!(authorized("s3cret", h.authorization.as_deref()));
        assert!(!authorized("s3cret", Some("Bearer s3cre")));
        assert!(!authorized("s3cret", None));
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost"), Ok(None));
        assert_eq!(parse_head(b"\x01\x02 nonsense\r\n\r\n"), Err(400));
    }
}
