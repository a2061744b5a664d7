//! The timeline's records, written: every `[timeline] interval_s` (at a check's wake-up,
//! so no extra one, as [`crate::watch`] decides) a sample of RSS and its parts from
//! /proc/PID/status (counters, no page-table walk) and one memory request to the shim
//! through the ledger, with a deadline (without an answer in time the sample has RSS
//! alone); and the events of mysqld's life: starts, dumps, prof changes, exits.

use super::Supervisor;
use crate::timeline::{EventKind, Parts, Record, Sample};
use crate::watch::memlimit::{self, Group};
use crate::{debug, info, warn};
use std::time::{Duration, Instant, SystemTime};

/// The timeline file, and the process its records name.
#[derive(Default)]
pub(super) struct Recorder {
    writer: Option<crate::timeline::file::Writer>,
    /// A failure to write is said once until it works again.
    failing: bool,
    /// When the sample in flight was asked for (its round trip is logged at debug).
    sample_sent: Option<Instant>,
    /// The running (or last) mysqld: records name the process by both.
    pid: u32,
    start_ticks: u64,
}

impl Recorder {
    pub fn set_writer(&mut self, writer: crate::timeline::file::Writer) {
        self.writer = Some(writer);
    }

    /// mysqld `pid` started: the records name it from now.
    pub fn started(&mut self, pid: i32) {
        self.pid = pid as u32;
        self.start_ticks = crate::procfs::stat_fields(pid)
            .and_then(|f| f.get(19)?.parse().ok())
            .unwrap_or(0);
    }

    /// The file trimmed to its age.
    pub fn maintain(&self) {
        if let Some(Err(why)) = self.writer.as_ref().map(|w| w.maintain(SystemTime::now())) {
            warn!("timeline: {why}");
        }
    }

    fn write(&mut self, record: &Record) {
        let Some(writer) = self.writer.as_ref() else {
            return;
        };
        match writer.append(&crate::timeline::encode(record)) {
            Ok(note) => {
                if let Some(note) = note {
                    warn!("timeline: {note}");
                }
                if self.failing {
                    info!("timeline: {} is written again", writer.path().display());
                    self.failing = false;
                }
            }
            Err(why) => {
                if !self.failing {
                    warn!("timeline: {why} (said once until it works again)");
                    self.failing = true;
                }
            }
        }
    }
}

impl Supervisor<'_> {
    /// Time for a timeline sample: ask the shim (its deadline writes RSS alone).
    pub(super) fn ask_sample(&mut self) {
        let every = self
            .watching
            .watch
            .sample_every()
            .unwrap_or(Duration::from_secs(10));
        self.watching.record.sample_sent = Some(Instant::now());
        let deadline = every.min(super::shim_requests::STATUS_DEADLINE);
        self.send(
            jemsafe_proto::Command::Memory,
            super::Pending::TimelineSample,
            deadline,
        );
    }

    /// A timeline sample: the shim's reading when it came, the kernel's now.
    pub(super) fn timeline_sampled(&mut self, reply: Option<&jemsafe_proto::Reply>) {
        self.watching.watch.sampled();
        let Some(pid) = self.child.as_ref().map(|c| c.pid.as_raw()) else {
            return;
        };
        let jem = reply.and_then(|r| r.body::<jemsafe_proto::Memory>().ok());
        let proc = crate::procfs::read(pid, "status")
            .ok()
            .map(|t| jemsafe_report::memory::ProcMemory::from_status(&t))
            .filter(|p| p.rss > 0);
        let (rss, parts, allocated) = match (jem, proc) {
            (Some(j), Some(p)) => {
                let b = jemsafe_report::memory::breakdown(&p, &j);
                (b.rss, Some(Parts::from_breakdown(&b)), Some(j.allocated))
            }
            (None, Some(p)) => (p.rss, None, None),
            (_, None) => match memlimit::statm_rss(pid).filter(|r| *r > 0) {
                Some(r) => (r, None, None),
                None => return,
            },
        };
        let m = &mut self.watching;
        let sample = Sample {
            time: SystemTime::now(),
            pid: m.record.pid,
            start: m.record.start_ticks,
            rss,
            parts,
            allocated,
            cgroup_usage: m.group.as_ref().and_then(Group::usage),
            limit: m.watch.limit().map(|l| l.bytes),
        };
        m.record.write(&Record::Sample(sample));
        if let Some(sent) = m.record.sample_sent.take() {
            debug!(
                "timeline sample: {} us from the request to the record ({})",
                sent.elapsed().as_micros(),
                if parts.is_some() {
                    "with the shim's reading"
                } else {
                    "RSS alone"
                }
            );
        }
    }

    /// An event of the current (or just ended) mysqld on the timeline.
    pub(super) fn timeline_event(&mut self, kind: EventKind) {
        let r = &mut self.watching.record;
        if r.writer.is_none() || r.pid == 0 {
            return;
        }
        let event = crate::timeline::Event {
            time: SystemTime::now(),
            pid: r.pid,
            start: r.start_ticks,
            kind,
        };
        r.write(&Record::Event(event));
    }

    /// A dump on the timeline.
    pub(super) fn timeline_dump(&mut self, file: &str, trigger: &str) {
        self.timeline_event(EventKind::Dump {
            file: file.to_owned(),
            trigger: trigger.to_owned(),
        });
    }
}
