//! jemsafe.toml: schema, defaults and validation.
//!
//! Everything a user can get wrong is caught here, before anything starts, with the file,
//! the key, the line where TOML knows it, and what is allowed. Values that jemalloc would
//! silently ignore ("Invalid conf pair") are range-checked by the types in [`profile`].

pub mod jemalloc_options;
pub mod profile;

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use profile::{Profile, ProfileDef};

/// Where `check`, `env` and `run` look when no `-c` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jemsafe/jemsafe.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}{hint}", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("config file {path}: {message}", path = path.display())]
    Parse { path: PathBuf, message: String },
    /// A byte TOML cannot read at all (not UTF-8, or NUL), located for the editor.
    #[error("config file {path}, line {line}, column {column}: {message}", path = path.display())]
    Encoding {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config file {path}{at}: `{key}`: {message}", path = path.display(), at = line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

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
#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    profile: Option<Spanned<String>>,
    #[serde(default)]
    mysqld: MysqldSection,
    #[serde(default)]
    jemalloc: JemallocSection,
    #[serde(default)]
    dumps: DumpsSection,
    #[serde(default)]
    supervise: SuperviseSection,
    #[serde(default)]
    signals: SignalsSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileDef>,
    #[serde(default)]
    report: ReportSection,
    #[serde(default)]
    triggers: TriggersSection,
    #[serde(default)]
    timeline: TimelineSection,
}

/// `[triggers]`: dumps when mysqld's memory rises past levels (see `crate::triggers`).
/// Levels are checked in `validate`, so that an impossible one names its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersSection {
    /// RSS levels in MiB.
    #[serde(default)]
    pub rss_mb: Vec<i64>,
    /// Percentages of mysqld's memory limit; None: [90] when a cgroup sets the limit.
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

/// Most levels of one kind: each is a dump, and `per_hour` caps them anyway.
const MAX_LEVELS: usize = 16;

/// `[report]`: how `jemsafe report` and `jemsafe leaks` read dumps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// debuginfod servers asked for debug files by build-id, after `--debuginfod` and
    /// `DEBUGINFOD_URLS` (used when neither is given).
    #[serde(default)]
    pub debuginfod: Vec<String>,
}

/// A parsed and validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub source: PathBuf,
    text: String,
    /// Profile `run` uses unless `-p` says otherwise.
    pub profile: String,
    profile_at: Option<usize>,
    pub mysqld: MysqldSection,
    pub jemalloc: JemallocSection,
    pub dumps: DumpsSection,
    pub supervise: SuperviseSection,
    pub signals: SignalsSection,
    pub http: HttpSection,
    pub profiles: BTreeMap<String, ProfileDef>,
    pub report: ReportSection,
    pub triggers: TriggersSection,
    pub timeline: TimelineSection,
}

