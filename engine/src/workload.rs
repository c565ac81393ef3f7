//! Workload files: the TOML a user writes (`name`, `plugin`, `seed`, `[target]`, `[data]`,
//! `[pipeline]`, `[limits]`, `[params]`), parsed strictly — an unknown or mistyped key is an error
//! that names the file, the line and the key — with `--set KEY=VALUE` overrides, then checked into a
//! [`Plan`] whose values are all valid.

use crate::error::{Error, Result};
use crate::gen::Profile;
use crate::plugin::Limits;
use crate::sink::azure::AzureOptions;
use crate::sink::cloud::PartLimits;
use crate::sink::cloud::{CloudOptions, Concurrency};
use crate::sink::s3::S3Options;
use crate::sink::FileEngine;
use crate::size::{format_size, parse_size};
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
    #[serde(default)]
    target: TargetSpec,
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
struct TargetSpec {
    uri: Option<String>,
    // Files.
    engine: Option<String>,
    #[serde(default)]
    direct: bool,
    queue_depth: Option<i64>,
    // Object stores.
    endpoint: Option<String>,
    region: Option<String>,
    path_style: Option<bool>,
    retries: Option<i64>,
    part_size: Option<SizeValue>,
    multipart_threshold: Option<SizeValue>,
    concurrency: Option<CountOrAuto>,
    checksum: Option<bool>,
    // Azure.
    account: Option<String>,
    api_version: Option<String>,
    block_size: Option<SizeValue>,
    create_container: Option<bool>,
}

/// `concurrency = 16` or `concurrency = "auto"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum CountOrAuto {
    Count(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSpec {
    dedup: Option<f64>,
    compress: Option<f64>,
    dedup_unit: Option<SizeValue>,
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

/// Where the run writes.
#[derive(Clone, Debug)]
pub enum TargetPlan {
    File {
        root: PathBuf,
        engine: FileEngine,
        direct: bool,
        queue_depth: usize,
    },
    /// `null://`: everything is generated and discarded (measures the engine and the plugin alone).
    Null,
    /// `s3://bucket/prefix`.
    S3 {
        uri: String,
        options: S3Options,
    },
    /// `az://container/prefix`.
    Azure {
        uri: String,
        options: AzureOptions,
    },
}

/// A checked workload.
#[derive(Clone, Debug)]
pub struct Plan {
    pub file: PathBuf,
    pub name: String,
    pub plugin: PluginSource,
    pub seed: Option<u64>,
    pub target: TargetPlan,
    pub uri: String,
    pub profile: Profile,
    pub buffer_size: usize,
    pub buffers: usize,
    pub concurrency: usize,
    pub threads: usize,
    pub limits: Limits,
    /// `[params]` as JSON, for the plugin.
    pub params_json: String,
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
    let message = match key {
        Some(k) if !message.contains(&format!("`{k}`")) => format!("{k}: {message}"),
        _ => message,
    };
    Error::Workload { at, message }
}

/// Applies `KEY=VALUE` to a TOML table; VALUE is read as TOML (`3`, `true`, `"x"`, `[1, 2]`), or as a
/// plain string when it is not valid TOML.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<()> {
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
    Ok(())
}

fn size_of(v: &Option<SizeValue>, default: u64, file: &Path, text: &str, table: &str, key: &str) -> Result<u64> {
    match v {
        None => Ok(default),
        Some(SizeValue::Bytes(n)) => Ok(*n),
        Some(SizeValue::Text(s)) => parse_size(s).map_err(|m| at_key(file, text, table, key, m)),
    }
}

/// The kinds of target, for telling which keys belong to which.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Null,
    S3,
    Azure,
}

