//! A small, deterministic stand-in for mysqld in jemsafe's tests.
//!
//! Allocates a known amount through a function with a recognisable name, says "ready" on
//! stdout, then behaves like mysqld's signal thread: all signals blocked, SIGTERM ends it.
//!
//!   workload [--alloc-mb N] [--exit N] [--restart-once FILE] [--on-term-exit N] [--kill-self SIG]
//!
//! --exit N            exit with status N right after allocating
//! --restart-once FILE exit with status 16 (mysqld's "restart me") unless FILE exists; creates it
//! --on-term-exit N    exit with status N on SIGTERM (default 0)
//! --kill-self SIG     die of signal SIG right after allocating
//! --report-child      run `sh` and print what a child of ours inherits (env, fds)
//! --spawn-orphan      leave a grandchild behind for PID 1 to reap (a UDF or script would)
//! --fragment-mb N     allocate N MiB of 1 KiB objects, then free all but every 16th
//! --mmap-on-hup N     on each SIGHUP, map and touch N MiB with mmap (outside malloc)
//! --become-on-hup U   started as root, on SIGHUP switch to user U for good (as mysqld's
//!                     --user does early in its start-up)

use nix::sys::signal::{SigSet, Signal};
use std::hint::black_box;

/// The allocation site the tests look for in heap dumps.
#[inline(never)]
fn jemsafe_workload_leak_marker(bytes: usize) -> Vec<Vec<u8>> {
    // Many 64 KiB blocks so that sampling (one per 512 KiB by default) catches some.
    (0..bytes / 65536)
        .map(|i| black_box(vec![(i % 251) as u8; 65536]))
        .collect()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--version") {
        println!("workload (jemsafe test program)");
        return;
    }
    let alloc_mb: usize = arg(&args, "--alloc-mb").unwrap_or(64);
    let held = jemsafe_workload_leak_marker(alloc_mb << 20);
    // Slabs of 1 KiB regions with one live region in 16: fragmentation, not leaks.
    let fragment_mb: usize = arg(&args, "--fragment-mb").unwrap_or(0);
    // All allocated first, then freed: freeing as we go would let jemalloc reuse the
    // same regions and leave nothing scattered.
    let all: Vec<Vec<u8>> = (0..(fragment_mb << 10))
        .map(|i| black_box(vec![(i % 251) as u8; 1024]))
        .collect();
    let survivors: Vec<Vec<u8>> = all.into_iter().step_by(16).collect();
    let mut mapped: Vec<&'static mut [u8]> = Vec::new();

    // Block everything like mysqld does before its signal thread takes over.
    let all = SigSet::all();
    let _ = all.thread_block();

    if let Some(file) = arg::<String>(&args, "--restart-once") {
        if !std::path::Path::new(&file).exists() {
            let _ = std::fs::write(&file, b"restarted\n");
            println!("restarting pid={}", std::process::id());
            std::process::exit(16);
        }
    }
    if let Some(code) = arg::<i32>(&args, "--exit") {
        std::process::exit(code);
    }
    if let Some(sig) = arg::<i32>(&args, "--kill-self") {
        let _ = SigSet::empty().thread_set_mask();
        // SAFETY: raising a signal on ourselves.
        unsafe { libc::raise(sig) };
    }
    if args.iter().any(|a| a == "--report-child") {
        // What mysqld's own children (SST scripts, UDF helpers...) would inherit.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("echo \"child-env=${JEMSAFE_SHIM_FD-unset}\"; for f in /proc/self/fd/*; do echo \"child-fd=$(readlink $f)\"; done")
            .output();
        match out {
            Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => println!("child-error={e}"),
        }
    }
    if args.iter().any(|a| a == "--spawn-orphan") {
        // sh exits at once; its background child is re-parented to PID 1.
        let _ = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("/bin/true &")
            .status();
    }
    // Like mysqld built with libsystemd: tell the service manager (if any) we are up.
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("workload ready"),
        ],
    );
    println!(
        "ready pid={} held={} fragments={}",
        std::process::id(),
        held.len(),
        survivors.len()
    );

    let on_term: i32 = arg(&args, "--on-term-exit").unwrap_or(0);
    let mut waitset = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGINT,
    ] {
        waitset.add(s);
    }
    loop {
        match waitset.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGQUIT) => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
                println!("terminating");
                std::process::exit(on_term)
            }
            Ok(Signal::SIGHUP) => {
                if let Some(name) = arg::<String>(&args, "--become-on-hup") {
                    become_user(&name);
                }
                if let Some(mb) = arg::<usize>(&args, "--mmap-on-hup") {
                    mapped.push(map_and_touch(mb << 20));
                    println!("mapped {mb} MiB");
                }
                println!("reload")
            }
            _ => {}
        }
    }
}

/// Switches every thread (glibc's setuid does) to user `name`, as mysqld's set_user().
fn become_user(name: &str) {
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {name}"));
    nix::unistd::setgroups(&[user.gid]).expect("setgroups");
    nix::unistd::setgid(user.gid).expect("setgid");
    nix::unistd::setuid(user.uid).expect("setuid");
    println!("became uid={}", user.uid);
}

/// Anonymous memory that malloc never sees (as InnoDB maps its buffer pool), every page
/// written so that it is resident.
fn map_and_touch(bytes: usize) -> &'static mut [u8] {
    // SAFETY: a fresh private anonymous mapping, used only through the slice returned.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap of {bytes} bytes failed");
        let s = std::slice::from_raw_parts_mut(p.cast::<u8>(), bytes);
        for page in s.chunks_mut(4096) {
            page[0] = 1;
        }
        s
    }
}
