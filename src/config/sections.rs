//! The sections of jemsafe.toml as serde reads them, with their documented defaults.
//! Checks that need more than a type (ranges across keys, paths, levels) are in
//! `Config::validate`.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How strictly `run` treats a failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Log the failure and keep mysqld running.
    #[default]
    Warn,
    /// Stop mysqld (SIGTERM, wait) and exit non-zero.
    Require,
}

/// What jemsafe does when it receives SIGUSR1 or SIGUSR2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalAction {
    Dump,
    Activate,
    Deactivate,
    Toggle,
    Reset,
    Ignore,
}

/// `"auto"` or an absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Locator {
    #[default]
    Auto,
    Path(PathBuf),
}

impl<'de> Deserialize<'de> for Locator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            Ok(Locator::Auto)
        } else if s.starts_with('/') {
            Ok(Locator::Path(PathBuf::from(s)))
        } else {
            Err(serde::de::Error::custom(format!(
                "{s:?} is neither \"auto\" nor an absolute path"
            )))
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqldSection {
    /// None: search mysqld, then mariadbd (see `locate`).
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// jemsafe's own profiling jemalloc with the shim inside (`[jemalloc] library = "bundled"`).
pub const BUNDLED_FILE: &str = "libjemsafe_jemalloc.so";

/// `[jemalloc] library`: `"auto"` (the system's libjemalloc.so.2), `"bundled"` (jemsafe's
/// own libjemsafe_jemalloc.so, which carries the shim) or an absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Library {
    #[default]
    Auto,
    Bundled,
    Path(PathBuf),
}

impl Library {
    pub fn is_bundled(&self) -> bool {
        *self == Library::Bundled
    }
}

impl<'de> Deserialize<'de> for Library {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "auto" => Ok(Library::Auto),
            "bundled" => Ok(Library::Bundled),
            _ if s.starts_with('/') => Ok(Library::Path(PathBuf::from(s))),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is neither \"auto\", \"bundled\" nor an absolute path"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JemallocSection {
    #[serde(default)]
    pub library: Library,
    #[serde(default)]
    pub shim: Locator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpsSection {
    #[serde(default = "default_dump_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Newest heap files kept (0 = no limit by count).
    #[serde(
        default = "default_keep",
        deserialize_with = "bounded::<0, 1_000_000, _>"
    )]
    pub keep: u64,
    /// Heap files kept up to this many MiB in all (0 = no limit).
    #[serde(
        default = "default_max_total_mb",
        deserialize_with = "bounded::<0, 100_000_000, _>"
    )]
    pub max_total_mb: u64,
    /// Heap files older than this many hours are deleted (0 = no limit).
    #[serde(
        default = "default_max_age_h",
        deserialize_with = "bounded::<0, 1_000_000, _>"
    )]
    pub max_age_h: u64,
    /// On-demand dumps are refused below this much free space on the dump filesystem.
    #[serde(
        default = "default_min_free_mb",
        deserialize_with = "bounded::<0, 100_000_000, _>"
    )]
    pub min_free_mb: u64,
    /// At most one on-demand dump per interval; requests in between are coalesced.
    #[serde(
        default = "default_min_interval_ms",
        deserialize_with = "bounded::<0, 86_400_000, _>"
    )]
    pub min_interval_ms: u64,
    /// A dump each time stats.allocated passes the highest level dumped so far by this
    /// many MiB (0 = off).
    #[serde(default, deserialize_with = "bounded::<0, 100_000_000, _>")]
    pub on_growth_mb: u64,
    #[serde(
        default = "default_growth_check_s",
        deserialize_with = "bounded::<1, 86_400, _>"
    )]
    pub growth_check_s: u64,
}

impl Default for DumpsSection {
    fn default() -> Self {
        DumpsSection {
            dir: default_dump_dir(),
            prefix: default_prefix(),
            keep: default_keep(),
            max_total_mb: default_max_total_mb(),
            max_age_h: default_max_age_h(),
            min_free_mb: default_min_free_mb(),
            min_interval_ms: default_min_interval_ms(),
            on_growth_mb: 0,
            growth_check_s: default_growth_check_s(),
        }
    }
}

fn default_keep() -> u64 {
    50
}
fn default_max_total_mb() -> u64 {
    2048
}
fn default_max_age_h() -> u64 {
    168
}
fn default_min_free_mb() -> u64 {
    1024
}
fn default_min_interval_ms() -> u64 {
    1000
}
fn default_growth_check_s() -> u64 {
    10
}

