//! What a run's results say, as lines and as JSON: throughput, op latency percentiles, where the
//! time went (with a verdict on which side was the bottleneck), checks and verdicts. Formatting only:
//! the binary prints these lines (and draws the progress bar); the library never prints.

use crate::input::sanitize;
use crate::pipeline::executor::RunStats;
use crate::pipeline::phase::Phase;
use crate::size::format_size;
use serde_json::json;
use std::time::Duration;

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
pub fn outcome_lines(plan: &crate::run::workload::Plan, o: &crate::run::session::Outcome) -> Vec<String> {
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
    let read_only = o.objects.is_empty() && o.phases.iter().any(|p| p.reads + p.meta_ops > 0);
    if read_only {
        lines.push(format!("nothing written; run {:.3} s (the phases below)", o.wall.as_secs_f64()));
    } else {
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
    }
    if let Some(stats) = &o.stats {
        lines.push(format!("engine {}; pool {}", o.engine, format_size(stats.pool_bytes)));
        if stats.ops > 0 {
            lines.extend(run_details(stats, o.chunk));
        }
    }
    lines.extend(phase_lines(&o.phases, plan.threads, plan.concurrency.max(1)));
    lines.extend(o.notes.iter().cloned());
    if o.read_failure_count > 0 {
        lines.push(format!("reads: {} failed their check", o.read_failure_count));
        for (name, offset, v) in o.read_failures.iter().take(20) {
            lines.push(format!(
                "  MISMATCH {} (read from byte {offset}): {}",
                sanitize(name, 300),
                sanitize(&v.to_string(), 500)
            ));
        }
    }
    if o.mode == Mode::Verify || !o.verdicts.is_empty() {
        let bad: Vec<&(String, crate::pipeline::verify::Verdict)> =
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

/// Where a phase's time went, and what that says bound it; `None` when it did no I/O.
/// `threads` generate, `readers` read.
pub fn split_line(p: &Phase, threads: usize, readers: usize) -> Option<String> {
    let s = &p.split;
    let window = p.window().max(Duration::from_micros(1));
    let mut parts = Vec::new();
    let mut verdict = None;
    if p.writes > 0 || !s.generate.is_zero() {
        let gen_share = pct(s.generate, window * threads.max(1) as u32);
        let wait_share = pct(s.write_buffer_wait, window);
        parts.push(format!(
            "generating {:.2} s on {threads} threads ({gen_share:.0}% busy), writes in flight {:.2} s ({:.0}%), waiting for buffers {:.2} s ({wait_share:.0}%)",
            s.generate.as_secs_f64(),
            s.writes_in_flight.as_secs_f64(),
            pct(s.writes_in_flight, window),
            s.write_buffer_wait.as_secs_f64(),
        ));
        verdict = Some(if gen_share > 80.0 {
            "generation-bound"
        } else if wait_share > 50.0 {
            "storage-bound"
        } else {
            "neither side saturated"
        });
    }
    if p.reads > 0 {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).min(readers.max(1));
        let check_share = pct(s.check, window * cpus as u32);
        let flight_share = pct(s.reads_in_flight, window);
        parts.push(format!(
            "reads in flight {:.2} s ({flight_share:.0}%); of {readers} readers' time {:.2} s in read calls, {:.2} s checking ({check_share:.0}% of {cpus} CPUs), {:.2} s waiting for buffers",
            s.reads_in_flight.as_secs_f64(),
            s.read_calls.as_secs_f64(),
            s.check.as_secs_f64(),
            s.read_buffer_wait.as_secs_f64(),
        ));
        verdict = Some(if check_share > 70.0 {
            "check-bound: the CPU checking what was read"
        } else if flight_share > 90.0 {
            "storage-bound: reads were in flight all along"
        } else {
            "plugin-bound: reads were not kept in flight"
        });
    }
    let verdict = verdict?;
    Some(format!("  {} time: {}: {verdict}", sanitize(&p.name, 64), parts.join("; ")))
}

/// One row per phase, when the run had more than its implicit one or read anything, then where
/// each phase's time went.
pub fn phase_lines(phases: &[Phase], threads: usize, readers: usize) -> Vec<String> {
    let only_writes = phases.len() == 1 && phases[0].reads == 0 && phases[0].meta_ops == 0;
    if phases.is_empty() || only_writes {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{:<16} {:>12} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "phase", "bytes", "ops", "seconds", "GB/s", "p50", "p99", "p99.9", "max"
    )];
    for p in phases.iter().take(SHOWN) {
        let mut row = format!(
            "{:<16} {:>12} {:>8} {:>9.3} {:>8.2} {:>9} {:>9} {:>9} {:>9}",
            sanitize(&p.name, 64),
            format_size(p.bytes()),
            p.ops(),
            p.seconds(),
            p.gbps(),
            ms(p.latency_us(0.5)),
            ms(p.latency_us(0.99)),
            ms(p.latency_us(0.999)),
            ms(p.latency_max_us()),
        );
        if let Some(c) = p.cached_fraction() {
            row.push_str(&format!("  {:.0}% in page cache at start", 100.0 * c));
        }
        if p.read_failures > 0 {
            row.push_str(&format!("  {} reads FAILED their check", p.read_failures));
        }
        if let Some((at, by)) = p.stonewalled {
            row.push_str(&format!(
                "  stonewalled at {at:.3} s (rank {by} finished first): {} objects, {} reads cut",
                p.cut_objects, p.cut_reads
            ));
        }
        lines.push(row);
    }
    if phases.len() > SHOWN {
        lines.push(format!("  … and {} more phases (all of them are in --json-report)", phases.len() - SHOWN));
    }
    lines.extend(phases.iter().take(SHOWN).filter_map(|p| split_line(p, threads, readers)));
    lines
}