/// Variables jemsafe sets itself; a config may not override them.
const RESERVED_ENV: &[(&str, &str)] = &[
    (
        "MALLOC_CONF",
        "set jemalloc options in a profile (its `extra` table)",
    ),
    (
        "_RJEM_MALLOC_CONF",
        "it is the bundled jemalloc's MALLOC_CONF: set jemalloc options in a profile (its `extra` table)",
    ),
    (
        "JEMSAFE_SHIM_FD",
        "it is jemsafe's private channel to the shim",
    ),
    ("MYSQLD_PARENT_PID", "jemsafe sets it to its own pid"),
];

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            hint: if source.kind() == std::io::ErrorKind::NotFound {
                " (create it from the commented example etc/jemsafe.toml, or pass -c FILE)"
            } else {
                ""
            },
            path: path.to_owned(),
            source,
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let at = e.valid_up_to();
            encoding_error(
                &bytes,
                at,
                path,
                format!(
                    "byte 0x{:02x} is not UTF-8; TOML files must be UTF-8 (convert it, e.g. with iconv -t UTF-8)",
                    bytes.get(at).copied().unwrap_or(0)
                ),
            )
        })?;
        Config::parse(text, path)
    }

    /// Parses `text` as if read from `path` (which is only used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if let Some(at) = text.find('\0') {
            return Err(encoding_error(
                text.as_bytes(),
                at,
                path,
                "a NUL byte (\\0), which TOML allows nowhere; remove it".to_owned(),
            ));
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: escape_controls(e.to_string().trim_end()),
        })?;
        let (profile, profile_at) = match raw.profile {
            Some(s) => (s.get_ref().clone(), Some(s.span().start)),
            None => ("standby".to_owned(), None),
        };
        let config = Config {
            source: path.to_owned(),
            text: text.to_owned(),
            profile,
            profile_at,
            mysqld: raw.mysqld,
            jemalloc: raw.jemalloc,
            dumps: raw.dumps,
            supervise: raw.supervise,
            signals: raw.signals,
            http: raw.http,
            profiles: raw.profiles,
            report: raw.report,
            triggers: raw.triggers,
            timeline: raw.timeline,
        };
        config.validate()?;
        Ok(config)
    }

    /// An error about `key`, located at byte offset `at` of the file when known.
    pub(crate) fn invalid(&self, key: &str, at: Option<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            line: at.map(|offset| line_of(&self.text, offset)),
            key: key.to_owned(),
            message,
        }
    }

    /// Byte offset of the first line that assigns `key` (`key =` at the start of a line,
    /// or `key =` inside an inline table), so that a message points at the setting and
    /// not at a comment that mentions it.
    fn find(&self, key: &str) -> Option<usize> {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let code = line.split('#').next().unwrap_or("");
            let assigns = code.match_indices(key).any(|(i, _)| {
                let before = code[..i].chars().next_back();
                let after = code[i + key.len()..].trim_start();
                matches!(before, None | Some(' ' | '\t' | '{' | ',')) && after.starts_with('=')
            });
            if assigns {
                return Some(offset);
            }
            offset += line.len();
        }
        None
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for url in &self.report.debuginfod {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.contains(char::is_whitespace)
            {
                return Err(self.invalid(
                    "report.debuginfod",
                    self.find("debuginfod"),
                    format!(
                        "{url:?} is not a server URL: give http:// or https:// URLs, e.g. \
                         debuginfod = [\"https://debuginfod.debian.net\"]"
                    ),
                ));
            }
        }
        let dir = &self.dumps.dir;
        self.check_path(
            "dumps.dir",
            "dir",
            dir,
            "the directory heap files go to, e.g. /var/lib/jemsafe (the default)",
        )?;
        let dir_text = dir.to_string_lossy();
        if dir_text.contains([',', '\n']) {
            return Err(self.invalid(
                "dumps.dir",
                self.find("dir"),
                format!(
                    "{} must not contain a comma or newline (jemalloc's MALLOC_CONF cannot carry them)",
                    shown(dir)
                ),
            ));
        }
        let prefix = &self.dumps.prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(self.invalid(
                "dumps.prefix",
                self.find("prefix"),
                format!("{prefix:?} is not allowed: use letters, digits, '.', '_' and '-' only (it becomes part of every heap file name)"),
            ));
        }
        self.check_path(
            "supervise.runtime_dir",
            "runtime_dir",
            &self.supervise.runtime_dir,
            "the directory for jemsafe's pid file and control socket, e.g. /run/jemsafe (the default)",
        )?;
        if let Some(path) = &self.mysqld.path {
            self.check_path(
                "mysqld.path",
                "path",
                path,
                "the mysqld or mariadbd binary; leave `path` out to search PATH, /usr/sbin and /usr/local/mysql/bin",
            )?;
        }
        if let Library::Path(path) = &self.jemalloc.library {
            self.check_path(
                "jemalloc.library",
                "library",
                path,
                "\"auto\", \"bundled\" or the absolute path of the file",
            )?;
            if path.file_name() == Some(std::ffi::OsStr::new(BUNDLED_FILE)) {
                return Err(self.invalid(
                    "jemalloc.library",
                    self.find("library"),
                    format!(
                        "{} is jemsafe's bundled jemalloc, which reads _RJEM_MALLOC_CONF and \
                         carries the shim inside: write library = \"bundled\" (it is found next \
                         to the jemsafe executable, in /usr/lib/jemsafe or /usr/local/lib/jemsafe)",
                        shown(path)
                    ),
                ));
            }
        }
        if let Locator::Path(path) = &self.jemalloc.shim {
            self.check_path(
                "jemalloc.shim",
                "shim",
                path,
                "\"auto\" or the absolute path of the file",
            )?;
            if self.jemalloc.library.is_bundled() {
                return Err(self.invalid(
                    "jemalloc.shim",
                    self.find("shim"),
                    format!(
                        "shim = {} has no use with library = \"bundled\": the bundled library \
                         carries the shim inside; remove the `shim` line",
                        shown(path)
                    ),
                ));
            }
        }
        self.validate_http()?;
        self.validate_triggers()?;
        let s = &self.supervise;
        if s.restart_delay_ms > s.restart_delay_max_ms {
            let set = |key: &str| {
                if self.find(key).is_some() {
                    ""
                } else {
                    " (the default)"
                }
            };
            return Err(self.invalid(
                "supervise.restart_delay_ms",
                self.find("restart_delay_ms")
                    .or_else(|| self.find("restart_delay_max_ms")),
                format!(
                    "{}{} is above `supervise.restart_delay_max_ms` = {}{}: the first delay before a restart \
                     cannot be longer than the longest one; lower restart_delay_ms or raise restart_delay_max_ms",
                    s.restart_delay_ms,
                    set("restart_delay_ms"),
                    s.restart_delay_max_ms,
                    set("restart_delay_max_ms"),
                ),
            ));
        }
        for arg in &self.mysqld.args {
            if arg.contains('\0') {
                return Err(self.invalid(
                    "mysqld.args",
                    self.find("args"),
                    "an argument contains a NUL byte".to_owned(),
                ));
            }
        }
        for key in self.mysqld.env.keys() {
            if let Some((_, why)) = RESERVED_ENV.iter().find(|(name, _)| name == key) {
                return Err(self.invalid(
                    &format!("mysqld.env.{key}"),
                    self.find(key),
                    format!("jemsafe sets {key} itself: {why}"),
                ));
            }
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(self.invalid(
                    "mysqld.env",
                    self.find("env"),
                    format!("{key:?} is not a valid environment variable name"),
                ));
            }
        }
        for (key, value) in &self.mysqld.env {
            let problem = if value.contains('\0') {
                Some(format!(
                    "{value:?} contains a NUL byte, which no environment variable can carry"
                ))
            } else {
                crate::trust::loader_variable_problem(key, value)
            };
            if let Some(problem) = problem {
                return Err(self.invalid(
                    &format!("mysqld.env.{key}"),
                    self.find(key).or_else(|| self.find("env")),
                    problem,
                ));
            }
        }
        // Every profile must resolve, not only the selected one: a typo in an unused
        // profile would otherwise surface at 3 a.m. when someone switches to it.
        for name in self.profiles.keys() {
            self.resolve_profile(name)?;
        }
        self.resolve_profile(&self.profile)
            .map_err(|e| match e {
                ConfigError::Invalid { message, .. } if !self.profile_exists(&self.profile) => {
                    self.invalid("profile", self.profile_at, message)
                }
                other => other,
            })
            .map(|_| ())
    }

    /// `path` must be a non-empty absolute path without NUL; `allowed` says what is.
    fn check_path(
        &self,
        key: &str,
        short: &str,
        path: &Path,
        allowed: &str,
    ) -> Result<(), ConfigError> {
        let problem = if path.as_os_str().is_empty() {
            format!("is empty: give {allowed}")
        } else if path.as_os_str().as_encoded_bytes().contains(&0) {
            format!(
                "{} contains a NUL byte, which no path can carry: give {allowed}",
                shown(path)
            )
        } else if !path.is_absolute() {
            format!("{} is not an absolute path: give {allowed}", shown(path))
        } else {
            return Ok(());
        };
        Err(self.invalid(key, self.find(short), problem))
    }

    /// `[http]`: an address that parses; anything but loopback only with `allow_remote`
    /// and a token file.
    fn validate_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        if let Some(path) = &h.token_file {
            self.check_path(
                "http.token_file",
                "token_file",
                path,
                "the absolute path of a file holding the bearer token (root's, mode 0600)",
            )?;
        }
        let Some(listen) = &h.listen else {
            return Ok(());
        };
        let Ok(addr) = listen.parse::<std::net::SocketAddr>() else {
            return Err(self.invalid(
                "http.listen",
                self.find("listen"),
                format!(
                    "{listen:?} is not an address and port: give e.g. \"127.0.0.1:19104\" \
                     (or \"[::1]:19104\")"
                ),
            ));
        };
        if !addr.ip().is_loopback() {
            if !h.allow_remote {
                return Err(self.invalid(
                    "http.listen",
                    self.find("listen"),
                    format!(
                        "{addr} is not a loopback address: a heap profile reveals mysqld's \
                         address-space layout, so listening beyond this host needs \
                         `allow_remote = true` and a `token_file` in [http]"
                    ),
                ));
            }
            if h.token_file.is_none() {
                return Err(self.invalid(
                    "http.allow_remote",
                    self.find("allow_remote"),
                    "allow_remote = true needs `token_file`: the file with the bearer token \
                     that every client must send"
                        .into(),
                ));
            }
        }
        if h.pprof && h.token_file.is_none() {
            // A heap profile shows mysqld's address-space layout and each request writes a
            // dump: on loopback too, only holders of the token may ask.
            return Err(self.invalid(
                "http.token_file",
                self.find("listen"),
                "[http] serves /debug/pprof/heap, which needs a bearer token even on loopback \
                 (a heap profile shows mysqld's address-space layout, and each request writes \
                 a dump): make one with `install -m 600 /dev/null /etc/jemsafe/http-token; \
                 head -c 32 /dev/urandom | base64 > /etc/jemsafe/http-token` and set \
                 token_file = \"/etc/jemsafe/http-token\" in [http], or set pprof = false \
                 to serve only /metrics and /healthz"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `[triggers]`: levels within their ranges, a pressure rule that parses.
    fn validate_triggers(&self) -> Result<(), ConfigError> {
        let t = &self.triggers;
        let levels: [(&str, &str, &[i64], i64, &str); 2] = [
            (
                "triggers.limit_percent",
                "limit_percent",
                t.limit_percent.as_deref().unwrap_or(&[]),
                100,
                "percent of mysqld's memory limit",
            ),
            (
                "triggers.rss_mb",
                "rss_mb",
                &t.rss_mb,
                16 << 20,
                "MiB of mysqld's RSS",
            ),
        ];
        for (key, short, values, max, what) in levels {
            if let Some(v) = values.iter().find(|v| !(1..=max).contains(*v)) {
                return Err(self.invalid(
                    key,
                    self.find(short),
                    format!("{v} is out of range: allowed 1..={max} ({what})"),
                ));
            }
            if values.len() > MAX_LEVELS {
                return Err(self.invalid(
                    key,
                    self.find(short),
                    format!("{} levels: at most {MAX_LEVELS} are allowed", values.len()),
                ));
            }
        }
        if let Some(rule) = &t.pressure {
            crate::memlimit::PressureRule::parse(rule)
                .map_err(|why| self.invalid("triggers.pressure", self.find("pressure"), why))?;
        }
        Ok(())
    }

    pub fn profile_exists(&self, name: &str) -> bool {
        self.profiles.contains_key(name) || profile::builtin(name).is_some()
    }

    /// Built-in and user profile names, sorted, without duplicates.
    pub fn profile_names(&self) -> Vec<String> {
        let mut names: Vec<String> = profile::BUILTIN_NAMES
            .iter()
            .map(|s| s.to_string())
            .chain(self.profiles.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The profile named `name`, with inheritance applied and checked.
    pub fn resolve_profile(&self, name: &str) -> Result<Profile, ConfigError> {
        profile::resolve(self, name)
    }
}

/// A path for a message: quoted, with control characters (NUL, newline...) escaped.
fn shown(path: &Path) -> String {
    format!("{path:?}")
}

/// `text` with control characters other than newline and tab escaped (as `\0`,
/// `\u{1b}`), so a message never carries them raw to a terminal or a log.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            '\0' => "\\0".to_owned(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// An [`ConfigError::Encoding`] for the byte at `offset` of `bytes` (everything before it
/// is UTF-8), with its 1-based line and column (in characters).
fn encoding_error(bytes: &[u8], offset: usize, path: &Path, message: String) -> ConfigError {
    let head = bytes.get(..offset).unwrap_or(bytes);
    let line_start = head.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&head[line_start..]).chars().count() + 1;
    ConfigError::Encoding {
        path: path.to_owned(),
        line: head.iter().filter(|b| **b == b'\n').count() + 1,
        column,
        message,
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|head| head.matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/jemsafe/test.toml"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.profile, "standby");
        assert_eq!(c.dumps.dir, Path::new("/var/lib/jemsafe"));
        assert_eq!(c.dumps.prof_prefix(), Path::new("/var/lib/jemsafe/mysqld"));
        assert_eq!(c.supervise.verify, VerifyMode::Warn);
        assert_eq!(c.supervise.verify_timeout_s, 10);
        assert_eq!(c.signals.usr1, SignalAction::Dump);
        assert_eq!(c.signals.usr2, SignalAction::Toggle);
        assert_eq!(c.jemalloc.library, Library::Auto);
    }

    #[test]
    fn the_example_config_in_etc_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/jemsafe.toml");
        let c = Config::load(&path).unwrap();
        for name in c.profile_names() {
            c.resolve_profile(&name).unwrap();
        }
    }

    #[test]
    fn http_pprof_needs_a_token_file_even_on_loopback() {
        let e = error("[http]\nlisten = \"127.0.0.1:19104\"\n");
        for needle in [
            "http.token_file",
            "line 2",
            "install -m 600",
            "pprof = false",
        ] {
            assert!(e.contains(needle), "{needle} not in {e}");
        }
        for ok in [
            "[http]\nlisten = \"127.0.0.1:19104\"\npprof = false\n",
            "[http]\nlisten = \"127.0.0.1:19104\"\ntoken_file = \"/etc/jemsafe/http-token\"\n",
        ] {
            parse(ok).unwrap();
        }
    }

    #[test]
    fn debuginfod_servers_must_be_urls() {
        let ok = Config::parse(
            "[report]\ndebuginfod = [\"https://debuginfod.debian.net\", \"http://127.0.0.1:8002\"]\n",
            Path::new("/etc/jemsafe/test.toml"),
        )
        .unwrap();
        assert_eq!(ok.report.debuginfod.len(), 2);
        let e = error("\n[report]\ndebuginfod = [\"debuginfod.debian.net\"]\n");
        assert!(
            e.contains("line 3") && e.contains("report.debuginfod"),
            "{e}"
        );
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn triggers_and_timeline_have_their_documented_defaults_and_ranges() {
        let c = parse("").unwrap();
        let t = crate::triggers::Settings::of(&c);
        assert_eq!(
            (t.limit_percent, t.per_hour, t.check.as_millis()),
            (None, 12, 1000)
        );
        assert_eq!((c.timeline.interval_s, c.timeline.max_mb), (10, 16));
        let c = parse(
            "[triggers]\nrss_mb = [2048]\nlimit_percent = [80, 90, 95]\npressure = \"some avg10 > 20\"\n\
             per_hour = 3\ncheck_ms = 200\n[timeline]\ninterval_s = 0\n",
        )
        .unwrap();
        let t = crate::triggers::Settings::of(&c);
        assert_eq!(t.limit_percent, Some(vec![80, 90, 95]));
        assert_eq!(t.rss_mb, [2048]);
        assert_eq!(t.pressure.unwrap().describe(), "some avg10 > 20");
        assert_eq!(c.timeline.interval_s, 0);
        let e = error("[triggers]\nlimit_percent = [80, 150]\n");
        assert!(
            e.contains("line 2: `triggers.limit_percent`: 150 is out of range: allowed 1..=100"),
            "{e}"
        );
        let e = error("[triggers]\nrss_mb = [0]\n");
        assert!(e.contains("`triggers.rss_mb`: 0 is out of range"), "{e}");
        let e = error("[triggers]\n\npressure = \"some avg5 > 20\"\n");
        assert!(
            e.contains("line 3: `triggers.pressure`") && e.contains("avg10, avg60, avg300"),
            "{e}"
        );
        let e = error("[triggers]\nlimit_pct = [90]\n");
        assert!(
            e.contains("line 2") && e.contains("limit_pct") && e.contains("limit_percent"),
            "{e}"
        );
        let e = error("[triggers]\ncheck_ms = 10\n");
        assert!(e.contains("allowed 100..=60000"), "{e}");
        let e = error("[timeline]\nmax_mb = 0\n");
        assert!(
            e.contains("line 2") && e.contains("allowed 1..=4096"),
            "{e}"
        );
        let e = error("[timeline]\nkeep = 1\n");
        assert!(e.contains("keep") && e.contains("interval_s"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_allowed_keys() {
        let e = error("[dumps]\ndir = \"/tmp/x\"\nretain = 3\n");
        assert!(e.contains("/etc/jemsafe/test.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("retain"), "{e}");
        assert!(e.contains("expected one of `dir`, `prefix`, `keep`"), "{e}");
    }

    #[test]
    fn wrong_type_is_reported_with_line() {
        let e = error("[supervise]\nverify_timeout_s = \"ten\"\n");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("string"), "{e}");
    }

    #[test]
    fn bad_enums_list_the_allowed_words() {
        let e = error("[signals]\nUSR1 = \"explode\"\n");
        assert!(
            e.contains("line 2") && e.contains("dump") && e.contains("ignore"),
            "{e}"
        );
        let e = error("[supervise]\nverify = \"maybe\"\n");
        assert!(e.contains("warn") && e.contains("require"), "{e}");
    }

    #[test]
    fn locator_must_be_auto_or_absolute() {
        let e = error("[jemalloc]\nlibrary = \"libjemalloc.so.2\"\n");
        assert!(e.contains("line 2") && e.contains("absolute path"), "{e}");
        let c = parse("[jemalloc]\nshim = \"/opt/shim.so\"\n").unwrap();
        assert_eq!(c.jemalloc.shim, Locator::Path("/opt/shim.so".into()));
    }

    #[test]
    fn bundled_library_is_a_word_and_takes_no_shim() {
        let c = parse("[jemalloc]\nlibrary = \"bundled\"\n").unwrap();
        assert_eq!(c.jemalloc.library, Library::Bundled);
        let e = error("[jemalloc]\nlibrary = \"bundled\"\nshim = \"/opt/shim.so\"\n");
        assert!(
            e.contains("line 3") && e.contains("carries the shim inside"),
            "{e}"
        );
        let e = error("[jemalloc]\nlibrary = \"/opt/libjemsafe_jemalloc.so\"\n");
        assert!(
            e.contains("line 2") && e.contains("write library = \"bundled\""),
            "{e}"
        );
        let e = error("[jemalloc]\nlibrary = \"bundle\"\n");
        assert!(
            e.contains("\"auto\", \"bundled\" nor an absolute path"),
            "{e}"
        );
        let e = error("[mysqld]\nenv = { _RJEM_MALLOC_CONF = \"prof:true\" }\n");
        assert!(e.contains("_RJEM_MALLOC_CONF"), "{e}");
    }

    #[test]
    fn verify_timeout_range() {
        let e = error("[supervise]\nverify_timeout_s = 0\n");
        assert!(
            e.contains("line 2") && e.contains("allowed 1..=3600"),
            "{e}"
        );
    }

    #[test]
    fn dump_dir_and_prefix_are_checked() {
        assert!(error("[dumps]\ndir = \"relative\"\n").contains("absolute"));
        assert!(error("[dumps]\ndir = \"/a,b\"\n").contains("comma"));
        let e = error("[dumps]\nprefix = \"my sql/d\"\n");
        assert!(e.contains("dumps.prefix") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn errors_point_at_the_setting_not_at_a_comment_mentioning_it() {
        let e = error("# the prefix of heap files\n[dumps]\n# prefix = \"ok\"\nprefix = \"a b\"\n");
        assert!(e.contains("line 4"), "{e}");
        let e = error(
            "# MALLOC_CONF is jemsafe's\n[mysqld]\nenv = { TZ = \"UTC\", MALLOC_CONF = \"x\" }\n",
        );
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn reserved_environment_is_refused() {
        let e = error("[mysqld]\nenv = { MALLOC_CONF = \"prof:true\" }\n");
        assert!(
            e.contains("mysqld.env.MALLOC_CONF") && e.contains("extra"),
            "{e}"
        );
    }

    #[test]
    fn missing_selected_profile_lists_available_ones() {
        let e = error("profile = \"leek\"\n[profiles.mine]\ninherits = \"leak\"\n");
        assert!(e.contains("line 1"), "{e}");
        assert!(e.contains("leek"), "{e}");
        assert!(
            e.contains("interval, leak, mine, off, peak, standby"),
            "{e}"
        );
    }

    #[test]
    fn read_error_names_file_and_fix() {
        let e = Config::load(Path::new("/nonexistent/jemsafe.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/jemsafe.toml") && e.contains("-c FILE"),
            "{e}"
        );
    }

    #[test]
    fn restart_delay_above_its_maximum_names_both_keys_and_the_file() {
        let e = error("[supervise]\nrestart_delay_ms = 5000\nrestart_delay_max_ms = 2000\n");
        assert!(e.contains("/etc/jemsafe/test.toml, line 2"), "{e}");
        assert!(
            e.contains("`supervise.restart_delay_ms`: 5000 is above `supervise.restart_delay_max_ms` = 2000"),
            "{e}"
        );
        // Only the maximum set: the default first delay is named as such.
        let e = error("[supervise]\nrestart_delay_max_ms = 500\n");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("1000 (the default) is above"), "{e}");
        parse("[supervise]\nrestart_delay_ms = 2000\nrestart_delay_max_ms = 2000\n").unwrap();
    }

    #[test]
    fn empty_paths_say_they_are_empty_and_what_is_allowed() {
        let e = error("[supervise]\nruntime_dir = \"\"\n");
        assert!(
            e.contains("line 2: `supervise.runtime_dir`: is empty: give the directory for jemsafe's pid file and control socket, e.g. /run/jemsafe"),
            "{e}"
        );
        let e = error("[dumps]\ndir = \"\"\n");
        assert!(e.contains("`dumps.dir`: is empty"), "{e}");
        let e = error("[mysqld]\npath = \"\"\n");
        assert!(
            e.contains("`mysqld.path`: is empty") && e.contains("leave `path` out"),
            "{e}"
        );
    }

    #[test]
    fn nul_bytes_in_paths_are_refused_and_shown_escaped() {
        for (text, key) in [
            (
                "[supervise]\nruntime_dir = \"/run/a\\u0000b\"\n",
                "supervise.runtime_dir",
            ),
            ("[dumps]\ndir = \"/var/a\\u0000b\"\n", "dumps.dir"),
            ("[mysqld]\npath = \"/usr/a\\u0000b\"\n", "mysqld.path"),
            ("[jemalloc]\nshim = \"/usr/a\\u0000b\"\n", "jemalloc.shim"),
            (
                "[supervise]\nruntime_dir = \"a\\u0000b\"\n",
                "supervise.runtime_dir",
            ),
        ] {
            let e = error(text);
            assert!(!e.contains('\0'), "raw NUL in {e:?}");
            assert!(e.contains(&format!("line 2: `{key}`")), "{e}");
            assert!(e.contains("a\\0b"), "{e}");
        }
        let e = error("[mysqld]\nenv = { TZ = \"a\\u0000b\" }\n");
        assert!(
            !e.contains('\0') && e.contains("mysqld.env.TZ") && e.contains("NUL"),
            "{e}"
        );
    }

    #[test]
    fn a_nul_byte_in_the_file_is_located_and_not_printed_raw() {
        let e = error("[dumps]\n# a comment\ndir = \"/tmp/a\0b\"\n");
        assert!(!e.contains('\0'), "raw NUL in {e:?}");
        assert!(
            e.contains("/etc/jemsafe/test.toml, line 3, column 14: a NUL byte (\\0)"),
            "{e}"
        );
    }

    #[test]
    fn invalid_utf8_is_located_by_line_and_column() {
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-config-utf8.XXXXXX").unwrap();
        let path = dir.join("jemsafe.toml");
        std::fs::write(
            &path,
            b"[supervise]\n\nruntime_dir = \"/run/\xc3\xa9\xff\"\n",
        )
        .unwrap();
        let result = Config::load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = result.unwrap_err().to_string();
        // Column in characters: `runtime_dir = "/run/é` is 21 of them.
        assert!(
            e.contains(&format!(
                "config file {}, line 3, column 22: byte 0xff is not UTF-8",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn toml_messages_carry_no_raw_control_characters() {
        assert_eq!(escape_controls("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\nc");
    }

    #[test]
    fn loader_variables_in_mysqld_env_are_refused_when_they_load_from_anywhere() {
        let e = error("[mysqld]\nenv = { LD_AUDIT = \"/usr/lib/audit.so\" }\n");
        assert!(
            e.contains("/etc/jemsafe/test.toml, line 2: `mysqld.env.LD_AUDIT`: jemsafe does not pass LD_AUDIT"),
            "{e}"
        );
        let e = error("[mysqld]\nenv = { LD_PRELOAD = \"/usr/lib/a.so libb.so\" }\n");
        assert!(
            e.contains("`mysqld.env.LD_PRELOAD`: entry \"libb.so\" is not an absolute path"),
            "{e}"
        );
        let e = error("[mysqld]\nenv = { LD_LIBRARY_PATH = \"/usr/lib:lib\" }\n");
        assert!(
            e.contains("`mysqld.env.LD_LIBRARY_PATH`: entry \"lib\" is not an absolute path"),
            "{e}"
        );
        let e = error("[mysqld]\nenv = { LD_LIBRARY_PATH = \"/usr/lib:\" }\n");
        assert!(
            e.contains("empty entry") && e.contains("current directory"),
            "{e}"
        );
        let c = parse(
            "[mysqld]\nenv = { LD_PRELOAD = \"/usr/lib/a.so\", LD_LIBRARY_PATH = \"/opt/lib\" }\n",
        )
        .unwrap();
        assert_eq!(c.mysqld.env.len(), 2);
    }
}
