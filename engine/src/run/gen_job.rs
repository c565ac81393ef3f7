//! `gen` as a whole, as the library runs it for the binary: where the stream goes (a path read as
//! stdout, a pipe or device, the null sink or a file), a file reached through [`Target`] like every
//! other object, the stream made by [`generate`], then the summary and the check after writing
//! (`--verify`, `--verify-only`: the file read back and compared with the stream).

use super::generate::{generate, GenResult, GenSpec, Output};
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::generator::Generator;
use crate::object::Content;
use crate::pipeline::executor::Observer;
use crate::pipeline::verify::{self, Verdict};
use crate::report::table::pipeline_lines;
use crate::report::PipelineReport;
use crate::sink::target::Target;
use crate::sink::{NullSink, Sink};
use crate::size::format_size;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Where `gen` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A FIFO or a device: bytes in order, never a temporary and a rename.
    Stream(PathBuf),
    /// `/dev/null`: the null sink (nothing is written; the generator's own speed).
    Null,
    /// A regular file, written under a temporary name and renamed when whole.
    File(PathBuf),
}

impl Destination {
    /// What `path` is: `-` stdout, `/dev/null` the null sink, an existing FIFO or device a stream,
    /// anything else a file (a directory is refused).
    pub fn of(path: &Path) -> Result<Destination> {
        if path.as_os_str() == "-" {
            return Ok(Destination::Stdout);
        }
        if path == Path::new("/dev/null") {
            return Ok(Destination::Null);
        }
        let refuse = |reason: &str| Error::InvalidValue {
            key: "--output",
            value: path.display().to_string(),
            reason: reason.to_string(),
        };
        if let Ok(m) = std::fs::metadata(path) {
            if m.is_dir() {
                return Err(refuse("is a directory"));
            }
            if !m.is_file() {
                return Ok(Destination::Stream(path.to_path_buf()));
            }
        }
        if path.file_name().is_none() {
            return Err(refuse("not a file name"));
        }
        Ok(Destination::File(path.to_path_buf()))
    }
}

/// Whether the file is compared with the stream, after writing it or instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    None,
    After,
    Only,
}

/// One `gen`.
pub struct GenJob<'a> {
    pub gen: &'a Generator,
    pub spec: GenSpec,
    pub to: Destination,
    /// `[target]` keys for a file (`engine`, `direct`, `queue_depth`), checked by the file backend.
    pub file_keys: toml::Table,
    pub check: Check,
}

/// What a `gen` did.
pub struct GenDone {
    /// What was written (none under `--verify-only`).
    pub written: Option<GenResult>,
    /// The output as the summary names it.
    pub target: String,
    /// How a file or the null sink was written (`io_uring, O_DIRECT`).
    pub engine: Option<String>,
    /// The comparison, when one was asked for.
    pub verdict: Option<Verdict>,
    /// The summary lines.
    pub lines: Vec<String>,
}

