//! A debuginfod client: debug files (and executables) by build-id over HTTP(S), as
//! elfutils' client and gdb fetch them, sharing their cache.
//!
//! - Servers: `DEBUGINFOD_URLS` (space-separated), or what the caller passes.
//! - `GET <url>/buildid/<hex>/debuginfo` (or `/executable`).
//! - Cache: `$DEBUGINFOD_CACHE_PATH`, else `$XDG_CACHE_HOME/debuginfod_client`, else
//!   `~/.cache/debuginfod_client`; files at `<buildid>/debuginfo`, `<buildid>/executable`.
//! - `DEBUGINFOD_TIMEOUT` (seconds, default 90), as elfutils documents it: for connecting,
//!   for any pause, and a server that has sent less than [`LOW_SPEED_BYTES`] (100 KiB)
//!   within that many seconds is given up (one warning). A server dribbling a byte at a
//!   time is given up after at most twice the timeout (a read waits up to the timeout).
//!   `DEBUGINFOD_MAXSIZE` (bytes, default [`DEFAULT_MAX_SIZE`]): larger files are refused.
//! - Redirects are followed (at most [`MAX_REDIRECTS`]) only to the server's own scheme,
//!   host and port, unless `JEMSAFE_DEBUGINFOD_REDIRECTS` says otherwise: `any`, or the
//!   URLs of the other servers that may be redirected to (space-separated).
//!
//! Security: jemsafe runs as root and the files come from the network. A download goes to
//! an unnamed file (`O_TMPFILE`) in the build-id's cache directory, opened relative to the
//! directory's descriptor (never through a symlink), so that nothing is left in the cache
//! whatever happens to the process; where the filesystem has no `O_TMPFILE`, to a new
//! file (`O_CREAT | O_EXCL | O_NOFOLLOW`) removed on every way out. It is bounded in size
//! and time, and gets its final name only when it is an ELF file carrying the build-id
//! asked for; anything else is dropped and the server named in a warning.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest file fetched unless `DEBUGINFOD_MAXSIZE` says otherwise (MariaDB's debug
/// file is some hundreds of MB).
pub const DEFAULT_MAX_SIZE: u64 = 4 << 30;
/// `DEBUGINFOD_TIMEOUT`'s default, as elfutils'.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// What a server must send within each `DEBUGINFOD_TIMEOUT` (elfutils' figure).
pub const LOW_SPEED_BYTES: u64 = 100 * 1024;
/// Redirects followed for one file at most (ureq's default).
pub const MAX_REDIRECTS: usize = 5;

/// What to fetch for a build-id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Debuginfo,
    Executable,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Debuginfo => "debuginfo",
            Kind::Executable => "executable",
        }
    }
}

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server base URLs (no trailing slash needed).
    pub urls: Vec<String>,
    pub cache: PathBuf,
    pub timeout: Duration,
    pub max_size: u64,
    /// Use the cache only.
    pub offline: bool,
    /// Progress lines on stderr for downloads that take over a second.
    pub progress: bool,
    /// Where a server may redirect to.
    pub redirects: Redirects,
    /// What was wrong with the settings (given as warnings with the results).
    pub problems: Vec<String>,
}

impl Config {
    /// Servers from `DEBUGINFOD_URLS`, cache, timeout and size from the environment.
    pub fn from_env() -> Config {
        let urls = std::env::var("DEBUGINFOD_URLS")
            .map(|v| split_urls(&v))
            .unwrap_or_default();
        let timeout = std::env::var("DEBUGINFOD_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let max_size = std::env::var("DEBUGINFOD_MAXSIZE")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .unwrap_or(DEFAULT_MAX_SIZE);
        let mut problems = Vec::new();
        let redirects = match std::env::var("JEMSAFE_DEBUGINFOD_REDIRECTS") {
            Ok(v) => Redirects::parse(&v).unwrap_or_else(|why| {
                problems.push(format!(
                    "JEMSAFE_DEBUGINFOD_REDIRECTS: {why}; redirects are followed only to \
                     the same server"
                ));
                Redirects::SameServer
            }),
            Err(_) => Redirects::SameServer,
        };
        Config {
            urls,
            cache: default_cache(),
            timeout,
            max_size,
            offline: false,
            progress: true,
            redirects,
            problems,
        }
    }
}

/// A server's scheme, host and port (the port the scheme implies when none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &url::Url) -> Origin {
        Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or("").to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }
}

