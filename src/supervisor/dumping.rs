//! Heap dumps from the supervisor's side: requests through the storm throttle, one shim
//! request per dump (its reply carries the memory reading taken just before it), the file
//! checked and made whole under its final name, its sidecar, and retention. The dump
//! directory's inotify watch is in [`super::dir_events`].

use super::shim_requests::{dump_overdue, DUMP_DEADLINE};
use super::{Pending, Supervisor};
use crate::control;
use crate::dumpdir::{self, files, Trigger};
use crate::metrics::DumpFailure;
use crate::{debug, error, info, warn};
use jemsafe_proto::{Command, Dumped, Reply};
use jemsafe_report::maps::MapEntry;

use std::os::unix::net::UnixStream;

use std::time::{Instant, SystemTime};

use super::policy::{Admit, Growth, Throttle};
use std::path::PathBuf;

/// What the supervisor keeps about dumps between them.
pub(super) struct DumpState {
    /// The sequence number in jemsafe's dump names.
    pub seq: u64,
    /// The storm throttle (`min_interval_ms`).
    pub throttle: Throttle,
    /// Who waits for the trailing dump of a storm, its trigger, and the reading that
    /// fired it (a level's).
    pub trailing: Vec<UnixStream>,
    pub trailing_trigger: Option<Trigger>,
    pub trailing_reason: Option<String>,
    /// `growth_step_mb`: the allocated level of the last growth dump.
    pub growth: Growth,
    pub next_growth_check: Option<Instant>,
    /// The newest dump jemsafe wrote, and when.
    pub last: Option<(PathBuf, SystemTime)>,
    /// Level dumps sent to mysqld since the memory watch last decided, for its
    /// `per_hour` (handed in with its next readings: the watch is not called from here).
    /// Only a level's: they are the ones it charges, and a watch that never wakes (no
    /// level, no timeline) never empties this.
    pub sent: Vec<(Trigger, Instant)>,
}

impl DumpState {
    pub fn new(plan: &super::RunPlan) -> DumpState {
        DumpState {
            seq: 0,
            throttle: Throttle::new(plan.min_dump_interval),
            trailing: Vec::new(),
            trailing_trigger: None,
            trailing_reason: None,
            growth: Growth::new(plan.growth_step_bytes),
            next_growth_check: None,
            last: None,
            sent: Vec::new(),
        }
    }
}

use crate::dumpdir::human_space;