/// A phase as the JSON report's `phases` entries.
pub fn phase_json(p: &Phase) -> serde_json::Value {
    let q = |h: &hdrhistogram::Histogram<u64>, x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    json!({
        "name": p.name,
        "bytes": p.bytes(),
        "ops": p.ops(),
        "seconds": p.seconds(),
        "gbps": p.gbps(),
        "latency_us": { "p50": p.latency_us(0.5), "p99": p.latency_us(0.99), "p999": p.latency_us(0.999), "max": p.latency_max_us() },
        "written": p.written,
        "writes": p.writes,
        "read": p.read,
        "reads": p.reads,
        "read_failures": p.read_failures,
        "meta_ops": p.meta_ops,
        "ttfb_us": { "p50": q(&p.ttfb, 0.5), "p99": q(&p.ttfb, 0.99), "max": p.ttfb.max() },
        "cached_fraction": p.cached_fraction(),
        "stonewalled": p.stonewalled.map(|(at, by)| json!({ "at_s": at, "by_rank": by })),
        "cut_objects": p.cut_objects,
        "cut_reads": p.cut_reads,
        "time_split": {
            "window_s": p.window().as_secs_f64(),
            "generate_s": p.split.generate.as_secs_f64(),
            "writes_in_flight_s": p.split.writes_in_flight.as_secs_f64(),
            "write_buffer_wait_s": p.split.write_buffer_wait.as_secs_f64(),
            "reads_in_flight_s": p.split.reads_in_flight.as_secs_f64(),
            "read_calls_s": p.split.read_calls.as_secs_f64(),
            "check_s": p.split.check.as_secs_f64(),
            "read_buffer_wait_s": p.split.read_buffer_wait.as_secs_f64(),
        },
    })
}

/// Rows of plugin-made lists (metrics, checks) the table shows; the JSON report has them all.
const SHOWN: usize = 50;

