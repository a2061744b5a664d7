//! A debuginfod client: debug files (and executables) by build-id over HTTP(S), as
//! elfutils' client and gdb fetch them, sharing their cache.
//!
//! - Servers: `DEBUGINFOD_URLS` (space-separated), or what the caller passes.
//! - `GET <url>/buildid/<hex>/debuginfo` (or `/executable`).
//! - Cache: `$DEBUGINFOD_CACHE_PATH`, else `$XDG_CACHE_HOME/debuginfod_client`, else
//!   `~/.cache/debuginfod_client`; files at `<buildid>/debuginfo`, `<buildid>/executable`.
//! - `DEBUGINFOD_TIMEOUT` (seconds, default 90): for connecting and for any pause in the
//!   transfer. `DEBUGINFOD_MAXSIZE` (bytes, default [`DEFAULT_MAX_SIZE`]): larger files
//!   are refused.
//!
//! Security: jemsafe runs as root and the files come from the network. A download goes to
//! a new file in the build-id's cache directory (created with `O_CREAT | O_EXCL |
//! O_NOFOLLOW` relative to the directory's descriptor, never through a symlink), is
//! bounded in size and time, and is renamed to its final name only when it is an ELF file
//! carrying the build-id asked for; anything else is deleted and the server named in a
//! warning.

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
        Config {
            urls,
            cache: default_cache(),
            timeout,
            max_size,
            offline: false,
            progress: true,
        }
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
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(cfg.timeout)
        .timeout_read(cfg.timeout)
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

/// Downloads one file into the cache; its size.
fn fetch_one(agent: &ureq::Agent, cfg: &Config, url: &str, want: &Want) -> Result<u64, Failure> {
    let id = hex(&want.id);
    let full = format!("{url}/buildid/{id}/{}", want.kind.as_str());
    let response = match agent.get(&full).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(404, _)) => return Err(Failure::Missing),
        Err(ureq::Error::Status(code, r)) => {
            return Err(Failure::Server(format!(
                "answered {code} {} for {full}",
                r.status_text()
            )))
        }
        Err(e) => return Err(Failure::Server(format!("cannot be reached ({e})"))),
    };
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
    let dir = open_cache_dir(&cfg.cache, &id)
        .map_err(|e| Failure::Server(format!("cannot cache {full}: {e}")))?;
    let temp = format!(".{}.{}.tmp", want.kind.as_str(), std::process::id());
    let mut file = create_new(&dir, &temp)
        .map_err(|e| Failure::Server(format!("cannot cache {full}: {e}")))?;
    let remove_temp = || {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            temp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    };
    let mut reader = response.into_reader().take(cfg.max_size + 1);
    let started = Instant::now();
    let mut last_report = started;
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                remove_temp();
                return Err(Failure::Server(format!("transfer of {full} failed ({e})")));
            }
        };
        total += n as u64;
        if total > cfg.max_size {
            remove_temp();
            return Err(Failure::Server(format!(
                "sent more than DEBUGINFOD_MAXSIZE ({} bytes) for {full}",
                cfg.max_size
            )));
        }
        if let Err(e) = file.write_all(&buf[..n]) {
            remove_temp();
            return Err(Failure::Server(format!("cannot cache {full}: {e}")));
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
            remove_temp();
            return Err(Failure::Server(format!(
                "sent {total} of the {d} bytes it announced for {full}"
            )));
        }
    }
    if let Err(e) = file.sync_all() {
        remove_temp();
        return Err(Failure::Server(format!("cannot cache {full}: {e}")));
    }
    // The file must be what was asked for.
    // SAFETY: a private read-only map of the file this process just wrote in a directory
    // it created or checked; nothing else is meant to write it.
    let checked = unsafe { memmap2::Mmap::map(&file) }.ok().and_then(|m| {
        use object::Object;
        let f = object::File::parse(&m[..]).ok()?;
        f.build_id().ok().flatten().map(<[u8]>::to_vec)
    });
    if checked.as_deref() != Some(&want.id[..]) {
        remove_temp();
        return Err(Failure::Server(format!(
            "answered {full} with a file that is not build {id} (build-id {}): refused",
            checked.map_or_else(|| "none, or not ELF".into(), |c| hex(&c))
        )));
    }
    nix::fcntl::renameat(
        Some(dir.as_raw_fd()),
        temp.as_str(),
        Some(dir.as_raw_fd()),
        want.kind.as_str(),
    )
    .map_err(|e| {
        remove_temp();
        Failure::Server(format!("cannot cache {full}: {e}"))
    })?;
    Ok(total)
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
    let root = open_dir(cache, true)?;
    match nix::sys::stat::mkdirat(
        Some(root.as_raw_fd()),
        id,
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = nix::fcntl::openat(
        Some(root.as_raw_fd()),
        id,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir(dir: &Path, follow: bool) -> std::io::Result<OwnedFd> {
    let mut flags =
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    if !follow {
        flags |= nix::fcntl::OFlag::O_NOFOLLOW;
    }
    let fd = nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new file `name` in `dir`: never an existing name, never through a symlink. A stale
/// temporary file of an earlier, interrupted run is removed first.
fn create_new(dir: &OwnedFd, name: &str) -> std::io::Result<std::fs::File> {
    let _ = nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::OFlag::O_RDWR
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_EXCL
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
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
        // A planted symlink at the temporary name is removed, not followed.
        let fd = open_cache_dir(&dir, "ef01").unwrap();
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("ef01/.t")).unwrap();
        let mut f = create_new(&fd, ".t").unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
