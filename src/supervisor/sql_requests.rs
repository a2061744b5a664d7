//! Calls from SQL: the shim's [`Ask`]s, carried out as the control socket's requests are.
//!
//! A dump asked for from SQL is a dump with the trigger `sql` ([`Supervisor::request_dump`]:
//! naming, sidecar, storm control, retention, log, metrics); `prof-on`/`prof-off` are
//! `jemsafe prof on|off`; `status` and `memory` are those requests' answers. What
//! `[sql] allow` does not permit is refused, with a message that names it.
//!
//! The waiter is one end of a socket pair standing in for a control client, so the
//! dump path and the prof path answer it as they answer `jemsafe dump`. A short-lived
//! thread reads that answer and sends the shim the part the loadable function returns;
//! the event loop never blocks on it. At most [`MAX_IN_FLIGHT`] such threads live at
//! once: past that a call is refused at once, and a burst of refusals is logged once.

use super::Supervisor;
use crate::control::{self, ProfOp, Request};
use crate::dumpdir::Trigger;
use crate::{debug, warn};
use jemsafe_proto::{Answer, Ask, SqlOp};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How much longer than a call from SQL waits the answering thread waits: past it, the
/// call has given up and nobody reads the answer.
const SLACK: Duration = Duration::from_secs(5);

/// The longest control answer read for SQL (a status with its memory breakdown is a
/// few KiB).
const MAX_ANSWER: u64 = 1 << 20;

/// The most calls from SQL waiting for their answers at once. Each holds a thread here
/// (and a connection in mysqld) for up to `[sql] timeout_ms`: a storm of calls must not
/// become a storm of threads in the supervisor.
const MAX_IN_FLIGHT: usize = 32;

/// The calls from SQL of this supervisor (one per process).
static GATE: Gate = Gate::new(MAX_IN_FLIGHT);

/// Whether one more call may start with `in_flight` calls already waiting: the new
/// count, or the refusal the call gets.
fn admit(in_flight: usize, bound: usize) -> Result<usize, String> {
    if in_flight < bound {
        Ok(in_flight + 1)
    } else {
        Err(too_many(in_flight))
    }
}

/// What a call refused with `in_flight` calls waiting returns.
fn too_many(in_flight: usize) -> String {
    format!("too many calls from SQL at once ({in_flight} in flight); try again")
}

/// The calls from SQL in flight, and those refused since a call was last taken: a
/// burst of refusals is logged at its first, not once per call.
struct Gate {
    in_flight: AtomicUsize,
    refused: AtomicUsize,
    bound: usize,
}

/// A call's place in the [`Gate`], given back when dropped: when its thread has
/// answered, or when no thread could be started for it.
struct Slot(&'static Gate);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    const fn new(bound: usize) -> Gate {
        Gate {
            in_flight: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            bound,
        }
    }

    /// A place for one more call, or the refusal to answer it with.
    fn enter(&'static self) -> Result<Slot, String> {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                admit(n, self.bound).ok()
            });
        match taken {
            Ok(_) => {
                let refused = self.refused.swap(0, Ordering::AcqRel);
                if refused > 0 {
                    debug!("took a call from SQL again, after refusing {refused}");
                }
                Ok(Slot(self))
            }
            Err(in_flight) => {
                let why = too_many(in_flight);
                if self.refused.fetch_add(1, Ordering::AcqRel) == 0 {
                    warn!(
                        "refused a call from SQL: {why} (the refusals that follow it are not \
                         logged until a call is taken again)"
                    );
                }
                Err(why)
            }
        }
    }
}