/// Where a server may redirect a request to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Redirects {
    /// Its own scheme, host and port only.
    #[default]
    SameServer,
    /// Those, or these servers.
    Also(Vec<Origin>),
    /// Any http or https URL.
    Any,
}

impl Redirects {
    /// `JEMSAFE_DEBUGINFOD_REDIRECTS`: empty (same server), `any`, or server URLs
    /// separated by spaces.
    pub fn parse(v: &str) -> Result<Redirects, String> {
        if v.trim().is_empty() {
            return Ok(Redirects::SameServer);
        }
        if v.trim().eq_ignore_ascii_case("any") {
            return Ok(Redirects::Any);
        }
        v.split_whitespace()
            .map(|u| match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Ok(Origin::of(&url))
                }
                _ => Err(format!(
                    "{:?} is not a server URL: give `any`, or http:// or https:// URLs \
                     separated by spaces",
                    crate::safe::escape(u)
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Redirects::Also)
    }

    /// Whether a request to `server` may be redirected to `to`; else why not.
    pub fn allows(&self, server: &url::Url, to: &url::Url) -> Result<(), String> {
        if !matches!(to.scheme(), "http" | "https") {
            return Err(format!("{} is not http or https", to.scheme()));
        }
        let target = Origin::of(to);
        let allowed = target == Origin::of(server)
            || match self {
                Redirects::SameServer => false,
                Redirects::Also(origins) => origins.contains(&target),
                Redirects::Any => true,
            };
        if allowed {
            Ok(())
        } else {
            Err("another server (scheme, host or port): not followed; \
                 JEMSAFE_DEBUGINFOD_REDIRECTS=any, or that server's URL in it, allows it"
                .to_owned())
        }
    }
}

/// elfutils' rule for a slow server: at least [`LOW_SPEED_BYTES`] in every `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct LowSpeed {
    timeout: Duration,
    window_started: Instant,
    window_bytes: u64,
}

impl LowSpeed {
    pub fn new(timeout: Duration, now: Instant) -> LowSpeed {
        LowSpeed {
            timeout,
            window_started: now,
            window_bytes: 0,
        }
    }

    /// `n` more bytes arrived at `now` (0: none yet). Err(bytes in the window) when the
    /// server has sent too little within a whole timeout: give it up.
    pub fn add(&mut self, n: u64, now: Instant) -> Result<(), u64> {
        self.window_bytes += n;
        if self.window_bytes >= LOW_SPEED_BYTES {
            // Enough for this window: the next one starts now.
            self.window_started = now;
            self.window_bytes = 0;
            return Ok(());
        }
        if now.duration_since(self.window_started) >= self.timeout {
            return Err(self.window_bytes);
        }
        Ok(())
    }
}

