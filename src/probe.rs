//! Proof, before mysqld starts, that this libjemalloc can profile with this MALLOC_CONF.
//!
//! A short-lived child (jemsafe itself, in its hidden `__probe` mode) starts with the same
//! LD_PRELOAD and MALLOC_CONF that mysqld would get, but with automatic dumps switched off
//! (empty prof_prefix). The shim in it answers `hello`; whatever jemalloc printed on
//! stderr ("Invalid conf pair", an ld.so preload error) is collected as a problem, since
//! jemalloc itself would carry on without profiling.

use crate::config::Profile;
use crate::shim_link::ShimLink;
use crate::supervisor::spawn::preload_value;
use jemsafe_proto::{Command, Reply};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Argument that turns jemsafe into the probe child.
pub const PROBE_ARG: &str = "__probe";

#[derive(Debug)]
pub struct Probe {
    pub hello: Reply,
    pub stderr: String,
}

impl Probe {
    pub fn summary(&self) -> String {
        let h = &self.hello;
        match h.get("jemalloc") {
            Some("bound") => format!(
                "jemalloc {} (profiling {}; opt.prof={} under this profile)",
                h.get("version").unwrap_or("?"),
                if h.get_bool("config_prof") == Some(true) {
                    "compiled in"
                } else {
                    "NOT compiled in"
                },
                h.get("opt_prof").unwrap_or("?"),
            ),
            _ => format!(
                "no usable jemalloc: {}",
                h.get("reason").unwrap_or("unknown")
            ),
        }
    }

    pub fn problems(&self, profile: &Profile) -> Vec<String> {
        let h = &self.hello;
        let mut out = Vec::new();
        if h.get("jemalloc") != Some("bound") {
            out.push(format!(
                "the shim found no usable jemalloc in the probe: {}",
                h.get("reason").unwrap_or("unknown")
            ));
        } else if h.get_bool("config_prof") != Some(true) {
            out.push(
                "this libjemalloc was built without --enable-prof, so it cannot profile; \
                 install one that can (Debian/Ubuntu's libjemalloc2 can)"
                    .into(),
            );
        } else if profile.prof && h.get_bool("opt_prof") != Some(true) {
            out.push("profiling stayed off although the profile sets prof = true".into());
        }
        for line in self.stderr.lines() {
            if line.contains("<jemalloc>") || line.contains("ld.so") {
                out.push(format!("the probe printed: {}", line.trim()));
            }
        }
        out
    }
}

/// Runs the probe child and asks its shim `hello`.
pub fn probe(library: &Path, shim: &Path, malloc_conf: &str) -> Result<Probe, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find jemsafe's own executable: {e}"))?;
    let (mut link, theirs) =
        ShimLink::pair().map_err(|e| format!("cannot create a socketpair: {e}"))?;
    let fd = theirs.as_raw_fd();
    let inherited = std::env::var_os("LD_PRELOAD");
    let existing: Vec<&std::ffi::OsStr> = inherited.iter().map(|v| v.as_os_str()).collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(PROBE_ARG)
        .env("LD_PRELOAD", preload_value(library, shim, &existing))
        .env("MALLOC_CONF", malloc_conf)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::supervisor::spawn::pass_shim_end(&mut cmd, fd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the probe: {e}"))?;
    drop(theirs);
    let hello = link.request(Command::Hello, Duration::from_secs(10));
    drop(child.stdin.take()); // the child exits at end of input
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    match hello {
        Ok(hello) => Ok(Probe { hello, stderr }),
        Err(e) => Err(format!(
            "the shim did not answer in a probe process ({e}){}",
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!("; it printed: {}", stderr.trim())
            }
        )),
    }
}

/// The probe child: lives until its stdin closes, so the shim's thread can answer.
pub fn child_main() -> i32 {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    0
}