impl Supervisor<'_> {
    /// The shim asks for `ask` on behalf of a loadable function.
    pub(super) fn sql_ask(&mut self, ask: Ask) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let Ok(link) = child.link.as_fd().try_clone_to_owned() else {
            warn!("cannot answer a call from SQL: no descriptor left to copy the shim's channel");
            return;
        };
        if let Some(why) = self.plan.sql.refusal(ask.op) {
            warn!("refused a call from SQL: {why}");
            send_answer(&link, ask.id, Err(why));
            return;
        }
        let slot = match GATE.enter() {
            Ok(slot) => slot,
            Err(why) => {
                send_answer(&link, ask.id, Err(why));
                return;
            }
        };
        debug!("call from SQL: {}", ask.op.word());
        let (ours, theirs) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                send_answer(
                    &link,
                    ask.id,
                    Err(format!("jemsafe cannot take it now: {e}")),
                );
                return;
            }
        };
        let wait = Duration::from_millis(self.plan.sql.timeout_ms) + SLACK;
        let op = ask.op;
        let spawned = std::thread::Builder::new()
            .name("jemsafe-sql".to_owned())
            .spawn(move || {
                let result = read_answer(theirs, wait).and_then(|r| value_of(op, &r));
                send_answer(&link, ask.id, result);
                drop(slot);
            });
        if let Err(e) = spawned {
            warn!("cannot answer a call from SQL: no thread ({e})");
            return;
        }
        match op {
            SqlOp::Dump => self.request_dump(Trigger::Sql, None, Some(ours)),
            SqlOp::ProfOn => self.prof(ProfOp::On, None, Some(ours)),
            SqlOp::ProfOff => self.prof(ProfOp::Off, None, Some(ours)),
            SqlOp::Status => self.control_request(ours, Request::Status),
            SqlOp::Memory => self.control_request(ours, Request::Memory),
        }
    }
}

/// Sends the shim the answer to its ask `id`; a shim gone meanwhile is not an error.
fn send_answer(link: &OwnedFd, id: u64, result: Result<String, String>) {
    let packet = Answer { id, result }.encode();
    // SAFETY: a live buffer; MSG_NOSIGNAL: a vanished mysqld is EPIPE, not SIGPIPE.
    unsafe {
        libc::send(
            link.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
}

/// The control answer written to `stream`, waiting at most `wait`.
fn read_answer(stream: UnixStream, wait: Duration) -> Result<control::Reply, String> {
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| format!("jemsafe cannot wait for its answer: {e}"))?;
    let mut text = String::new();
    stream
        .take(MAX_ANSWER)
        .read_to_string(&mut text)
        .map_err(|e| format!("no answer within {} s: {e}", wait.as_secs()))?;
    if text.trim().is_empty() {
        return Err("jemsafe gave no answer (mysqld ended or restarted meanwhile)".to_owned());
    }
    serde_json::from_str(text.trim()).map_err(|e| format!("unreadable answer: {e}"))
}

/// What the loadable function returns for `op`, from the control answer `reply`: the
/// dump's path, the new `prof.active`, `jemsafe_status()`'s JSON, the memory breakdown's
/// JSON; or the answer's error.
pub(super) fn value_of(op: SqlOp, reply: &control::Reply) -> Result<String, String> {
    if reply.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
        return Err(reply
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("jemsafe refused without saying why")
            .to_owned());
    }
    let field = |key: &str| {
        reply
            .get(key)
            .cloned()
            .ok_or_else(|| format!("jemsafe's answer has no {key:?}"))
    };
    match op {
        SqlOp::Dump => match field("path")? {
            serde_json::Value::String(path) => Ok(path),
            other => Err(format!(
                "jemsafe's answer has a path that is not text: {other}"
            )),
        },
        SqlOp::ProfOn | SqlOp::ProfOff => Ok(field("prof_active")?.to_string()),
        SqlOp::Status => Ok(status_json(reply).to_string()),
        SqlOp::Memory => {
            let mut breakdown = reply.clone();
            breakdown.remove("ok");
            Ok(serde_json::Value::Object(breakdown).to_string())
        }
    }
}

