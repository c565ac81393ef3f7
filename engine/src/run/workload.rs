//! Workload files: the TOML a user writes (`name`, `plugin`, `seed`, `[target]`, `[data]`,
//! `[pipeline]`, `[limits]`, `[params]`), parsed strictly — an unknown or mistyped key is an error
//! that names the file, the line and the key — with `--set KEY=VALUE` overrides, then checked into a
//! [`Plan`] whose values are all valid.

use crate::error::{Error, Result};
use crate::generator::copies::CopySpec;
use crate::generator::{DataKeys, Profile};
use crate::plugin::Limits;
use crate::sink::Target;
use crate::size::parse_size;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A size written as a number of bytes or a string with a unit.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// `plugin = "path"` or `plugin = { path = "…", sha256 = "…" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum PluginRef {
    Path(String),
    Pinned { path: String, sha256: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: String,
    plugin: PluginRef,
    seed: Option<u64>,
    /// IOR's stonewalling across ranks: a phase ends for all when the first rank finishes it.
    #[serde(default)]
    stonewall: bool,
    /// Read by the sink layer, which owns the keys (see [`Target::configure`]).
    #[serde(default)]
    target: toml::Table,
    #[serde(default)]
    data: DataSpec,
    #[serde(default)]
    pipeline: PipelineSpec,
    #[serde(default)]
    limits: LimitsSpec,
    #[serde(default)]
    params: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSpec {
    dedup: Option<f64>,
    compress: Option<f64>,
    dedup_unit: Option<SizeValue>,
    dedup_extent: Option<SizeValue>,
    /// `[[fraction, ratio], …]`.
    compress_mix: Option<Vec<[f64; 2]>>,
    /// `"even"`, `{ zipf = S }` or `{ histogram = "FILE" }`.
    dedup_copies: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineSpec {
    buffer_size: Option<SizeValue>,
    buffers: Option<i64>,
    concurrency: Option<i64>,
    threads: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSpec {
    memory: Option<SizeValue>,
    fuel: Option<f64>,
    /// Seconds of the plugin's own running time.
    deadline: Option<f64>,
}

/// Which plugin to run.
#[derive(Clone, Debug)]
pub enum PluginSource {
    /// A plugin crate directory, built on use.
    Crate(PathBuf),
    /// A `.wasm` file, optionally pinned by content.
    Wasm { path: PathBuf, sha256: Option<String> },
}

/// A checked workload.
#[derive(Clone, Debug)]
pub struct Plan {
    pub file: PathBuf,
    pub name: String,
    pub plugin: PluginSource,
    pub seed: Option<u64>,
    /// Under MPI, a phase ends for every rank when the first one has finished its share of it: what
    /// the others had not finished is cut (objects removed, reads stopped) and reported as such.
    pub stonewall: bool,
    pub target: Target,
    /// The target as a URI, for reports.
    pub uri: String,
    pub profile: Profile,
    pub buffer_size: usize,
    pub buffers: usize,
    pub concurrency: usize,
    pub threads: usize,
    pub limits: Limits,
    /// `[params]` as JSON, for the plugin.
    pub params_json: String,
    /// `[params]` itself, each key with where it was written (`FILE:LINE` or `--set …`), for the
    /// check against the keys the plugin declares.
    pub params: Vec<(String, toml::Value, String)>,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The `[table]` header in force at `offset`, if any.
fn table_at(text: &str, offset: usize) -> Option<String> {
    text[..offset.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
}

/// The line where `key` of `[table]` is written (for errors found after parsing).
fn locate(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') && l.ends_with(']') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let k = l.split('=').next().unwrap_or("").trim();
        if current == table && k == key {
            return Some(i + 1);
        }
    }
    None
}

/// The key written on the line where byte `offset` falls (`buffers` in `buffers = 1.5`), if the line
/// is a `key = value` line and `offset` is in its value or its key.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let ok = !key.is_empty() && !key.starts_with('[') && !key.starts_with('#') && key.len() < 60;
    ok.then(|| key.to_string())
}

fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> Error {
    let message = e.message().trim().to_string();
    let (at, key) = match e.span() {
        Some(span) => {
            let line = line_of(text, span.start);
            let snippet = text.get(span.clone()).unwrap_or("").trim();
            // Name the key, not the value: the span of a bad value covers the value.
            let snippet = key_on_line(text, span.start).unwrap_or_else(|| snippet.to_string());
            let snippet = snippet.as_str();
            let key = if !snippet.is_empty() && snippet.len() < 60 && !snippet.contains('\n') {
                let table = table_at(text, span.start);
                let bare = snippet.trim_matches('"');
                Some(match table {
                    Some(t) => format!("{t}.{bare}"),
                    None => bare.to_string(),
                })
            } else {
                None
            };
            (format!("{}:{line}", file.display()), key)
        }
        None => (file.display().to_string(), None),
    };
    // A table header written twice names the table, not a key inside it.
    let header = e.span().and_then(|span| {
        let start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
        let line = text[start..].lines().next().unwrap_or("").trim();
        line.starts_with('[').then(|| line.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    });
    let (key, message) = match header {
        Some(h) if message.contains("duplicate") => (Some(h.clone()), format!("the table [{h}] is written twice")),
        // A misspelt table: named as the table it is, with the one it is nearest to.
        Some(h) if message.contains("unknown field") => {
            let top = h.split('.').next().unwrap_or(&h).trim().to_string();
            let hint = nearest(&top, &TOP_LEVEL).map_or(String::new(), |n| format!("; did you mean [{n}]?"));
            (None, format!("[{h}] is not a table of a workload (its tables: {}){hint}", TABLES.join(", ")))
        }
        _ => (key, message),
    };
    // Serde's words for the two forms of `plugin` are not the user's.
    let message = if message.contains("untagged enum PluginRef") {
        "must be a path (\"../plugins/ckpt\", \"x.wasm\") or { path = \"x.wasm\", sha256 = \"…\" }".to_string()
    } else {
        message
    };
    let message = match key {
        Some(k) if !message.contains(&format!("`{k}`")) && !message.contains(&format!("[{k}]")) => {
            format!("{k}: {message}")
        }
        _ => message,
    };
    Error::Workload { at, message }
}

/// Applies `KEY=VALUE` to a TOML table; VALUE is read as TOML (`3`, `true`, `"x"`, `[1, 2]`), or as a
/// plain string when it is not valid TOML.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<String> {
    let bad = |m: String| Error::Workload { at: format!("--set {set}"), message: m };
    let (key, value) = set.split_once('=').ok_or_else(|| bad("expected KEY=VALUE".into()))?;
    let value = value.trim();
    let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad(format!("'{key}' is not a key")));
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| bad(format!("'{p}' is not a table")))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(parts.join("."))
}

