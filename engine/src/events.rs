//! What the library has to tell while it works — notes, warnings, plugin log lines — handed to
//! whoever runs it instead of printed, so that one reporter (the binary's) owns the terminal and
//! can print above a progress bar rather than through it.

/// One thing worth telling. Texts from plugins are already escaped and cut to size.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A remark: io_uring fell back to pwrite, stale temporaries removed, a size hint was wrong.
    Note(String),
    /// A line a plugin logged: its name, the level (`debug`, `info`, `warning`, `error`), the text.
    PluginLog { plugin: String, level: &'static str, text: String },
    /// The plugin declared what the run will write in all (`expect`, contract 1.1): a progress line
    /// can show a total, a percentage and an ETA.
    Expect { bytes: u64, objects: u64 },
    /// The plugin started a phase (contract 1.1): the progress line names it.
    Phase { name: String },
    /// Reads so far in a phase: its bytes read and the time since it started (sent now and then as
    /// reads finish).
    Read { phase: String, bytes: u64, seconds: f64 },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Note(n) => write!(f, "note: {n}"),
            Event::PluginLog { plugin, level, text } => write!(f, "[{plugin}] {level}: {text}"),
            Event::Expect { bytes, objects } => write!(f, "the plugin expects {bytes} bytes in {objects} objects"),
            Event::Phase { name } => write!(f, "phase {name}"),
            Event::Read { phase, bytes, seconds } => write!(f, "phase {phase}: {bytes} bytes read in {seconds:.1} s"),
        }
    }
}

/// Receives the library's events, from any thread.
pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event (tests, embedding without a terminal).
pub struct Silent;

impl Events for Silent {
    fn emit(&self, _event: Event) {}
}

/// Something the run has to tell at its end, as the report keeps it: its level and its line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub level: Level,
    /// The line as the table shows it.
    pub text: String,
}

/// How much a [`Note`] matters: a warning is shown even to a quiet run (an upload that could not be
/// aborted left data behind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Note,
    Warning,
}

impl Note {
    pub fn remark(text: impl Into<String>) -> Note {
        Note { level: Level::Note, text: text.into() }
    }

    /// A warning; its line starts with `warning: `.
    pub fn warning(text: impl std::fmt::Display) -> Note {
        Note { level: Level::Warning, text: format!("warning: {text}") }
    }
}