impl GenJob<'_> {
    /// Generates the stream to its destination (and checks it, when asked); notes from opening the
    /// output go to `events` at once.
    pub fn run(&self, observer: &mut dyn Observer, events: &dyn Events, cancel: &AtomicBool) -> Result<GenDone> {
        let spec = &self.spec;
        if self.check != Check::None && !matches!(self.to, Destination::File(_)) {
            let flag = if self.check == Check::After { "--verify" } else { "--verify-only" };
            return Err(Error::InvalidValue {
                key: "--output",
                value: "-".into(),
                reason: format!("'{flag}' needs a regular file for '--output'"),
            });
        }
        crate::pool::pool_fits(spec.buffers as u64, spec.buffer_size as u64).map_err(|m| Error::InvalidValue {
            key: "--buffers",
            value: spec.buffers.to_string(),
            reason: m,
        })?;
        if matches!(self.to, Destination::File(_)) && spec.size > i64::MAX as u64 {
            return Err(Error::InvalidValue {
                key: "--size",
                value: format_size(spec.size),
                reason: format!("more than a file can hold ({})", format_size(i64::MAX as u64)),
            });
        }
        let (output, object, target, engine) = self.open(events)?;
        let mut written = None;
        let mut lines = Vec::new();
        if self.check != Check::Only {
            let r = generate(self.gen, spec, output, observer, cancel)?;
            lines.extend(self.summary(&r, &target, engine.as_deref()));
            written = Some(r);
        }
        let mut verdict = None;
        if let (Check::After | Check::Only, Some((sink, name))) = (self.check, &object) {
            let v = self.compare(&**sink, name, &target, cancel)?;
            lines.push(format!("verify: {target}: {v}"));
            verdict = Some(v);
        }
        Ok(GenDone { written, target, engine, verdict, lines })
    }

    /// The output opened: what the stream is written to, the object when it is one, its name for
    /// the summary, and how it is written.
    #[allow(clippy::type_complexity)]
    fn open(
        &self,
        events: &dyn Events,
    ) -> Result<(Output<'static>, Option<(Arc<dyn Sink>, String)>, String, Option<String>)> {
        Ok(match &self.to {
            Destination::Stdout => (
                Output::Writer { out: Box::new(std::io::stdout()), label: "stdout".into() },
                None,
                "stdout".into(),
                None,
            ),
            Destination::Stream(p) => {
                let label = p.display().to_string();
                (Output::Writer { out: Box::new(open_stream(p)?), label: label.clone() }, None, label, None)
            }
            Destination::Null => {
                let sink: Arc<dyn Sink> = Arc::new(NullSink);
                let output = Output::Shared { sink: sink.clone(), name: "null".into() };
                (output, Some((sink, "null".into())), "null".into(), Some("null".into()))
            }
            Destination::File(path) => {
                let compressed = self.spec.zstd_level.is_some();
                let uri = if compressed { format!("{}.zst", path.display()) } else { path.display().to_string() };
                let (target, name) = Target::for_object(&uri, &self.file_keys)?;
                let (sink, notes) = target.open().map_err(|e| e.about(&format!("cannot write {}", path.display())))?;
                for n in notes {
                    events.emit(Event::Note(n));
                }
                let direct = matches!(&target, Target::File(t) if t.options.direct);
                let how = format!("{}{}", sink.capabilities().engine, if direct { ", O_DIRECT" } else { "" });
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let shown = dir.join(&name).display().to_string();
                let output = Output::Shared { sink: sink.clone(), name: name.clone() };
                (output, Some((sink, name)), shown, Some(how))
            }
        })
    }

    /// The summary of what was written: the headline, the pool and engine, the pipeline's lines,
    /// and the dedup ratio the stream holds when it is not the profile's.
    fn summary(&self, r: &GenResult, target: &str, engine: Option<&str>) -> Vec<String> {
        let (gen, spec) = (self.gen, &self.spec);
        let elapsed: Duration = r.stats.elapsed;
        let bytes = r.stats.bytes;
        let mut lines = vec![format!(
            "dgen-engine gen: {} ({bytes} bytes) to {target} in {:.3} s = {:.2} GB/s; seed {}; {}; {} threads, {} kernel",
            format_size(bytes),
            elapsed.as_secs_f64(),
            crate::report::gbps(bytes, elapsed),
            gen.seed(),
            gen.profile(),
            spec.threads,
            gen.kernel().name(),
        )];
        let pool =
            format!("pool {} ({} x {})", format_size(r.pool_bytes), r.pool_count, format_size(r.write_size as u64));
        let engine = engine.map_or(String::new(), |h| format!("engine {h}; "));
        match r.compressed {
            None => lines.push(format!("{engine}{pool}; crc32c of the data: 0x{:08x}", r.crc32c)),
            Some((stored, ops)) => {
                let writes = if ops > 0 { format!(" in {ops} writes") } else { String::new() };
                lines.push(format!(
                    "{engine}{pool}; zstd level {}: {} written ({:.2}:1){writes}; crc32c of the uncompressed data: 0x{:08x}",
                    spec.zstd_level.unwrap_or_default(),
                    format_size(stored),
                    bytes as f64 / stored.max(1) as f64,
                    r.crc32c
                ))
            }
        }
        lines.extend(pipeline_lines(&PipelineReport::of(&r.stats, r.write_size)));
        // Exact for this length; said when it is not the profile's D to 0.1 %.
        let d = gen.profile().dedup();
        if let Some(held) = gen.dedup_over(bytes).filter(|h| (h / d - 1.0).abs() > 0.001) {
            let why = if (held / d - 1.0).abs() > 0.01 {
                ": its copies need more rows of 4 MiB than it has (docs/data.md: \"Duplicate counts\")"
            } else {
                ""
            };
            lines.push(format!("dedup: this stream holds {held:.4}, the profile {d}{why}"));
        }
        lines
    }

    /// The object read back and compared with the stream (decompressed first when it was written
    /// compressed), through two buffers of the write size as the executor rounds it for this sink.
    fn compare(&self, sink: &dyn Sink, name: &str, target: &str, cancel: &AtomicBool) -> Result<Verdict> {
        let pool = verify::comparison_pool(&sink.capabilities(), self.spec.buffer_size)?;
        let reader = sink.open(name)?;
        let content = Content::Stream { stream: 0, offset: 0 };
        if self.spec.zstd_level.is_some() {
            let dec =
                zstd::stream::read::Decoder::new(verify::ObjectRead::new(reader)).map_err(|e| Error::io(target, e))?;
            verify::compare(verify::sequential(target, dec), None, self.gen, &content, self.spec.size, &pool, cancel)
        } else {
            verify::compare_object(reader, self.gen, &content, self.spec.size, &pool, cancel)
        }
    }
}

/// Opens a FIFO or device for writing without blocking: a FIFO no one reads yet is an error now
/// (ENXIO), not a wait that Ctrl-C cannot end. Once open, writes block as a pipe's do.
fn open_stream(p: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(p).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::ENXIO) => Error::Unreachable {
                target: p.display().to_string(),
                message: "no process is reading that FIFO".into(),
                source: Some(Arc::new(e)),
            },
            _ => Error::io(p, e),
        }
    })?;
    crate::untrusted::set_blocking(&f);
    Ok(f)
}
