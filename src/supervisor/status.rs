//! What jemsafe says about itself: `status` answers, systemd's STATUS line, the relay
//! of mysqld's own sd_notify messages.

use super::{notify, Supervisor};
use crate::control;
use crate::dumpdir;
use crate::{debug, info};
use jemsafe_proto::{Hello, Memory};

impl Supervisor<'_> {
    /// Sends to systemd when jemsafe runs under it.
    pub(super) fn tell(&self, states: &[sd_notify::NotifyState]) {
        if self.relay.is_some() {
            notify::tell(states);
        }
    }

    /// jemsafe's STATUS line: mysqld's own, then profile, verification and last dump.
    pub(super) fn status_line(&self) -> String {
        let verification = match self.child.as_ref().and_then(|c| c.verification.as_ref()) {
            Some(Ok(_)) => "verified",
            Some(Err(_)) => "verification FAILED",
            None => "verifying",
        };
        let dump = self
            .dumping
            .last
            .as_ref()
            .and_then(|(p, _)| p.file_name())
            .map(|n| format!(", last dump {}", n.to_string_lossy()))
            .unwrap_or_default();
        let mysqld = if self.mysqld_status.is_empty() {
            String::new()
        } else {
            format!("{}; ", self.mysqld_status)
        };
        format!(
            "{mysqld}jemsafe: profile {}, {verification}{dump}",
            self.plan.expectation.profile.name
        )
    }

    pub(super) fn ready(&self) {
        let status = self.status_line();
        self.tell(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        if self.relay.is_some() {
            info!("told systemd READY=1 (mysqld is ready and verification is over)");
        }
    }

    pub(super) fn relay_messages(&mut self) {
        let Some(relay) = &self.relay else {
            return;
        };
        let pid = self.child.as_ref().map(|c| c.pid.as_raw());
        let mut messages = relay.receive(pid);
        // READY last, so that the STATUS sent with it already has mysqld's own words.
        messages.sort_by_key(|m| *m == notify::Message::Ready);
        for message in messages {
            debug!("mysqld sent {message:?}");
            match message {
                notify::Message::Ready => {
                    info!("mysqld reports READY=1");
                    if self.ready_gate.mysqld_ready() {
                        self.ready();
                    }
                }
                notify::Message::Status(text) => {
                    self.mysqld_status = text;
                    let line = self.status_line();
                    self.tell(&[sd_notify::NotifyState::Status(&line)]);
                }
                notify::Message::Stopping => self.tell(&[sd_notify::NotifyState::Stopping]),
                notify::Message::ExtendTimeoutUsec(usec) => {
                    self.tell(&[sd_notify::NotifyState::ExtendTimeoutUsec(usec)])
                }
            }
        }
    }

    /// The `status` answer; `hello` and `stats` come from the shim when mysqld runs.
    /// `unanswered`: why the shim's part is missing although mysqld runs (it did not
    /// answer within its deadline): the rest is jemsafe's own state, always current.
    pub(super) fn status(
        &self,
        hello: Option<&Hello>,
        memory: Option<&Memory>,
        unanswered: Option<String>,
    ) -> control::Reply {
        let breakdown = memory.and_then(|m| self.memory_breakdown(m).ok());
        let plan = self.plan;
        let child = self.child.as_ref();
        let bound = hello.and_then(Hello::bound);
        let files = dumpdir::list(&plan.dump_dir, &plan.dump_prefix).unwrap_or_default();
        control::Status {
            jemsafe_pid: std::process::id(),
            profile: plan.expectation.profile.name.clone(),
            malloc_conf: plan.launch.malloc_conf.clone(),
            mysqld_pid: child.map(|c| c.pid.as_raw()),
            mysqld_uptime_s: child.map(|c| c.started.elapsed().as_secs()),
            restarts: self.history.total,
            mysqld_not_answering: unanswered,
            last_exit: self.last_exit.clone(),
            last_exit_status: self.last_exit_status,
            verification: child.and_then(|c| c.verification.as_ref()).map(|v| {
                control::Verification {
                    ok: v.is_ok(),
                    message: v.clone().unwrap_or_else(|e| e),
                }
            }),
            jemalloc: control::JemallocStatus {
                version: bound.map(|b| b.version.clone()),
                opt_prof: bound.map(|b| b.opt_prof),
                prof_active: bound.map(|b| b.prof_active),
                lg_prof_sample: bound.and_then(|b| b.lg_prof_sample),
                prof_prefix: bound.and_then(|b| b.prof_prefix.clone()),
                capabilities: bound.map(crate::capabilities::Table::of),
            },
            stats: control::JemallocStats {
                allocated: memory.map(|s| s.allocated),
                active: memory.map(|s| s.active),
                resident: memory.map(|s| s.resident),
                mapped: memory.map(|s| s.mapped),
                retained: memory.map(|s| s.retained),
            },
            memory: breakdown,
            dumps: control::DumpsStatus {
                dir: plan.dump_dir.display().to_string(),
                files: files.len(),
                bytes: files.iter().map(|f| f.size).sum(),
                free_bytes: dumpdir::free_bytes(&plan.dump_dir).ok(),
            },
            last_dump: self.dumping.last.as_ref().map(|(p, t)| control::LastDump {
                path: p.display().to_string(),
                time: jemsafe_report::clock::rfc3339_seconds(*t),
            }),
            last_exit_oom_killed: self.last_exit_oom_killed,
            memory_limit: self.limit_status(),
            rss_at_last_check: child.and(self.watching.last.as_ref()).map(|c| c.rss),
            pressure_source: self
                .watching
                .pressure
                .as_ref()
                .map(crate::watch::memlimit::PressureSource::describe),
        }
        .reply()
    }

    /// mysqld's RSS broken down: jemalloc's reading `jem` beside the kernel's, now.
    pub(super) fn memory_breakdown(
        &self,
        jem: &Memory,
    ) -> std::result::Result<jemsafe_report::memory::Breakdown, String> {
        let pid = self
            .child
            .as_ref()
            .map(|c| c.pid.as_raw())
            .ok_or("mysqld is not running")?;
        memory_snapshot(pid, jem)?.breakdown()
    }
}

/// jemalloc's reading `jem` of process `pid`, with the kernel's taken now.
pub(super) fn memory_snapshot(
    pid: i32,
    jem: &Memory,
) -> std::result::Result<jemsafe_report::memory::Snapshot, String> {
    use jemsafe_report::memory::{ProcMemory, Snapshot};
    let read = |name: &str| {
        crate::procfs::read(pid, name).map_err(|e| format!("cannot read /proc/{pid}/{name}: {e}"))
    };
    let proc = ProcMemory::parse(&read("smaps_rollup")?, &read("status")?);
    Ok(Snapshot::new(proc, jem.clone()))
}
