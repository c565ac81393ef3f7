//! The library's one error type. Every variant carries what it concerns (the key, the path, the
//! target), so the binary can print a single line that tells the user what to fix; the kind of
//! failure is the variant, so a caller (the CLI's exit code, the JSON report's `error_kind`, the
//! Python package's exception class) decides from it, never from the text.
//!
//! Messages are complete on their own (they already say the cause in words); the underlying error,
//! when there is one, is kept as the `source` for programs and for `-v`, not repeated in the text.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An underlying error (an `io::Error`, an SDK error), shared so that one failure can be reported
/// to every write it concerns.
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A value outside its domain. `key` is the workload key (`data.dedup`, …); the CLI names its flag.
    #[error("invalid {key} '{}': {reason}", crate::untrusted::echo(value))]
    InvalidValue { key: &'static str, value: String, reason: String },

    /// A workload file is malformed; `at` is `file:line` (or `--set KEY`).
    #[error("{at}: {message}")]
    Workload { at: String, message: String },

    /// What was asked for does not exist: a bucket, a container, a directory, an object to read back.
    #[error("{target}: {message}")]
    NotFound {
        target: String,
        message: String,
        #[source]
        source: Option<Source>,
    },

    /// The target refused us: file permissions, refused credentials, a key or SAS without the right.
    #[error("{target}: {message}")]
    Denied {
        target: String,
        message: String,
        #[source]
        source: Option<Source>,
    },

    /// The target could not be reached (connection refused, DNS, timeouts).
    #[error("{target}: {message}")]
    Unreachable {
        target: String,
        message: String,
        #[source]
        source: Option<Source>,
    },

    /// The target is full (ENOSPC, a quota, a file size limit, HTTP 507).
    #[error("{target}: {message}")]
    NoSpace {
        target: String,
        message: String,
        #[source]
        source: Option<Source>,
    },

    /// Any other I/O error on a named file.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: Arc<io::Error>,
    },

    /// Any other failure of a storage target (a refused request, a reply we cannot use); `target`
    /// names it.
    #[error("{target}: {message}")]
    Sink {
        target: String,
        message: String,
        #[source]
        source: Option<Source>,
    },

    /// Not enough memory for the buffer pool, a missing tool, or a similar limit of this machine.
    #[error("{message}")]
    Resource {
        message: String,
        #[source]
        source: Option<Source>,
    },

    /// A plugin crate that does not build (its code, not the machine): `dir` is the crate.
    #[error("plugin build {}: {message}", dir.display())]
    Build { dir: PathBuf, message: String },

    /// A plugin misbehaved or could not be loaded: trap, panic, limit, bad name, wrong contract. The
    /// message is one line; `detail` (a Wasm backtrace) is for the JSON report and `-v`.
    #[error("plugin '{plugin}': {message}")]
    Plugin { plugin: String, message: String, detail: Option<String> },

    /// The run was interrupted (Ctrl-C); everything open was aborted.
    #[error("interrupted; open objects were aborted")]
    Cancelled,
    /// Another rank of the run failed: this one stopped and aborted its open objects. `code` is the
    /// failing rank's exit code, which this one exits with too.
    #[error("rank {rank} failed: {message}")]
    Rank { rank: u32, code: u8, message: String },
}

/// The kinds of storage failure, for backends that classify an SDK's error before wording it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    Denied,
    Unreachable,
    NoSpace,
    Other,
}

impl Error {
    /// An I/O error on `path`, classified by its kind (missing, refused, full, or other).
    pub fn io(path: impl AsRef<Path>, error: io::Error) -> Error {
        let path = path.as_ref();
        let class = match error.kind() {
            io::ErrorKind::NotFound => Failure::NotFound,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Failure::Denied,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => Failure::NoSpace,
            _ => Failure::Other,
        };
        if class == Failure::Other {
            return Error::Io { path: path.to_path_buf(), error: Arc::new(error) };
        }
        let message = error.to_string();
        Error::storage(class, path.display().to_string(), message, Some(Arc::new(error)))
    }