impl Supervisor<'_> {
    /// An on-demand dump (`reason`: the reading that fired a level, for its sidecar). A
    /// dump still in flight is joined (mysqld is busy or stopped: another file would only
    /// queue behind it); otherwise through the storm throttle.
    pub(super) fn request_dump(
        &mut self,
        trigger: Trigger,
        reason: Option<String>,
        waiter: Option<UnixStream>,
    ) {
        let d = &mut self.dumping;
        let in_flight = self.child.as_mut().and_then(|child| {
            let pid = child.pid;
            match child
                .pending
                .find_mut(|p| matches!(p, Pending::Dump { .. }))?
            {
                (Pending::Dump { waiters, sent, .. }, overdue) => {
                    Some((pid, waiters, *sent, overdue))
                }
                _ => None,
            }
        });
        let asked = d.throttle.ask(
            &trigger,
            d.trailing_trigger.as_ref(),
            in_flight.is_some(),
            Instant::now(),
        );
        if asked.renames_trailing {
            d.trailing_trigger = Some(trigger);
            d.trailing_reason.clone_from(&reason);
        }
        match asked.admit {
            Admit::InFlight => {
                let Some((pid, waiters, sent, overdue)) = in_flight else {
                    return;
                };
                let waited = sent.elapsed().as_secs();
                debug!(
                    "dump request ({}) joins the dump in flight",
                    trigger.as_str()
                );
                if let Some(w) = waiter {
                    if overdue {
                        let why = format!(
                            "a dump asked for {waited} s ago is still unanswered: {}",
                            crate::procfs::not_answering(pid.as_raw())
                        );
                        control::respond(w, &control::error_reply(why));
                    } else {
                        waiters.push(w);
                    }
                }
            }
            Admit::Now => self.send_dump(trigger, reason, waiter.into_iter().collect()),
            Admit::At(_) | Admit::Joined => {
                debug!(
                    "dump request ({}) coalesced into the next dump",
                    trigger.as_str()
                );
                let d = &mut self.dumping;
                if d.trailing_trigger.is_none() {
                    d.trailing_trigger = Some(trigger);
                    d.trailing_reason = reason;
                }
                d.trailing.extend(waiter);
            }
        }
    }

    /// mysqld `pid` ended: the trailing dump coalesced for it cannot be taken. Its
    /// waiters hear so now (not when it would have run), and it costs no `per_hour`.
    pub(super) fn drop_trailing_dump(&mut self, pid: nix::unistd::Pid) {
        let trigger = self.dumping.trailing_trigger.take();
        self.dumping.trailing_reason = None;
        let waiters = std::mem::take(&mut self.dumping.trailing);
        // Whoever waits is answered even if the throttle held no trailing dump.
        if !self.dumping.throttle.forget() && waiters.is_empty() {
            return;
        }
        let why = format!(
            "mysqld pid {pid} exited before the coalesced {} dump was taken",
            trigger.as_ref().map_or("usr1", Trigger::as_str)
        );
        info!("{why}: dropped it");
        for w in waiters {
            control::respond(w, &control::error_reply(why.clone()));
        }
    }

    /// mysqld `pid` ended with dump `name` (of `trigger`, sent at `sent`) unwritten: its
    /// partial file is removed, and the loss logged and counted once (`timeout` when its
    /// waiters already heard it was late, else `mysqld_exited`).
    pub(super) fn dump_lost(
        &mut self,
        pid: nix::unistd::Pid,
        trigger: &Trigger,
        name: &str,
        sent: Instant,
    ) {
        if name.is_empty() {
            return;
        }
        self.discard_partial(name);
        let late = dump_overdue(sent);
        self.metrics.dump_failed(if late {
            DumpFailure::Timeout
        } else {
            DumpFailure::MysqldExited
        });
        warn!(
            "{} dump {} lost: mysqld pid {pid} exited {} s after it was asked for, before writing it{}",
            trigger.as_str(),
            self.plan.dump_dir.join(name).display(),
            sent.elapsed().as_secs(),
            if late { " (past its deadline)" } else { "" }
        );
    }

    pub(super) fn send_dump(
        &mut self,
        trigger: Trigger,
        reason: Option<String>,
        waiters: Vec<UnixStream>,
    ) {
        let plan = self.plan;
        let present = plan.dump_dir.symlink_metadata().is_ok_and(|m| m.is_dir());
        if !present {
            self.recreate_dump_dir();
        }
        let refusal = match dumpdir::free_bytes(&plan.dump_dir) {
            Ok(free) if free < plan.min_free_bytes => Some(format!(
                "dump refused: only {} free on the filesystem of {} (min_free_mb = {})",
                human_space(free),
                plan.dump_dir.display(),
                plan.min_free_bytes >> 20
            )),
            Ok(_) => None,
            Err(e) => {
                warn!(
                    "cannot measure free space in {}: {e}",
                    plan.dump_dir.display()
                );
                None
            }
        };
        // A directory mysqld cannot write to is said as such, not as prof.dump's errno
        // (counted as that failure, which it would have been).
        let refusal = refusal
            .map(|why| (DumpFailure::DiskSpace, why))
            .or_else(|| {
                let (uid, gid) = self.dump_owner?;
                Some((
                    DumpFailure::Jemalloc,
                    dumpdir::unwritable_by(&plan.dump_dir, uid, gid)?,
                ))
            });
        let pid = self.child.as_ref().map(|c| c.pid);
        if let Some(why) = pid.and_then(|p| self.still_starting(p.as_raw())) {
            // Counted as mysqld_unreachable: it cannot be dumped yet, and the same
            // request succeeds in a moment.
            self.metrics.dump_failed(DumpFailure::Unreachable);
            warn!("{} dump not taken: {why}", trigger.as_str());
            let pending = Pending::untaken(trigger, reason, waiters);
            self.fail_with(pending, &control::temporary_reply(why));
            return;
        }
        let (Some(pid), None) = (pid, &refusal) else {
            self.metrics.dump_failed(
                refusal
                    .as_ref()
                    .map_or(DumpFailure::Unreachable, |(kind, _)| *kind),
            );
            let why = refusal.map_or_else(|| self.unreachable_reason(), |(_, why)| why);
            error!("{} dump not taken: {why}", trigger.as_str());
            self.fail(Pending::untaken(trigger, reason, waiters), &why);
            return;
        };
        if matches!(trigger, Trigger::Level(_)) {
            self.dumping.sent.push((trigger, Instant::now()));
        }
        self.dumping.seq += 1;
        let name = dumpdir::on_demand_name(
            &plan.dump_prefix,
            pid.as_raw(),
            SystemTime::now(),
            self.dumping.seq,
            trigger,
        );
        let temp = plan.dump_dir.join(files::temp_name(&name));
        self.send(
            Command::Dump(Some(temp.to_string_lossy().into_owned())),
            Pending::Dump {
                trigger,
                reason,
                name,
                sent: Instant::now(),
                waiters,
            },
            DUMP_DEADLINE,
        );
    }

    /// The shim answered a dump: the file under its temporary name is checked, made
    /// private and renamed; anything less is removed and reported.
    pub(super) fn dumped(
        &mut self,
        trigger: Trigger,
        reason: Option<String>,
        name: String,
        sent: Instant,
        waiters: Vec<UnixStream>,
        reply: &Reply,
    ) {
        let round_trip_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let path = self.plan.dump_dir.join(&name);
        let dumped = reply.body::<Dumped>();
        // From /proc once: who owns heap files (for the check, the sidecar and
        // retention) and where the dump's copy of the maps ends.
        let pid = self.child.as_ref().map(|c| c.pid.as_raw());
        let (owner, last) = (self.heap_owner(), self.last_mapping(pid));
        let outcome = match &dumped {
            Ok(_) => self.finalize(&name, owner, last).inspect_err(|_| {
                self.metrics.dump_failed(DumpFailure::Incomplete);
            }),
            Err(failure) => {
                self.metrics.dump_failed(DumpFailure::Jemalloc);
                self.discard_partial(&name);
                Err(failure.to_string())
            }
        };
        if trigger == Trigger::Growth {
            self.dumping.growth.finished(outcome.is_ok());
        }
        let checked = match outcome {
            Ok(checked) => checked,
            Err(why) => {
                let why = format!("heap dump to {} failed: {why}", path.display());
                error!("{why}");
                for w in waiters {
                    control::respond(w, &control::error_reply(why.clone()));
                }
                return;
            }
        };
        self.metrics
            .dumped(trigger.as_str(), round_trip_ms / 1000.0);
        // Before the dump is announced: whoever reads it next finds its sidecar.
        let memory = dumped
            .as_ref()
            .ok()
            .and_then(|d| self.dump_snapshot(&name, d));
        self.write_sidecar(
            &name,
            trigger.as_str(),
            reason,
            memory,
            &checked.maps,
            owner,
        );
        self.timeline_dump(&name, trigger.as_str());
        info!(
            "heap dump written: {} ({} bytes; {}; prof.dump {} us, round trip {round_trip_ms:.2} ms{})",
            path.display(),
            checked.size,
            trigger.as_str(),
            dumped.map_or(0, |d| d.dump_us),
            if dump_overdue(sent) {
                "; after its deadline: counted as a dump, not as a timeout"
            } else {
                ""
            }
        );
        self.dumping.last = Some((path.clone(), SystemTime::now()));
        let line = self.status_line();
        self.tell(&[sd_notify::NotifyState::Status(&line)]);
        let answer = control::body_reply(&control::Dumped {
            path: path.display().to_string(),
            bytes: checked.size,
            round_trip_ms,
        });
        for w in waiters {
            control::respond(w, &answer);
        }
        // After the answer: whoever asked is not kept waiting by deletions.
        self.apply_retention_for(owner);
    }

    /// Checks the temporary file and gives it its final name; what the check found, or
    /// why it failed.
    fn finalize(
        &self,
        name: &str,
        owner: u32,
        last: Option<MapEntry>,
    ) -> Result<CheckedDump, String> {
        self.dump_dir
            .finalize(name, owner, last.as_ref())
            .map_err(|e| e.to_string())
    }

    /// Opens `name` with the checks root needs in mysqld's directory, verifies that it
    /// is a whole dump, and takes its world-read bit away; what it found, or why the file
    /// is not a dump.
    pub(super) fn check_heap_file(
        &self,
        name: &str,
        pid: Option<i32>,
    ) -> Result<CheckedDump, HeapFileError> {
        let last = self.last_mapping(pid);
        self.dump_dir
            .check_heap_file(name, self.heap_owner(), last.as_ref())
    }

    /// The last line of process `pid`'s maps now: where a whole dump's maps copy ends.
    fn last_mapping(&self, pid: Option<i32>) -> Option<MapEntry> {
        pid.and_then(|p| crate::procfs::maps(p).ok()?.pop())
    }

    /// The memory snapshot of dump `name`: the shim's reading from just before
    /// prof.dump, with mysqld's own figures from /proc.
    fn dump_snapshot(
        &self,
        name: &str,
        dumped: &Dumped,
    ) -> Option<jemsafe_report::memory::Snapshot> {
        let pid = self.child.as_ref()?.pid.as_raw();
        let Some(jemalloc) = &dumped.memory else {
            debug!("no memory snapshot for {name}: the shim sent no reading with it");
            return None;
        };
        super::status::memory_snapshot(pid, jemalloc)
            .inspect_err(|why| debug!("no memory snapshot for {name}: {why}"))
            .ok()
    }

    /// Writes `<name>.json` beside the dump `name` of the running mysqld (a warning when
    /// it cannot: the dump is still good without it); `reason`: the reading that fired a
    /// level; `maps`: the dump's own copy; `owner`: [`Self::heap_owner`].
    pub(super) fn write_sidecar(
        &self,
        name: &str,
        trigger: &str,
        reason: Option<String>,
        memory: Option<jemsafe_report::memory::Snapshot>,
        maps: &[MapEntry],
        owner: u32,
    ) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let ctx = dumpdir::sidecar::Context {
            pid: child.pid.as_raw(),
            trigger: trigger.to_owned(),
            reason,
            profile: Some(self.plan.expectation.profile.name.clone()),
            malloc_conf: Some(self.plan.launch.malloc_conf.clone()),
            mysqld_version: self.mysqld_version.clone(),
            jemalloc: child.jemalloc.clone(),
        };
        let mut s = dumpdir::sidecar::collect(&ctx, name, maps);
        if let Some(m) = &memory {
            s.set_memory(m);
        }
        let written = dumpdir::sidecar::write(&self.dump_dir, name, &s, Some(owner));
        if let Err(why) = written {
            warn!(
                "sidecar of {}: {why} (the dump is read without it, as a dump of unknown build)",
                self.dump_dir.join(name).display()
            );
        }
    }

    /// Why mysqld `pid` cannot be dumped yet: it still runs as root, before switching to
    /// its `--user` (MariaDB does so in set_user(), early in its start-up and before it
    /// writes its pid file), and a dump now would be written by root and belong to root.
    fn still_starting(&self, pid: i32) -> Option<String> {
        let will_be = self.dump_owner.map(|(uid, _)| uid);
        let fs_uid = fs_uid(pid);
        still_root(fs_uid, will_be).then(|| {
            format!(
                "mysqld pid {pid} is still starting: it runs as root until it switches to uid {} \
                 (its --user), and a dump now would belong to root; try again in a moment",
                will_be.unwrap_or_default()
            )
        })
    }

    /// Who writes heap files: the running mysqld's filesystem uid (it may have switched
    /// users through its own config, not only through `--user`).
    pub(super) fn heap_owner(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| fs_uid(c.pid.as_raw()))
            .unwrap_or(self.file_owner)
    }

    /// Removes what a failed or abandoned dump left under its temporary name.
    pub(super) fn discard_partial(&self, name: &str) {
        if !name.is_empty() {
            self.dump_dir.discard_partial(name);
        }
    }

    /// Retention over the dump directory, every kind of file in one plan: dumps, their
    /// sidecars and partial files, and incident records (which go with the dumps of
    /// their time, and within their own cap whatever the dumps did).
    pub(super) fn apply_retention(&self) {
        self.apply_retention_for(self.heap_owner());
    }

    /// [`Self::apply_retention`] with the heap files' owner already read.
    fn apply_retention_for(&self, heap_owner: u32) {
        let in_flight: Vec<String> = self
            .child
            .iter()
            .flat_map(|c| c.pending.items())
            .filter_map(|p| match p {
                Pending::Dump { name, .. } if !name.is_empty() => Some(name.clone()),
                _ => None,
            })
            .collect();
        let inputs = dumpdir::dir::RetentionInputs {
            policy: &self.plan.retention,
            running: self.child.as_ref().map(|c| c.pid.as_raw() as u32),
            in_flight: &in_flight,
            heap_owner,
        };
        self.dump_dir.apply_retention(&inputs, SystemTime::now());
    }
}

/// The filesystem uid of process `pid` (the fourth `Uid:` field of /proc/PID/status).
fn fs_uid(pid: i32) -> Option<u32> {
    crate::procfs::status_value(pid, "Uid")?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Whether a mysqld whose filesystem uid is `fs_uid` has yet to become `will_be`, the
/// uid of its `--user`: it starts as root and switches early in its start-up.
fn still_root(fs_uid: Option<u32>, will_be: Option<u32>) -> bool {
    fs_uid == Some(0) && will_be.is_some_and(|uid| uid != 0)
}

pub(super) use crate::dumpdir::dir::{CheckedDump, HeapFileError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysqld_is_still_starting_while_root_before_its_user() {
        assert!(still_root(Some(0), Some(102)));
        // Switched, or never to switch (`--user=root`, no `--user`, jemsafe not root),
        // or unknown: a dump goes ahead.
        assert!(!still_root(Some(102), Some(102)));
        assert!(!still_root(Some(0), Some(0)));
        assert!(!still_root(Some(0), None));
        assert!(!still_root(None, Some(102)));
    }
}
