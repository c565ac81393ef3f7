//! What the plugin says: log lines (escaped, cut, rate-limited by a token bucket, the rest counted
//! and summarised at the end) and metrics (charged, kept for the report).

use super::budget::cost;
use super::HostState;
use crate::events::Event;
use crate::plugin::dgen::plugin::types::LogLevel;
use crate::untrusted::sanitize;
use std::time::Instant;

/// Longest metric name, bytes.
pub const MAX_METRIC_NAME: usize = 256;
/// Longest plugin log line shown, characters (the rest is cut and counted).
pub const MAX_LOG_LINE: usize = 1000;
/// Log lines shown at once before the rate limit starts, and lines per second after that.
pub const LOG_BURST: f64 = 100.0;
pub const LOG_RATE: f64 = 10.0;

/// Plugin log lines: escaped, cut to a length, and rate-limited (a token bucket); what the limit held
/// back is counted and summarised.
pub(super) struct LogGate {
    tokens: f64,
    last: Instant,
    pub(super) suppressed: u64,
    pub(super) cut: u64,
    /// The line being logged was longer than the host read of it (set by the guarded call).
    pub(super) unread_tail: bool,
}

impl LogGate {
    pub(super) fn new() -> LogGate {
        LogGate { tokens: LOG_BURST, last: Instant::now(), suppressed: 0, cut: 0, unread_tail: false }
    }

    /// Whether a line may be shown now.
    pub(super) fn admit(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * LOG_RATE).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

impl HostState {
    /// What the log rate limit held back, and how many lines were cut, for the end of the run.
    pub(super) fn log_summary(&self) -> Option<crate::events::Note> {
        let g = &self.logs;
        if g.suppressed == 0 && g.cut == 0 {
            return None;
        }
        Some(crate::events::Note::remark(format!(
            "[{}] note: {} log lines not shown (more than {LOG_BURST} at once or {LOG_RATE} a second), {} cut to {MAX_LOG_LINE} characters",
            self.ctx.plugin, g.suppressed, g.cut
        )))
    }

    pub(super) fn log_line(&mut self, level: LogLevel, message: &str) {
        let cut = std::mem::take(&mut self.logs.unread_tail);
        let show = match level {
            LogLevel::Debug => std::env::var_os("DGEN_DEBUG").is_some(),
            LogLevel::Info => !self.ctx.quiet,
            LogLevel::Warn | LogLevel::Error => true,
        };
        if !show || !self.logs.admit() {
            return;
        }
        let tag = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warning",
            LogLevel::Error => "error",
        };
        if cut || message.chars().count() > MAX_LOG_LINE {
            self.logs.cut += 1;
        }
        let (plugin, text) = (self.ctx.plugin.clone(), sanitize(message, MAX_LOG_LINE));
        self.ctx.events.emit(Event::PluginLog { plugin, level: tag, text });
    }

    pub(super) fn add_metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.charge(cost::METRIC + 2 * name.len(), "recording a metric")?;
        self.metrics.push((name, value));
        Ok(())
    }
}