    /// A storage failure of the given kind.
    pub fn storage(
        class: Failure,
        target: impl Into<String>,
        message: impl Into<String>,
        source: Option<Source>,
    ) -> Error {
        let (target, message) = (target.into(), message.into());
        match class {
            Failure::NotFound => Error::NotFound { target, message, source },
            Failure::Denied => Error::Denied { target, message, source },
            Failure::Unreachable => Error::Unreachable { target, message, source },
            Failure::NoSpace => Error::NoSpace { target, message, source },
            Failure::Other => Error::Sink { target, message, source },
        }
    }

    /// A storage or I/O failure said of `what` the user asked for ("cannot write x.bin: …"), of
    /// the same kind; the failure itself stays the source. Other errors are returned as they are.
    pub fn about(self, what: &str) -> Error {
        let class = match &self {
            Error::NotFound { .. } => Failure::NotFound,
            Error::Denied { .. } => Failure::Denied,
            Error::Unreachable { .. } => Failure::Unreachable,
            Error::NoSpace { .. } => Failure::NoSpace,
            Error::Io { .. } | Error::Sink { .. } => Failure::Other,
            _ => return self,
        };
        let message = self.to_string();
        Error::storage(class, what, message, Some(Arc::new(self)))
    }

    /// A storage failure with no finer kind and no underlying error.
    pub fn sink(target: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Sink { target: target.into(), message: message.into(), source: None }
    }

    /// A limit of this machine, with no underlying error.
    pub fn resource(message: impl Into<String>) -> Error {
        Error::Resource { message: message.into(), source: None }
    }

    /// A limit of this machine met doing `what`: the message says `what` and why; the underlying
    /// error is kept as the source.
    pub fn resource_from(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Resource { message: format!("{what}: {e}"), source: Some(Arc::new(e)) }
    }

    /// A buffer pool that could not be made.
    pub fn pool(e: crate::pool::PoolError) -> Error {
        Error::Resource { message: e.to_string(), source: Some(Arc::new(e)) }
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

    /// The kind, as a stable name (the JSON report's `error_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidValue { .. } => "invalid_value",
            Error::Workload { .. } => "workload",
            Error::NotFound { .. } => "not_found",
            Error::Denied { .. } => "denied",
            Error::Unreachable { .. } => "unreachable",
            Error::NoSpace { .. } => "no_space",
            Error::Io { .. } => "io",
            Error::Sink { .. } => "storage",
            Error::Resource { .. } => "resource",
            Error::Build { .. } => "plugin_build",
            Error::Plugin { .. } => "plugin",
            Error::Cancelled => "cancelled",
            Error::Rank { .. } => "rank",
        }
    }

    /// The exit code the CLI uses (docs/reference.md, "Exit codes"): 2 a bad workload or value, 3 storage, I/O
    /// or this machine, 4 the plugin, 130 Ctrl-C. This is the one place it is decided.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidValue { .. } | Error::Workload { .. } => 2,
            Error::NotFound { .. }
            | Error::Denied { .. }
            | Error::Unreachable { .. }
            | Error::NoSpace { .. }
            | Error::Io { .. }
            | Error::Sink { .. }
            | Error::Resource { .. } => 3,
            Error::Build { .. } | Error::Plugin { .. } => 4,
            Error::Cancelled => 130,
            Error::Rank { code, .. } => *code,
        }
    }

    /// The underlying errors, outermost first (for `-v`).
    pub fn causes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push(e.to_string());
            cur = e.source();
        }
        out
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_kind_and_keep_their_source() {
        let e = Error::io("/x", io::Error::from_raw_os_error(28)); // ENOSPC
        assert_eq!((e.kind(), e.exit_code()), ("no_space", 3));
        assert!(e.to_string().starts_with("/x: "), "{e}");
        assert_eq!(e.causes().len(), 1);
        let e = Error::io("/x", io::Error::from_raw_os_error(13)); // EACCES
        assert_eq!(e.kind(), "denied");
        let e = Error::io("/x", io::Error::from_raw_os_error(2)); // ENOENT
        assert_eq!(e.kind(), "not_found");
        let e = Error::io("/x", io::Error::from_raw_os_error(5)); // EIO
        assert_eq!((e.kind(), e.exit_code()), ("io", 3));
        assert_eq!(Error::plugin("p", "trap").exit_code(), 4);
        assert_eq!(Error::Cancelled.exit_code(), 130);
    }
}
