//! jemsafe.toml: schema, defaults and validation.
//!
//! Everything a user can get wrong is caught here, before anything starts, with the file,
//! the key, the line where TOML knows it, and what is allowed. Values that jemalloc would
//! silently ignore ("Invalid conf pair") are range-checked by the types in [`profile`].

pub mod jemalloc_options;
pub mod profile;
mod sections;
mod spans;
pub mod sql;
mod validate;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use profile::{Profile, ProfileDef};
pub use sections::*;

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
    #[serde(default)]
    sql: sql::SqlSection,
}

/// Most levels of one kind: each is a dump, and `per_hour` caps them anyway.
const MAX_LEVELS: usize = 16;

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
    /// `[triggers]`, typed by validation.
    pub triggers: TriggerSettings,
    pub timeline: TimelineSection,
    pub sql: sql::SqlSection,
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
    (
        jemsafe_proto::ENV_SQL_TIMEOUT_MS,
        "it tells the shim how long a call from SQL waits: set `[sql] timeout_ms`",
    ),
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
        let mut config = Config {
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
            triggers: TriggerSettings::default(),
            timeline: raw.timeline,
            sql: raw.sql,
        };
        config.triggers = config.validate(&raw.triggers)?;
        Ok(config)
    }

    /// An error about the dotted `key`, at the line where the file sets it (or the
    /// section it would be in).
    pub(crate) fn invalid(&self, key: &str, message: String) -> ConfigError {
        self.invalid_at(key, spans::locate(&self.text, key), message)
    }

    /// Whether the file sets the dotted `key` itself (rather than leaving its default).
    fn sets(&self, key: &str) -> bool {
        let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
        let at = spans::locate(&self.text, key);
        at.is_some() && at != spans::locate(&self.text, section) && !name.is_empty()
    }

    /// An error about `key`, located at byte offset `at` of the file when known.
    pub(crate) fn invalid_at(&self, key: &str, at: Option<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            line: at.map(|offset| line_of(&self.text, offset)),
            key: key.to_owned(),
            message,
        }
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

    /// The example's commented `[sql]` keys, uncommented, are the defaults it says they are.
    #[test]
    fn the_example_s_sql_section_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/jemsafe.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let section = text.split("\n[sql]\n").nth(1).unwrap();
        let keys: Vec<&str> = section
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.starts_with("allow =") || l.starts_with("timeout_ms ="))
            .collect();
        assert_eq!(keys.len(), 2, "{section}");
        let c = parse(&format!("[sql]\n{}\n", keys.join("\n"))).unwrap();
        assert_eq!(c.sql, sql::SqlSection::default());
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
        let t = crate::config::TriggerSettings::of(&c);
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
        let t = crate::config::TriggerSettings::of(&c);
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

    /// The shim reads the SQL timeout from this variable; `[sql] timeout_ms` sets it.
    #[test]
    fn the_sql_timeout_variable_is_jemsafe_s_and_names_its_key() {
        let e = error("[mysqld]\nenv = { TZ = \"UTC\", JEMSAFE_SQL_TIMEOUT_MS = \"500\" }\n");
        assert!(e.contains("mysqld.env.JEMSAFE_SQL_TIMEOUT_MS"), "{e}");
        assert!(e.contains("`[sql] timeout_ms`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
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
