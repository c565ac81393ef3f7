//! What the user sees: a progress bar on a terminal (a plain progress line every 10 s otherwise, so
//! logs stay free of escape codes; `NO_COLOR` respected), and the summary of a run — throughput, op latency percentiles, and
//! where the time went, with a verdict on which side was the bottleneck.

use crate::exec::{Observer, RunStats};
use crate::input::sanitize;
use crate::size::format_size;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether colour output is allowed (<https://no-color.org>).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// A progress bar on stderr when stderr is a terminal; otherwise a plain line every 10 seconds, so
/// long runs in logs show they are alive without drawing escape codes into them.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// (start, last line printed, total) in plain mode.
    plain: Option<(std::time::Instant, std::time::Instant, u64)>,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    /// A bar towards `total` bytes, or (total 0) a running count of bytes.
    pub fn new(total: u64, enabled: bool) -> Progress {
        if !enabled {
            return Progress { bar: None, plain: None };
        }
        if !std::io::stderr().is_terminal() {
            let now = std::time::Instant::now();
            return Progress { bar: None, plain: Some((now, now, total)) };
        }
        if total == 0 {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} {spinner} {binary_bytes} written, {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            return Progress { bar: Some(bar), plain: None };
        }
        let bar_style = if color_allowed() { "{wide_bar:.cyan/blue}" } else { "{wide_bar}" };
        let style = ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} {bar_style} {{binary_bytes}}/{{binary_total_bytes}} {{binary_bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(style.progress_chars("=> "));
        Progress { bar: Some(bar), plain: None }
    }

    /// The bar, when one is drawn: lines printed through it appear above it, not across it.
    pub fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn progress(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
        }
        if let Some((start, last, total)) = &mut self.plain {
            if last.elapsed() >= PLAIN_EVERY {
                *last = std::time::Instant::now();
                let of = if *total > 0 { format!(" of {}", format_size(*total)) } else { String::new() };
                eprintln!(
                    "progress: {}{of} written in {:.0} s, {:.2} GB/s",
                    format_size(bytes),
                    start.elapsed().as_secs_f64(),
                    gbps(bytes, start.elapsed())
                );
            }
        }
    }
}

fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

fn pct(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9)
}

/// GB/s (decimal, as storage people quote it).
pub fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e9
}

/// The lines after the headline: writes and their latency, and where the time went.
pub fn run_details(stats: &RunStats, chunk: usize) -> Vec<String> {
    let h = &stats.op_latency;
    let mut lines = Vec::new();
    if stats.ops > 0 {
        lines.push(format!(
            "writes: {} of up to {}; latency p50 {} p99 {} p99.9 {} max {}",
            stats.ops,
            format_size(chunk as u64),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        ));
    }
    let gen_share = pct(stats.generate, stats.elapsed * stats.threads as u32);
    let io_share = pct(stats.io_busy, stats.elapsed);
    let wait_share = pct(stats.buffer_wait, stats.elapsed);
    let verdict = if gen_share > 80.0 {
        "generation-bound: add threads"
    } else if wait_share > 50.0 {
        "storage-bound: buffers were waiting on writes"
    } else {
        "neither side saturated"
    };
    lines.push(format!(
        "time: generating {:.2} s on {} threads ({gen_share:.0}% busy), writes in flight {:.2} s ({io_share:.0}%), waiting for buffers {:.2} s ({wait_share:.0}%): {verdict}",
        stats.generate.as_secs_f64(),
        stats.threads,
        stats.io_busy.as_secs_f64(),
        stats.buffer_wait.as_secs_f64(),
    ));
    lines
}