fn size_of(v: &Option<SizeValue>, default: u64, src: &Src<'_>, table: &str, key: &str) -> Result<u64> {
    match v {
        None => Ok(default),
        Some(SizeValue::Bytes(n)) => Ok(*n),
        Some(SizeValue::Text(s)) => parse_size(s).map_err(|m| at_key(src, table, key, m)),
    }
}

/// An integer key within `range` (documented in the README), or its default.
fn count(
    v: Option<i64>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    src: &Src<'_>,
    table: &str,
    key: &str,
) -> Result<usize> {
    let n = v.unwrap_or(default);
    if !range.contains(&n) {
        let why = format!("{n} is out of range: must be from {} to {}", range.start(), range.end());
        return Err(at_key(src, table, key, why));
    }
    Ok(n as usize)
}

/// The largest workload file read.
pub const MAX_WORKLOAD_FILE: u64 = 16 << 20;

fn at_key(src: &Src<'_>, table: &str, key: &str, message: impl std::fmt::Display) -> Error {
    let at = src.at(table, key);
    let full = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
    Error::Workload { at, message: format!("{full}: {message}") }
}

/// Where a workload's values were written: its file (and text), and the `--set`s that replaced
/// some of them — an error names the one its value came from.
struct Src<'a> {
    file: &'a Path,
    text: &'a str,
    /// (the key, `table.key`; the `--set` that gave it), in order.
    sets: Vec<(String, &'a str)>,
}

