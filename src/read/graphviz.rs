//! `report --format callgraph`: the call graph's DOT text drawn as SVG by Graphviz's
//! `dot`, run as a child (no shell) with the text on its standard input, its output
//! bounded in size ([`MAX_SVG`]) and its run in time ([`TIMEOUT`]).
//!
//! As root, `dot` is run only if nobody but root can change it (the same check as for
//! what jemsafe preloads): it would otherwise run someone else's program as root.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Graphviz draws jeprof's 80 nodes in well under a second; this bounds a stuck one.
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// The largest SVG accepted (80 nodes draw as about 100 KB).
pub const MAX_SVG: u64 = 64 << 20;
/// What is kept of `dot`'s standard error, for the reason of a failure.
const MAX_STDERR: u64 = 4096;

/// Why there is no call graph without Graphviz, and how to get it.
pub fn missing_message() -> String {
    "--format callgraph draws with Graphviz's `dot`, which is not installed (not found in \
     PATH): install the Debian package graphviz (apt-get install graphviz), or write the \
     graph with --format dot and draw it where Graphviz is"
        .into()
}

/// `dot` in PATH, checked for running as root.
fn locate() -> Result<PathBuf> {
    let path = which::which("dot").map_err(|_| Error::NotFound(missing_message()))?;
    if nix::unistd::geteuid().is_root() {
        Error::untrusted_if_any(crate::trust::problems(&path, "Graphviz's dot"))?;
    }
    Ok(path)
}

/// The SVG `dot -Tsvg` draws from `dot_text`.
pub fn svg(dot_text: &[u8]) -> Result<Vec<u8>> {
    let program = locate()?;
    let mut cmd = Command::new(&program);
    cmd.arg("-Tsvg");
    run(
        cmd,
        &program.display().to_string(),
        dot_text,
        TIMEOUT,
        MAX_SVG,
    )
}

/// Runs `cmd` (`shown` in messages) on `input`: its standard output (at most `max`
/// bytes), or why not.
fn run(
    mut cmd: Command,
    shown: &str,
    input: &[u8],
    deadline: Duration,
    max: u64,
) -> Result<Vec<u8>> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::launch::close_inherited_fds(&mut cmd);
    // The time bound: SIGALRM ends the child at the deadline, which ends its output and
    // so the reads below.
    crate::launch::alarm_after(&mut cmd, deadline.as_secs().max(1));
    let mut child = cmd
        .spawn()
        .map_err(Error::io(format!("cannot run {shown}")))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::BadInput(format!("{shown}: its pipes are missing")));
    };
    let input = input.to_vec();
    // Written from a thread: dot may write before it has read all (a pipe holds 64 KiB).
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let errors = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut kept);
        // The rest is drained so that dot never blocks on it.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        kept
    });
    let mut out = Vec::new();
    let read = stdout.take(max.saturating_add(1)).read_to_end(&mut out);
    let too_large = out.len() as u64 > max;
    if too_large || read.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(Error::io(format!("cannot wait for {shown}")))?;
    let _ = writer.join();
    let said = errors.join().unwrap_or_default();
    let said = jemsafe_report::safe::escape(String::from_utf8_lossy(&said).trim()).into_owned();
    if too_large {
        return Err(Error::BadInput(format!(
            "{shown} drew more than {} MiB of SVG (stopped): draw fewer functions with \
             --node-count",
            max >> 20
        )));
    }
    read.map_err(Error::io(format!("cannot read {shown}'s output")))?;
    use std::os::unix::process::ExitStatusExt;
    if status.signal() == Some(libc::SIGALRM) {
        return Err(Error::BadInput(format!(
            "{shown} took longer than {deadline:?} (stopped): draw fewer functions with \
             --node-count"
        )));
    }
    if !status.success() {
        return Err(Error::BadInput(format!(
            "{shown} could not draw the call graph ({status}){}",
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str, input: &[u8], deadline: Duration, max: u64) -> Result<Vec<u8>> {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        run(cmd, "fake dot", input, deadline, max)
    }

    #[test]
    fn output_is_bounded_in_time_and_size_and_failures_say_why() {
        let out = run_sh("cat", b"digraph {}", TIMEOUT, 100).unwrap();
        assert_eq!(out, b"digraph {}");
        // More input than a pipe holds, output over the bound: stopped, not stuck.
        let err = run_sh("cat", &[b'x'; 1 << 20], TIMEOUT, 100).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        let started = std::time::Instant::now();
        let err = run_sh("exec sleep 30", b"", Duration::from_secs(1), 100).unwrap_err();
        assert!(err.to_string().contains("took longer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let err = run_sh(
            "echo 'syntax error in line 1' >&2; exit 1",
            b"",
            TIMEOUT,
            100,
        )
        .unwrap_err();
        assert!(err.to_string().contains("syntax error in line 1"), "{err}");
    }

    #[test]
    fn the_missing_message_names_the_package() {
        assert!(missing_message().contains("apt-get install graphviz"));
    }
}
