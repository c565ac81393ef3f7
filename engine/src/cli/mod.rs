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
use std::time::{Duration, Instant};

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

/// How long an interrupted run has to end by itself before the handler ends it.
const GRACE: Duration = Duration::from_millis(500);

/// Ctrl-C sets a flag the pipeline checks, so a run aborts cleanly instead of dying mid-write. A run
/// that has not ended half a second later (a compressor or a write blocking for seconds) is ended here:
/// the temporaries being written are removed first, and uploads still open are waited for (only
/// their writers can abort them). A second Ctrl-C after that ends the process at once, its
/// temporaries removed; one before it is the same Ctrl-C (`timeout` sends it to the process and to
/// its group).
pub fn install_cancel() -> Arc<AtomicBool> {
    static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    CANCEL
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let handler_flag = flag.clone();
            let first: Arc<OnceLock<Instant>> = Arc::default();
            let _ = ctrlc::set_handler(move || {
                if !handler_flag.swap(true, Ordering::SeqCst) {
                    let _ = first.set(Instant::now());
                    std::thread::spawn(|| {
                        std::thread::sleep(GRACE);
                        while dgen_engine::sink::interrupt::uploads_open() > 0 {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        end_interrupted();
                    });
                } else if first.get().is_none_or(|t| t.elapsed() >= GRACE) {
                    // The user insists.
                    end_interrupted();
                }
            });
            flag
        })
        .clone()
}

/// Ends an interrupted process now, its temporaries removed.
fn end_interrupted() -> ! {
    dgen_engine::sink::interrupt::remove_temporaries();
    crate::terminal::say("error: interrupted; open objects were aborted");
    std::process::exit(130)
}

/// Writes a JSON report to `path`.
pub fn write_report(path: &Path, report: &dgen_engine::report::Report) -> Result<(), Failure> {
    std::fs::write(path, report.to_json_text())
        .with_context(|| format!("cannot write the JSON report {}", path.display()))
        .map_err(Failure::io)
}
