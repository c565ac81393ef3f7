//! What the user sees: a progress bar on a terminal (nothing but the summary otherwise, so logs stay
//! clean; `NO_COLOR` respected), and the summary of a run — throughput, op latency percentiles, and
//! where the time went, with a verdict on which side was the bottleneck.

use crate::exec::{Observer, RunStats};
use crate::size::format_size;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether colour output is allowed (<https://no-color.org>).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// A progress bar on stderr when stderr is a terminal; silent otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total: u64, enabled: bool) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar_style = if color_allowed() {
            "{wide_bar:.cyan/blue}"
        } else {
            "{wide_bar}"
        };
        let style = ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} {bar_style} {{binary_bytes}}/{{binary_total_bytes}} {{binary_bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(style.progress_chars("=> "));
        Progress { bar: Some(bar) }
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
    let verdict = if wait_share > 50.0 {
        "storage-bound: buffers were waiting on writes"
    } else if gen_share > 80.0 {
        "generation-bound: add threads"
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
