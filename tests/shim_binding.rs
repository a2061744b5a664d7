//! The shim talks to the jemalloc that serves the host's malloc, never to a copy of its
//! own, and it is a quiet guest: inert without jemsafe, harmless without jemalloc.

use crate::common::*;
use jemsafe::shim_link::ShimLink;
use jemsafe_proto::{Command, Dumped, Hello, ProfState, ResetDone, Stats};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The workload with `preload` and, when given, the shim channel; waits for "ready".
fn host(
    preload: &str,
    conf: &str,
    alloc_mb: u32,
    channel: bool,
) -> (Child, Option<ShimLink>, Lines) {
    let (link, theirs) = ShimLink::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(workload());
    cmd.args(["--alloc-mb", &alloc_mb.to_string()])
        .env("LD_PRELOAD", preload)
        .env("MALLOC_CONF", conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if channel {
        cmd.env(jemsafe_proto::ENV_SHIM_FD, fd.to_string());
        unsafe {
            cmd.pre_exec(move || {
                libc::fcntl(fd, libc::F_SETFD, 0);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    drop(theirs);
    let mut out = Lines::new(child.stdout.take().unwrap());
    out.wait_for("ready pid=", T);
    (child, channel.then_some(link), out)
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the host exited cleanly");
}

#[test]
fn shim_contains_no_jemalloc_and_links_none() {
    assert_no_jemalloc_inside(&shim());
}

#[test]
fn stats_and_dump_see_the_hosts_allocations() {
    let dir = TempDir::new("binding");
    let preload = format!("{}:{}", libjemalloc().display(), shim().display());
    let (child, link, _out) = host(
        &preload,
        "prof:true,prof_active:true,lg_prof_sample:16",
        96,
        true,
    );
    let mut link = link.unwrap();

    let hello: Hello = link.request(Command::Hello, T).unwrap().body().unwrap();
    assert_eq!(hello.pid as u32, child.id());
    let bound = hello.bound().expect("bound to jemalloc");
    assert!(bound.version.starts_with("5."), "{hello:?}");
    assert_eq!(bound.lg_prof_sample, Some(16));

    // 96 MiB held by the host: only the host's jemalloc can report that much.
    let stats: Stats = link.request(Command::Stats, T).unwrap().body().unwrap();
    assert!(
        stats.allocated >= 96 << 20,
        "stats.allocated = {}",
        stats.allocated
    );
    assert!(
        stats.active >= stats.allocated && stats.mapped >= stats.active,
        "{stats:?}"
    );

    let path = dir.join("host.heap");
    let reply = link
        .request(Command::Dump(Some(path.to_string_lossy().into_owned())), T)
        .unwrap();
    // One request: the reply carries jemalloc's memory as it was just before the dump.
    let dumped: jemsafe_proto::Dumped = reply.body().expect("a dump reply");
    let memory = dumped
        .memory
        .expect("the memory reading travels with the dump");
    assert!(memory.allocated >= 96 << 20, "{memory:?}");
    assert!(!memory.bins.is_empty(), "{memory:?}");
    let report = jeprof_text(&workload(), &path);
    assert!(report.contains("jemsafe_workload_leak_marker"), "{report}");

    // A reset with a new sample rate, then deactivate: replies carry the new state.
    let reset: ResetDone = link
        .request(Command::Reset(Some(18)), T)
        .unwrap()
        .body()
        .unwrap();
    assert_eq!(reset.lg_prof_sample, 18);
    let off: ProfState = link
        .request(Command::Deactivate, T)
        .unwrap()
        .body()
        .unwrap();
    assert_eq!((off.was_active, off.prof_active), (true, false));
    stop(child);
}

#[test]
fn mallctl_errors_travel_back_with_their_errno() {
    let preload = format!("{}:{}", libjemalloc().display(), shim().display());
    let (child, link, _out) = host(&preload, "prof:false", 1, true);
    let mut link = link.unwrap();
    let reply = link
        .request(Command::Dump(Some("/tmp/never.heap".into())), T)
        .unwrap();
    let failure = reply.body::<Dumped>().unwrap_err();
    assert_eq!(failure.mallctl.as_deref(), Some("prof.dump"));
    assert_eq!(failure.error.as_deref(), Some("ENOENT"));
    assert_eq!(failure.errno, Some(2));
    assert!(!std::path::Path::new("/tmp/never.heap").exists());
    stop(child);
}

#[test]
fn without_jemalloc_the_host_runs_and_hello_says_why() {
    let (child, link, _out) = host(&shim().display().to_string(), "", 1, true);
    let mut link = link.unwrap();
    let hello = link.request(Command::Hello, T).unwrap();
    assert!(hello.ok);
    assert_eq!(hello.get("jemalloc"), Some("missing"));
    assert!(
        hello.get("reason").unwrap().contains("no mallctl symbol"),
        "{hello:?}"
    );
    let dump = link.request(Command::Dump(None), T).unwrap();
    assert!(
        !dump.ok && dump.get("error") == Some("NOJEMALLOC"),
        "{dump:?}"
    );
    stop(child);
}

#[test]
fn without_the_channel_variable_the_shim_starts_no_thread() {
    let preload = format!("{}:{}", libjemalloc().display(), shim().display());
    let (child, _, _out) = host(&preload, "prof:true", 1, false);
    let pid = child.id();
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(
        !names.iter().any(|n| n.trim() == "jemsafe-shim"),
        "{names:?}"
    );
    stop(child);
}

#[test]
fn the_shim_thread_blocks_every_signal() {
    let preload = format!("{}:{}", libjemalloc().display(), shim().display());
    let (child, link, _out) = host(&preload, "prof:true", 1, true);
    // An answer proves the thread runs (std names a thread from inside it).
    let mut link = link.unwrap();
    assert!(link.request(Command::Hello, T).unwrap().ok);
    let pid = child.id();
    let thread = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| t.ok())
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "jemsafe-shim")
        })
        .expect("a jemsafe-shim thread");
    let status = std::fs::read_to_string(thread.path().join("status")).unwrap();
    let blocked = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    let mask = u64::from_str_radix(blocked.split_whitespace().nth(1).unwrap(), 16).unwrap();
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        assert!(
            mask & (1 << (sig - 1)) != 0,
            "signal {sig} not blocked: {blocked}"
        );
    }
    drop(link);
    stop(child);
}