impl Src<'_> {
    /// `FILE:LINE` of `key` in `[table]`, or the `--set KEY=VALUE` that gave it.
    fn at(&self, table: &str, key: &str) -> String {
        let full = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
        let set = self.sets.iter().rev().find(|(k, _)| *k == full || full.starts_with(&format!("{k}.")));
        if let Some((_, s)) = set {
            return format!("--set {s}");
        }
        match locate(self.text, table, key) {
            Some(line) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

/// The top-level keys and tables of a workload.
const TOP_LEVEL: [&str; 9] = ["name", "plugin", "seed", "stonewall", "target", "data", "pipeline", "limits", "params"];
/// Its tables.
const TABLES: [&str; 5] = ["[target]", "[data]", "[pipeline]", "[limits]", "[params]"];

/// The one of `names` nearest to `word` (by edit distance, at most a third of its length away).
pub(crate) fn nearest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    names
        .iter()
        .map(|n| (distance(word, n), *n))
        .filter(|(d, _)| *d <= word.chars().count().div_ceil(3).max(1))
        .min()
        .map(|(_, n)| n)
}

impl Plan {
    /// Reads and checks a workload file, with `--set` overrides applied in order.
    pub fn load(file: &Path, sets: &[String]) -> Result<Plan> {
        let text = read_text(file, "the workload")?;
        // The file alone first, so its errors carry line numbers.
        let mut spec: Spec = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
        let mut src = Src { file, text: &text, sets: Vec::new() };
        if !sets.is_empty() {
            let mut table: toml::Table = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
            // One at a time: the first `--set` after which the workload no longer reads is the one
            // named.
            for s in sets {
                let key = apply_set(&mut table, s)?;
                spec = table.clone().try_into().map_err(|e: toml::de::Error| Error::Workload {
                    at: format!("--set {s}"),
                    message: e.message().trim().to_string(),
                })?;
                src.sets.push((key, s.as_str()));
            }
        }
        Self::check(&src, spec)
    }

    /// The `[data]` table of a file (what `profile` prints, or a whole workload's), as a profile;
    /// errors name the file, line and key as a workload's do.
    pub fn data_table(file: &Path) -> Result<Profile> {
        #[derive(Deserialize)]
        struct DataOnly {
            #[serde(default)]
            data: DataSpec,
        }
        let text = read_text(file, "it")?;
        let spec: DataOnly = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
        profile(&spec.data, &Src { file, text: &text, sets: Vec::new() })
    }

    fn check(src: &Src<'_>, spec: Spec) -> Result<Plan> {
        let file = src.file;
        let where_is = |table: &str, key: &str| src.at(table, key);
        let target = Target::configure(&spec.target, &where_is)?;
        let (buffer_size, buffers, concurrency, threads) = pipeline(&spec.pipeline, src)?;
        Ok(Plan {
            file: file.to_path_buf(),
            name: spec.name,
            plugin: plugin_source(&spec.plugin, src)?,
            seed: spec.seed,
            stonewall: spec.stonewall,
            uri: target.uri(),
            target,
            profile: profile(&spec.data, src)?,
            buffer_size,
            buffers,
            concurrency,
            threads,
            limits: limits(&spec.limits, src)?,
            params_json: serde_json::to_string(&spec.params).map_err(|e| at_key(src, "params", "", e))?,
            params: spec.params.iter().map(|(k, v)| (k.clone(), v.clone(), src.at("params", k))).collect(),
        })
    }
}

/// `plugin = …`: a crate directory or a `.wasm` file (pinned by its SHA-256), relative to the
/// workload file.
fn plugin_source(plugin: &PluginRef, src: &Src<'_>) -> Result<PluginSource> {
    let base = src.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let source = match plugin {
        PluginRef::Path(p) => {
            let path = base.join(p);
            if path.extension().is_some_and(|e| e == "wasm") {
                PluginSource::Wasm { path, sha256: None }
            } else {
                PluginSource::Crate(path)
            }
        }
        PluginRef::Pinned { path, sha256 } => {
            if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                let why = format!(
                    "sha256 must be 64 hexadecimal digits (the output of `sha256sum`), not {} characters",
                    sha256.chars().count()
                );
                return Err(at_key(src, "", "plugin", why));
            }
            PluginSource::Wasm { path: base.join(path), sha256: Some(sha256.to_lowercase()) }
        }
    };
    let why = match &source {
        PluginSource::Crate(p) | PluginSource::Wasm { path: p, .. } if !p.exists() => {
            format!("{} does not exist", p.display())
        }
        PluginSource::Crate(p) if !p.is_dir() => {
            format!("{} is neither a .wasm file nor a plugin crate directory", p.display())
        }
        PluginSource::Wasm { path, .. } if !path.is_file() => format!("{} is not a regular file", path.display()),
        _ => return Ok(source),
    };
    Err(at_key(src, "", "plugin", why))
}

/// A TOML file's text (a regular file within the size cap, UTF-8); errors say "cannot read {what}".
fn read_text(file: &Path, what: &str) -> Result<String> {
    let cannot =
        |e: String| Error::Workload { at: file.display().to_string(), message: format!("cannot read {what}: {e}") };
    let bytes = crate::untrusted::read_regular(file, MAX_WORKLOAD_FILE).map_err(|e| cannot(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))
}

/// `[data]`: the profile of the synthetic bytes.
fn profile(data: &DataSpec, src: &Src<'_>) -> Result<Profile> {
    let unit = size_of(&data.dedup_unit, crate::generator::DEFAULT_UNIT, src, "data", "dedup_unit")?;
    let named = |e: Error| match e {
        Error::InvalidValue { key, value, reason } => {
            let k = key.trim_start_matches("data.");
            at_key(src, "data", k, format!("'{}' {reason}", crate::untrusted::echo(&value)))
        }
        other => other,
    };
    let extent = match &data.dedup_extent {
        Some(_) => Some(size_of(&data.dedup_extent, unit, src, "data", "dedup_extent")?),
        None => None,
    };
    if data.compress_mix.is_some() && data.compress.is_some() {
        return Err(at_key(src, "data", "compress_mix", "give compress or compress_mix, not both"));
    }
    let copies = match &data.dedup_copies {
        Some(v) => Some(copy_spec(v, src)?),
        None => None,
    };
    Profile::from_keys(DataKeys {
        dedup: data.dedup,
        compress: data.compress.unwrap_or(1.0),
        unit,
        extent,
        mix: data.compress_mix.as_ref().map(|m| m.iter().map(|[f, r]| (*f, *r)).collect()),
        copies,
    })
    .map_err(named)
}