/// An integer key within MIN..=MAX; the error names the range.
fn bounded<'de, const MIN: i64, const MAX: i64, D: Deserializer<'de>>(
    d: D,
) -> Result<u64, D::Error> {
    let v = i64::deserialize(d)?;
    if (MIN..=MAX).contains(&v) {
        Ok(v as u64)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is out of range: allowed {MIN}..={MAX}"
        )))
    }
}

impl DumpsSection {
    /// jemalloc's `prof_prefix`: `<dir>/<prefix>`.
    pub fn prof_prefix(&self) -> PathBuf {
        self.dir.join(&self.prefix)
    }
}

fn default_dump_dir() -> PathBuf {
    PathBuf::from("/var/lib/jemsafe")
}

fn default_prefix() -> String {
    "mysqld".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseSection {
    #[serde(default = "default_runtime_dir")]
    pub runtime_dir: PathBuf,
    #[serde(default)]
    pub verify: VerifyMode,
    #[serde(
        default = "default_verify_timeout",
        deserialize_with = "bounded::<1, 3600, _>"
    )]
    pub verify_timeout_s: u64,
    #[serde(default)]
    pub restart: RestartMode,
    /// First delay before a restart, doubled after each quick failure.
    #[serde(
        default = "default_restart_delay_ms",
        deserialize_with = "bounded::<0, 3_600_000, _>"
    )]
    pub restart_delay_ms: u64,
    #[serde(
        default = "default_restart_delay_max_ms",
        deserialize_with = "bounded::<0, 86_400_000, _>"
    )]
    pub restart_delay_max_ms: u64,
    /// More than this many restarts within restart_window_s: give up.
    #[serde(
        default = "default_max_restarts",
        deserialize_with = "bounded::<0, 1000, _>"
    )]
    pub max_restarts: u64,
    #[serde(
        default = "default_restart_window_s",
        deserialize_with = "bounded::<1, 86_400, _>"
    )]
    pub restart_window_s: u64,
}

impl Default for SuperviseSection {
    fn default() -> Self {
        SuperviseSection {
            runtime_dir: default_runtime_dir(),
            verify: VerifyMode::Warn,
            verify_timeout_s: default_verify_timeout(),
            restart: RestartMode::OnCrash,
            restart_delay_ms: default_restart_delay_ms(),
            restart_delay_max_ms: default_restart_delay_max_ms(),
            max_restarts: default_max_restarts(),
            restart_window_s: default_restart_window_s(),
        }
    }
}

/// When mysqld is started again after it exits by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    Never,
    /// After death by signal or a non-zero exit that jemsafe did not ask for.
    #[default]
    OnCrash,
    /// After any exit jemsafe did not ask for.
    Always,
}

fn default_restart_delay_ms() -> u64 {
    1000
}
fn default_restart_delay_max_ms() -> u64 {
    60_000
}
fn default_max_restarts() -> u64 {
    5
}
fn default_restart_window_s() -> u64 {
    300
}

fn default_runtime_dir() -> PathBuf {
    PathBuf::from("/run/jemsafe")
}

fn default_verify_timeout() -> u64 {
    10
}

/// `[http]`: Prometheus metrics and a pprof endpoint. Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `"127.0.0.1:19104"`; None: no HTTP server.
    pub listen: Option<String>,
    /// Whether an address other than loopback may be used (a heap profile reveals the
    /// address-space layout); needs `token_file`.
    #[serde(default)]
    pub allow_remote: bool,
    /// A file holding the bearer token clients must send (`Authorization: Bearer ...`):
    /// always for /debug/pprof/*, and for everything off loopback.
    pub token_file: Option<PathBuf>,
    /// Whether /debug/pprof/heap is served (it needs `token_file`); /metrics and /healthz
    /// are served either way.
    #[serde(default = "default_true")]
    pub pprof: bool,
    /// Host names besides the listen address that the page (`/`, `POST /dump`) and
    /// browser (Basic) requests may name in `Host`, with the listen port: the name a
    /// DBA types in the browser. /metrics, /healthz and Bearer requests take any name.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The address space (MiB) of a child that renders a profile or the page; a request
    /// reads at most 1/64 of it in dump bytes.
    #[serde(default = "default_render_memory_mb")]
    pub render_memory_mb: u64,
}