/// `jemsafe_status()`'s JSON from `jemsafe status`'s answer: `opt_prof`, `prof_active`,
/// `lg_prof_sample`, `jemalloc_version`, `last_dump` (path and time, or null),
/// `supervisor_pid`.
fn status_json(reply: &control::Reply) -> serde_json::Value {
    let jemalloc = reply.get("jemalloc");
    let of_jemalloc = |key: &str| {
        jemalloc
            .and_then(|j| j.get(key))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    serde_json::json!({
        "opt_prof": of_jemalloc("opt_prof"),
        "prof_active": of_jemalloc("prof_active"),
        "lg_prof_sample": of_jemalloc("lg_prof_sample"),
        "jemalloc_version": of_jemalloc("version"),
        "last_dump": reply.get("last_dump").cloned().unwrap_or(serde_json::Value::Null),
        "supervisor_pid": reply.get("jemsafe_pid").cloned().unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(json: serde_json::Value) -> control::Reply {
        match json {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_dump_answers_its_path_and_a_refusal_its_reason() {
        let dumped = reply(serde_json::json!({
            "ok": true, "path": "/var/lib/jemsafe/mysqld.1.sql.heap", "bytes": 10, "round_trip_ms": 1.0
        }));
        assert_eq!(
            value_of(SqlOp::Dump, &dumped),
            Ok("/var/lib/jemsafe/mysqld.1.sql.heap".to_owned())
        );
        let refused = control::error_reply("storm control: 12 dumps this hour");
        assert_eq!(
            value_of(SqlOp::Dump, &refused),
            Err("storm control: 12 dumps this hour".to_owned())
        );
        let changed = control::body_reply(&control::ProfChanged {
            prof_active: false,
            was_active: true,
        });
        assert_eq!(value_of(SqlOp::ProfOff, &changed), Ok("false".to_owned()));
    }

    #[test]
    fn the_status_has_the_documented_fields() {
        let status = control::Status {
            jemsafe_pid: 4242,
            jemalloc: control::JemallocStatus {
                version: Some("5.3.0".into()),
                opt_prof: Some(true),
                prof_active: Some(false),
                lg_prof_sample: Some(19),
                ..Default::default()
            },
            last_dump: Some(control::LastDump {
                path: "/d/x.heap".into(),
                time: "2026-12-07T20:00:00Z".into(),
            }),
            ..Default::default()
        };
        let text = value_of(SqlOp::Status, &status.reply()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "opt_prof": true, "prof_active": false, "lg_prof_sample": 19,
                "jemalloc_version": "5.3.0",
                "last_dump": {"path": "/d/x.heap", "time": "2026-12-07T20:00:00Z"},
                "supervisor_pid": 4242
            })
        );
        let none = value_of(SqlOp::Status, &control::Status::default().reply()).unwrap();
        assert!(none.contains("\"last_dump\":null"), "{none}");
    }

    #[test]
    fn a_call_past_the_bound_is_refused_with_the_count_in_flight() {
        assert_eq!(admit(0, 32), Ok(1));
        assert_eq!(admit(31, 32), Ok(32));
        assert_eq!(
            admit(32, 32),
            Err("too many calls from SQL at once (32 in flight); try again".to_owned())
        );
    }

    /// The gate counts the calls its slots hold: a slot given back by its thread (or
    /// dropped unused) makes room for the next call; a burst of refusals is counted
    /// once for the log and forgotten when a call is taken again.
    #[test]
    fn a_slot_given_back_by_its_thread_makes_room_for_the_next_call() {
        static GATE: Gate = Gate::new(2);
        let first = GATE.enter().unwrap();
        let second = GATE.enter().unwrap();
        for _ in 0..3 {
            let why = GATE.enter().err().unwrap();
            assert!(why.contains("(2 in flight); try again"), "{why}");
        }
        assert_eq!(GATE.refused.load(Ordering::Acquire), 3);
        std::thread::spawn(move || drop(first)).join().unwrap();
        let third = GATE.enter().unwrap();
        assert_eq!(GATE.refused.load(Ordering::Acquire), 0);
        assert!(GATE.enter().is_err());
        drop((second, third));
        assert_eq!(GATE.in_flight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn the_answer_is_read_from_the_stand_in_client_and_silence_is_an_error() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        control::respond(ours, &control::error_reply("no"));
        let r = read_answer(theirs, Duration::from_secs(5)).unwrap();
        assert_eq!(value_of(SqlOp::Dump, &r), Err("no".to_owned()));
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(ours);
        let e = read_answer(theirs, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("no answer"), "{e}");
    }
}
