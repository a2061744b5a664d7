//! What jemsafe says about itself: `status` answers, systemd's STATUS line, the relay
//! of mysqld's own sd_notify messages.

use super::{notify, Supervisor};
use crate::control;
use crate::dumps;
use crate::{debug, info};
use jemsafe_proto::Reply;
use serde_json::json;

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
            .last_dump
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
        hello: Option<&Reply>,
        stats: Option<&Reply>,
        unanswered: Option<String>,
    ) -> control::Reply {
        let plan = self.plan;
        let child = self.child.as_ref();
        let field = |r: Option<&Reply>, k: &str| {
            r.and_then(|r| r.get(k))
                .map(shim_value)
                .unwrap_or(serde_json::Value::Null)
        };
        let files = dumps::list(&plan.dump_dir, &plan.dump_prefix).unwrap_or_default();
        let mut r = control::ok_reply();
        r.insert("jemsafe_pid".into(), std::process::id().into());
        r.insert(
            "profile".into(),
            plan.expectation.profile.name.clone().into(),
        );
        r.insert("malloc_conf".into(), plan.launch.malloc_conf.clone().into());
        r.insert("mysqld_pid".into(), json!(child.map(|c| c.pid.as_raw())));
        r.insert(
            "mysqld_uptime_s".into(),
            json!(child.map(|c| c.started.elapsed().as_secs())),
        );
        r.insert("restarts".into(), self.history.total.into());
        r.insert("mysqld_not_answering".into(), json!(unanswered));
        r.insert("last_exit".into(), json!(self.last_exit));
        r.insert(
            "verification".into(),
            json!(child
                .and_then(|c| c.verification.as_ref())
                .map(|v| match v {
                    Ok(s) => json!({"ok": true, "message": s}),
                    Err(s) => json!({"ok": false, "message": s}),
                })),
        );
        r.insert(
            "jemalloc".into(),
            json!({
                "version": field(hello, "version"),
                "opt_prof": field(hello, "opt_prof"),
                "prof_active": field(hello, "prof_active"),
                "lg_prof_sample": field(hello, "lg_prof_sample"),
                "prof_prefix": field(hello, "prof_prefix"),
            }),
        );
        r.insert(
            "stats".into(),
            json!({
                "allocated": field(stats, "allocated"),
                "active": field(stats, "active"),
                "resident": field(stats, "resident"),
                "mapped": field(stats, "mapped"),
                "retained": field(stats, "retained"),
            }),
        );
        r.insert(
            "dumps".into(),
            json!({
                "dir": plan.dump_dir.display().to_string(),
                "files": files.len(),
                "bytes": files.iter().map(|f| f.size).sum::<u64>(),
                "free_bytes": dumps::free_bytes(&plan.dump_dir).ok(),
            }),
        );
        r.insert(
            "last_dump".into(),
            json!(self.last_dump.as_ref().map(|(p, t)| json!({
                "path": p.display().to_string(),
                "time": humantime::format_rfc3339_seconds(*t).to_string(),
            }))),
        );
        r
    }
}

/// A shim reply as a control reply: its fields, typed where they look like numbers.
pub(super) fn shim_reply_json(reply: &Reply) -> control::Reply {
    if !reply.ok {
        return control::error_reply(reply.error_text());
    }
    let mut r = control::ok_reply();
    for (k, v) in &reply.fields {
        r.insert(k.clone(), shim_value(v));
    }
    r
}

/// A shim field as JSON: booleans and counts typed, the rest strings.
pub(super) fn shim_value(v: &str) -> serde_json::Value {
    match v {
        "true" => true.into(),
        "false" => false.into(),
        s => s
            .parse::<u64>()
            .map(Into::into)
            .unwrap_or_else(|_| s.into()),
    }
}
