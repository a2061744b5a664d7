//! Prometheus metrics: what the supervisor counts as it goes (dumps, failures, round
//! trips, restarts), and gauges filled from a `Status` at each scrape. Names follow the
//! Prometheus conventions: units in the name, `_total` for counters.

use crate::control::Status;
use jemsafe_report::memory::PARTS;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Why an on-demand dump failed, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFailure {
    /// Below `min_free_mb` on the dump filesystem.
    DiskSpace,
    /// mysqld not running, or its shim not reachable.
    Unreachable,
    /// jemalloc refused or failed (prof.dump's errno).
    Jemalloc,
    /// The file was cut short (full disk) and removed.
    Incomplete,
    /// mysqld did not answer within the deadline, and ended without writing the dump (a
    /// dump written late counts as a dump, never also as a failure).
    Timeout,
    /// mysqld ended (killed, crashed) while writing the dump, within its deadline.
    MysqldExited,
}

impl DumpFailure {
    fn label(self) -> &'static str {
        match self {
            DumpFailure::DiskSpace => "disk_space",
            DumpFailure::Unreachable => "mysqld_unreachable",
            DumpFailure::Jemalloc => "jemalloc",
            DumpFailure::Incomplete => "incomplete",
            DumpFailure::Timeout => "timeout",
            DumpFailure::MysqldExited => "mysqld_exited",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    dumps: IntCounterVec,
    dump_failures: IntCounterVec,
    dump_round_trip: Histogram,
    restarts: IntCounter,
    oom_kills: IntCounter,
    panics: IntCounter,
    up: IntGauge,
    pid: IntGauge,
    start_time: Gauge,
    last_exit: IntGauge,
    verified: IntGauge,
    prof_active: IntGauge,
    lg_prof_sample: IntGauge,
    /// jemalloc's stats.*: one gauge each, `jemsafe_jemalloc_<stat>_bytes`.
    /// Without labels, so that an unknown value is absent rather than a made-up number.
    jemalloc: Vec<(&'static str, IntGaugeVec)>,
    memory: IntGaugeVec,
    dump_dir_bytes: IntGauge,
    dump_dir_files: IntGauge,
    dump_dir_free: IntGauge,
    answering: IntGauge,
    http_refused: IntCounterVec,
}

const JEMALLOC_STATS: [&str; 5] = ["allocated", "active", "resident", "mapped", "retained"];

/// `jemsafe_memory_bytes`'s help: its `part` values are RSS, the parts of
/// [`PARTS`] (their keys, as in `jemsafe memory --json`), and swap.
fn memory_help() -> String {
    let parts: Vec<&str> = PARTS.iter().map(|p| p.key).collect();
    format!(
        "mysqld's RSS broken down (part: rss, {}, swap)",
        parts.join(", ")
    )
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help);
        let dumps = IntCounterVec::new(
            opts("jemsafe_dumps_total", "Heap dumps written, by trigger"),
            &["trigger"],
        );
        let dump_failures = IntCounterVec::new(
            opts(
                "jemsafe_dump_failures_total",
                "On-demand heap dumps that failed, by reason (disk_space, mysqld_unreachable, \
                 jemalloc, incomplete, timeout, mysqld_exited); each dump counts once, here or \
                 in jemsafe_dumps_total",
            ),
            &["reason"],
        );
        let dump_round_trip = Histogram::with_opts(
            HistogramOpts::new(
                "jemsafe_dump_round_trip_seconds",
                "From the request to a whole heap file under its final name",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
        );
        let gauge = |name: &str, help: &str| IntGauge::with_opts(opts(name, help));
        let m = (|| -> prometheus::Result<Metrics> {
            let m = Metrics {
                dumps: dumps?,
                dump_failures: dump_failures?,
                dump_round_trip: dump_round_trip?,
                restarts: IntCounter::with_opts(opts(
                    "jemsafe_restarts_total",
                    "mysqld restarts by jemsafe's restart policy",
                ))?,
                oom_kills: IntCounter::with_opts(opts(
                    "jemsafe_mysqld_oom_kills_total",
                    "mysqld processes killed by the kernel's OOM killer",
                ))?,
                panics: IntCounter::with_opts(opts(
                    "jemsafe_contained_panics_total",
                    "Internal errors (panics) in the supervisor's event handlers, contained: \
                     the event was abandoned, the loop and mysqld went on",
                ))?,
                up: gauge("jemsafe_mysqld_up", "1 when mysqld runs under jemsafe")?,
                pid: gauge("jemsafe_mysqld_pid", "mysqld's process id")?,
                start_time: Gauge::with_opts(opts(
                    "jemsafe_mysqld_start_time_seconds",
                    "When the running mysqld started, in seconds since the Unix epoch",
                ))?,
                last_exit: gauge(
                    "jemsafe_mysqld_last_exit_status",
                    "mysqld's last exit status (128+N for signal N); -1 before any exit",
                )?,
                verified: gauge(
                    "jemsafe_verification_ok",
                    "1 when /proc maps and the shim's handshake proved the profiling allocator",
                )?,
                prof_active: gauge("jemsafe_prof_active", "jemalloc's prof.active (0 or 1)")?,
                lg_prof_sample: gauge(
                    "jemsafe_lg_prof_sample",
                    "jemalloc's lg_prof_sample: one sample per 2^N bytes allocated",
                )?,
                jemalloc: JEMALLOC_STATS
                    .iter()
                    .map(|stat| {
                        IntGaugeVec::new(
                            opts(
                                &format!("jemsafe_jemalloc_{stat}_bytes"),
                                &format!("jemalloc's stats.{stat} in mysqld"),
                            ),
                            &[],
                        )
                        .map(|g| (*stat, g))
                    })
                    .collect::<prometheus::Result<_>>()?,
                memory: IntGaugeVec::new(opts("jemsafe_memory_bytes", &memory_help()), &["part"])?,
                dump_dir_bytes: gauge(
                    "jemsafe_dump_dir_bytes",
                    "Bytes of heap files in the dump directory",
                )?,
                dump_dir_files: gauge(
                    "jemsafe_dump_dir_files",
                    "Heap files in the dump directory",
                )?,
                dump_dir_free: gauge(
                    "jemsafe_dump_dir_free_bytes",
                    "Free bytes on the dump directory's filesystem",
                )?,
                answering: gauge(
                    "jemsafe_mysqld_answering",
                    "1 when mysqld runs and answered the scrape's status request in time \
                     (0: not running, or stopped or stuck, as `jemsafe status` says)",
                )?,
                http_refused: IntCounterVec::new(
                    opts(
                        "jemsafe_http_refused_total",
                        "HTTP requests refused, by reason (connections, reserved, \
                         peer_connections, head_timeout, unauthorized, profile_busy)",
                    ),
                    &["reason"],
                )?,
                registry,
            };
            let r = &m.registry;
            r.register(Box::new(m.dumps.clone()))?;
            r.register(Box::new(m.dump_failures.clone()))?;
            r.register(Box::new(m.dump_round_trip.clone()))?;
            r.register(Box::new(m.restarts.clone()))?;
            r.register(Box::new(m.oom_kills.clone()))?;
            r.register(Box::new(m.panics.clone()))?;
            for g in [
                &m.up,
                &m.pid,
                &m.last_exit,
                &m.verified,
                &m.prof_active,
                &m.lg_prof_sample,
            ] {
                r.register(Box::new(g.clone()))?;
            }
            for (_, g) in &m.jemalloc {
                r.register(Box::new(g.clone()))?;
            }
            for g in [&m.dump_dir_bytes, &m.dump_dir_files, &m.dump_dir_free] {
                r.register(Box::new(g.clone()))?;
            }
            r.register(Box::new(m.start_time.clone()))?;
            r.register(Box::new(m.memory.clone()))?;
            r.register(Box::new(m.answering.clone()))?;
            r.register(Box::new(m.http_refused.clone()))?;
            Ok(m)
        })();
        // The names and options above are constants: an error here is a bug in them.
        m.unwrap_or_else(|e| panic!("jemsafe's metric definitions are invalid: {e}"))
    }

    pub fn dumped(&self, trigger: &str, round_trip_s: f64) {
        self.dumps.with_label_values(&[trigger]).inc();
        self.dump_round_trip.observe(round_trip_s);
    }

    pub fn dump_failed(&self, why: DumpFailure) {
        self.dump_failures.with_label_values(&[why.label()]).inc();
    }

    pub fn restarted(&self) {
        self.restarts.inc();
    }

    /// The HTTP server refused a request or connection; `reason` is a label value.
    pub fn http_refused(&self, reason: &str) {
        self.http_refused.with_label_values(&[reason]).inc();
    }

    /// mysqld was killed by the kernel's OOM killer.
    pub fn oom_killed(&self) {
        self.oom_kills.inc();
    }

    /// A panic in an event handler was contained (`supervisor`'s module doc).
    pub fn panic_contained(&self) {
        self.panics.inc();
    }

    /// The text exposition format, gauges taken from `status`.
    pub fn render(&self, status: &Status, now: std::time::SystemTime) -> Vec<u8> {
        let up = status.mysqld_pid.is_some();
        self.up.set(i64::from(up));
        self.answering
            .set(i64::from(up && status.mysqld_not_answering.is_none()));
        self.pid.set(status.mysqld_pid.map_or(0, i64::from));
        let since_epoch = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.start_time.set(
            status
                .mysqld_uptime_s
                .map_or(0.0, |u| (since_epoch - u as f64).floor()),
        );
        self.last_exit
            .set(status.last_exit_status.map_or(-1, i64::from));
        self.verified.set(i64::from(
            status.verification.as_ref().is_some_and(|v| v.ok),
        ));
        self.prof_active
            .set(i64::from(status.jemalloc.prof_active == Some(true)));
        self.lg_prof_sample
            .set(status.jemalloc.lg_prof_sample.map_or(0, i64::from));
        // Unknown is absent, never 0; "" addresses a family without labels.
        let set = |vec: &IntGaugeVec, label: &str, v: Option<u64>| {
            let labels: &[&str] = if label.is_empty() { &[] } else { &[label] };
            match v {
                Some(v) => vec
                    .with_label_values(labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX)),
                None => {
                    let _ = vec.remove_label_values(labels);
                }
            }
        };
        let j = &status.stats;
        for (stat, gauge) in &self.jemalloc {
            let v = match *stat {
                "allocated" => j.allocated,
                "active" => j.active,
                "resident" => j.resident,
                "mapped" => j.mapped,
                _ => j.retained,
            };
            set(gauge, "", v);
        }
        let b = status.memory.as_ref();
        set(&self.memory, "rss", b.map(|b| b.rss));
        for part in &PARTS {
            set(&self.memory, part.key, b.map(part.of));
        }
        set(&self.memory, "swap", b.map(|b| b.swap));
        let d = &status.dumps;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.dump_dir_bytes.set(clamp(d.bytes));
        self.dump_dir_files.set(clamp(d.files as u64));
        self.dump_dir_free.set(d.free_bytes.map_or(-1, clamp));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_exposed_with_their_units() {
        let m = Metrics::new();
        m.dumped("usr1", 0.0012);
        m.dump_failed(DumpFailure::DiskSpace);
        m.dumped("limit90", 0.1);
        m.oom_killed();
        let status = Status {
            mysqld_pid: Some(42),
            mysqld_uptime_s: Some(10),
            ..Default::default()
        };
        let text = String::from_utf8(m.render(&status, std::time::SystemTime::now())).unwrap();
        for needle in [
            "jemsafe_mysqld_up 1",
            "jemsafe_mysqld_pid 42",
            "jemsafe_dumps_total{trigger=\"usr1\"} 1",
            "jemsafe_dump_failures_total{reason=\"disk_space\"} 1",
            "jemsafe_dump_round_trip_seconds_bucket{le=\"0.0025\"} 1",
            "jemsafe_dump_dir_files 0",
            "jemsafe_mysqld_answering 1",
            "jemsafe_dumps_total{trigger=\"limit90\"} 1",
            "jemsafe_mysqld_oom_kills_total 1",
        ] {
            assert!(text.contains(needle), "{needle} not in:\n{text}");
        }
        // Unknown figures are absent, not 0.
        assert!(!text.contains("jemsafe_memory_bytes{"), "{text}");
        assert!(
            !text.contains("jemsafe_jemalloc_allocated_bytes "),
            "{text}"
        );
    }

    /// Adding a part to `PARTS` adds its gauge: every part has its line, with its bytes,
    /// and the help names it.
    #[test]
    fn every_part_of_rss_has_its_metric() {
        use jemsafe_report::memory::{breakdown, JemallocMemory, ProcMemory};
        let proc = ProcMemory {
            rss: 900 << 20,
            anonymous: 700 << 20,
            shmem: 30 << 20,
            swap: 5 << 20,
            ..Default::default()
        };
        let jem = JemallocMemory {
            allocated: 100 << 20,
            active: 150 << 20,
            metadata: 7 << 20,
            dirty: 20 << 20,
            muzzy: 3 << 20,
            ..Default::default()
        };
        let b = breakdown(&proc, &jem);
        let status = Status {
            mysqld_pid: Some(42),
            memory: Some(b.clone()),
            ..Default::default()
        };
        let text = String::from_utf8(Metrics::new().render(&status, std::time::SystemTime::now()))
            .unwrap();
        let lines =
            |key: &str, bytes: u64| format!("jemsafe_memory_bytes{{part=\"{key}\"}} {bytes}\n");
        for part in &PARTS {
            let bytes = (part.of)(&b);
            assert!(bytes > 0, "{}: pick readings that give it bytes", part.key);
            assert!(
                text.contains(&lines(part.key, bytes)),
                "{} not in:\n{text}",
                part.key
            );
        }
        assert!(text.contains(&lines("rss", b.rss)), "{text}");
        assert!(text.contains(&lines("swap", b.swap)), "{text}");
        assert!(
            text.contains(
                "# HELP jemsafe_memory_bytes mysqld's RSS broken down (part: rss, heap_in_use, \
                 fragmentation, dirty_pages, metadata, outside_jemalloc, file_backed, shmem, swap)\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("jemsafe_memory_bytes{").count(),
            PARTS.len() + 2,
            "{text}"
        );
    }
}
