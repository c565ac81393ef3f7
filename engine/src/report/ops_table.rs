//! The terminal rows of phases that ran jobs of the operations engine: a row per operation kind
//! (IOPS, MB/s and completion latency percentiles, fio's figures), the prefill, and the read-back
//! with the first blocks that failed it.

use super::PhaseReport;
use crate::ops::check::ProblemKind;
use crate::ops::stats::KindFigures;
use crate::size::format_size;
use crate::untrusted::sanitize;

/// Blocks that failed a read-back listed in the table (the JSON report lists up to 100).
const LISTED: usize = 20;

/// Nanoseconds as people read latencies: µs below a millisecond, ms above.
pub fn latency(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.3} ms", ns as f64 / 1e6)
    }
}

fn kind_row(phase: &str, op: &str, f: &KindFigures, seconds: f64) -> String {
    let p = |k: f64| latency(f.clat_ns.at(k));
    format!(
        "{:<16} {:<7} {:>11.0} {:>10.1} {:>8.2} {:>10} {:>10} {:>10} {:>10}",
        sanitize(phase, 64),
        op,
        f.iops,
        f.bw_bytes as f64 / 1e6,
        seconds,
        p(50.0),
        p(99.0),
        p(99.9),
        latency(f.clat_ns.max),
    )
}

/// The rows of the phases that ran jobs (none without one).
pub fn ops_lines(phases: &[PhaseReport]) -> Vec<String> {
    let job_phases: Vec<&PhaseReport> = phases.iter().filter(|p| p.jobs.engine.is_some()).collect();
    if job_phases.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{:<16} {:<7} {:>11} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "phase", "op", "IOPS", "MB/s", "seconds", "p50", "p99", "p99.9", "max"
    )];
    for p in job_phases {
        if let Some(f) = &p.jobs.prefill {
            lines.push(format!(
                "{:<16} {:<7} {:>11} {:>10.1} {:>8.2}   (the whole region, {}, written first)",
                sanitize(&p.name, 64),
                "prefill",
                "-",
                f.bytes as f64 / 1e6 / f.seconds.max(1e-9),
                f.seconds,
                format_size(f.bytes)
            ));
        }
        let seconds = p.jobs.read.as_ref().or(p.jobs.write.as_ref()).map_or(0.0, |f| f.runtime as f64 / 1e3);
        for (op, f) in
            [("read", &p.jobs.read), ("write", &p.jobs.write), ("trim", &p.jobs.trim), ("fsync", &p.jobs.fsync)]
        {
            if let Some(f) = f {
                lines.push(kind_row(&p.name, op, f, seconds));
            }
        }
        if let Some(c) = &p.jobs.region_check {
            let visible = if c.lost_write_visible_blocks < c.blocks {
                format!(
                    "; lost writes can be seen on {} of them (the others share their content with another block)",
                    c.lost_write_visible_blocks
                )
            } else {
                String::new()
            };
            lines.push(format!(
                "{:<16} {:<7} {} blocks read back in {:.2} s: {} good, {} lost writes, {} torn, {} corrupt, {} not known{}{visible}",
                sanitize(&p.name, 64),
                "check",
                c.blocks,
                c.seconds,
                c.good,
                c.lost_writes,
                c.torn,
                c.corrupt,
                c.unknown,
                if c.landed > 0 { format!(" ({} in-flight writes found landed)", c.landed) } else { String::new() },
            ));
            for pr in c.problems.iter().take(LISTED) {
                let what = match pr.kind {
                    ProblemKind::LostWrite => format!(
                        "LOST WRITE: holds generation {} of its own, should hold {}",
                        pr.found.unwrap_or(0),
                        pr.expected
                    ),
                    ProblemKind::Torn => format!("TORN: parts of two of its generations (should hold {})", pr.expected),
                    ProblemKind::Corrupt => format!(
                        "CORRUPT: bytes the engine did not write there (should hold generation {})",
                        pr.expected
                    ),
                };
                lines.push(format!("  block at byte {}: {what}", pr.offset));
            }
            if c.failed() as usize > c.problems.len().min(LISTED) {
                lines.push(format!(
                    "  … and {} more (the first 100 are in --json-report)",
                    c.failed() as usize - c.problems.len().min(LISTED)
                ));
            }
        }
    }
    lines
}
