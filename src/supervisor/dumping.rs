//! Heap dumps from the supervisor's side: requests through the storm throttle, the file
//! made whole under its final name, jemalloc's own dumps checked, retention, and the
//! inotify watch on the dump directory (kept alive when the directory is re-created).

use super::shim_requests::DUMP_DEADLINE;
use super::{Pending, Supervisor};
use crate::control;
use crate::dumps::{self, files, retention, Trigger};
use crate::metrics::DumpFailure;
use crate::{debug, error, info, warn};
use jemsafe_proto::{Command, Dumped, Reply};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Instant, SystemTime};

use super::policy::Admit;

/// inotify on the dump directory, and on its parent while the directory is gone.
pub struct DumpWatch {
    inotify: Option<Inotify>,
    dir: Option<WatchDescriptor>,
    parent: Option<WatchDescriptor>,
}

impl DumpWatch {
    pub fn new(dir: &Path) -> DumpWatch {
        let mut watch = DumpWatch {
            inotify: None,
            dir: None,
            parent: None,
        };
        match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(ino) => watch.inotify = Some(ino),
            Err(e) => {
                warn!("cannot use inotify ({e}): retention will run only at start-up and after jemsafe's own dumps");
                return watch;
            }
        }
        if let Err(e) = watch.watch_dir(dir) {
            warn!(
                "cannot watch {} ({e}): retention will run only at start-up and after jemsafe's own dumps",
                dir.display()
            );
        }
        watch
    }

    pub fn inotify(&self) -> Option<&Inotify> {
        self.inotify.as_ref()
    }

    fn watch_dir(&mut self, dir: &Path) -> nix::Result<()> {
        let ino = self.inotify.as_ref().ok_or(nix::errno::Errno::EBADF)?;
        let wd = ino.add_watch(
            dir,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR
                | AddWatchFlags::IN_DONT_FOLLOW,
        )?;
        self.dir = Some(wd);
        if let Some(parent) = self.parent.take() {
            let _ = ino.rm_watch(parent);
        }
        Ok(())
    }

    /// The directory's watch is gone: watch it again if it is back, else its parent, to
    /// notice when it is.
    fn lost(&mut self, dir: &Path) -> bool {
        if let Some(wd) = self.dir.take() {
            if let Some(ino) = &self.inotify {
                let _ = ino.rm_watch(wd); // the kernel may have dropped it already
            }
        }
        if self.watch_dir(dir).is_ok() {
            return true;
        }
        if let (Some(ino), Some(parent)) = (&self.inotify, dir.parent()) {
            match ino.add_watch(
                parent,
                AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR,
            ) {
                Ok(wd) => self.parent = Some(wd),
                Err(e) => warn!(
                    "cannot watch {} either ({e}): the dump directory is watched again at the next dump",
                    parent.display()
                ),
            }
        }
        false
    }
}

