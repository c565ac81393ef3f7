//! The terminal table of one rank's run, rendered from its [`Report`]: the headline, the write
//! pipeline and where its time went (with a verdict on which side was the bottleneck), a row per
//! phase, notes, failed reads, verdicts, metrics and checks.

use super::format::{ms, pct};
use super::{PhaseReport, PipelineReport, Report};
use crate::size::format_size;
use crate::untrusted::sanitize;

/// Rows of plugin-made lists (metrics, checks, phases) the table shows; the JSON report has them all.
const SHOWN: usize = 50;

impl Report {
    /// The table of a `run` or `verify` (its own rank's figures; a merged report's rows are
    /// [`super::WorldReport::lines`]). A report of a run that never started has no table.
    pub fn lines(&self) -> Vec<String> {
        let Some(r) = &self.run else { return Vec::new() };
        let mut lines = Vec::new();
        lines.push(format!(
            "dgen-engine {}: workload '{}' with plugin {} {} (sha256 {}), seed {}, {}; target {}",
            self.mode,
            r.workload,
            sanitize(&r.plugin.name, 100),
            sanitize(&r.plugin.version, 50),
            &r.plugin.sha256[..16.min(r.plugin.sha256.len())],
            r.seed,
            r.view.profile,
            r.target
        ));
        let mut lat: Vec<u64> = r.object_list.iter().map(|o| o.latency_us).collect();
        lat.sort_unstable();
        let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
        let read_only = r.object_list.is_empty() && r.phases.iter().any(|p| p.counts.reads + p.counts.meta_ops > 0);
        let in_place = r.object_list.is_empty() && r.phases.iter().any(|p| p.jobs.engine.is_some());
        let phases = r.phases.len();
        if in_place {
            let (w, rd): (u64, u64) =
                r.phases.iter().fold((0, 0), |(w, rd), p| (w + p.counts.written, rd + p.counts.read));
            lines.push(format!(
                "operations in place: {} written, {} read; run {:.3} s (the phases below)",
                format_size(w),
                format_size(rd),
                r.run_seconds
            ));
        } else if read_only {
            lines.push(format!("nothing written; run {:.3} s (the phases below)", r.run_seconds));
        } else if phases > 1 {
            // Over several phases the span from the start to the last object holds pauses and other
            // phases' work: no rate over it; each phase has its own below.
            lines.push(format!(
                "{} objects, {} written over {phases} phases (each phase's rate below); {:.3} s from the start to \
                 the last object finished, run {:.3} s; object latency p50 {} p99 {}",
                r.objects,
                format_size(r.bytes),
                r.seconds,
                r.run_seconds,
                ms(q(0.5)),
                ms(q(0.99)),
            ));
        } else {
            lines.push(format!(
                "{} objects, {} in {:.3} s = {:.2} GB/s (to the last object finished; run {:.3} s); object latency p50 {} p99 {}",
                r.objects,
                format_size(r.bytes),
                r.seconds,
                r.gbps,
                r.run_seconds,
                ms(q(0.5)),
                ms(q(0.99)),
            ));
        }
        if let Some(p) = r.pipeline.as_ref().filter(|_| !in_place) {
            lines.push(format!("engine {}; pool {}", r.engine, format_size(p.pool_bytes)));
            if p.writes > 0 {
                lines.extend(pipeline_lines(p));
            }
        }
        let object_phases: Vec<PhaseReport> = r.phases.iter().filter(|p| p.jobs.engine.is_none()).cloned().collect();
        if in_place {
            lines.push(format!(
                "engine {} (operations in place)",
                r.phases.iter().find_map(|p| p.jobs.engine.clone()).unwrap_or_default()
            ));
        }
        lines.extend(phase_lines(&object_phases, r.view.threads, r.view.readers));
        lines.extend(super::ops_table::ops_lines(&r.phases));
        lines.extend(self.notes.iter().map(|n| n.text.clone()));
        if r.read_failures > 0 {
            lines.push(format!("reads: {} failed their check", r.read_failures));
            for f in r.read_failure_list.iter().take(20) {
                lines.push(format!(
                    "  MISMATCH {} (read from byte {}): {}",
                    sanitize(&f.name, 300),
                    f.offset,
                    sanitize(&f.verdict, 500)
                ));
            }
        }
        if self.mode == "verify" || !r.verify.is_empty() {
            let bad: Vec<_> = r.verify.iter().filter(|v| !v.identical).collect();
            lines.push(format!(
                "verified {} objects: {} identical, {} not",
                r.verify.len(),
                r.verify.len() - bad.len(),
                bad.len()
            ));
            for v in bad.iter().take(20) {
                lines.push(format!("  MISMATCH {}: {}", sanitize(&v.name, 300), sanitize(&v.verdict, 500)));
            }
        }
        lines.extend(metric_lines(&r.metrics));
        if let Some(checks) = &r.checks {
            lines.push("checks:".into());
            for c in checks.iter().take(SHOWN) {
                lines.push(format!(
                    "  {} {:<32} {} {} {}",
                    if c.passed { "PASS" } else { "FAIL" },
                    sanitize(&c.name, 200),
                    observed(c.observed, c.threshold),
                    sanitize(&c.op, 4),
                    c.threshold
                ));
            }
            if checks.len() > SHOWN {
                let failed = checks.iter().skip(SHOWN).filter(|c| !c.passed).count();
                lines.push(format!("  … and {} more checks, {failed} of them failed", checks.len() - SHOWN));
            }
            if let Some(s) = r.summary.as_ref().filter(|s| !s.is_empty()) {
                lines.push(format!("summary: {}", sanitize(s, 2000)));
            }
        }
        lines
    }
}