/// The part-size, threshold, concurrency and checksum keys object stores share, checked against the
/// store's limits. Azure names its part size `block_size`.
fn cloud_options(t: &TargetSpec, azure: bool, file: &Path, text: &str) -> Result<CloudOptions> {
    let concurrency = match &t.concurrency {
        None => Ok(Concurrency::Auto),
        Some(CountOrAuto::Count(n)) => n.to_string().parse(),
        Some(CountOrAuto::Text(s)) => s.parse(),
    }
    .map_err(|m: String| at_key(file, text, "target", "concurrency", m))?;
    let (limits, part_key, part_value): (PartLimits, _, _) = if azure {
        (crate::sink::azure::LIMITS, "block_size", &t.block_size)
    } else {
        (crate::sink::s3::LIMITS, "part_size", &t.part_size)
    };
    let part_size = optional_size(part_value, file, text, "target", part_key)?;
    if part_size.is_some_and(|p| !(limits.min_part..=limits.max_part).contains(&p)) {
        let why = format!("must be from {} to {}", format_size(limits.min_part), format_size(limits.max_part));
        return Err(at_key(file, text, "target", part_key, why));
    }
    let multipart_threshold = optional_size(&t.multipart_threshold, file, text, "target", "multipart_threshold")?;
    if multipart_threshold.is_some_and(|m| m > limits.max_single) {
        let why = format!("must be at most {}", format_size(limits.max_single));
        return Err(at_key(file, text, "target", "multipart_threshold", why));
    }
    Ok(CloudOptions { part_size, multipart_threshold, concurrency, checksum: t.checksum.unwrap_or(true) })
}

/// A size key that has no default: absent stays `None`.
fn optional_size(v: &Option<SizeValue>, file: &Path, text: &str, table: &str, key: &str) -> Result<Option<u64>> {
    v.as_ref().map(|_| size_of(v, 0, file, text, table, key)).transpose()
}

/// An integer key within `range` (documented in the README), or its default.
fn count(
    v: Option<i64>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    file: &Path,
    text: &str,
    table: &str,
    key: &str,
) -> Result<usize> {
    let n = v.unwrap_or(default);
    if !range.contains(&n) {
        let why = format!("{n} is out of range: must be from {} to {}", range.start(), range.end());
        return Err(at_key(file, text, table, key, why));
    }
    Ok(n as usize)
}

/// The largest workload file read.
pub const MAX_WORKLOAD_FILE: u64 = 16 << 20;

fn at_key(file: &Path, text: &str, table: &str, key: &str, message: impl std::fmt::Display) -> Error {
    let at = match locate(text, table, key) {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    };
    let full = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
    Error::Workload { at, message: format!("{full}: {message}") }
}

impl Plan {
    /// Reads and checks a workload file, with `--set` overrides applied in order.
    pub fn load(file: &Path, sets: &[String]) -> Result<Plan> {
        let cannot = |e: String| Error::Workload {
            at: file.display().to_string(),
            message: format!("cannot read the workload: {e}"),
        };
        let bytes = crate::input::read_regular(file, MAX_WORKLOAD_FILE).map_err(|e| cannot(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))?;
        // The file alone first, so its errors carry line numbers.
        let mut spec: Spec = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
        if !sets.is_empty() {
            let mut table: toml::Table = toml::from_str(&text).map_err(|e| toml_error(file, &text, &e))?;
            for s in sets {
                apply_set(&mut table, s)?;
            }
            spec = table.try_into().map_err(|e: toml::de::Error| Error::Workload {
                at: format!("--set {}", sets.join(" --set ")),
                message: e.message().trim().to_string(),
            })?;
        }
        Self::check(file, &text, spec)
    }