/// `DEBUGINFOD_URLS`' syntax: URLs separated by spaces.
pub fn split_urls(v: &str) -> Vec<String> {
    v.split_whitespace()
        .map(|u| u.trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

/// The client cache elfutils and gdb use.
pub fn default_cache() -> PathBuf {
    if let Some(p) = std::env::var_os("DEBUGINFOD_CACHE_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("debuginfod_client");
    }
    let home = std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("debuginfod_client")
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cached file for `id`, if present (not checked here: the reader checks build-ids).
pub fn cached(cache: &Path, id: &[u8], kind: Kind) -> PathBuf {
    cache.join(hex(id)).join(kind.as_str())
}

/// One wanted file.
#[derive(Debug, Clone)]
pub struct Want {
    pub id: Vec<u8>,
    pub kind: Kind,
    /// For messages: the object's file name.
    pub label: String,
}

/// What a round of fetching did: warnings (one per server at most) and what was fetched.
#[derive(Debug, Default)]
pub struct Fetched {
    pub notes: Vec<String>,
    /// (label, build-id hex, kind, server, bytes, seconds)
    pub downloads: Vec<(String, String, Kind, String, u64, f64)>,
}

/// Why a server gave nothing.
enum Failure {
    /// It does not have the file (404): normal, no warning.
    Missing,
    /// Down, slow, refused, wrong: a warning naming the server.
    Server(String),
}

/// Fetches every wanted file not in the cache yet, several at once (at most 4
/// transfers), each from the first server that has it.
pub fn fetch_all(cfg: &Config, wants: &[Want]) -> Fetched {
    let mut out = Fetched::default();
    let todo: Vec<&Want> = wants
        .iter()
        .filter(|w| !cached(&cfg.cache, &w.id, w.kind).exists())
        .collect();
    if todo.is_empty() || cfg.urls.is_empty() || cfg.offline {
        return out;
    }
    out.notes.extend(cfg.problems.iter().cloned());
    // Redirects are followed here, not by ureq, to keep them to the allowed servers.
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(cfg.timeout)
        .timeout_read(cfg.timeout)
        .redirects(0)
        .user_agent(concat!("jemsafe/", env!("CARGO_PKG_VERSION")))
        .build();
    // One warning per server: the first failure, and servers that failed are not asked again.
    let failed: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let results: Arc<Mutex<Fetched>> = Arc::default();
    let queue: Arc<Mutex<Vec<Want>>> = Arc::new(Mutex::new(todo.into_iter().cloned().collect()));
    let workers = queue.lock().map_or(1, |q| q.len()).clamp(1, 4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (agent, failed, results, queue) = (
                agent.clone(),
                failed.clone(),
                results.clone(),
                queue.clone(),
            );
            scope.spawn(move || {
                while let Some(want) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    for url in &cfg.urls {
                        if failed.lock().is_ok_and(|f| f.contains_key(url)) {
                            continue;
                        }
                        let started = Instant::now();
                        match fetch_one(&agent, cfg, url, &want) {
                            Ok(bytes) => {
                                if let Ok(mut r) = results.lock() {
                                    r.downloads.push((
                                        want.label.clone(),
                                        hex(&want.id),
                                        want.kind,
                                        url.clone(),
                                        bytes,
                                        started.elapsed().as_secs_f64(),
                                    ));
                                }
                                break;
                            }
                            Err(Failure::Missing) => continue,
                            Err(Failure::Server(why)) => {
                                if let Ok(mut f) = failed.lock() {
                                    f.entry(url.clone()).or_insert(why);
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    if let Ok(mut r) = results.lock() {
        out.downloads = std::mem::take(&mut r.downloads);
    }
    if let Ok(f) = failed.lock() {
        let mut servers: Vec<(&String, &String)> = f.iter().collect();
        servers.sort();
        for (url, why) in servers {
            out.notes.push(format!(
                "debuginfod server {url}: {why}; not asked again in this run (addresses it \
                 would have named are shown as object+0xADDRESS)"
            ));
        }
    }
    out
}

/// `GET full`, following the redirects `cfg` allows; the response (2xx) or why not.
fn get(agent: &ureq::Agent, cfg: &Config, full: &str) -> Result<ureq::Response, Failure> {
    let server =
        url::Url::parse(full).map_err(|e| Failure::Server(format!("{full} is not a URL ({e})")))?;
    let mut current = server.clone();
    for _ in 0..=MAX_REDIRECTS {
        let response = match agent.get(current.as_str()).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(404, _)) => return Err(Failure::Missing),
            Err(ureq::Error::Status(code, r)) => {
                return Err(Failure::Server(format!(
                    "answered {code} {} for {current}",
                    crate::safe::escape(r.status_text())
                )))
            }
            Err(e) => return Err(Failure::Server(format!("cannot be reached ({e})"))),
        };
        let code = response.status();
        if !(300..400).contains(&code) {
            return Ok(response);
        }
        let location = response.header("Location").unwrap_or("");
        let next = match current.join(location) {
            Ok(next) if !location.is_empty() => next,
            _ => {
                return Err(Failure::Server(format!(
                    "answered {code} for {current} with no usable Location ({:?})",
                    crate::safe::escape(location)
                )))
            }
        };
        if let Err(why) = cfg.redirects.allows(&server, &next) {
            return Err(Failure::Server(format!(
                "redirected {full} to {}, {why}",
                crate::safe::escape(next.as_str())
            )));
        }
        current = next;
    }
    Err(Failure::Server(format!(
        "redirected {full} more than {MAX_REDIRECTS} times"
    )))
}

/// Downloads one file into the cache; its size.
fn fetch_one(agent: &ureq::Agent, cfg: &Config, url: &str, want: &Want) -> Result<u64, Failure> {
    let id = hex(&want.id);
    let full = format!("{url}/buildid/{id}/{}", want.kind.as_str());
    let started = Instant::now();
    // The window starts with the request: a server slow to answer counts as slow.
    let mut speed = LowSpeed::new(cfg.timeout, started);
    let response = get(agent, cfg, &full)?;
    let declared: Option<u64> = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    if let Some(n) = declared {
        if n > cfg.max_size {
            return Err(Failure::Server(format!(
                "offers {n} bytes for {full}, more than DEBUGINFOD_MAXSIZE ({})",
                cfg.max_size
            )));
        }
    }
    let cache_error = |e: std::io::Error| Failure::Server(format!("cannot cache {full}: {e}"));
    let dir = open_cache_dir(&cfg.cache, &id).map_err(cache_error)?;
    let mut download = Download::create(&dir).map_err(cache_error)?;
    let mut reader = response.into_reader().take(cfg.max_size + 1);
    let mut last_report = started;
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Failure::Server(format!("transfer of {full} failed ({e})"))),
        };
        total += n as u64;
        if total > cfg.max_size {
            return Err(Failure::Server(format!(
                "sent more than DEBUGINFOD_MAXSIZE ({} bytes) for {full}",
                cfg.max_size
            )));
        }
        download.file.write_all(&buf[..n]).map_err(cache_error)?;
        if let Err(sent) = speed.add(n as u64, Instant::now()) {
            return Err(Failure::Server(format!(
                "sent {sent} bytes of {full} in {} s, less than {} KiB within \
                 DEBUGINFOD_TIMEOUT ({} s): too slow, given up after {total} bytes",
                cfg.timeout.as_secs(),
                LOW_SPEED_BYTES / 1024,
                cfg.timeout.as_secs()
            )));
        }
        if cfg.progress && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let of = declared
                .map(|d| format!(" of {}", crate::human_bytes(d as f64)))
                .unwrap_or_default();
            eprintln!(
                "jemsafe: fetching {} of {} (build-id {id}) from {url}: {}{of}, {:.0} s",
                want.kind.as_str(),
                crate::safe::escape(&want.label),
                crate::human_bytes(total as f64),
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(d) = declared {
        if d != total {
            return Err(Failure::Server(format!(
                "sent {total} of the {d} bytes it announced for {full}"
            )));
        }
    }
    download.file.sync_all().map_err(cache_error)?;
    // The file must be what was asked for.
    // SAFETY: a private read-only map of the file this process just wrote in a directory
    // it created or checked; nothing else is meant to write it.
    let checked = unsafe { memmap2::Mmap::map(&download.file) }
        .ok()
        .and_then(|m| {
            use object::Object;
            let f = object::File::parse(&m[..]).ok()?;
            f.build_id().ok().flatten().map(<[u8]>::to_vec)
        });
    if checked.as_deref() != Some(&want.id[..]) {
        return Err(Failure::Server(format!(
            "answered {full} with a file that is not build {id} (build-id {}): refused",
            checked.map_or_else(|| "none, or not ELF".into(), |c| hex(&c))
        )));
    }
    download.publish(want.kind.as_str()).map_err(cache_error)?;
    Ok(total)
}

/// A file being downloaded into a cache directory, not yet under its final name. Unnamed
/// (`O_TMPFILE`) where the filesystem allows: nothing is left behind even if the process
/// is killed. Else a new named file, removed when this is dropped unpublished (every
/// error, early return or panic).
struct Download<'a> {
    dir: &'a OwnedFd,
    file: std::fs::File,
    /// The name it has in `dir` while unpublished, if any.
    name: Option<String>,
}

impl<'a> Download<'a> {
    fn create(dir: &'a OwnedFd) -> std::io::Result<Download<'a>> {
        match nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            ".",
            nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => Ok(Download {
                dir,
                // SAFETY: openat just returned this descriptor; nothing else owns it.
                file: unsafe { std::fs::File::from_raw_fd(fd) },
                name: None,
            }),
            // The filesystem (or kernel) has no O_TMPFILE: a named file.
            Err(
                nix::errno::Errno::EOPNOTSUPP
                | nix::errno::Errno::EISDIR
                | nix::errno::Errno::EINVAL
                | nix::errno::Errno::ENOENT,
            ) => {
                let name = temp_name();
                let file = create_new(dir, &name)?;
                Ok(Download {
                    dir,
                    file,
                    name: Some(name),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the file its final name `to` in the directory (replacing what was there).
    fn publish(mut self, to: &str) -> std::io::Result<()> {
        let dir = Some(self.dir.as_raw_fd());
        if self.name.is_none() {
            // An unnamed file gets a temporary name first: linkat(2) cannot replace.
            let name = temp_name();
            let _ =
                nix::unistd::unlinkat(dir, name.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
            let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            nix::unistd::linkat(
                None,
                proc_path.as_str(),
                dir,
                name.as_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
            )?;
            self.name = Some(name);
        }
        if let Some(name) = &self.name {
            nix::fcntl::renameat(dir, name.as_str(), dir, to)?;
        }
        self.name = None;
        Ok(())
    }
}

impl Drop for Download<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = nix::unistd::unlinkat(
                Some(self.dir.as_raw_fd()),
                name.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// A temporary name no other download uses: unguessable, so a stale one is never met.
fn temp_name() -> String {
    crate::create::temp_name("download", crate::create::random())
}

/// `<cache>/<id>`, created if missing (mode 0700 for the cache, 0755 below as elfutils
/// does), opened without following a symlink.
fn open_cache_dir(cache: &Path, id: &str) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::DirBuilderExt;
    if !cache.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(cache)?;
    }
    let root = crate::safe::open_dir(None, cache, true)?;
    match nix::sys::stat::mkdirat(
        Some(root.as_raw_fd()),
        id,
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    crate::safe::open_dir(Some(&root), Path::new(id), false)
}

/// A new file `name` in `dir`: never an existing name, never through a symlink.
fn create_new(dir: &OwnedFd, name: &str) -> std::io::Result<std::fs::File> {
    crate::create::create_new(dir, name, crate::create::Access::ReadWrite, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_space_separated_like_elfutils() {
        assert_eq!(
            split_urls(" https://a.example/  http://b:8002/\thttp://c "),
            vec!["https://a.example", "http://b:8002", "http://c"]
        );
        assert!(split_urls("  ").is_empty());
    }

    #[test]
    fn cache_files_are_where_gdb_keeps_them() {
        let p = cached(Path::new("/c"), &[0xab, 0xcd], Kind::Debuginfo);
        assert_eq!(p, Path::new("/c/abcd/debuginfo"));
    }

    #[test]
    fn a_symlink_in_the_cache_is_never_written_through() {
        let dir = std::env::temp_dir().join(format!("jemsafe-dbgcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let outside = dir.join("outside");
        std::fs::create_dir(&outside).unwrap();
        // The build-id's directory is a symlink to elsewhere: refused.
        std::os::unix::fs::symlink(&outside, dir.join("abcd")).unwrap();
        assert!(open_cache_dir(&dir, "abcd").is_err());
        // A planted symlink at a temporary name is never followed (and the names used are
        // unguessable).
        let fd = open_cache_dir(&dir, "ef01").unwrap();
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("ef01/.t")).unwrap();
        assert!(create_new(&fd, ".t").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_ne!(temp_name(), temp_name());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_server_sending_less_than_100_kib_within_the_timeout_is_given_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // One byte every 2 s: the pause is short, the window is not.
        let mut slow = LowSpeed::new(s(10), t0);
        for i in 1..5 {
            assert!(slow.add(1, t0 + s(2 * i)).is_ok());
        }
        assert_eq!(slow.add(1, t0 + s(10)), Err(5));
        // Nothing at all for the whole timeout.
        assert_eq!(LowSpeed::new(s(10), t0).add(0, t0 + s(10)), Err(0));
        // 100 KiB in each window, however late in it, goes on for ever.
        let mut steady = LowSpeed::new(s(10), t0);
        for i in 1..100 {
            assert!(steady.add(LOW_SPEED_BYTES, t0 + s(9 * i)).is_ok());
        }
        // A small file that finishes within the timeout is never judged.
        assert!(LowSpeed::new(s(10), t0).add(4096, t0 + s(9)).is_ok());
    }

    #[test]
    fn redirects_stay_on_the_server_unless_configured() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let server = u("http://debuginfod.example:8002/buildid/ab/debuginfo");
        let same = Redirects::SameServer;
        assert!(same
            .allows(&server, &u("http://DEBUGINFOD.example:8002/other/ab"))
            .is_ok());
        for elsewhere in [
            "http://debuginfod.example:8003/x",
            "https://debuginfod.example:8002/x",
            "http://127.0.0.1:8002/x",
            "file:///etc/shadow",
        ] {
            assert!(same.allows(&server, &u(elsewhere)).is_err(), "{elsewhere}");
        }
        // The default port is the scheme's.
        let https = u("https://d.example/buildid/ab/debuginfo");
        assert!(same.allows(&https, &u("https://d.example:443/x")).is_ok());

        let cdn = Redirects::parse(" https://cdn.example  http://mirror.example:81 ").unwrap();
        assert!(cdn.allows(&https, &u("https://cdn.example/f")).is_ok());
        assert!(cdn.allows(&https, &u("http://mirror.example:81/f")).is_ok());
        assert!(cdn.allows(&https, &u("http://cdn.example/f")).is_err());
        let any = Redirects::parse("any").unwrap();
        assert!(any
            .allows(&https, &u("http://anywhere.example:1/f"))
            .is_ok());
        assert!(any.allows(&https, &u("ftp://anywhere.example/f")).is_err());
        assert_eq!(Redirects::parse("").unwrap(), Redirects::SameServer);
        let bad = Redirects::parse("cdn.example").unwrap_err();
        assert!(bad.contains("\"cdn.example\" is not a server URL"), "{bad}");
    }

    /// Names in `dir` (the cache's build-id directory).
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_download_has_no_name_until_it_is_published_and_none_if_dropped() {
        let dir = std::env::temp_dir().join(format!("jemsafe-dbgtmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fd = open_cache_dir(&dir, "ab").unwrap();
        let sub = dir.join("ab");
        {
            let mut d = Download::create(&fd).unwrap();
            d.file.write_all(b"partial").unwrap();
            // /tmp is tmpfs or ext4 here: O_TMPFILE, nothing to see while it downloads.
            assert!(d.name.is_none());
            assert!(names(&sub).is_empty(), "{:?}", names(&sub));
        }
        assert!(names(&sub).is_empty());
        let mut d = Download::create(&fd).unwrap();
        d.file.write_all(b"whole").unwrap();
        d.publish("debuginfo").unwrap();
        assert_eq!(names(&sub), ["debuginfo"]);
        assert_eq!(std::fs::read(sub.join("debuginfo")).unwrap(), b"whole");
        // The named fallback is removed when dropped unpublished.
        {
            let name = temp_name();
            let d = Download {
                dir: &fd,
                file: create_new(&fd, &name).unwrap(),
                name: Some(name),
            };
            assert_eq!(names(&sub).len(), 2);
            drop(d);
        }
        assert_eq!(names(&sub), ["debuginfo"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