/// The write pipeline's lines: writes and their latency, and where the time went.
pub fn pipeline_lines(p: &PipelineReport) -> Vec<String> {
    let h = &p.write_latency_us;
    let mut lines = Vec::new();
    if p.writes > 0 {
        lines.push(format!(
            "writes: {} of up to {}; latency p50 {} p99 {} p99.9 {} max {}",
            p.writes,
            format_size(p.write_size as u64),
            ms(h.p50),
            ms(h.p99),
            ms(h.p999),
            ms(h.max),
        ));
    }
    let gen_share = pct(p.generate_s, p.seconds * p.threads as f64);
    let io_share = pct(p.io_busy_s, p.seconds);
    let wait_share = pct(p.buffer_wait_s, p.seconds);
    let verdict = write_verdict(gen_share, io_share, wait_share);
    lines.push(format!(
        "time: generating {:.2} s on {} threads ({gen_share:.0}% busy), writes in flight {:.2} s ({io_share:.0}%), waiting for buffers {:.2} s ({wait_share:.0}%): {verdict}",
        p.generate_s, p.threads, p.io_busy_s, p.buffer_wait_s,
    ));
    lines
}

/// Where a phase's time went, and what that says bound it; `None` when it did no I/O (or is a
/// merged phase, which has no split). `threads` generate, `readers` read.
pub fn split_line(p: &PhaseReport, threads: usize, readers: usize) -> Option<String> {
    let s = p.time_split.as_ref()?;
    let window = s.window_s.max(1e-6);
    let mut parts = Vec::new();
    let mut verdict = None;
    if p.counts.writes > 0 || s.generate_s > 0.0 {
        let gen_share = pct(s.generate_s, window * threads.max(1) as f64);
        let wait_share = pct(s.write_buffer_wait_s, window);
        parts.push(format!(
            "generating {:.2} s on {threads} threads ({gen_share:.0}% busy), writes in flight {:.2} s ({:.0}%), waiting for buffers {:.2} s ({wait_share:.0}%)",
            s.generate_s,
            s.writes_in_flight_s,
            pct(s.writes_in_flight_s, window),
            s.write_buffer_wait_s,
        ));
        verdict = Some(write_verdict(gen_share, pct(s.writes_in_flight_s, window), wait_share));
    }
    if p.counts.reads > 0 {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).min(readers.max(1));
        let check_share = pct(s.check_s, window * cpus as f64);
        let flight_share = pct(s.reads_in_flight_s, window);
        parts.push(format!(
            "reads in flight {:.2} s ({flight_share:.0}%); of {readers} readers' time {:.2} s in read calls, {:.2} s checking ({check_share:.0}% of {cpus} CPUs), {:.2} s waiting for buffers",
            s.reads_in_flight_s, s.read_calls_s, s.check_s, s.read_buffer_wait_s,
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
pub fn phase_lines(phases: &[PhaseReport], threads: usize, readers: usize) -> Vec<String> {
    let only_writes = phases.len() == 1 && phases[0].counts.reads == 0 && phases[0].counts.meta_ops == 0;
    if phases.is_empty() || only_writes {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{:<16} {:>12} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "phase", "bytes", "ops", "seconds", "GB/s", "p50", "p99", "p99.9", "max"
    )];
    for p in phases.iter().take(SHOWN) {
        let l = &p.latency_us;
        // A phase of stats, lists or deletes moves no bytes: its rate is operations per second.
        let metadata = p.bytes == 0 && p.ops > 0;
        let gbps = if metadata { "-".to_string() } else { format!("{:.2}", p.gbps) };
        let mut row = format!(
            "{:<16} {:>12} {:>8} {:>9.3} {:>8} {:>9} {:>9} {:>9} {:>9}",
            sanitize(&p.name, 64),
            format_size(p.bytes),
            p.ops,
            p.seconds,
            gbps,
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
        );
        if metadata {
            row.push_str(&format!("  {:.0} ops/s", p.ops as f64 / p.seconds.max(1e-9)));
        }
        if let Some(c) = p.cached_fraction {
            row.push_str(&format!("  {:.0}% in page cache at start", 100.0 * c));
        }
        if p.counts.read_failures > 0 {
            row.push_str(&format!("  {} reads FAILED their check", p.counts.read_failures));
        }
        if let Some(s) = p.stonewalled {
            row.push_str(&format!(
                "  stonewalled at {:.3} s (rank {} finished first): {} objects, {} reads cut",
                s.at_s, s.by_rank, p.counts.cut_objects, p.counts.cut_reads
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

/// A check's observed value to the precision its comparison needs: one more decimal than the
/// threshold has (at least two), whole numbers as they are.
fn observed(value: f64, threshold: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value}");
    }
    let t = format!("{threshold}");
    let decimals = t.split_once('.').map_or(0, |(_, d)| d.len());
    format!("{value:.*}", (decimals + 1).max(2))
}

/// Metric lines: each metric, except a family of many named alike but for a number
/// (`rank_0_save_GB_per_second` … `rank_15_…`), which is one line of its count, minimum, median and
/// maximum (every value is in the JSON report).
fn metric_lines(metrics: &[super::Metric]) -> Vec<String> {
    const FAMILY: usize = 8;
    // The name with each number in it written N.
    let family = |name: &str| {
        let (mut f, mut in_number) = (String::with_capacity(name.len()), false);
        for c in name.chars() {
            if !c.is_ascii_digit() {
                f.push(c);
            } else if !in_number {
                f.push('N');
            }
            in_number = c.is_ascii_digit();
        }
        f
    };
    // Only names with a number in them can be of a family: no copy of the others is made (a
    // plugin may have filled its memory with metrics).
    let numbered = |name: &str| name.bytes().any(|b| b.is_ascii_digit());
    let mut families: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
    for m in metrics.iter().filter(|m| numbered(&m.name)) {
        families.entry(family(&m.name)).or_default().push(m.value);
    }
    families.retain(|_, v| v.len() > FAMILY);
    let (mut lines, mut singles) = (Vec::new(), 0);
    for m in metrics {
        if !families.is_empty() && numbered(&m.name) {
            let f = family(&m.name);
            if let Some(v) = families.get_mut(&f) {
                // Emptied once its line is written.
                if !v.is_empty() {
                    v.sort_by(f64::total_cmp);
                    lines.push(format!(
                        "metric {}, {} of them: min {} median {} max {}",
                        sanitize(&f, 200),
                        v.len(),
                        v[0],
                        v[v.len() / 2],
                        v[v.len() - 1]
                    ));
                    v.clear();
                }
                continue;
            }
        }
        singles += 1;
        if singles <= SHOWN {
            lines.push(format!("metric {} = {}", sanitize(&m.name, 200), m.value));
        }
    }
    if singles > SHOWN {
        lines.push(format!("  … and {} more metrics (all of them are in --json-report)", singles - SHOWN));
    }
    lines
}

/// What bound a stretch of writes, from the generators' busy share of their thread time and the
/// shares of wall time with writes in flight and with work waiting for a free buffer (the last two
/// overlap: a buffer waits while writes are in flight), said as what to do about it.
fn write_verdict(gen_share: f64, io_share: f64, wait_share: f64) -> &'static str {
    if gen_share > 80.0 {
        "generation-bound: add threads"
    } else if wait_share > 30.0 && io_share > 50.0 {
        "storage-bound: buffers were waiting on writes"
    } else if io_share < 50.0 {
        "neither side saturated: the writes were not kept in flight (raise concurrency, or the plugin paced them)"
    } else {
        "neither side saturated: writes were in flight, with buffers to spare"
    }
}
