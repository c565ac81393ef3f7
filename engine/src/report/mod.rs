//! A run's results as one typed [`Report`]: what the terminal table shows (rendered by
//! [`Report::lines`]) and what `--json-report` writes (its serde form) are the same value, so the two
//! cannot drift apart. Formatting only: the binary prints the lines (and draws the progress bar); the
//! library never prints.
//!
//! - [`phase`] — a phase in one shape for one rank, a rank's row and a merge over ranks, and the
//!   figures a rank sends rank 0 to merge exactly;
//! - [`ranks`] — the merged report of many ranks: phases, a row per rank and per host, coordination;
//! - [`table`] — the terminal table of one rank's run;
//! - [`data`] — a data profile as the report names its keys;
//! - [`format`] — milliseconds, shares and GB/s as the table writes them;
//! - [`ops_table`] — the rows of phases that ran jobs of the operations engine.

pub mod data;
pub mod format;
pub mod ops_table;
pub mod phase;
pub mod ranks;
pub mod table;

pub use format::{gbps, gbps_of};
pub use phase::{Latency, PhaseReport};
pub use ranks::{RankSummary, WorldReport};

use crate::events::Note;
use data::DataReport;
use serde::{Deserialize, Serialize};

/// A run's (or a verify's) report. A run that failed before it started has only what was asked
/// (`file`, `mode`) and the error.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The workload file.
    pub file: String,
    /// `run` or `verify`.
    pub mode: &'static str,
    #[serde(flatten)]
    pub run: Option<RunReport>,
    /// What the engine, the sink and the plugin host had to tell at the end, each with its level.
    pub notes: Vec<Note>,
    /// The error that decided the exit code (storage, a plugin fault, Ctrl-C), its detail (a
    /// plugin trap's backtrace) and its kind; null without one.
    pub error: Option<String>,
    pub error_detail: Option<String>,
    pub error_kind: Option<&'static str>,
    /// 0 every check passed, 1 a check failed or an object differs, else the error's code.
    pub exit_code: u8,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub workload: String,
    pub plugin: PluginReport,
    pub seed: u64,
    /// The target's URI.
    pub target: String,
    pub data: DataReport,
    /// Bytes written, objects written, and the time to the last object finished (`seconds`) and of
    /// the whole run (`run_seconds`).
    pub bytes: u64,
    pub objects: usize,
    pub seconds: f64,
    pub run_seconds: f64,
    pub gbps: f64,
    /// How the sink writes (`io_uring`, `pwrite`, `s3`, …).
    pub engine: &'static str,
    /// The write pipeline's figures; none when nothing was written through it (`verify`).
    pub pipeline: Option<PipelineReport>,
    pub object_list: Vec<ObjectReport>,
    pub phases: Vec<PhaseReport>,
    /// Reads whose check failed: how many, and the first ones.
    pub read_failures: u64,
    pub read_failure_list: Vec<ReadFailure>,
    /// Read-backs' verdicts (every commit under `verify`; the plugin's `verify` calls in a run).
    pub verify: Vec<VerifyReport>,
    pub metrics: Vec<Metric>,
    /// The plugin's checks and summary; none when it returned no report.
    pub checks: Option<Vec<CheckReport>>,
    pub summary: Option<String>,
    /// A run of many ranks, on rank 0 (or ranks run in turn): each rank, each host.
    #[serde(flatten)]
    pub world: Option<WorldRows>,
    /// What the table shows beyond the JSON's fields.
    #[serde(skip)]
    pub view: View,
}

/// Table-only context: the profile as one line, and the threads that generate and read.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub profile: String,
    pub threads: usize,
    pub readers: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PluginReport {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub contract: String,
}

/// The write pipeline of a run, or of `gen`.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineReport {
    pub bytes: u64,
    pub writes: u64,
    /// Bytes per write at most (the pool's buffer size).
    pub write_size: usize,
    pub write_latency_us: Latency,
    /// From the pool ready to the last write done.
    pub seconds: f64,
    /// Thread time generating (and checksumming), over `threads` threads.
    pub generate_s: f64,
    pub threads: usize,
    /// Wall time with a write in flight, and with work but no free buffer.
    pub io_busy_s: f64,
    pub buffer_wait_s: f64,
    pub pool_bytes: u64,
}

