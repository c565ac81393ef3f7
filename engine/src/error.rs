//! The library's one error type. Every variant carries what it concerns (the key, the path, the
//! target), so the binary can print a single line that tells the user what to fix, and map the kind of
//! failure to an exit code.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value outside its domain. `key` is the workload key (`data.dedup`, …); the CLI names its flag.
    #[error("invalid {key} '{value}': {reason}")]
    InvalidValue { key: &'static str, value: String, reason: String },

    /// An I/O error on a named file. (The cause is part of the message, not a separate `source`, so
    /// that printing the error chain does not say it twice.)
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },

    /// A sink (storage target) failed or refused something; `target` names it.
    #[error("{target}: {message}")]
    Sink { target: String, message: String },

    /// Not enough memory for the buffer pool, or a similar resource limit of this machine.
    #[error("{0}")]
    Resource(String),

    /// A plugin misbehaved or could not be loaded: trap, panic, limit, bad name, wrong contract. The
    /// message is one line; `detail` (a Wasm backtrace) is for the JSON report and `-v`.
    #[error("plugin '{plugin}': {message}")]
    Plugin { plugin: String, message: String, detail: Option<String> },

    /// A workload file is malformed; `at` is `file:line` (or `--set KEY`).
    #[error("{at}: {message}")]
    Workload { at: String, message: String },

    /// The run was interrupted (Ctrl-C); everything open was aborted.
    #[error("interrupted; open objects were aborted")]
    Cancelled,
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: io::Error) -> Error {
        Error::Io { path: path.into(), error }
    }

    pub fn sink(target: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Sink { target: target.into(), message: message.into() }
    }

    pub fn plugin(plugin: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Plugin { plugin: plugin.into(), message: message.into(), detail: None }
    }

    /// What goes beyond the one-line message (a plugin trap's backtrace), if anything.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::Plugin { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// The exit code the CLI uses: 2 usage or workload, 3 I/O or backend, 4 plugin fault, 130 Ctrl-C.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidValue { .. } | Error::Workload { .. } => 2,
            Error::Plugin { .. } => 4,
            Error::Cancelled => 130,
            Error::Io { .. } | Error::Sink { .. } | Error::Resource(_) => 3,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
