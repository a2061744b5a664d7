//! The one error type the commands return; `main` turns it into a message and an exit code.
//!
//! `run` passes mysqld's own exit status through, so jemsafe's own failures use codes
//! mysqld never exits with: those of sysexits.h, which admins and service managers know.

use crate::config::ConfigError;

/// sysexits.h: the command line was wrong.
pub const EX_USAGE: i32 = 64;
/// sysexits.h: an input file (a heap dump) is malformed.
pub const EX_DATAERR: i32 = 65;
/// sysexits.h: something needed is missing or busy (mysqld, libjemalloc, the shim, a
/// running jemsafe, a free pid file); nothing was started.
pub const EX_UNAVAILABLE: i32 = 69;
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
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
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
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                EX_NOPERM
            }
            Error::Io { .. } => EX_IOERR,
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
    }
}