    fn check(file: &Path, text: &str, spec: Spec) -> Result<Plan> {
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let plugin = match &spec.plugin {
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
                    return Err(at_key(file, text, "", "plugin", why));
                }
                PluginSource::Wasm { path: base.join(path), sha256: Some(sha256.to_lowercase()) }
            }
        };
        match &plugin {
            PluginSource::Crate(p) | PluginSource::Wasm { path: p, .. } if !p.exists() => {
                return Err(at_key(file, text, "", "plugin", format!("{} does not exist", p.display())));
            }
            PluginSource::Crate(p) if !p.is_dir() => {
                let why = format!("{} is neither a .wasm file nor a plugin crate directory", p.display());
                return Err(at_key(file, text, "", "plugin", why));
            }
            PluginSource::Wasm { path, .. } if !path.is_file() => {
                return Err(at_key(file, text, "", "plugin", format!("{} is not a regular file", path.display())));
            }
            _ => {}
        }
        let unit = size_of(&spec.data.dedup_unit, crate::gen::DEFAULT_UNIT, file, text, "data", "dedup_unit")?;
        let profile = Profile::new(spec.data.dedup.unwrap_or(1.0), spec.data.compress.unwrap_or(1.0), unit).map_err(
            |e| match e {
                Error::InvalidValue { key, value, reason } => {
                    let k = key.trim_start_matches("data.");
                    at_key(file, text, "data", k, format!("'{value}' {reason}"))
                }
                other => other,
            },
        )?;
        let uri = spec.target.uri.clone().unwrap_or_else(|| "file://./dgen-out".into());
        let engine = match &spec.target.engine {
            None => FileEngine::Auto,
            Some(e) => e.parse().map_err(|m: String| at_key(file, text, "target", "engine", m))?,
        };
        let target = if let Some(path) = uri.strip_prefix("file://") {
            if path.is_empty() {
                return Err(at_key(file, text, "target", "uri", "file:// needs a directory"));
            }
            TargetPlan::File {
                root: PathBuf::from(path),
                engine,
                direct: spec.target.direct,
                queue_depth: count(spec.target.queue_depth, 8, 1..=1024, file, text, "target", "queue_depth")?,
            }
        } else if uri == "null://" {
            TargetPlan::Null
        } else if uri.starts_with("s3://") || uri.starts_with("az://") {
            let azure = uri.starts_with("az://");
            let parsed = if azure { crate::sink::azure::parse_uri(&uri) } else { crate::sink::s3::parse_uri(&uri) };
            parsed.map_err(|e| match e {
                Error::InvalidValue { value, reason, .. } => {
                    at_key(file, text, "target", "uri", format!("'{value}' {reason}"))
                }
                other => other,
            })?;
            let t = &spec.target;
            let cloud = cloud_options(t, azure, file, text)?;
            if let Some(ep) = &t.endpoint {
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    return Err(at_key(file, text, "target", "endpoint", format!("'{ep}' is not an http(s):// URL")));
                }
            }
            let retries = t.retries.map(|r| count(Some(r), 0, 0..=100, file, text, "target", "retries")).transpose()?;
            if azure {
                if let Some(a) = &t.account {
                    let ok =
                        (3..=24).contains(&a.len()) && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                    if !ok {
                        let why = format!("'{a}' is not a storage account name (3 to 24 lowercase letters and digits)");
                        return Err(at_key(file, text, "target", "account", why));
                    }
                }
                if let Some(v) = &t.api_version {
                    let ok = v.len() == 10 && v.chars().all(|c| c.is_ascii_digit() || c == '-');
                    if !ok {
                        return Err(at_key(
                            file,
                            text,
                            "target",
                            "api_version",
                            format!("'{v}' is not a date like 2025-11-05"),
                        ));
                    }
                }
                TargetPlan::Azure {
                    uri: uri.clone(),
                    options: AzureOptions {
                        endpoint: t.endpoint.clone(),
                        account: t.account.clone(),
                        api_version: t.api_version.clone(),
                        retries: retries.map(|r| r as u32),
                        create_container: t.create_container.unwrap_or(false),
                        credential: None,
                        cloud,
                    },
                }
            } else {
                TargetPlan::S3 {
                    uri: uri.clone(),
                    options: S3Options {
                        endpoint: t.endpoint.clone(),
                        region: t.region.clone(),
                        path_style: t.path_style,
                        retries: retries.map(|r| r as u32),
                        credentials: None,
                        cloud,
                    },
                }
            }
        } else {
            let why = format!("'{uri}' is not a file://, s3://, az:// or null:// URI");
            return Err(at_key(file, text, "target", "uri", why));
        };
        // Keys of one kind of target given to another are mistakes worth naming.
        let kind = match target {
            TargetPlan::File { .. } => Kind::File,
            TargetPlan::S3 { .. } => Kind::S3,
            TargetPlan::Azure { .. } => Kind::Azure,
            TargetPlan::Null => Kind::Null,
        };
        let t = &spec.target;
        const F: &[Kind] = &[Kind::File];
        const OBJ: &[Kind] = &[Kind::S3, Kind::Azure];
        const S3: &[Kind] = &[Kind::S3];
        const AZ: &[Kind] = &[Kind::Azure];
        for (key, given, kinds) in [
            ("engine", t.engine.is_some(), F),
            ("direct", t.direct, F),
            ("queue_depth", t.queue_depth.is_some(), F),
            ("endpoint", t.endpoint.is_some(), OBJ),
            ("retries", t.retries.is_some(), OBJ),
            ("concurrency", t.concurrency.is_some(), OBJ),
            ("checksum", t.checksum.is_some(), OBJ),
            ("multipart_threshold", t.multipart_threshold.is_some(), OBJ),
            ("part_size", t.part_size.is_some(), S3),
            ("region", t.region.is_some(), S3),
            ("path_style", t.path_style.is_some(), S3),
            ("block_size", t.block_size.is_some(), AZ),
            ("account", t.account.is_some(), AZ),
            ("api_version", t.api_version.is_some(), AZ),
            ("create_container", t.create_container.is_some(), AZ),
        ] {
            if given && !kinds.contains(&kind) {
                let what = match kinds {
                    F => "a file://",
                    OBJ => "an object-store",
                    S3 => "an s3://",
                    _ => "an az://",
                };
                // The two stores' names for the same thing.
                let hint = match (key, kind) {
                    ("part_size", Kind::Azure) => " (Azure calls it block_size)",
                    ("block_size", Kind::S3) => " (S3 calls it part_size)",
                    _ => "",
                };
                return Err(at_key(file, text, "target", key, format!("is {what} key{hint}; the target is '{uri}'")));
            }
        }
        let buffer_size = size_of(&spec.pipeline.buffer_size, 8 << 20, file, text, "pipeline", "buffer_size")?;
        if buffer_size == 0 || buffer_size > 1 << 30 {
            return Err(at_key(file, text, "pipeline", "buffer_size", "must be from 1 byte to 1 GiB"));
        }
        let p = &spec.pipeline;
        let buffers = count(p.buffers, 16, 1..=65536, file, text, "pipeline", "buffers")?;
        let concurrency = count(p.concurrency, 8, 1..=4096, file, text, "pipeline", "concurrency")?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let threads = count(p.threads, cores.min(1024), 1..=1024, file, text, "pipeline", "threads")?;
        crate::pool::pool_fits(buffers as u64, buffer_size)
            .map_err(|m| at_key(file, text, "pipeline", "buffers", m))?;
        let memory = size_of(&spec.limits.memory, 256 << 20, file, text, "limits", "memory")?;
        if !(1 << 20..=64 << 30).contains(&memory) {
            return Err(at_key(file, text, "limits", "memory", "must be from 1 MiB to 64 GiB"));
        }
        let fuel = spec.limits.fuel.unwrap_or(2e10);
        if !(1.0..=1e19).contains(&fuel) {
            return Err(at_key(
                file,
                text,
                "limits",
                "fuel",
                format!("{fuel} is out of range: must be from 1 to 1e19"),
            ));
        }
        let deadline = spec.limits.deadline.unwrap_or(600.0);
        if !(0.01..=1e6).contains(&deadline) {
            let why = format!("{deadline} is out of range: must be from 0.01 to 1000000 seconds");
            return Err(at_key(file, text, "limits", "deadline", why));
        }
        let params_json = serde_json::to_string(&spec.params).map_err(|e| at_key(file, text, "params", "", e))?;
        Ok(Plan {
            file: file.to_path_buf(),
            name: spec.name,
            plugin,
            seed: spec.seed,
            target,
            uri,
            profile,
            buffer_size: buffer_size as usize,
            buffers,
            concurrency,
            threads,
            limits: Limits {
                memory: memory as usize,
                fuel: fuel as u64,
                deadline: std::time::Duration::from_secs_f64(deadline),
                ..Limits::default()
            },
            params_json,
        })
    }
}