fn default_render_memory_mb() -> u64 {
    crate::http::budget::DEFAULT_MEMORY_MB
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: None,
            allow_remote: false,
            token_file: None,
            pprof: true,
            hosts: Vec::new(),
            render_memory_mb: default_render_memory_mb(),
        }
    }
}

fn default_true() -> bool {
    true
}

impl HttpSection {
    /// The address to listen on, once validated.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.as_deref().and_then(|l| l.parse().ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsSection {
    #[serde(rename = "USR1", default = "default_usr1")]
    pub usr1: SignalAction,
    #[serde(rename = "USR2", default = "default_usr2")]
    pub usr2: SignalAction,
}

impl Default for SignalsSection {
    fn default() -> Self {
        SignalsSection {
            usr1: default_usr1(),
            usr2: default_usr2(),
        }
    }
}

fn default_usr1() -> SignalAction {
    SignalAction::Dump
}

fn default_usr2() -> SignalAction {
    SignalAction::Toggle
}

/// `[triggers]`: dumps when mysqld's memory rises past levels (see `crate::watch::triggers`).
/// Levels are checked in `validate`, so that an impossible one names its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersSection {
    /// RSS levels in MiB.
    #[serde(default)]
    pub rss_mb: Vec<i64>,
    /// Percentages of mysqld's memory limit; None: the default
    /// ([`crate::watch::triggers::DEFAULT_LIMIT_PERCENT`]) when a cgroup sets the limit.
    pub limit_percent: Option<Vec<i64>>,
    /// `"some avg10 > 20"`.
    pub pressure: Option<String>,
    /// Trigger dumps per hour at most.
    #[serde(
        default = "default_per_hour",
        deserialize_with = "bounded::<1, 3600, _>"
    )]
    pub per_hour: u64,
    /// How often /proc/PID/statm (and the cgroup files) are read.
    #[serde(
        default = "default_check_ms",
        deserialize_with = "bounded::<100, 60_000, _>"
    )]
    pub check_ms: u64,
}

impl Default for TriggersSection {
    fn default() -> Self {
        TriggersSection {
            rss_mb: Vec::new(),
            limit_percent: None,
            pressure: None,
            per_hour: default_per_hour(),
            check_ms: default_check_ms(),
        }
    }
}

/// `[triggers]` typed, as validation leaves it and the watch uses it (what it means
/// and how it is described: [`crate::watch::triggers`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSettings {
    /// `rss_mb`, in MiB.
    pub rss_mb: Vec<u64>,
    /// `limit_percent`; None: the default when a cgroup sets the limit.
    pub limit_percent: Option<Vec<u8>>,
    pub pressure: Option<crate::watch::memlimit::PressureRule>,
    pub per_hour: u32,
    pub check: std::time::Duration,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            rss_mb: Vec::new(),
            limit_percent: None,
            pressure: None,
            per_hour: default_per_hour() as u32,
            check: std::time::Duration::from_millis(default_check_ms()),
        }
    }
}

fn default_per_hour() -> u64 {
    12
}
fn default_check_ms() -> u64 {
    1000
}

/// `[timeline]`: mysqld's memory over time in `<dir>/<prefix>.timeline`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineSection {
    /// Seconds between samples; 0 = no timeline.
    #[serde(
        default = "default_timeline_interval_s",
        deserialize_with = "bounded::<0, 86_400, _>"
    )]
    pub interval_s: u64,
    /// The file is kept below this many MiB (its oldest records go first).
    #[serde(
        default = "default_timeline_max_mb",
        deserialize_with = "bounded::<1, 4096, _>"
    )]
    pub max_mb: u64,
}

impl Default for TimelineSection {
    fn default() -> Self {
        TimelineSection {
            interval_s: default_timeline_interval_s(),
            max_mb: default_timeline_max_mb(),
        }
    }
}

fn default_timeline_interval_s() -> u64 {
    10
}
fn default_timeline_max_mb() -> u64 {
    16
}

/// `[report]`: how `jemsafe report` and `jemsafe leaks` read dumps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// debuginfod servers asked for debug files by build-id, after `--debuginfod` and
    /// `DEBUGINFOD_URLS` (used when neither is given).
    #[serde(default)]
    pub debuginfod: Vec<String>,
}
