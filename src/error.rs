//! The one error type the commands return; `main` turns it into a message and an exit code.

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something needed was not found; the message says where jemsafe looked.
    #[error("{0}")]
    NotFound(String),
    /// jemsafe will not go on; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
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

    /// Exit status for this error: 2 for problems with the configuration or the
    /// installation (nothing was started), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::NotFound(_) => 2,
            Error::Refused(_) | Error::Io { .. } => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
