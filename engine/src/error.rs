//! The library's one error type. Every variant carries what it concerns (the key, the path), so the
//! binary can print a single line that tells the user what to fix.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value outside its domain. `key` is the workload key (`data.dedup`, …); the CLI names its flag.
    #[error("invalid {key} '{value}': {reason}")]
    InvalidValue {
        key: &'static str,
        value: String,
        reason: String,
    },

    /// An I/O error on a named file or stream.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
