//! The live page: `GET /` (the `jemsafe page` of the running mysqld, rendered in a
//! short-lived child like /debug/pprof/heap) and `POST /dump` (the page's "take a dump
//! now" button). Both need the token, as pprof does (the page shows call stacks and the
//! mapping layout); a browser sends it as HTTP Basic's password. Because a browser then
//! attaches it to any request on its own, `/dump` must also prove it comes from the page:
//! the page's CSRF token and an `Origin` naming this server. The page's `Host` must name
//! the listen address or a name of `[http] hosts`, so that a name rebound to 127.0.0.1
//! reaches nothing (the access rules of every route are in the parent module's doc).

use super::{child, control, DumpVia, Request, Response, Shared, Turn, RETRY_PROFILE_S};
use std::collections::VecDeque;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The hidden subcommand that renders the page.
pub const SUBCOMMAND: &str = "__page";
/// The environment variable that hands the child the page's CSRF token (not the
/// command line, which other users can read in /proc).
pub const CSRF_ENV: &str = "JEMSAFE_PAGE_CSRF";
/// A page of 50 dumps of MariaDB renders in about a second; this bounds a stuck one.
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest page returned.
const MAX_PAGE: usize = 64 << 20;
/// Tokens of the pages served that are still honoured: the newest this many, for this long.
const MAX_TOKENS: usize = 32;
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// The body of `POST /dump` (`csrf=<32 hex digits>`).
const MAX_BODY: usize = 1024;
const BODY_DEADLINE: Duration = Duration::from_secs(2);

/// The password of an HTTP Basic credential (`base64(user:password)`).
pub fn basic_password(b64: &str) -> Option<String> {
    let bytes = base64_decode(b64.trim())?;
    let text = String::from_utf8(bytes).ok()?;
    text.split_once(':').map(|(_, p)| p.to_owned())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() > 4096 || s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Whether `Host` names the address the server listens on (`127.0.0.1:19104`; on
/// loopback also `localhost:19104`) or one of `extra` names (`[http] hosts`) with its port.
/// Listening on every address (`0.0.0.0`), any name with the right port: the token is
/// then needed for every path anyway. Compared as written: a trailing dot, userinfo or
/// another port is another name.
pub fn host_ok(host: Option<&str>, bound: SocketAddr, extra: &[String]) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    let port = bound.port();
    if bound.ip().is_unspecified() {
        return host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p == port.to_string());
    }
    let named = |name: &str| host.eq_ignore_ascii_case(&format!("{name}:{port}"));
    host.eq_ignore_ascii_case(&bound.to_string())
        || (bound.ip().is_loopback() && named("localhost"))
        || extra.iter().any(|name| named(name))
}

/// Whether `Origin` is the page's own: `http://` and the (checked) Host.
pub fn origin_ok(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (Some(o), Some(h)) => o
            .trim()
            .eq_ignore_ascii_case(&format!("http://{}", h.trim())),
        _ => false,
    }
}

/// The CSRF tokens handed out with pages.
#[derive(Default)]
pub struct Tokens(VecDeque<(String, Instant)>);

impl Tokens {
    pub fn issue(&mut self, token: String, now: Instant) {
        self.0.retain(|(_, t)| now.duration_since(*t) < TOKEN_TTL);
        if self.0.len() >= MAX_TOKENS {
            self.0.pop_front();
        }
        self.0.push_back((token, now));
    }

    /// Whether `given` is a token still honoured (compared in constant time).
    pub fn valid(&self, given: &str, now: Instant) -> bool {
        self.0.iter().fold(false, |ok, (t, at)| {
            ok | (same_secret(t, given) && now.duration_since(*at) < TOKEN_TTL)
        })
    }
}

/// 128 random bits as hex.
fn random_token() -> Option<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Headers of an HTML response: the page's policy again (the meta tag's twin), no
/// framing, no caching of call stacks, no referrer.
pub fn html_headers() -> String {
    format!(
        "Content-Security-Policy: {}; frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\n",
        jemsafe_report::page::html::csp(true)
    )
}

/// `GET /`: the page of the running mysqld's newest dumps, rendered by a child.
pub fn page(shared: &Shared) -> Response {
    let Some(source) = &shared.page else {
        return Response::text(404, "404: no page in this jemsafe\n");
    };
    let Some(_turn) = Turn::take(&shared.profiling) else {
        shared.metrics.http_refused("profile_busy");
        return Response::text(
            503,
            "503: a heap profile or page is being made; retry in a few seconds\n",
        )
        .retry_after(RETRY_PROFILE_S);
    };
    let Some(token) = random_token() else {
        return Response::text(500, "500: cannot read /dev/urandom\n");
    };
    if let Ok(mut t) = shared.csrf.lock() {
        t.issue(token.clone(), Instant::now());
    }
    let mut cmd = child::child_command(SUBCOMMAND);
    cmd.arg("--prefix")
        .arg(&source.prefix)
        .arg("--timeline-max-mb")
        .arg(source.timeline_max_mb.to_string())
        .arg("--")
        .arg(&source.dumps_dir)
        .env(CSRF_ENV, &token);
    let budget = super::budget::Budget::new(shared.render_memory_mb, PAGE_TIMEOUT);
    match child::run_framed(cmd, &budget, MAX_PAGE) {
        Ok(html) => Response::bytes(200, "text/html; charset=utf-8", html),
        Err(why) => {
            crate::warn!("/: {why}");
            Response::text(500, &format!("500: {why}\n"))
        }
    }
}