/// Free space in words: KiB below a MiB, so that "0 MiB" never hides 1016 KiB.
pub fn human_space(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

impl Supervisor<'_> {
    /// An on-demand dump. A dump still in flight is joined (mysqld is busy or stopped:
    /// another file would only queue behind it); otherwise through the storm throttle.
    pub(super) fn request_dump(&mut self, trigger: Trigger, waiter: Option<UnixStream>) {
        if let Some(child) = self.child.as_mut() {
            let pid = child.pid;
            if let Some((Pending::Dump { waiters, sent, .. }, overdue)) = child
                .pending
                .find_mut(|p| matches!(p, Pending::Dump { .. }))
            {
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
                return;
            }
        }
        match self.throttle.request(Instant::now()) {
            Admit::Now => self.send_dump(trigger, waiter.into_iter().collect()),
            Admit::At(_) | Admit::Joined => {
                debug!(
                    "dump request ({}) coalesced into the next dump",
                    trigger.as_str()
                );
                self.trailing_trigger.get_or_insert(trigger);
                self.trailing.extend(waiter);
            }
        }
    }

    pub(super) fn send_dump(&mut self, trigger: Trigger, waiters: Vec<UnixStream>) {
        let plan = self.plan;
        let present = plan.dump_dir.symlink_metadata().is_ok_and(|m| m.is_dir());
        if !present {
            self.recreate_dump_dir();
        }
        let refusal = match dumps::free_bytes(&plan.dump_dir) {
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
        let pid = self.child.as_ref().map(|c| c.pid);
        if let Some(why) = pid.and_then(|p| self.still_starting(p.as_raw())) {
            // Counted as mysqld_unreachable: it cannot be dumped yet, and the same
            // request succeeds in a moment.
            self.metrics.dump_failed(DumpFailure::Unreachable);
            warn!("{} dump not taken: {why}", trigger.as_str());
            let pending = Pending::Dump {
                trigger,
                name: String::new(),
                sent: Instant::now(),
                waiters,
            };
            self.fail_with(pending, &control::temporary_reply(why));
            return;
        }
        let (Some(pid), None) = (pid, &refusal) else {
            self.metrics.dump_failed(if refusal.is_some() {
                DumpFailure::DiskSpace
            } else {
                DumpFailure::Unreachable
            });
            let why = refusal.unwrap_or_else(|| self.unreachable_reason());
            error!("{} dump not taken: {why}", trigger.as_str());
            let pending = Pending::Dump {
                trigger,
                name: String::new(),
                sent: Instant::now(),
                waiters,
            };
            self.fail(pending, &why);
            return;
        };
        self.dump_seq += 1;
        let name = dumps::on_demand_name(
            &plan.dump_prefix,
            pid.as_raw(),
            SystemTime::now(),
            self.dump_seq,
            trigger,
        );
        let temp = plan.dump_dir.join(files::temp_name(&name));
        // Where the memory is, read just before the dump (the shim answers in order):
        // it goes into the dump's sidecar.
        self.send(
            Command::Memory,
            Pending::DumpSnapshot(name.clone()),
            DUMP_DEADLINE,
        );
        self.send(
            Command::Dump(Some(temp.to_string_lossy().into_owned())),
            Pending::Dump {
                trigger,
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
        name: String,
        sent: Instant,
        waiters: Vec<UnixStream>,
        reply: &Reply,
    ) {
        let round_trip_ms = sent.elapsed().as_secs_f64() * 1000.0;
        // Taken whatever the outcome, so that none is left behind.
        let snapshot = self.take_snapshot(&name);
        let path = self.plan.dump_dir.join(&name);
        let dumped = reply.body::<Dumped>();
        let outcome = match &dumped {
            Ok(_) => self.finalize(&name).inspect_err(|_| {
                self.metrics.dump_failed(DumpFailure::Incomplete);
            }),
            Err(failure) => {
                self.metrics.dump_failed(DumpFailure::Jemalloc);
                self.discard_partial(&name);
                Err(failure.to_string())
            }
        };
        if trigger == Trigger::Growth {
            self.growth.finished(outcome.is_ok());
        }
        let size = match outcome {
            Ok(size) => size,
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
        self.write_sidecar(&name, trigger.as_str(), snapshot);
        self.timeline_dump(&name, trigger.as_str());
        info!(
            "heap dump written: {} ({size} bytes; {}; prof.dump {} us, round trip {round_trip_ms:.2} ms)",
            path.display(),
            trigger.as_str(),
            dumped.map_or(0, |d| d.dump_us)
        );
        self.last_dump = Some((path.clone(), SystemTime::now()));
        let line = self.status_line();
        self.tell(&[sd_notify::NotifyState::Status(&line)]);
        let answer = control::body_reply(&control::Dumped {
            path: path.display().to_string(),
            bytes: size,
            round_trip_ms,
        });
        for w in waiters {
            control::respond(w, &answer);
        }
        // After the answer: whoever asked is not kept waiting by deletions.
        self.apply_retention();
    }

    /// Checks the temporary file and gives it its final name; its size, or why not.
    fn finalize(&self, name: &str) -> Result<u64, String> {
        let dir = &self.plan.dump_dir;
        let dir_fd =
            files::open_dir(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        let temp = files::temp_name(name);
        let checked =
            self.check_heap_file(&dir_fd, &temp, self.child.as_ref().map(|c| c.pid.as_raw()));
        let size = match checked {
            Ok(size) => size,
            Err(why) => {
                let _ = files::remove(&dir_fd, &temp);
                return Err(why.to_string());
            }
        };
        files::rename_new(&dir_fd, &temp, name).map_err(|e| {
            let _ = files::remove(&dir_fd, &temp);
            format!("cannot rename {temp} to {name}: {e}")
        })?;
        Ok(size)
    }

    /// Opens `name` with the checks root needs in mysqld's directory, verifies that it
    /// is a whole dump, and takes its world-read bit away; its size, or why it is not.
    fn check_heap_file(
        &self,
        dir_fd: &std::os::fd::OwnedFd,
        name: &str,
        pid: Option<i32>,
    ) -> Result<u64, HeapFileError> {
        let mut file = files::open_heap_file(dir_fd, name, Some(self.heap_owner()))
            .map_err(HeapFileError::Unusable)?;
        let (size, tail) = files::read_tail(&mut file)
            .map_err(|e| HeapFileError::Unusable(format!("cannot read it: {e}")))?;
        let last = pid.and_then(|p| crate::procfs::maps(p).ok()?.pop());
        files::completeness(size, &tail, last.as_ref()).map_err(|why| {
            let free = dumps::free_bytes(&self.plan.dump_dir)
                .map(|f| format!("; {} free on its filesystem", human_space(f)))
                .unwrap_or_default();
            HeapFileError::Incomplete(format!("{why}{free}"))
        })?;
        files::restrict_file(&file)
            .map_err(|e| HeapFileError::Unusable(format!("cannot chmod it: {e}")))?;
        Ok(size)
    }

    /// The memory snapshot taken for dump `name`, if it came.
    fn take_snapshot(&mut self, name: &str) -> Option<jemsafe_report::memory::Snapshot> {
        let child = self.child.as_mut()?;
        let at = child.snapshots.iter().position(|(n, _)| n == name)?;
        Some(child.snapshots.swap_remove(at).1)
    }

    /// Writes `<name>.json` beside the dump `name` of the running mysqld (a warning when
    /// it cannot: the dump is still good without it).
    pub(super) fn write_sidecar(
        &self,
        name: &str,
        trigger: &str,
        memory: Option<jemsafe_report::memory::Snapshot>,
    ) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let ctx = dumps::sidecar::Context {
            pid: child.pid.as_raw(),
            trigger: trigger.to_owned(),
            profile: Some(self.plan.expectation.profile.name.clone()),
            malloc_conf: Some(self.plan.launch.malloc_conf.clone()),
            mysqld_version: self.mysqld_version.clone(),
            jemalloc: child.jemalloc.clone(),
        };
        let mut s = dumps::sidecar::collect(&ctx, name);
        if let Some(m) = &memory {
            s.set_memory(m);
        }
        let dir = &self.plan.dump_dir;
        let written = files::open_dir(dir)
            .map_err(|e| format!("cannot open {}: {e}", dir.display()))
            .and_then(|fd| dumps::sidecar::write(&fd, name, &s, Some(self.heap_owner())));
        if let Err(why) = written {
            warn!(
                "sidecar of {}: {why} (the dump is read without it, as a dump of unknown build)",
                dir.join(name).display()
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
    fn heap_owner(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| fs_uid(c.pid.as_raw()))
            .unwrap_or(self.file_owner)
    }

    /// Removes what a failed or abandoned dump left under its temporary name.
    pub(super) fn discard_partial(&self, name: &str) {
        if name.is_empty() {
            return;
        }
        if let Ok(dir_fd) = files::open_dir(&self.plan.dump_dir) {
            let _ = files::remove(&dir_fd, &files::temp_name(name));
        }
    }

    /// The dump directory vanished: jemsafe made it at start-up, so it makes it again
    /// (a dump asked for now should not fail for want of it), and watches it.
    fn recreate_dump_dir(&mut self) {
        let dir = &self.plan.dump_dir;
        if let Err(e) = dumps::prepare_dir(dir, self.dump_owner) {
            warn!("{e}");
            return;
        }
        warn!(
            "the dump directory {} was missing: created it again",
            dir.display()
        );
        if self.watch.lost(dir) {
            info!("watching {} again", dir.display());
        }
    }

    pub(super) fn dump_dir_changed(&mut self) {
        let mut events_seen = Vec::new();
        let mut lost = false;
        let mut back = false;
        if let Some(ino) = self.watch.inotify() {
            while let Ok(events) = ino.read_events() {
                if events.is_empty() {
                    break;
                }
                for e in events {
                    let name = e.name.as_ref().and_then(|n| n.to_str()).map(str::to_owned);
                    if Some(e.wd) == self.watch.parent {
                        back |= name.as_deref()
                            == self.plan.dump_dir.file_name().and_then(|n| n.to_str());
                    } else if e.mask.intersects(
                        AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF,
                    ) {
                        lost |= Some(e.wd) == self.watch.dir;
                    } else if let Some(name) = name {
                        events_seen.push((name, e.mask));
                    }
                }
            }
        }
        let dir = self.plan.dump_dir.clone();
        if lost {
            warn!(
                "the dump directory {} was removed or moved: retention stops until it exists again",
                dir.display()
            );
            if self.watch.lost(&dir) {
                info!("watching {} again", dir.display());
                self.apply_retention();
            }
        }
        if back && self.watch.lost(&dir) {
            info!("{} exists again: watching it", dir.display());
            self.apply_retention();
        }
        let mut ours = false;
        for (name, mask) in events_seen {
            let Some(heap) = dumps::HeapName::parse(&self.plan.dump_prefix, &name) else {
                continue;
            };
            // jemsafe's own names: it checked, restricted and renamed the file itself, and
            // `dumped` ran retention; this event is the echo of its own rename.
            if matches!(heap.origin, dumps::naming::Origin::OnDemand { .. }) {
                continue;
            }
            ours = true;
            self.inspect_new_file(&name, &heap, mask);
        }
        if ours {
            self.apply_retention();
        }
    }

    /// A heap file appeared: jemalloc's own dumps are checked for completeness (a full
    /// disk cuts them short) and every one loses its world-read bit, through the checks.
    fn inspect_new_file(&mut self, name: &str, heap: &dumps::HeapName, mask: AddWatchFlags) {
        let Ok(dir_fd) = files::open_dir(&self.plan.dump_dir) else {
            return;
        };
        let automatic = matches!(heap.origin, dumps::naming::Origin::Automatic { .. });
        if automatic && mask.contains(AddWatchFlags::IN_CLOSE_WRITE) {
            let pid = self
                .child
                .as_ref()
                .map(|c| c.pid.as_raw())
                .filter(|p| *p as u32 == heap.pid);
            let checked = self.check_heap_file(&dir_fd, name, pid);
            if checked.is_ok() && pid.is_some() {
                let kind = match heap.origin {
                    dumps::naming::Origin::Automatic { kind } => {
                        dumps::naming::automatic_trigger(kind)
                    }
                    dumps::naming::Origin::OnDemand { .. } => "manual",
                };
                self.snapshot_auto_dump(name, kind);
            }
            if let Err(why) = checked {
                let removed = matches!(why, HeapFileError::Incomplete(_))
                    && files::remove(&dir_fd, name).is_ok();
                warn!(
                    "jemalloc's dump {}: {why}{}",
                    self.plan.dump_dir.join(name).display(),
                    if removed {
                        "; removed it"
                    } else {
                        "; left it alone"
                    }
                );
            }
            return;
        }
        match files::open_heap_file(&dir_fd, name, Some(self.heap_owner())) {
            Ok(file) => {
                let _ = files::restrict_file(&file);
            }
            Err(why) => warn!(
                "not touching {}: {why}",
                self.plan.dump_dir.join(name).display()
            ),
        }
    }

    pub(super) fn apply_retention(&self) {
        let plan = self.plan;
        let dir = &plan.dump_dir;
        let entries = match dumps::scan(dir, &plan.dump_prefix) {
            Ok(e) => e,
            Err(e) => {
                warn!("retention: cannot list {}: {e}", dir.display());
                return;
            }
        };
        let in_flight: Vec<String> = self
            .child
            .iter()
            .flat_map(|c| c.pending.items())
            .filter_map(|p| match p {
                Pending::Dump { name, .. } if !name.is_empty() => Some(name.clone()),
                _ => None,
            })
            .collect();
        let state = retention::State {
            entries: &entries,
            running: self.child.as_ref().map(|c| c.pid.as_raw() as u32),
            in_flight: &in_flight,
        };
        let deletions = retention::plan(&state, &plan.retention, SystemTime::now());
        if deletions.is_empty() {
            return;
        }
        let dir_fd = match files::open_dir(dir) {
            Ok(fd) => fd,
            Err(e) => {
                warn!("retention: cannot open {}: {e}", dir.display());
                return;
            }
        };
        for d in deletions {
            let path = dir.join(&d.name);
            // The entry itself, by its name in the directory: a symlink swapped in since
            // the listing is removed, never followed.
            match files::remove(&dir_fd, &d.name) {
                Ok(()) if d.what == retention::What::Sidecar => {
                    debug!("retention: deleted {} ({})", path.display(), d.reason)
                }
                Ok(()) => info!("retention: deleted {} ({})", path.display(), d.reason),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!("retention: cannot delete {}: {e}", path.display()),
            }
        }
        self.retire_incidents();
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

/// Why a heap file is not kept as a dump.
#[derive(Debug)]
enum HeapFileError {
    /// Cut short (a full disk): removed, since it cannot be read.
    Incomplete(String),
    /// Not a file root should touch (a symlink, another owner, several links), or
    /// unreadable: left alone.
    Unusable(String),
}

impl std::fmt::Display for HeapFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeapFileError::Incomplete(why) => write!(f, "the file is incomplete: {why}"),
            HeapFileError::Unusable(why) => f.write_str(why),
        }
    }
}

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

    #[test]
    fn free_space_below_a_mib_is_said_in_kib() {
        assert_eq!(human_space(1016 << 10), "1016 KiB");
        assert_eq!(human_space(3 << 20), "3 MiB");
    }
}