/// The same content as [`outcome_lines`], as JSON.
pub fn outcome_json(plan: &crate::run::workload::Plan, o: &crate::run::session::Outcome) -> serde_json::Value {
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
    let report = json!({
        "workload": plan.name,
        "file": plan.file.display().to_string(),
        "mode": if o.mode == crate::plugin::host::Mode::Verify { "verify" } else { "run" },
        "plugin": { "name": o.plugin.name, "version": o.plugin.version, "sha256": o.plugin_sha256, "contract": o.plugin.contract },
        "seed": o.seed,
        "target": plan.uri,
        "data": data_json(&plan.profile),
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
        "phases": o.phases.iter().map(phase_json).collect::<Vec<_>>(),
        "read_failures": o.read_failure_count,
        "read_failure_list": o.read_failures.iter().map(|(n, off, v)| json!({"name": n, "offset": off, "verdict": v.to_string()})).collect::<Vec<_>>(),
        "verify": o.verdicts.iter().map(|(n, v)| json!({"name": n, "identical": v.is_identical(), "verdict": v.to_string()})).collect::<Vec<_>>(),
        "metrics": o.metrics.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "checks": o.report.as_ref().map(|r| r.checks.iter().map(|c| json!({
            "name": c.name, "observed": c.observed, "op": c.op, "threshold": c.threshold, "passed": c.passed
        })).collect::<Vec<_>>()),
        "summary": o.report.as_ref().map(|r| r.summary.clone()),
    });
    with_error(report, o.error.as_ref(), o.exit_code())
}

/// Adds the fields every report has, in one shape whether the run failed early, late or not at all:
/// `error`, `error_detail`, `error_kind` (null without an error) and `exit_code`.
fn with_error(mut report: serde_json::Value, e: Option<&crate::Error>, exit_code: u8) -> serde_json::Value {
    if let Some(map) = report.as_object_mut() {
        map.insert("error".into(), json!(e.map(|e| e.to_string())));
        map.insert("error_detail".into(), json!(e.and_then(|e| e.detail())));
        map.insert("error_kind".into(), json!(e.map(|e| e.kind())));
        map.insert("exit_code".into(), json!(exit_code));
    }
    report
}

/// The JSON report of a run that failed before it started (a bad workload, a plugin that does not
/// load, a target that cannot be opened): what was asked, and the error.
pub fn failure_json(workload: &std::path::Path, verify: bool, e: &crate::Error) -> serde_json::Value {
    let report = json!({
        "file": workload.display().to_string(),
        "mode": if verify { "verify" } else { "run" },
    });
    with_error(report, Some(e), e.exit_code())
}

/// A profile as the JSON report gives it: the workload's `[data]` keys, with the extent always and
/// the mix (its classes, and `compress` the stream ratio it implies) when there is one.
pub fn data_json(p: &crate::generator::Profile) -> serde_json::Value {
    let mut d = serde_json::json!({
        "dedup": p.dedup(), "compress": p.compress(), "dedup_unit": p.unit(), "dedup_extent": p.extent(),
    });
    if !p.mix().is_empty() {
        d["compress_mix"] = p.mix().iter().map(|c| serde_json::json!([c.fraction, c.ratio])).collect();
    }
    if let Some(t) = p.copies() {
        use crate::generator::copies::CopySpec;
        d["dedup_copies"] = match &t.spec {
            CopySpec::Even => serde_json::json!("even"),
            CopySpec::Zipf(s) => serde_json::json!({ "zipf": s }),
            CopySpec::Histogram { path, rows } if path.as_os_str().is_empty() => {
                serde_json::json!({ "histogram": rows.iter().map(|&(k, n)| [k, n]).collect::<Vec<_>>() })
            }
            CopySpec::Histogram { path, rows } => {
                serde_json::json!({ "histogram": path.display().to_string(), "rows": rows.len() })
            }
        };
        d["dedup_table"] = serde_json::json!({ "runs": t.runs(), "period_rows": t.period(), "bytes": t.bytes() });
    }
    d
}