/// The `csrf` field of a form body.
fn form_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
}

/// `POST /dump`: a dump through the supervisor's normal path (its rate limit), when the
/// request proves it comes from a page this server served.
pub fn dump_now(shared: &Shared, head: &super::Head, stream: &TcpStream) -> Response {
    if !origin_ok(head.origin.as_deref(), head.host.as_deref()) {
        shared.metrics.http_refused("origin");
        return Response::text(
            403,
            "403: Origin must be this server (http://<listen address>): only the page itself \
             may ask for a dump\n",
        );
    }
    let Some(len) = head.content_length else {
        return Response::text(411, "411: Content-Length required\n");
    };
    if len > MAX_BODY {
        return Response::text(413, "413: the body is larger than a CSRF token\n");
    }
    let mut body = head.body.clone();
    let deadline = Instant::now() + BODY_DEADLINE;
    let mut chunk = [0u8; 512];
    while body.len() < len {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Response::text(408, "408: the body did not arrive\n");
        }
        let _ = stream.set_read_timeout(Some(left));
        match (&*stream).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Response::text(408, "408: the body did not arrive\n"),
        }
    }
    body.truncate(len);
    let body = String::from_utf8_lossy(&body);
    let valid = form_field(&body, "csrf").is_some_and(|t| {
        shared
            .csrf
            .lock()
            .map(|tokens| tokens.valid(t, Instant::now()))
            .unwrap_or(false)
    });
    if !valid {
        shared.metrics.http_refused("csrf");
        return Response::text(
            403,
            "403: no valid CSRF token: ask for a dump from the page (reload it if it is old)\n",
        );
    }
    match control::call(
        &shared.runtime_dir,
        &Request::Dump { via: DumpVia::Http },
        super::DUMP_TIMEOUT,
    ) {
        Ok(reply) => Response::text(
            200,
            &format!(
                "{}\n",
                jemsafe_report::safe::escape(
                    reply.get("path").and_then(|p| p.as_str()).unwrap_or("")
                )
            ),
        ),
        Err(e) => Response::text(503, &format!("503: {e}\n")).retry_after(RETRY_PROFILE_S),
    }
}

/// Whether two secrets are equal, compared in constant time (no early exit on the first
/// differing byte: the time taken tells nothing of how much of a guess was right).
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_give_the_password() {
        // "jemsafe:s3cret:x" (a password may hold colons)
        assert_eq!(
            basic_password("amVtc2FmZTpzM2NyZXQ6eA==").as_deref(),
            Some("s3cret:x")
        );
        assert_eq!(basic_password("OnRvaw==").as_deref(), Some("tok"));
        assert_eq!(basic_password("not base64!"), None);
        assert_eq!(basic_password("dXNlcg=="), None); // "user": no colon
    }

    #[test]
    fn host_must_name_the_listen_address_or_a_configured_name() {
        let lo: SocketAddr = "127.0.0.1:19104".parse().unwrap();
        let none: &[String] = &[];
        assert!(host_ok(Some("127.0.0.1:19104"), lo, none));
        assert!(host_ok(Some("localhost:19104"), lo, none));
        assert!(host_ok(Some("LocalHost:19104"), lo, none));
        assert!(!host_ok(Some("evil.example:19104"), lo, none));
        assert!(!host_ok(Some("127.0.0.1:80"), lo, none));
        assert!(!host_ok(None, lo, none));
        // The tricks: a trailing dot, userinfo, no port, another port.
        for trick in [
            "127.0.0.1.:19104",
            "localhost.:19104",
            "user@127.0.0.1:19104",
            "127.0.0.1:19104@evil.example",
            "127.0.0.1",
            "127.0.0.1:191040",
            "",
        ] {
            assert!(!host_ok(Some(trick), lo, none), "{trick}");
        }
        // [http] hosts: those names with the listen port, nothing else.
        let hosts = vec!["db1.example.com".to_owned()];
        assert!(host_ok(Some("db1.example.com:19104"), lo, &hosts));
        assert!(host_ok(Some("DB1.example.com:19104"), lo, &hosts));
        assert!(!host_ok(Some("db1.example.com.:19104"), lo, &hosts));
        assert!(!host_ok(Some("db1.example.com:80"), lo, &hosts));
        assert!(!host_ok(Some("db2.example.com:19104"), lo, &hosts));
        let any: SocketAddr = "0.0.0.0:19104".parse().unwrap();
        assert!(host_ok(Some("db1.example:19104"), any, none));
        assert!(!host_ok(Some("db1.example:80"), any, none));
    }

    #[test]
    fn origin_must_be_the_page_itself() {
        assert!(origin_ok(Some("http://127.0.0.1:1"), Some("127.0.0.1:1")));
        assert!(!origin_ok(Some("http://evil.example"), Some("127.0.0.1:1")));
        assert!(!origin_ok(None, Some("127.0.0.1:1")));
        assert!(!origin_ok(Some("null"), Some("127.0.0.1:1")));
    }

    #[test]
    fn tokens_expire_and_only_the_newest_are_kept() {
        let now = Instant::now();
        let mut t = Tokens::default();
        t.issue("a".into(), now);
        assert!(t.valid("a", now));
        assert!(!t.valid("b", now));
        assert!(!t.valid("", now));
        assert!(!t.valid("a", now + TOKEN_TTL));
        for i in 0..MAX_TOKENS {
            t.issue(format!("t{i}"), now);
        }
        assert!(!t.valid("a", now));
        assert!(t.valid("t0", now));
    }
}
