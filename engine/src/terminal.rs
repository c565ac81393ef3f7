//! The binary's one voice to the terminal: the progress bar (or, off a terminal, a plain progress
//! line every 10 s), the library's events printed above the bar, and every other line escaped.
//!
//! The library never prints; it reports progress through [`Observer`] and tells what it has to tell
//! through [`Events`]. Both end here, in one place that knows whether a bar is drawn, so a plugin's
//! log line or a note appears on its own line above the bar instead of across it.

use dgen_engine::events::{Event, Events};
use dgen_engine::pipeline::executor::Observer;
use dgen_engine::report::gbps;
use dgen_engine::size::format_size;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether colour output is allowed (<https://no-color.org>).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// One line to the terminal. Lines carry text from plugins and storage (names, messages): control
/// characters are escaped however they got in, so nothing can drive the terminal.
pub fn say(line: &str) {
    eprintln!("{}", dgen_engine::untrusted::sanitize(line, 100_000));
}

/// A result line, to stdout (escaped as [`say`]'s are): what `run … > result.txt` keeps.
pub fn result(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{}", dgen_engine::untrusted::sanitize(line, 100_000));
}

/// Whether `path` is this process's stdout (`-`, `/dev/stdout`, or the file stdout is open on).
pub fn is_stdout(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if path.as_os_str() == "-" || path == std::path::Path::new("/dev/stdout") {
        return true;
    }
    let (Ok(a), Ok(b)) = (std::fs::metadata(path), std::fs::metadata("/proc/self/fd/1")) else { return false };
    a.dev() == b.dev() && a.ino() == b.ino()
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// What the progress line knows, shared between the observer (the executor's thread) and the events
/// (the plugin's thread, which may declare the total).
struct State {
    bar: Option<ProgressBar>,
    /// Off a terminal: (start, last line printed).
    plain: Option<(Instant, Instant)>,
    /// Bytes the run will write, when known (0: unknown).
    total: u64,
    objects: u64,
    /// The current phase, when the plugin names phases.
    phase: Option<String>,
    /// What the bytes are: "written", or "read" (`profile` scanning a sample).
    verb: &'static str,
}

/// Progress on stderr: a bar when stderr is a terminal, else a plain line every 10 seconds (long
/// runs in logs show they are alive without escape codes in them); nothing when disabled.
#[derive(Clone)]
pub struct Progress {
    state: Arc<Mutex<State>>,
}

fn counting_style(verb: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} {{spinner}} {{binary_bytes}} {verb}, {{binary_bytes_per_sec}}{{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn total_style(objects: u64) -> ProgressStyle {
    let bar = if color_allowed() { "{wide_bar:.cyan/blue}" } else { "{wide_bar}" };
    let objects = if objects > 0 { format!(" in {objects} objects") } else { String::new() };
    ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} {bar} {{binary_bytes}}/{{binary_total_bytes}}{objects} {{percent}}% {{binary_bytes_per_sec}} eta {{eta}}{{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

impl Progress {
    /// Progress towards `total` bytes, or (total 0, until a plugin declares one) a running count.
    pub fn new(total: u64, enabled: bool) -> Progress {
        let mut state = State { bar: None, plain: None, total, objects: 0, phase: None, verb: "written" };
        if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                if total > 0 { Some(total) } else { None },
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(if total > 0 { total_style(0) } else { counting_style("written") });
            state.bar = Some(bar);
        } else if enabled {
            let now = Instant::now();
            state.plain = Some((now, now));
        }
        Progress { state: Arc::new(Mutex::new(state)) }
    }

    /// Progress of bytes read rather than written (the plain line says so).
    pub fn reading(self) -> Progress {
        let verb = "read";
        {
            let mut s = self.state();
            s.verb = verb;
            if let (Some(bar), 0) = (&s.bar, s.total) {
                bar.set_style(counting_style(verb));
            }
        }
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, progress is towards `bytes` (in `objects` objects): a bar with percent and ETA.
    pub fn set_total(&self, bytes: u64, objects: u64) {
        let mut s = self.state();
        s.total = bytes;
        s.objects = objects;
        if let Some(bar) = &s.bar {
            bar.set_length(bytes);
            bar.set_style(if bytes > 0 { total_style(objects) } else { counting_style(s.verb) });
        }
    }

    /// Prints `line` above the bar (or plainly when there is none).
    pub fn say(&self, line: &str) {
        let bar = self.state().bar.clone();
        match bar {
            Some(bar) => bar.suspend(|| say(line)),
            None => say(line),
        }
    }

    /// The plugin started phase `name`: the bar names it; a plain log says so on a line.
    pub fn set_phase(&self, name: String) {
        let mut s = self.state();
        if let Some(bar) = &s.bar {
            bar.set_message(format!(" · phase {name}"));
        }
        if s.plain.is_some() {
            say(&format!("progress: phase {name} started"));
        }
        s.phase = Some(name);
    }

    /// Reads so far in the current phase.
    pub fn reads(&self, phase: &str, bytes: u64, seconds: f64) {
        let mut s = self.state();
        let line = format!(
            "phase {phase}: {} read in {seconds:.0} s, {:.2} GB/s",
            format_size(bytes),
            gbps(bytes, Duration::from_secs_f64(seconds.max(1e-9)))
        );
        if let Some(bar) = &s.bar {
            bar.set_message(format!(" · {line}"));
            bar.tick();
        }
        if let Some((_, last)) = &mut s.plain {
            if last.elapsed() >= PLAIN_EVERY {
                *last = Instant::now();
                say(&format!("progress: {line}"));
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.state().bar {
            b.finish_and_clear();
        }
    }

    /// The events sink that prints through this progress line.
    pub fn terminal(&self) -> Terminal {
        Terminal { progress: self.clone() }
    }
}

/// The plain line: bytes of the total, percent, rate and ETA when the total is known.
fn plain_line(bytes: u64, total: u64, elapsed: Duration, verb: &str) -> String {
    let rate = gbps(bytes, elapsed);
    if total == 0 {
        return format!("progress: {} {verb} in {:.0} s, {rate:.2} GB/s", format_size(bytes), elapsed.as_secs_f64());
    }
    let percent = 100.0 * bytes as f64 / total as f64;
    let eta = if bytes > 0 && bytes < total {
        format!(", eta {:.0} s", elapsed.as_secs_f64() * (total - bytes) as f64 / bytes as f64)
    } else {
        String::new()
    };
    format!(
        "progress: {} of {} ({percent:.0}%) {verb} in {:.0} s, {rate:.2} GB/s{eta}",
        format_size(bytes),
        format_size(total),
        elapsed.as_secs_f64()
    )
}

impl Observer for Progress {
    fn progress(&mut self, bytes: u64) {
        let mut s = self.state();
        if let Some(b) = &s.bar {
            b.set_position(bytes);
        }
        let (total, verb) = (s.total, s.verb);
        let phase = s.phase.as_ref().map(|p| format!(" (phase {p})")).unwrap_or_default();
        if let Some((start, last)) = &mut s.plain {
            if last.elapsed() >= PLAIN_EVERY {
                *last = Instant::now();
                say(&format!("{}{phase}", plain_line(bytes, total, start.elapsed(), verb)));
            }
        }
    }
}

/// The library's events, printed through the progress line; a declared total sizes the bar.
pub struct Terminal {
    progress: Progress,
}

impl Terminal {
    /// For events before (or without) a progress line.
    pub fn plain() -> Terminal {
        Progress::new(0, false).terminal()
    }
}

impl Events for Terminal {
    fn emit(&self, event: Event) {
        match event {
            Event::Expect { bytes, objects } => self.progress.set_total(bytes, objects),
            Event::Phase { name } => self.progress.set_phase(name),
            Event::Read { phase, bytes, seconds } => self.progress.reads(&phase, bytes, seconds),
            other => self.progress.say(&other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plain_line;
    use std::time::Duration;

    #[test]
    fn the_plain_line_says_what_the_bytes_are_and_how_far() {
        let s = plain_line(1 << 30, 4 << 30, Duration::from_secs(2), "read");
        assert_eq!(s, "progress: 1 GiB of 4 GiB (25%) read in 2 s, 0.54 GB/s, eta 6 s");
        assert_eq!(
            plain_line(1 << 30, 0, Duration::from_secs(1), "written"),
            "progress: 1 GiB written in 1 s, 1.07 GB/s"
        );
    }
}