/// `data.dedup_copies`: `"even"`, `{ zipf = S }`, `{ histogram = "FILE" }` (beside the workload) or
/// `{ histogram = [[copies, blocks], …] }`.
fn copy_spec(v: &toml::Value, src: &Src<'_>) -> Result<CopySpec> {
    let bad = |why: String| at_key(src, "data", "dedup_copies", why);
    let entry = match v {
        toml::Value::String(s) if s == "even" => return Ok(CopySpec::Even),
        toml::Value::Table(t) if t.len() == 1 => t.iter().next(),
        other => return Err(bad(format!("{other} is not \"even\", {{ zipf = S }} or {{ histogram = \"FILE\" }}"))),
    };
    match entry {
        Some((k, v)) if k == "zipf" => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(s) => Ok(CopySpec::Zipf(s)),
            None => Err(bad(format!("zipf = {v}: the exponent must be a number"))),
        },
        Some((k, toml::Value::String(p))) if k == "histogram" => {
            let base = src.file.parent().unwrap_or(Path::new(""));
            CopySpec::histogram_file(&base.join(p)).map_err(|e| match e {
                Error::InvalidValue { value, reason, .. } => bad(format!("{value}: {reason}")),
                other => bad(other.to_string()),
            })
        }
        Some((k, toml::Value::Array(a))) if k == "histogram" => {
            let row = |r: &toml::Value| -> Option<(u64, u64)> {
                match r.as_array()?.as_slice() {
                    [k, n] => Some((u64::try_from(k.as_integer()?).ok()?, u64::try_from(n.as_integer()?).ok()?)),
                    _ => None,
                }
            };
            let rows: Vec<(u64, u64)> = a
                .iter()
                .map(row)
                .collect::<Option<_>>()
                .ok_or_else(|| bad("histogram rows must be [copies, blocks] pairs of whole numbers".into()))?;
            CopySpec::histogram(Path::new(""), rows).map_err(|e| match e {
                Error::InvalidValue { reason, .. } => bad(format!("histogram: {reason}")),
                other => other,
            })
        }
        _ => Err(bad(format!("{v} is not {{ zipf = S }} or {{ histogram = \"FILE\" or [[copies, blocks], …] }}"))),
    }
}

/// `[pipeline]`: buffer size, buffers, objects open at once, generator threads.
fn pipeline(p: &PipelineSpec, src: &Src<'_>) -> Result<(usize, usize, usize, usize)> {
    let buffer_size = size_of(&p.buffer_size, 8 << 20, src, "pipeline", "buffer_size")?;
    if buffer_size == 0 || buffer_size > 1 << 30 {
        return Err(at_key(src, "pipeline", "buffer_size", "must be from 1 byte to 1 GiB"));
    }
    let buffers = count(p.buffers, 16, 1..=65536, src, "pipeline", "buffers")?;
    let concurrency = count(p.concurrency, 8, 1..=4096, src, "pipeline", "concurrency")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let threads = count(p.threads, cores.min(1024), 1..=1024, src, "pipeline", "threads")?;
    crate::pool::pool_fits(buffers as u64, buffer_size).map_err(|m| at_key(src, "pipeline", "buffers", m))?;
    Ok((buffer_size as usize, buffers, concurrency, threads))
}

/// `[limits]`: what the plugin may use.
fn limits(l: &LimitsSpec, src: &Src<'_>) -> Result<Limits> {
    let memory = size_of(&l.memory, 256 << 20, src, "limits", "memory")?;
    if !(1 << 20..=64 << 30).contains(&memory) {
        return Err(at_key(src, "limits", "memory", "must be from 1 MiB to 64 GiB"));
    }
    let fuel = l.fuel.unwrap_or(2e10);
    if !(1.0..=1e19).contains(&fuel) {
        return Err(at_key(src, "limits", "fuel", format!("{fuel} is out of range: must be from 1 to 1e19")));
    }
    let deadline = l.deadline.unwrap_or(600.0);
    if !(0.01..=1e6).contains(&deadline) {
        let why = format!("{deadline} is out of range: must be from 0.01 to 1000000 seconds");
        return Err(at_key(src, "limits", "deadline", why));
    }
    Ok(Limits {
        memory: memory as usize,
        fuel: fuel as u64,
        deadline: std::time::Duration::from_secs_f64(deadline),
        ..Limits::default()
    })
}