impl PipelineReport {
    pub fn of(s: &crate::pipeline::executor::PipelineStats, write_size: usize) -> PipelineReport {
        PipelineReport {
            bytes: s.bytes,
            writes: s.ops,
            write_size,
            write_latency_us: Latency::of(&s.op_latency),
            seconds: s.elapsed.as_secs_f64(),
            generate_s: s.generate.as_secs_f64(),
            threads: s.threads,
            io_busy_s: s.io_busy.as_secs_f64(),
            buffer_wait_s: s.buffer_wait.as_secs_f64(),
            pool_bytes: s.pool_bytes,
        }
    }
}

/// An object written: its name, size, CRC32C (when taken) and latency (open to durable), and its
/// rank in a merged report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectReport {
    pub name: String,
    pub size: u64,
    pub crc32c: Option<u32>,
    pub latency_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReadFailure {
    pub name: String,
    /// Where the read started.
    pub offset: u64,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub name: String,
    pub identical: bool,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
}

/// One of the plugin's checks, with its rank when ranks ran in turn.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub observed: f64,
    pub op: String,
    pub threshold: f64,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
}

/// What a merged report adds: the ranks and hosts, and how the ranks ran.
#[derive(Clone, Debug, Serialize)]
pub struct WorldRows {
    pub world_size: usize,
    pub ranks: Vec<ranks::RankReport>,
    pub hosts: Vec<ranks::HostReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordination: Option<ranks::Coordination>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ranks_in_turn: bool,
}

impl Report {
    /// The report of a run that failed before it started (a bad workload, a plugin that does not
    /// load, a target that cannot be opened): what was asked, and the error.
    pub fn failure(workload: &std::path::Path, verify: bool, e: &crate::Error) -> Report {
        Report {
            file: workload.display().to_string(),
            mode: if verify { "verify" } else { "run" },
            run: None,
            notes: Vec::new(),
            error: None,
            error_detail: None,
            error_kind: None,
            exit_code: 0,
        }
        .with_error(Some(e), e.exit_code())
    }

    /// Sets the error fields and the exit code.
    pub fn with_error(mut self, e: Option<&crate::Error>, exit_code: u8) -> Report {
        self.error = e.map(|e| e.to_string());
        self.error_detail = e.and_then(|e| e.detail().map(str::to_string));
        self.error_kind = e.map(|e| e.kind());
        self.exit_code = exit_code;
        self
    }

    /// Rank 0's report made the run's: the merged totals, objects and phases replace its own, and
    /// the ranks and hosts are added. The exit code is the worst of its own and every rank's.
    pub fn merge(&mut self, w: WorldReport) {
        self.exit_code = self.exit_code.max(w.exit_code);
        if let Some(run) = self.run.as_mut() {
            run.bytes = w.bytes;
            run.objects = w.objects;
            run.seconds = w.seconds;
            run.gbps = w.gbps;
            run.object_list = w.object_list;
            run.phases = w.phases;
            if let Some(checks) = w.checks {
                run.checks = Some(checks);
            }
            run.world = Some(WorldRows {
                world_size: w.world_size,
                ranks: w.ranks,
                hosts: w.hosts,
                coordination: w.coordination,
                ranks_in_turn: w.ranks_in_turn,
            });
        }
    }

    /// The report as JSON: its fields in order of name (as `serde_json` keeps a map).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The JSON text `--json-report` writes.
    pub fn to_json_text(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_default() + "\n"
    }

    /// The failed checks' names, quoted.
    pub fn failed_checks(&self) -> Vec<String> {
        self.run
            .iter()
            .flat_map(|r| r.checks.iter().flatten())
            .filter(|c| !c.passed)
            .map(|c| format!("'{}'", c.name))
            .collect()
    }
}

impl ObjectReport {
    pub fn of(r: &crate::pipeline::executor::ObjectResult) -> ObjectReport {
        ObjectReport {
            name: r.name.clone(),
            size: r.size,
            crc32c: r.crc32c,
            latency_us: r.latency.as_micros() as u64,
            rank: None,
        }
    }
}

impl CheckReport {
    pub fn of(c: &crate::plugin::Check, rank: Option<u32>) -> CheckReport {
        CheckReport {
            name: c.name.clone(),
            observed: c.observed,
            op: c.op.clone(),
            threshold: c.threshold,
            passed: c.passed,
            rank,
        }
    }
}
