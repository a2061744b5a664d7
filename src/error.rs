//! The one error type the commands return; `main` turns it into a message and an exit code.
//!
//! `run` passes mysqld's own exit status through, so jemsafe's own failures use codes
//! mysqld never exits with: those of sysexits.h, which admins and service managers know.

use crate::config::ConfigError;
pub use jemsafe_report::IoError;

/// sysexits.h: the command line was wrong.
pub const EX_USAGE: i32 = 64;
/// sysexits.h: an input file (a heap dump) is malformed.
pub const EX_DATAERR: i32 = 65;
/// sysexits.h: something needed is missing or busy (mysqld, libjemalloc, the shim, a
/// running jemsafe, a free pid file); nothing was started.
pub const EX_UNAVAILABLE: i32 = 69;
/// sysexits.h (EX_SOFTWARE): `verify = "require"` stopped mysqld: the profiling allocator
/// is not working in it as configured.
pub const EX_SOFTWARE: i32 = 70;
/// sysexits.h: jemsafe's own I/O failed (a directory it must create, a socket it binds).
pub const EX_IOERR: i32 = 74;
/// sysexits.h: not done yet, for now: a prof change delivered to a stopped or stuck
/// mysqld and not confirmed yet (it takes effect when mysqld runs again, and `run` logs
/// the confirmation), or a dump asked for while mysqld is still starting (try again).
pub const EX_TEMPFAIL: i32 = 75;
/// sysexits.h: refused for trust or permission (CVE-2016-6662 checks, control socket peer).
pub const EX_NOPERM: i32 = 77;
/// sysexits.h: the configuration is invalid.
pub const EX_CONFIG: i32 = 78;

/// One exit status jemsafe itself chooses.
pub struct ExitStatus {
    pub code: i32,
    pub meaning: &'static str,
    /// Whether restarting `jemsafe run` could help (None: `run` never exits with it): the
    /// systemd units list every status where it cannot in `RestartPreventExitStatus=`.
    pub restart_helps: Option<bool>,
}

/// Every status jemsafe's own failures exit with: the one table that `--help`, the README,
/// the example config and the systemd units are checked against (tests/cli.rs).
pub const EXIT_STATUSES: &[ExitStatus] = &[
    ExitStatus {
        code: EX_USAGE,
        meaning: "wrong command line (usage)",
        restart_helps: Some(false),
    },
    ExitStatus {
        code: EX_DATAERR,
        meaning: "a heap dump given to `report`/`leaks` is malformed",
        restart_helps: None,
    },
    ExitStatus {
        code: EX_UNAVAILABLE,
        meaning: "something needed is missing or busy: mysqld, libjemalloc or the shim not \
                  found, no jemsafe running (`dump`, `status`, `prof`), another jemsafe on the \
                  runtime_dir, a live mysqld on the pid file or socket",
        restart_helps: Some(false),
    },
    ExitStatus {
        code: EX_SOFTWARE,
        meaning: "`verify = \"require\"` stopped mysqld: the profiling allocator is not \
                  working in it",
        restart_helps: Some(false),
    },
    ExitStatus {
        code: EX_IOERR,
        meaning: "jemsafe's own I/O failed (a directory it must create, a socket it binds)",
        restart_helps: Some(true),
    },
    ExitStatus {
        code: EX_TEMPFAIL,
        meaning: "not done yet, for now: a `prof` change delivered to a stopped or stuck \
                  mysqld and not confirmed within 5 s (it takes effect when mysqld runs \
                  again, and `run` logs it), or a dump asked for while mysqld is still \
                  starting (it runs as root until it switches to its --user)",
        restart_helps: None,
    },
    ExitStatus {
        code: EX_NOPERM,
        meaning: "refused as root: untrusted files, or permission denied",
        restart_helps: Some(false),
    },
    ExitStatus {
        code: EX_CONFIG,
        meaning: "the configuration is invalid",
        restart_helps: Some(false),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command line asks for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// Something needed was not found; the message says where jemsafe looked.
    #[error("{0}")]
    NotFound(String),
    /// jemsafe will not go on; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// A file or directory root would use is not trustworthy, or a peer may not ask.
    #[error("{0}")]
    Untrusted(String),
    /// Not done yet, for now; the message says what is pending or when to try again.
    #[error("{0}")]
    Temporary(String),
    /// An input file is malformed; the message names it and what is wrong.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let io = IoError::of(context);
        move |source| Error::Io(io(source))
    }

    /// Refuses with every trust problem found, if any.
    pub fn untrusted_if_any(problems: Vec<String>) -> Result<()> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Untrusted(problems.join("; ")))
        }
    }

    /// Whether this is a write to a reader that went away (`jemsafe dumps | head -1`):
    /// not a failure for a Unix filter; `main` exits 0 on it, silently.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io(io) if io.source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// Exit status for this error (sysexits.h; never one mysqld uses).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => EX_CONFIG,
            Error::Usage(_) => EX_USAGE,
            Error::NotFound(_) | Error::Refused(_) => EX_UNAVAILABLE,
            Error::Untrusted(_) => EX_NOPERM,
            Error::BadInput(_) => EX_DATAERR,
            Error::Temporary(_) => EX_TEMPFAIL,
            Error::Io(io) if io.source.kind() == std::io::ErrorKind::PermissionDenied => EX_NOPERM,
            Error::Io(_) => EX_IOERR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_from_what_mysqld_uses() {
        // mysqld exits with 0, 1, 2, 7, 16 (restart) or 128+signal; jemsafe's own never collide.
        let ours = [
            Error::Usage(String::new()).exit_code(),
            Error::NotFound(String::new()).exit_code(),
            Error::Untrusted(String::new()).exit_code(),
            Error::BadInput(String::new()).exit_code(),
            Error::io("x")(std::io::Error::other("y")).exit_code(),
            Error::Temporary(String::new()).exit_code(),
        ];
        assert_eq!(ours, [64, 69, 77, 65, 74, 75]);
        assert!(ours.iter().all(|c| (64..=78).contains(c)));
        // Every status an error maps to is in the table, and the table has no mysqld status.
        for c in ours {
            assert!(
                EXIT_STATUSES.iter().any(|s| s.code == c),
                "{c} not in EXIT_STATUSES"
            );
        }
        for s in EXIT_STATUSES {
            assert!((64..=78).contains(&s.code), "{}", s.code);
        }
    }

    #[test]
    fn a_closed_pipe_is_told_apart() {
        let e = Error::io("cannot write")(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(e.is_broken_pipe());
        assert!(!Error::io("x")(std::io::Error::other("y")).is_broken_pipe());
    }
}
