//! One line per event on stderr.
//!
//! Under journald (`JOURNAL_STREAM` set) lines start with a syslog priority (`<3>`...)
//! and carry no timestamp, since the journal adds its own; elsewhere they start with a
//! UTC time. Verbosity comes from `--log-level` or `JEMSAFE_LOG`.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    pub fn from_env() -> Option<Level> {
        match std::env::var("JEMSAFE_LOG")
            .ok()?
            .to_ascii_lowercase()
            .as_str()
        {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

pub fn emit(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = if std::env::var_os("JOURNAL_STREAM").is_some() {
        format!("<{}>{}\n", level as u8, args)
    } else {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        format!(
            "{now} jemsafe[{}] {}: {}\n",
            std::process::id(),
            level.word(),
            args
        )
    };
    // One write per line so that lines from concurrent writers never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($t)*)) } }
