//! The commands, a file each, and what they share: the error that knows its exit code, the Ctrl-C
//! flag, and writing a JSON report.

pub mod args;
pub mod gen;
pub mod plugin;
pub mod profile;
pub mod run;

use anyhow::Context;
use dgen_engine::Error;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// An error that knows its exit code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 2, error: error.into() }
    }
    pub fn io(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 3, error: error.into() }
    }
}

/// A library error as the CLI reports it: its one-line message (its sources are for `-v`, the
/// message already says the cause) and the exit code its variant decides.
pub fn lib_error(e: Error) -> Failure {
    Failure { code: e.exit_code(), error: anyhow::Error::msg(e.to_string()) }
}

/// Ctrl-C sets a flag the pipeline checks, so a run aborts cleanly instead of dying mid-write; a
/// second Ctrl-C ends the process.
pub fn install_cancel() -> Arc<AtomicBool> {
    static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    CANCEL
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let handler_flag = flag.clone();
            let _ = ctrlc::set_handler(move || {
                if handler_flag.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: the user insists.
                    std::process::exit(130);
                }
            });
            flag
        })
        .clone()
}

/// Writes a JSON report to `path`.
pub fn write_report(path: &Path, report: &dgen_engine::report::Report) -> Result<(), Failure> {
    std::fs::write(path, report.to_json_text())
        .with_context(|| format!("cannot write the JSON report {}", path.display()))
        .map_err(Failure::io)
}
