//! Debug information by build-id from a real debuginfod server (Debian's `debuginfod`,
//! started per test on a free port with its own database, scanning its own directory),
//! fetched into a private client cache.
//!
//! debuginfod 0.188 has no option to bind one address: it listens on every interface of
//! the machine; the tests talk to it on 127.0.0.1 only.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the status code, or None when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A debuginfod server; stopped (killed and reaped) when dropped, also on a failure.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `debuginfod SCAN DIR` (`-F` files, `-U` .deb archives), ready once it serves
    /// `ready_id`'s debuginfo (a bounded wait).
    fn start(tmp: &TempDir, scan: &str, dir: &Path, ready_id: &str) -> Server {
        let port = free_port();
        let db = tmp.join(&format!("debuginfod-{port}.sqlite"));
        let child = Command::new("debuginfod")
            .arg(scan)
            .args(["-p", &port.to_string(), "-t", "0", "-g", "0", "-c", "1"])
            .arg("-d")
            .arg(&db)
            .arg(dir)
            .env_remove("DEBUGINFOD_URLS")
            .env("DEBUGINFOD_CACHE_PATH", tmp.join("server-cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run debuginfod (scripts/install-deps installs it)");
        let mut server = Server { child, port };
        let deadline = Instant::now() + READY;
        let path = format!("/buildid/{ready_id}/debuginfo");
        loop {
            if http_status(port, &path) == Some(200) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("debuginfod exited ({status}) before serving {path}");
            }
            assert!(
                Instant::now() < deadline,
                "debuginfod on port {port} did not serve {path} within {READY:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server that answers every request with the same file (another build's):
/// stopped when dropped.
struct WrongServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WrongServer {
    fn start(body: Vec<u8>) -> WrongServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut req = [0u8; 4096];
                        let _ = s.read(&mut req);
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        WrongServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for WrongServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const PROG_C: &str = r#"
#include <stdlib.h>
#include <string.h>
static void *keep[64];
static int n;
static __attribute__((noinline)) void *static_alloc_leaf(size_t size) {
    void *p = malloc(size);
    memset(p, 1, size);
    return p;
}
static __attribute__((noinline)) void *static_alloc_mid(size_t size) {
    return static_alloc_leaf(size * 2);
}
static __attribute__((noinline)) void static_caller(void) {
    for (int i = 0; i < 8; i++)
        keep[n++] = static_alloc_mid(4096 * (i + 1));
    keep[n++] = static_alloc_leaf(100000);
}
int main(void) {
    static_caller();
    return 0;
}
"#;

/// Builds the program with DWARF (`prog.full`), its stripped copy (`prog`) and its
/// separate debug file in `served/`; returns (full, stripped, build-id).
fn build(tmp: &TempDir) -> (PathBuf, PathBuf, String) {
    let src = tmp.join("prog.c");
    std::fs::write(&src, PROG_C).unwrap();
    let full = tmp.join("prog.full");
    let stripped = tmp.join("prog");
    let served = tmp.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("gcc")
        .args([
            "-g",
            "-O0",
            "-fno-omit-frame-pointer",
            "-Wl,--build-id",
            "-o",
        ])
        .arg(&full)
        .arg(&src));
    std::fs::copy(&full, &stripped).unwrap();
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&stripped)
        .arg(served.join("prog.debug")));
    run(Command::new("strip").arg("--strip-all").arg(&stripped));
    // The stripped program names none of its functions.
    let nm = Command::new("nm").arg(&stripped).output().unwrap();
    assert!(!String::from_utf8_lossy(&nm.stdout).contains("static_alloc_leaf"));
    let id = build_id(&stripped);
    (full, stripped, id)
}

fn build_id(path: &Path) -> String {
    use object::Object;
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&data[..]).unwrap();
    let id = file.build_id().unwrap().unwrap();
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `program` under profiling, every allocation sampled, a final dump at exit.
fn dump_of(tmp: &TempDir, program: &Path, tag: &str) -> PathBuf {
    let prefix = tmp.join(tag);
    let child = Command::new(program)
        .env("LD_PRELOAD", libjemalloc())
        .env(
            "MALLOC_CONF",
            format!(
                "prof:true,prof_final:true,lg_prof_sample:0,prof_prefix:{}",
                prefix.display()
            ),
        )
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let dump = tmp.join(&format!("{tag}.{pid}.0.f.heap"));
    assert!(dump.is_file(), "{} missing", dump.display());
    dump
}

struct Out {
    ok: bool,
    text: String,
    err: String,
}

/// `jemsafe report --bytes --top 0 ARGS`, with no local debug files, this cache and these
/// servers.
fn report(tmp: &TempDir, urls: &str, args: &[&str]) -> Out {
    let empty = tmp.join("no-debug-files");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(jemsafe_bin())
        .args(["report", "--bytes", "--top", "0"])
        .args(args)
        .env("JEMSAFE_DEBUG_DIRS", &empty)
        .env("DEBUGINFOD_CACHE_PATH", tmp.join("cache"))
        .env("DEBUGINFOD_URLS", urls)
        .env("DEBUGINFOD_TIMEOUT", "10")
        .output()
        .unwrap();
    Out {
        ok: out.status.success(),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The table of a text report (from its column header on).
fn rows(text: &str) -> String {
    let at = text
        .find("      flat")
        .unwrap_or_else(|| panic!("no table:\n{text}"));
    text[at..].to_owned()
}

#[test]
fn a_stripped_program_reads_like_its_unstripped_build_with_its_debug_file_from_debuginfod() {
    let tmp = TempDir::new("dbgd-prog");
    let (full, stripped, id) = build(&tmp);
    let full_dump = dump_of(&tmp, &full, "full");
    let dump = dump_of(&tmp, &stripped, "stripped");
    let d = dump.to_str().unwrap();

    // The unstripped build, no server: its own DWARF.
    let reference = report(&tmp, "", &[full_dump.to_str().unwrap()]);
    assert!(reference.ok, "{}", reference.err);
    assert!(
        reference.text.contains("static_alloc_leaf"),
        "{}",
        reference.text
    );

    // The stripped build without debug information: addresses only.
    let bare = report(&tmp, "", &[d]);
    assert!(bare.ok, "{}", bare.err);
    assert!(!bare.text.contains("static_alloc_leaf"), "{}", bare.text);
    assert!(bare.text.contains("prog+0x"), "{}", bare.text);
    assert!(
        bare.text.contains("Hint: ") && bare.text.contains(&format!("(build-id {id})")),
        "{}",
        bare.text
    );

    let server = Server::start(&tmp, "-F", &tmp.join("served"), &id);
    let fetched = report(&tmp, &server.url(), &[d]);
    assert!(fetched.ok, "{}", fetched.err);
    assert_eq!(
        rows(&fetched.text),
        rows(&reference.text),
        "{}",
        fetched.err
    );
    // Fetched into the standard client cache, where gdb would look.
    let cached = tmp.join("cache").join(&id).join("debuginfo");
    assert_eq!(build_id(&cached), id);

    // The server stopped: the same names, from the cache (and --offline too).
    drop(server);
    let again = report(&tmp, "http://127.0.0.1:9/", &[d, "--offline"]);
    assert!(again.ok, "{}", again.err);
    assert_eq!(rows(&again.text), rows(&reference.text));
    assert!(!again.err.contains("debuginfod server"), "{}", again.err);
}

#[test]
fn a_server_down_gives_one_warning_and_a_wrong_file_is_refused() {
    let tmp = TempDir::new("dbgd-bad");
    let (_, stripped, id) = build(&tmp);
    let dump = dump_of(&tmp, &stripped, "stripped");
    let d = dump.to_str().unwrap();

    // Nothing listens there: one warning for that server, names are object+offset, exit 0.
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = report(&tmp, &down, &[d]);
    assert!(out.ok, "{}", out.err);
    let warning = format!("debuginfod server {down}:");
    assert_eq!(out.err.matches(&warning).count(), 1, "{}", out.err);
    assert!(out.err.contains("cannot be reached"), "{}", out.err);
    assert!(out.text.contains("prog+0x"), "{}", out.text);

    // A server that answers with another build's file: refused, not cached.
    let wrong = WrongServer::start(std::fs::read("/usr/bin/true").unwrap());
    let url = format!("http://127.0.0.1:{}", wrong.port);
    let out = report(&tmp, &url, &[d]);
    drop(wrong);
    assert!(out.ok, "{}", out.err);
    assert!(
        out.err.contains("is not build") && out.err.contains("refused"),
        "{}",
        out.err
    );
    assert!(!out.text.contains("static_alloc_leaf"), "{}", out.text);
    assert!(!tmp.join("cache").join(&id).join("debuginfo").exists());
}

/// libc6-dbg's .deb, downloaded by scripts/install-deps.
fn libc6_dbg_deb() -> PathBuf {
    let dir = Path::new("/var/cache/jemsafe-test/debs");
    std::fs::read_dir(dir)
        .ok()
        .and_then(|mut entries| {
            entries.find_map(|e| {
                let p = e.ok()?.path();
                let name = p.file_name()?.to_str()?;
                (name.starts_with("libc6-dbg_") && name.ends_with(".deb")).then_some(p)
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no libc6-dbg .deb in {}: run scripts/install-deps (apt-get download libc6-dbg)",
                dir.display()
            )
        })
}

#[test]
fn libc_frames_get_their_dwarf_names_from_a_served_deb() {
    let tmp = TempDir::new("dbgd-deb");
    let deb = libc6_dbg_deb();
    let debs = tmp.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    std::fs::copy(&deb, debs.join(deb.file_name().unwrap())).unwrap();
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    let libc_id = build_id(&libc);
    let (full, _, _) = build(&tmp);
    let dump = dump_of(&tmp, &full, "full");
    let d = dump.to_str().unwrap();

    // Without libc's debug file (the installed one is hidden), libc's own frames have no name.
    let bare = report(&tmp, "", &[d]);
    assert!(bare.text.contains("libc.so.6+0x"), "{}", bare.text);
    assert!(
        !bare.text.contains("__libc_start_call_main"),
        "{}",
        bare.text
    );

    let server = Server::start(&tmp, "-U", &debs, &libc_id);
    let out = report(&tmp, &server.url(), &[d]);
    assert!(out.ok, "{}", out.err);
    assert!(out.text.contains("__libc_start_call_main"), "{}", out.text);
    assert!(!out.text.contains("libc.so.6+0x"), "{}", out.text);
}

/// A hostile HTTP server on 127.0.0.1: each connection gets its own thread running
/// `answer(request path, stream, stop)`; stopped (threads woken and joined) when dropped.
struct Hostile {
    port: u16,
    stop: std::sync::Arc<Stop>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// Set when the server stops; waits on it end early.
#[derive(Default)]
struct Stop {
    stopped: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Stop {
    /// Waits `d`, or less if the server stops; whether it stopped.
    fn wait(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap();
        *self.cv.wait_timeout_while(guard, d, |s| !*s).unwrap().0
    }
}

type Answer = dyn Fn(&str, &mut TcpStream, &Stop) + Send + Sync;

impl Hostile {
    fn start(answer: impl Fn(&str, &mut TcpStream, &Stop) + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(Stop::default());
        let answer: std::sync::Arc<Answer> = std::sync::Arc::new(answer);
        let flag = stop.clone();
        let accept = std::thread::spawn(move || {
            let mut threads = Vec::new();
            for conn in listener.incoming() {
                if *flag.stopped.lock().unwrap() {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let (answer, flag) = (answer.clone(), flag.clone());
                threads.push(std::thread::spawn(move || {
                    if let Some(path) = request_path(&mut s) {
                        answer(&path, &mut s, &flag);
                    }
                }));
            }
            for t in threads {
                let _ = t.join();
            }
        });
        Hostile {
            port,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        *self.stop.stopped.lock().unwrap() = true;
        self.stop.cv.notify_all();
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The path of the request on `s` (its head read with a bound in size and time).
fn request_path(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    head.split_whitespace().nth(1).map(str::to_owned)
}

/// Announces a 50 MB file and sends one byte of it every 2 s.
fn dribbler() -> Hostile {
    Hostile::start(|_, s, stop| {
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")
            .is_err()
        {
            return;
        }
        while !stop.wait(Duration::from_secs(2)) {
            if s.write_all(b"\x7f").is_err() {
                return;
            }
        }
    })
}

/// `jemsafe report` as [`report`] does, with more environment, killed (and the test
/// failed) if it has not finished within `limit`; also how long it took.
fn report_within(
    tmp: &TempDir,
    urls: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Out, Duration) {
    let mut js = start_report(tmp, urls, args, env);
    let started = Instant::now();
    let code = js.wait_exit(limit);
    let elapsed = started.elapsed();
    let text = js.out.drain(Duration::from_millis(500)).join("\n");
    (
        Out {
            ok: code == 0,
            text,
            err: js.err.seen.join("\n"),
        },
        elapsed,
    )
}

fn start_report(tmp: &TempDir, urls: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
    let empty = tmp.join("no-debug-files");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = Command::new(jemsafe_bin());
    cmd.args(["report", "--bytes", "--top", "0"])
        .args(args)
        .env("JEMSAFE_DEBUG_DIRS", &empty)
        .env("DEBUGINFOD_CACHE_PATH", tmp.join("cache"))
        .env("DEBUGINFOD_URLS", urls)
        .env_remove("JEMSAFE_DEBUGINFOD_REDIRECTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running::start_command(cmd, |_| {})
}

/// Every name under the client cache (relative), temporary files included.
fn cache_names(tmp: &TempDir) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    let cache = tmp.join("cache");
    walk(&cache, &cache, &mut out);
    out.sort();
    out
}

#[test]
fn a_server_sending_a_byte_every_2_s_is_given_up_with_one_warning_and_leaves_no_file() {
    let tmp = TempDir::new("dbgd-slow");
    let (_, stripped, _) = build(&tmp);
    let dump = dump_of(&tmp, &stripped, "stripped");
    let slow = dribbler();
    let url = slow.url();
    let (out, took) = report_within(
        &tmp,
        &url,
        &[dump.to_str().unwrap()],
        &[("DEBUGINFOD_TIMEOUT", "3")],
        Duration::from_secs(60),
    );
    drop(slow);
    eprintln!("report against the dribbling server took {took:?}");
    assert!(out.ok, "{}", out.err);
    // At most twice the timeout (a read waits up to it), with room for a loaded machine.
    assert!(took < Duration::from_secs(15), "took {took:?}: {}", out.err);
    let warning = format!("debuginfod server {url}:");
    assert_eq!(out.err.matches(&warning).count(), 1, "{}", out.err);
    assert!(
        out.err
            .contains("less than 100 KiB within DEBUGINFOD_TIMEOUT (3 s)"),
        "{}",
        out.err
    );
    assert!(out.text.contains("prog+0x"), "{}", out.text);
    assert_eq!(cache_names(&tmp), Vec::<String>::new());
}

#[test]
fn a_report_killed_during_a_download_leaves_nothing_in_the_cache() {
    let tmp = TempDir::new("dbgd-kill");
    let (_, stripped, id) = build(&tmp);
    let dump = dump_of(&tmp, &stripped, "stripped");
    let slow = dribbler();
    let mut js = start_report(
        &tmp,
        &slow.url(),
        &[dump.to_str().unwrap()],
        &[("DEBUGINFOD_TIMEOUT", "60")],
    );
    // Wait (bounded) until report is writing a download in the cache.
    let cache = tmp.join("cache");
    let writing = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .find(|t| t.starts_with(&cache))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let file = loop {
        if let Some(f) = writing(js.pid()) {
            break f;
        }
        assert!(Instant::now() < deadline, "report never opened a download");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("report writes {}", file.display());
    js.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(js.wait_exit(Duration::from_secs(10)), 128 + 9);
    drop(slow);
    // The build-id directories may stay; no file in them.
    let left: Vec<String> = cache_names(&tmp);
    assert_eq!(left, Vec::<String>::new(), "build-id {id}");
}

/// Answers `/buildid/...` with a 302 to `to` + the same path, and `/moved/...` by
/// relaying the request (without `/moved`) to `relay`'s port: a same-server redirect.
fn redirector(to: String, relay: u16) -> Hostile {
    Hostile::start(move |path, s, _| {
        if let Some(rest) = path.strip_prefix("/moved") {
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", relay)) else {
                return;
            };
            let _ = up.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                up,
                "GET {rest} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            let _ = std::io::copy(&mut up, s);
        } else {
            let location = if to.is_empty() {
                format!("/moved{path}")
            } else {
                format!("{to}{path}")
            };
            let _ = write!(
                s,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    })
}

#[test]
fn a_redirect_to_another_server_is_followed_only_when_configured() {
    let tmp = TempDir::new("dbgd-redirect");
    let (_, stripped, id) = build(&tmp);
    let dump = dump_of(&tmp, &stripped, "stripped");
    let d = dump.to_str().unwrap();
    let server = Server::start(&tmp, "-F", &tmp.join("served"), &id);
    let cached = tmp.join("cache").join(&id).join("debuginfo");
    let limit = Duration::from_secs(60);

    // To another port of the same host: not followed, one warning, nothing cached.
    let away = redirector(server.url(), server.port);
    let (out, _) = report_within(&tmp, &away.url(), &[d], &[], limit);
    assert!(out.ok, "{}", out.err);
    let warning = format!("debuginfod server {}:", away.url());
    assert_eq!(out.err.matches(&warning).count(), 1, "{}", out.err);
    assert!(
        out.err.contains(&format!("to {}/buildid/", server.url()))
            && out.err.contains("/debuginfo, another server"),
        "{}",
        out.err
    );
    assert!(!out.text.contains("static_alloc_leaf"), "{}", out.text);
    assert!(!cached.exists());

    // Within the same server: followed.
    let moved = redirector(String::new(), server.port);
    let (out, _) = report_within(&tmp, &moved.url(), &[d], &[], limit);
    assert!(out.ok, "{}", out.err);
    assert!(
        out.text.contains("static_alloc_leaf"),
        "{}\n{}",
        out.text,
        out.err
    );
    assert_eq!(build_id(&cached), id);
    std::fs::remove_dir_all(tmp.join("cache")).unwrap();

    // The user allows that server: followed.
    let allow = server.url();
    let (out, _) = report_within(
        &tmp,
        &away.url(),
        &[d],
        &[("JEMSAFE_DEBUGINFOD_REDIRECTS", allow.as_str())],
        limit,
    );
    assert!(out.ok, "{}", out.err);
    assert!(
        out.text.contains("static_alloc_leaf"),
        "{}\n{}",
        out.text,
        out.err
    );
    assert!(!out.err.contains("debuginfod server"), "{}", out.err);
    assert_eq!(build_id(&cached), id);
}