/// The final table of a `run` or `verify`.
pub fn outcome_lines(plan: &crate::workload::Plan, o: &crate::run::Outcome) -> Vec<String> {
    use crate::plugin::host::Mode;
    let mut lines = Vec::new();
    let verb = if o.mode == Mode::Verify { "verify" } else { "run" };
    lines.push(format!(
        "dgen-engine {verb}: workload '{}' with plugin {} {} (sha256 {}), seed {}, {}; target {}",
        plan.name,
        sanitize(&o.plugin.name, 100),
        sanitize(&o.plugin.version, 50),
        &o.plugin_sha256[..16],
        o.seed,
        plan.profile,
        plan.uri
    ));
    let bytes: u64 = o.objects.iter().map(|r| r.size).sum();
    let mut lat: Vec<u64> = o.objects.iter().map(|r| r.latency.as_micros() as u64).collect();
    lat.sort_unstable();
    let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    lines.push(format!(
        "{} objects, {} in {:.3} s = {:.2} GB/s (to the last object finished; run {:.3} s); object latency p50 {} p99 {}",
        o.objects.len(),
        format_size(bytes),
        o.elapsed.as_secs_f64(),
        gbps(bytes, o.elapsed),
        o.wall.as_secs_f64(),
        ms(q(0.5)),
        ms(q(0.99)),
    ));
    if let Some(stats) = &o.stats {
        lines.push(format!("engine {}; pool {}", o.engine, format_size(stats.pool_bytes)));
        lines.extend(run_details(stats, o.chunk));
    }
    lines.extend(o.notes.iter().cloned());
    if o.mode == Mode::Verify || !o.verdicts.is_empty() {
        let bad: Vec<&(String, crate::verify::Verdict)> =
            o.verdicts.iter().filter(|(_, v)| !v.is_identical()).collect();
        lines.push(format!(
            "verified {} objects: {} identical, {} not",
            o.verdicts.len(),
            o.verdicts.len() - bad.len(),
            bad.len()
        ));
        for (name, v) in bad.iter().take(20) {
            lines.push(format!("  MISMATCH {}: {}", sanitize(name, 300), sanitize(&v.to_string(), 500)));
        }
    }
    for (name, value) in o.metrics.iter().take(SHOWN) {
        lines.push(format!("metric {} = {value}", sanitize(name, 200)));
    }
    if o.metrics.len() > SHOWN {
        lines.push(format!("  … and {} more metrics (all of them are in --json-report)", o.metrics.len() - SHOWN));
    }
    if let Some(r) = &o.report {
        lines.push("checks:".into());
        for c in r.checks.iter().take(SHOWN) {
            lines.push(format!(
                "  {} {:<32} {} {} {}",
                if c.passed { "PASS" } else { "FAIL" },
                sanitize(&c.name, 200),
                c.observed,
                sanitize(&c.op, 4),
                c.threshold
            ));
        }
        if r.checks.len() > SHOWN {
            let failed = r.checks.iter().skip(SHOWN).filter(|c| !c.passed).count();
            lines.push(format!("  … and {} more checks, {failed} of them failed", r.checks.len() - SHOWN));
        }
        if !r.summary.is_empty() {
            lines.push(format!("summary: {}", sanitize(&r.summary, 2000)));
        }
    }
    lines
}

/// Rows of plugin-made lists (metrics, checks) the table shows; the JSON report has them all.
const SHOWN: usize = 50;

/// The same content as [`outcome_lines`], as JSON.
pub fn outcome_json(plan: &crate::workload::Plan, o: &crate::run::Outcome) -> serde_json::Value {
    use serde_json::json;
    let bytes: u64 = o.objects.iter().map(|r| r.size).sum();
    let stats = o.stats.as_ref().map(|s| {
        json!({
            "bytes": s.bytes,
            "writes": s.ops,
            "write_latency_us": {
                "p50": s.op_latency.value_at_quantile(0.5),
                "p99": s.op_latency.value_at_quantile(0.99),
                "p999": s.op_latency.value_at_quantile(0.999),
                "max": s.op_latency.max(),
            },
            "generate_s": s.generate.as_secs_f64(),
            "threads": s.threads,
            "io_busy_s": s.io_busy.as_secs_f64(),
            "buffer_wait_s": s.buffer_wait.as_secs_f64(),
            "pool_bytes": s.pool_bytes,
        })
    });
    json!({
        "workload": plan.name,
        "file": plan.file.display().to_string(),
        "mode": if o.mode == crate::plugin::host::Mode::Verify { "verify" } else { "run" },
        "plugin": { "name": o.plugin.name, "version": o.plugin.version, "sha256": o.plugin_sha256, "contract": o.plugin.contract },
        "seed": o.seed,
        "target": plan.uri,
        "data": { "dedup": plan.profile.dedup(), "compress": plan.profile.compress(), "dedup_unit": plan.profile.unit() },
        "bytes": bytes,
        "objects": o.objects.len(),
        "seconds": o.elapsed.as_secs_f64(),
        "run_seconds": o.wall.as_secs_f64(),
        "gbps": gbps(bytes, o.elapsed),
        "engine": o.engine,
        "pipeline": stats,
        "object_list": o.objects.iter().map(|r| json!({
            "name": r.name, "size": r.size, "crc32c": r.crc32c, "latency_us": r.latency.as_micros() as u64
        })).collect::<Vec<_>>(),
        "verify": o.verdicts.iter().map(|(n, v)| json!({"name": n, "identical": v.is_identical(), "verdict": v.to_string()})).collect::<Vec<_>>(),
        "metrics": o.metrics.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "checks": o.report.as_ref().map(|r| r.checks.iter().map(|c| json!({
            "name": c.name, "observed": c.observed, "op": c.op, "threshold": c.threshold, "passed": c.passed
        })).collect::<Vec<_>>()),
        "summary": o.report.as_ref().map(|r| r.summary.clone()),
        "error": o.error.as_ref().map(|e| e.to_string()),
        "error_detail": o.error.as_ref().and_then(|e| e.detail()),
        "error_kind": o.error.as_ref().map(|e| e.kind()),
        "exit_code": o.exit_code(),
    })
}

/// The JSON report of a run that failed before it started (a bad workload, a plugin that does not
/// load, a target that cannot be opened): what was asked, and the error.
pub fn failure_json(workload: &std::path::Path, verify: bool, e: &crate::Error) -> serde_json::Value {
    serde_json::json!({
        "file": workload.display().to_string(),
        "mode": if verify { "verify" } else { "run" },
        "error": e.to_string(),
        "error_detail": e.detail(),
        "error_kind": e.kind(),
        "exit_code": e.exit_code(),
    })
}
