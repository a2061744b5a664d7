//! The dump directory under inotify: jemalloc's own dumps checked as they appear, every
//! new heap file made private, retention after outside changes, and the watch kept alive
//! when the directory is removed and made again.

use super::dumping::HeapFileError;
use super::Supervisor;
use crate::dumpdir::{self, files};
use crate::{info, warn};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::path::Path;

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
                Ok(wd) => {
                    self.parent = Some(wd);
                    // Made again between the failed watch and this one: no event will
                    // ever say so, so look once more now that the parent is watched.
                    if self.watch_dir(dir).is_ok() {
                        return true;
                    }
                }
                Err(e) => warn!(
                    "cannot watch {} either ({e}): the dump directory is watched again at the next dump",
                    parent.display()
                ),
            }
        }
        false
    }
}

impl Supervisor<'_> {
    /// The dump directory vanished: jemsafe made it at start-up, so it makes it again
    /// (a dump asked for now should not fail for want of it), and watches it.
    pub(super) fn recreate_dump_dir(&mut self) {
        let dir = &self.plan.dump_dir;
        if let Err(e) = dumpdir::prepare_dir(dir, self.dump_owner) {
            warn!("{e}");
            return;
        }
        warn!(
            "the dump directory {} was missing: created it again",
            dir.display()
        );
        if self.dir_events.lost(dir) {
            info!("watching {} again", dir.display());
        }
    }

    pub(super) fn dump_dir_changed(&mut self) {
        let mut events_seen = Vec::new();
        let mut lost = false;
        let mut back = false;
        if let Some(ino) = self.dir_events.inotify() {
            while let Ok(events) = ino.read_events() {
                if events.is_empty() {
                    break;
                }
                for e in events {
                    let name = e.name.as_ref().and_then(|n| n.to_str()).map(str::to_owned);
                    if Some(e.wd) == self.dir_events.parent {
                        back |= name.as_deref()
                            == self.plan.dump_dir.file_name().and_then(|n| n.to_str());
                    } else if e.mask.intersects(
                        AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF,
                    ) {
                        lost |= Some(e.wd) == self.dir_events.dir;
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
            if self.dir_events.lost(&dir) {
                info!("watching {} again", dir.display());
                self.apply_retention();
            }
        }
        if back && self.dir_events.lost(&dir) {
            info!("{} exists again: watching it", dir.display());
            self.apply_retention();
        }
        let mut ours = false;
        for (name, mask) in events_seen {
            let Some(heap) = dumpdir::HeapName::parse(&self.plan.dump_prefix, &name) else {
                continue;
            };
            // jemsafe's own names: it checked, restricted and renamed the file itself, and
            // `dumped` ran retention; this event is the echo of its own rename.
            let dumpdir::naming::Origin::Automatic { kind } = heap.origin else {
                continue;
            };
            ours = true;
            self.inspect_new_file(
                &name,
                dumpdir::naming::automatic_trigger(kind),
                heap.pid,
                mask,
            );
        }
        if ours {
            self.apply_retention();
        }
    }

    /// jemalloc's own dump `name` (of trigger `kind`, by process `pid`) appeared: once
    /// written, it is checked for completeness (a full disk cuts it short); every one
    /// loses its world-read bit, through the checks.
    fn inspect_new_file(&mut self, name: &str, kind: &'static str, pid: u32, mask: AddWatchFlags) {
        let Ok(dir_fd) = self.dump_dir.fd() else {
            return;
        };
        if mask.contains(AddWatchFlags::IN_CLOSE_WRITE) {
            let pid = self
                .child
                .as_ref()
                .map(|c| c.pid.as_raw())
                .filter(|p| *p as u32 == pid);
            match self.check_heap_file(name, pid) {
                Ok(checked) if pid.is_some() => self.snapshot_auto_dump(name, kind, checked),
                Ok(_) => {}
                Err(why) => {
                    let removed = matches!(why, HeapFileError::Incomplete { .. })
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
}
