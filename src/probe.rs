//! Proof, before mysqld starts, that this libjemalloc can profile with this MALLOC_CONF.
//!
//! A short-lived child (jemsafe itself, in its hidden `__probe` mode) starts with the same
//! LD_PRELOAD and MALLOC_CONF that mysqld would get, but with automatic dumps switched off
//! (empty prof_prefix). The shim in it answers `hello`; whatever jemalloc printed on
//! stderr ("Invalid conf pair", an ld.so preload error) is collected as a problem, since
//! jemalloc itself would carry on without profiling.

use crate::config::Profile;
use crate::launch::Launch;
use crate::shim_link::ShimLink;
use jemsafe_proto::{Binding, Command, Failure, Hello};
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

/// Argument that turns jemsafe into the probe child.
pub const PROBE_ARG: &str = "__probe";

#[derive(Debug)]
pub struct Probe {
    /// The shim's hello, or why it could not be read.
    pub hello: Result<Hello, Failure>,
    pub stderr: String,
}

impl Probe {
    pub fn summary(&self) -> String {
        match &self.hello {
            Ok(Hello {
                jemalloc: Binding::Bound(b),
                ..
            }) => format!(
                "jemalloc {} (profiling {}; opt.prof={} under this profile)",
                b.version,
                if b.config_prof {
                    "compiled in"
                } else {
                    "NOT compiled in"
                },
                b.opt_prof,
            ),
            Ok(Hello {
                jemalloc: Binding::Missing { reason },
                ..
            }) => format!("no usable jemalloc: {reason}"),
            Err(failure) => format!("no usable jemalloc: {failure}"),
        }
    }

    pub fn problems(&self, profile: &Profile) -> Vec<String> {
        let mut out = Vec::new();
        match &self.hello {
            Err(failure) => out.push(format!(
                "the shim found no usable jemalloc in the probe: {failure}"
            )),
            Ok(Hello {
                jemalloc: Binding::Missing { reason },
                ..
            }) => out.push(format!(
                "the shim found no usable jemalloc in the probe: {reason}"
            )),
            Ok(Hello {
                jemalloc: Binding::Bound(b),
                ..
            }) => {
                if !b.config_prof {
                    out.push(format!(
                        "this libjemalloc ({}) was built without --enable-prof, so it cannot \
                         profile; set [jemalloc] library = \"bundled\" to use jemsafe's own \
                         profiling jemalloc ({}), or install one that can (Debian/Ubuntu's \
                         libjemalloc2 can)",
                        b.path,
                        crate::locate::BUNDLED_FILE
                    ));
                } else if profile.prof && !b.opt_prof {
                    out.push("profiling stayed off although the profile sets prof = true".into());
                }
            }
        }
        for line in self.stderr.lines() {
            if line.contains("<jemalloc>") || line.contains("ld.so") {
                out.push(format!("the probe printed: {}", line.trim()));
            }
        }
        out
    }
}

/// Runs the probe child, built as mysqld would be ([`Launch::command`]) with jemsafe in
/// its place and automatic dumps off, and asks its shim `hello`.
pub fn probe(launch: &Launch, malloc_conf: &str) -> Result<Probe, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find jemsafe's own executable: {e}"))?;
    let (mut link, theirs) =
        ShimLink::pair().map_err(|e| format!("cannot create a socketpair: {e}"))?;
    let mut cmd = launch.command(&exe, malloc_conf, &theirs, None);
    cmd.arg(PROBE_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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
        Ok(hello) => Ok(Probe {
            hello: hello.body(),
            stderr,
        }),
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
