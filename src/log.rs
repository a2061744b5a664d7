//! One line per event on stderr.
//!
//! Under journald lines start with a syslog priority (`<3>`...) and carry no timestamp,
//! since the journal adds its own; elsewhere they start with a UTC time. "Under journald"
//! means what systemd documents: `JOURNAL_STREAM` names the device and inode of stderr
//! (`<dev>:<ino>`, decimal). The variable alone is not enough: a child of a service
//! inherits it with its stderr redirected to a file or a terminal, where lines without a
//! time would be lost. Verbosity comes from `--log-level` or `JEMSAFE_LOG`.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

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

/// Whether `JOURNAL_STREAM` (`journal_stream`) names the stream whose fstat(2) gave
/// `stream` (device, inode): then the stream is journald's. Both numbers are decimal, as
/// systemd writes them; anything else (unset, malformed, another stream) is not journald.
pub fn is_journal_stream(journal_stream: Option<&str>, stream: Option<(u64, u64)>) -> bool {
    let (Some(value), Some((dev, ino))) = (journal_stream, stream) else {
        return false;
    };
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u64>().ok()
    };
    number(d) == Some(dev) && number(i) == Some(ino)
}

/// Whether stderr is journald's (decided once: jemsafe never redirects its own stderr).
fn to_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let var = std::env::var("JOURNAL_STREAM").ok();
        let stderr = nix::sys::stat::fstat(libc::STDERR_FILENO)
            .ok()
            .map(|st| (st.st_dev, st.st_ino));
        is_journal_stream(var.as_deref(), stderr)
    })
}

pub fn emit(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = if to_journal() {
        journal_text(level, &args.to_string())
    } else {
        let now = jemsafe_report::clock::rfc3339_millis(std::time::SystemTime::now());
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

/// `text` for journald's stream: journald makes an entry of each line and reads a
/// priority prefix per line, so every line of a multi-line message (a TOML error's
/// excerpt and explanation) carries the level, not only the first.
pub fn journal_text(level: Level, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split('\n') {
        out.push_str(&format!("<{}>{line}\n", level as u8));
    }
    out
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($t)*)) } }

#[cfg(test)]
mod tests {
    use super::is_journal_stream;

    #[test]
    fn every_line_of_a_message_carries_its_priority_for_journald() {
        use super::{journal_text, Level};
        assert_eq!(journal_text(Level::Info, "one"), "<6>one\n");
        assert_eq!(
            journal_text(Level::Error, "config: line 3\n  |\ninvalid type"),
            "<3>config: line 3\n<3>  |\n<3>invalid type\n"
        );
    }

    #[test]
    fn journald_only_when_the_variable_names_stderr() {
        let stderr = Some((64769, 1234567));
        assert!(is_journal_stream(Some("64769:1234567"), stderr));
        // Inherited from a service, stderr now elsewhere.
        assert!(!is_journal_stream(Some("8:12345"), stderr));
        assert!(!is_journal_stream(Some("64769:1234568"), stderr));
        assert!(!is_journal_stream(Some("64770:1234567"), stderr));
        // Unset, malformed, or stderr closed.
        assert!(!is_journal_stream(None, stderr));
        for bad in [
            "",
            ":",
            "64769",
            "64769:",
            ":1234567",
            "64769:1234567:1",
            "+64769:1234567",
            "64769: 1234567",
            "0x1:2",
        ] {
            assert!(!is_journal_stream(Some(bad), stderr), "{bad:?}");
        }
        assert!(!is_journal_stream(Some("64769:1234567"), None));
        // The full 64-bit device number, as systemd formats dev_t.
        assert!(is_journal_stream(
            Some("18446744073709551615:1"),
            Some((u64::MAX, 1))
        ));
    }
}
