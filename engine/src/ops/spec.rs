//! A job as a plugin describes it (JSON, the `job` call of contract 1.2), checked key by key into a
//! [`JobSpec`] the engine can run. Every numeric key has a range; an error names the key as the
//! plugin wrote it (`mix[1].bs`, `pattern.hot[0]`), so a user who passed it through a plugin's params
//! finds it.

use crate::error::Error;
use crate::generator::{DataKeys, Profile};
use crate::size::parse_size;
use serde_json::{Map, Value};
use std::fmt;

/// Largest operation: 16 MiB.
pub const MAX_BS: u64 = 16 << 20;
/// Most operations in flight per job (ring).
pub const MAX_DEPTH: u32 = 4096;
/// Most jobs (rings, threads) of one job call.
pub const MAX_JOBS: u32 = 256;
/// Longest duration (and ramp), seconds: a week.
pub const MAX_SECONDS: f64 = 7.0 * 86400.0;
/// Most intervals a series may have (duration / series_interval).
pub const MAX_INTERVALS: f64 = 1_000_000.0;
/// Most objects in a pool (each one open file in every ring).
pub const MAX_OBJECTS: u64 = 4096;
/// Most sizes in a split, operations in a mix, hot sets.
pub const MAX_ENTRIES: usize = 64;

/// A job key that is wrong: which, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job key '{}': {}", self.key, self.message)
    }
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError { key: key.into(), message: message.into() }
}

/// An operation kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Write,
    Trim,
    Fsync,
}

impl OpKind {
    pub const ALL: [OpKind; 4] = [OpKind::Read, OpKind::Write, OpKind::Trim, OpKind::Fsync];
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Trim => "trim",
            OpKind::Fsync => "fsync",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One entry of the mix: an operation kind, its weight, and its sizes with their weights.
#[derive(Clone, Debug, PartialEq)]
pub struct MixEntry {
    pub op: OpKind,
    pub weight: f64,
    /// (bytes, weight); one entry for a fixed size; empty for fsync.
    pub sizes: Vec<(u64, f64)>,
}

/// Where in the region operations go.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    Sequential,
    Random,
    /// P(block rank k) ∝ k^-θ over the region's blocks (θ > 0, ≠ 1 allowed).
    Zipf(f64),
    /// (share of the space, share of the operations), in order from the start of the region; what
    /// the sets leave goes to the rest of the space.
    Hot(Vec<(f64, f64)>),
}

/// When a job reads its whole region back and checks every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyWhen {
    Never,
    /// After its operations.
    End,
    /// Only that: no operations (what `dgen-engine verify` runs).
    Only,
}

/// A job, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// The object in the target root ("" on a device target).
    pub object: String,
    /// A pool of this many objects (`OBJECT.000000` …), each `size` bytes: one space for the
    /// pattern and the data; 1: the object itself.
    pub objects: u64,
    /// Bytes of the region; 0 on a device: all of it.
    pub size: u64,
    pub offset: u64,
    /// Make the object (or extend it) when absent or short.
    pub create: bool,
    /// Write the whole region first where its generations are not known.
    pub prefill: bool,
    pub mix: Vec<MixEntry>,
    pub pattern: Pattern,
    pub depth: u32,
    pub jobs: u32,
    pub duration: Option<f64>,
    pub ops: Option<u64>,
    pub ramp: f64,
    pub rate_iops: Option<f64>,
    pub rate_bytes: Option<f64>,
    /// Seconds a slot waits after an operation completes before its next one.
    pub think: f64,
    pub fsync_every: u64,
    pub verify: VerifyWhen,
    pub journal: Option<String>,
    /// Intents are made durable before the writes they cover (false: a kill -9 is covered, a
    /// power cut is not).
    pub journal_sync: bool,
    pub series_interval: f64,
    /// The job's own `[data]` keys (the run's profile otherwise), as given.
    pub data: Option<Map<String, Value>>,
    /// O_DIRECT (`None`: the target's setting).
    pub direct: Option<bool>,
    /// `io_uring` or `psync` (`None`: io_uring where the kernel has it).
    pub engine: Option<String>,
    /// A ring submits each operation as it is ready (`Some(false)`, fio's default) or all it has
    /// ready in one call (`Some(true)`); `None`: batches on memory (tmpfs), each elsewhere.
    pub batch: Option<bool>,
}

const KEYS: &[&str] = &[
    "object",
    "objects",
    "size",
    "offset",
    "create",
    "prefill",
    "mix",
    "pattern",
    "depth",
    "jobs",
    "duration",
    "ops",
    "ramp",
    "rate_iops",
    "rate_bytes",
    "think",
    "fsync_every",
    "verify",
    "journal",
    "journal_sync",
    "series_interval",
    "data",
    "direct",
    "engine",
    "submit",
];

/// A size: bytes as a number, or a string such as "8KiB".
fn size_of(key: &str, v: &Value) -> Result<u64, SpecError> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| bad(key, format!("{n} is not a whole number of bytes"))),
        Value::String(s) => parse_size(s).map_err(|e| bad(key, e)),
        other => Err(bad(key, format!("{other} is not a size (a number of bytes or a string such as \"8KiB\")"))),
    }
}

fn number(key: &str, v: &Value, lo: f64, hi: f64) -> Result<f64, SpecError> {
    let x = v.as_f64().ok_or_else(|| bad(key, format!("{v} is not a number")))?;
    if !(lo..=hi).contains(&x) {
        return Err(bad(key, format!("{x} is out of range {lo} … {hi}")));
    }
    Ok(x)
}

fn integer(key: &str, v: &Value, lo: u64, hi: u64) -> Result<u64, SpecError> {
    let x = v.as_u64().ok_or_else(|| bad(key, format!("{v} is not a whole number ≥ 0")))?;
    if !(lo..=hi).contains(&x) {
        return Err(bad(key, format!("{x} is out of range {lo} … {hi}")));
    }
    Ok(x)
}

fn boolean(key: &str, v: &Value) -> Result<bool, SpecError> {
    v.as_bool().ok_or_else(|| bad(key, format!("{v} is not true or false")))
}

fn string(key: &str, v: &Value) -> Result<String, SpecError> {
    v.as_str().map(str::to_owned).ok_or_else(|| bad(key, format!("{v} is not a string")))
}

fn op_kind(key: &str, v: &Value) -> Result<OpKind, SpecError> {
    match v.as_str() {
        Some("read") => Ok(OpKind::Read),
        Some("write") => Ok(OpKind::Write),
        Some("trim") => Ok(OpKind::Trim),
        Some("fsync") => Ok(OpKind::Fsync),
        _ => Err(bad(key, format!("{v} is not one of \"read\", \"write\", \"trim\", \"fsync\""))),
    }
}

/// `bs`: a size, or a split `[[size, weight], …]` (fio's `bssplit`).
fn sizes(key: &str, v: &Value) -> Result<Vec<(u64, f64)>, SpecError> {
    let list = match v {
        Value::Array(items) => items,
        _ => return Ok(vec![(size_of(key, v)?, 1.0)]),
    };
    if list.is_empty() || list.len() > MAX_ENTRIES {
        return Err(bad(key, format!("a split of {} sizes; 1 … {MAX_ENTRIES}", list.len())));
    }
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let k = format!("{key}[{i}]");
        match item.as_array().map(Vec::as_slice) {
            Some([size, weight]) => out.push((size_of(&k, size)?, number(&k, weight, 0.0, 1e9)?)),
            _ => return Err(bad(k, "is not a [size, weight] pair")),
        }
    }
    if out.iter().map(|s| s.1).sum::<f64>() <= 0.0 {
        return Err(bad(key, "the weights of its sizes sum to 0"));
    }
    Ok(out)
}

fn pattern(v: &Value) -> Result<Pattern, SpecError> {
    let key = "pattern";
    match v {
        Value::String(s) if s == "sequential" => Ok(Pattern::Sequential),
        Value::String(s) if s == "random" => Ok(Pattern::Random),
        Value::Object(m) if m.len() == 1 && m.contains_key("zipf") => {
            Ok(Pattern::Zipf(number("pattern.zipf", &m["zipf"], 0.01, 10.0)?))
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("hot") => {
            let sets = m["hot"].as_array().ok_or_else(|| bad("pattern.hot", "is not a list of [space, ops] pairs"))?;
            if sets.is_empty() || sets.len() > MAX_ENTRIES {
                return Err(bad("pattern.hot", format!("{} sets; 1 … {MAX_ENTRIES}", sets.len())));
            }
            let mut out = Vec::new();
            for (i, s) in sets.iter().enumerate() {
                let k = format!("pattern.hot[{i}]");
                match s.as_array().map(Vec::as_slice) {
                    Some([space, ops]) => out.push((number(&k, space, 0.0, 1.0)?, number(&k, ops, 0.0, 1.0)?)),
                    _ => return Err(bad(k, "is not a [space_fraction, ops_fraction] pair")),
                }
            }
            let (space, ops) = out.iter().fold((0.0, 0.0), |(a, b), s| (a + s.0, b + s.1));
            if space > 1.0 + 1e-9 || ops > 1.0 + 1e-9 {
                return Err(bad(
                    "pattern.hot",
                    format!("its sets take {space} of the space and {ops} of the operations; at most 1 each"),
                ));
            }
            Ok(Pattern::Hot(out))
        }
        other => Err(bad(
            key,
            format!("{other} is not \"sequential\", \"random\", {{ zipf = θ }} or {{ hot = [[space, ops], …] }}"),
        )),
    }
}

impl JobSpec {
    /// The names of the objects the region spans.
    pub fn names(&self) -> Vec<String> {
        if self.objects <= 1 {
            vec![self.object.clone()]
        } else {
            (0..self.objects).map(|i| format!("{}.{i:06}", self.object)).collect()
        }
    }

    /// Parses and checks a job's JSON.
    pub fn parse(json: &str) -> Result<JobSpec, SpecError> {
        let v: Value = serde_json::from_str(json).map_err(|e| bad("(job)", format!("not JSON: {e}")))?;
        let m = v.as_object().ok_or_else(|| bad("(job)", "is not a JSON object"))?;
        if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(k.as_str(), format!("unknown key; the keys are {}", KEYS.join(", "))));
        }
        let get = |k: &str| m.get(k).filter(|v| !v.is_null());
        let mut mix = Vec::new();
        if let Some(v) = get("mix") {
            let list = v.as_array().ok_or_else(|| bad("mix", "is not a list of operations"))?;
            if list.len() > MAX_ENTRIES {
                return Err(bad("mix", format!("{} operations; at most {MAX_ENTRIES}", list.len())));
            }
            for (i, e) in list.iter().enumerate() {
                let k = format!("mix[{i}]");
                let e = e.as_object().ok_or_else(|| bad(&k, "is not a table { op, weight, bs }"))?;
                if let Some(x) = e.keys().find(|x| !["op", "weight", "bs"].contains(&x.as_str())) {
                    return Err(bad(format!("{k}.{x}"), "unknown key; the keys are op, weight, bs"));
                }
                let op = op_kind(&format!("{k}.op"), e.get("op").unwrap_or(&Value::Null))?;
                let weight = match e.get("weight") {
                    Some(w) => number(&format!("{k}.weight"), w, 0.0, 1e9)?,
                    None => 1.0,
                };
                let sizes = match (op, e.get("bs")) {
                    (OpKind::Fsync, _) => Vec::new(),
                    (_, Some(b)) => sizes(&format!("{k}.bs"), b)?,
                    (_, None) => return Err(bad(format!("{k}.bs"), "missing: a size, or a split [[size, weight], …]")),
                };
                mix.push(MixEntry { op, weight, sizes });
            }
            if !mix.is_empty() && mix.iter().map(|e| e.weight).sum::<f64>() <= 0.0 {
                return Err(bad("mix", "the weights of its operations sum to 0"));
            }
        }
        let verify = match get("verify").map(|v| v.as_str()) {
            None | Some(Some("none")) => VerifyWhen::Never,
            Some(Some("end")) => VerifyWhen::End,
            Some(Some("only")) => VerifyWhen::Only,
            Some(_) => return Err(bad("verify", "is not one of \"none\", \"end\", \"only\"")),
        };
        let duration = get("duration").map(|v| number("duration", v, 0.001, MAX_SECONDS)).transpose()?;
        let ops = get("ops").map(|v| integer("ops", v, 1, 1 << 50)).transpose()?;
        let ramp = get("ramp").map(|v| number("ramp", v, 0.0, MAX_SECONDS)).transpose()?.unwrap_or(0.0);
        let series_interval =
            get("series_interval").map(|v| number("series_interval", v, 0.01, 3600.0)).transpose()?.unwrap_or(1.0);
        let spec = JobSpec {
            object: get("object").map(|v| string("object", v)).transpose()?.unwrap_or_default(),
            objects: get("objects").map(|v| integer("objects", v, 1, MAX_OBJECTS)).transpose()?.unwrap_or(1),
            size: get("size").map(|v| size_of("size", v)).transpose()?.unwrap_or(0),
            offset: get("offset").map(|v| size_of("offset", v)).transpose()?.unwrap_or(0),
            create: get("create").map(|v| boolean("create", v)).transpose()?.unwrap_or(true),
            prefill: get("prefill").map(|v| boolean("prefill", v)).transpose()?.unwrap_or(false),
            mix,
            pattern: get("pattern").map(pattern).transpose()?.unwrap_or(Pattern::Random),
            depth: get("depth").map(|v| integer("depth", v, 1, MAX_DEPTH as u64)).transpose()?.unwrap_or(1) as u32,
            jobs: get("jobs").map(|v| integer("jobs", v, 1, MAX_JOBS as u64)).transpose()?.unwrap_or(1) as u32,
            duration,
            ops,
            ramp,
            rate_iops: get("rate_iops").map(|v| number("rate_iops", v, 1.0, 1e9)).transpose()?,
            rate_bytes: get("rate_bytes").map(|v| size_of("rate_bytes", v).map(|b| b as f64)).transpose()?,
            think: get("think").map(|v| number("think", v, 0.0, 60.0)).transpose()?.unwrap_or(0.0),
            fsync_every: get("fsync_every").map(|v| integer("fsync_every", v, 0, 1 << 40)).transpose()?.unwrap_or(0),
            verify,
            journal: get("journal").map(|v| string("journal", v)).transpose()?,
            journal_sync: get("journal_sync").map(|v| boolean("journal_sync", v)).transpose()?.unwrap_or(true),
            series_interval,
            data: match get("data") {
                None => None,
                Some(Value::Object(d)) => Some(d.clone()),
                Some(_) => return Err(bad("data", "is not a table of [data] keys")),
            },
            direct: get("direct").map(|v| boolean("direct", v)).transpose()?,
            batch: match get("submit").map(|v| string("submit", v)).transpose()?.as_deref() {
                None => None,
                Some("each") => Some(false),
                Some("batch") => Some(true),
                Some(other) => return Err(bad("submit", format!("'{other}' is not \"each\" or \"batch\""))),
            },
            engine: match get("engine").map(|v| string("engine", v)).transpose()? {
                Some(e) if e != "io_uring" && e != "psync" => {
                    return Err(bad("engine", format!("'{e}' is not \"io_uring\" or \"psync\"")))
                }
                e => e,
            },
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), SpecError> {
        if self.rate_bytes == Some(0.0) {
            return Err(bad("rate_bytes", "0 is out of range 1 B … (a rate of bytes per second)"));
        }
        let operates = self.verify != VerifyWhen::Only;
        if operates && self.mix.is_empty() && !self.prefill {
            return Err(bad("mix", "missing: a job does operations (or only `prefill`, or `verify = \"only\"`)"));
        }
        if operates && !self.mix.is_empty() && self.duration.is_none() && self.ops.is_none() {
            return Err(bad("duration", "missing: a job runs for a `duration` (seconds) or a number of `ops`"));
        }
        if let Some(d) = self.duration {
            if d / self.series_interval > MAX_INTERVALS {
                return Err(bad(
                    "series_interval",
                    format!("{} s over {d} s is more than {MAX_INTERVALS} intervals", self.series_interval),
                ));
            }
            if self.ramp >= d {
                return Err(bad("ramp", format!("{} s is not shorter than the duration ({d} s)", self.ramp)));
            }
        }
        for (i, e) in self.mix.iter().enumerate() {
            for (j, &(bs, _)) in e.sizes.iter().enumerate() {
                let key = if e.sizes.len() == 1 { format!("mix[{i}].bs") } else { format!("mix[{i}].bs[{j}]") };
                if bs == 0 || bs > MAX_BS {
                    return Err(bad(key, format!("{bs} bytes is out of range 1 B … 16 MiB")));
                }
            }
        }
        Ok(())
    }

    /// The job's data profile: its own `data` keys over the run's.
    pub fn profile(&self, run: &Profile) -> Result<Profile, SpecError> {
        let Some(d) = &self.data else { return Ok(run.clone()) };
        let known = ["dedup", "compress", "dedup_unit", "dedup_extent", "compress_mix"];
        if let Some(k) = d.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(format!("data.{k}"), format!("unknown key; the keys are {}", known.join(", "))));
        }
        // Ranges are the profile's own, checked by `Profile::from_keys`.
        let num =
            |k: &str| d.get(k).map(|v| number(&format!("data.{k}"), v, f64::NEG_INFINITY, f64::INFINITY)).transpose();
        let size = |k: &str| d.get(k).map(|v| size_of(&format!("data.{k}"), v)).transpose();
        let mix = match d.get("compress_mix") {
            None => None,
            Some(Value::Array(rows)) => Some(
                rows.iter()
                    .map(|r| match r.as_array().map(Vec::as_slice) {
                        Some([f, c]) => match (f.as_f64(), c.as_f64()) {
                            (Some(f), Some(c)) => Ok((f, c)),
                            _ => Err(bad("data.compress_mix", "holds a pair that is not two numbers")),
                        },
                        _ => Err(bad("data.compress_mix", "is not a list of [fraction, ratio] pairs")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(bad("data.compress_mix", "is not a list of [fraction, ratio] pairs")),
        };
        Profile::from_keys(DataKeys {
            dedup: num("dedup")?.or(Some(run.dedup())),
            compress: if mix.is_some() { 1.0 } else { num("compress")?.unwrap_or(run.compress()) },
            unit: size("dedup_unit")?.unwrap_or(run.unit()),
            extent: size("dedup_extent")?,
            mix,
            copies: None,
        })
        .map_err(|e| match e {
            Error::InvalidValue { key, value, reason } => bad(key, format!("{value}: {reason}")),
            other => bad("data", other.to_string()),
        })
    }

    /// The largest operation of the mix (0 without one).
    pub fn max_bs(&self) -> u64 {
        self.mix.iter().flat_map(|e| e.sizes.iter().map(|s| s.0)).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_read_with_its_defaults() {
        let j = JobSpec::parse(
            r#"{"object":"lun0","size":"64MiB","mix":[{"op":"read","weight":70,"bs":"8KiB"},
                {"op":"write","weight":30,"bs":[["4KiB",1],[8192,1]]}],"depth":32,"duration":2}"#,
        )
        .unwrap();
        assert_eq!(j.size, 64 << 20);
        assert_eq!(j.mix[1].sizes, vec![(4096, 1.0), (8192, 1.0)]);
        assert_eq!((j.depth, j.jobs, j.pattern.clone(), j.verify), (32, 1, Pattern::Random, VerifyWhen::Never));
        assert_eq!(j.max_bs(), 8192);
    }

    #[test]
    fn malformed_jobs_name_their_key() {
        let key = |json: &str| JobSpec::parse(json).unwrap_err().key;
        let base = r#""size":"1MiB","duration":1"#;
        assert_eq!(key(&format!(r#"{{{base},"mix":[{{"op":"read","weight":0,"bs":4096}}]}}"#)), "mix");
        assert_eq!(key(&format!(r#"{{{base},"depth":0,"mix":[{{"op":"read","bs":4096}}]}}"#)), "depth");
        assert_eq!(key(&format!(r#"{{{base},"mix":[{{"op":"reed","bs":4096}}]}}"#)), "mix[0].op");
        assert_eq!(key(&format!(r#"{{{base},"mix":[{{"op":"read","bs":"4QiB"}}]}}"#)), "mix[0].bs");
        assert_eq!(key(&format!(r#"{{{base},"mix":[{{"op":"read","bs":[[4096,0]]}}]}}"#)), "mix[0].bs");
        assert_eq!(
            key(&format!(r#"{{{base},"pattern":{{"hot":[[0.5,0.7],[0.6,0.1]]}},"mix":[{{"op":"read","bs":4096}}]}}"#)),
            "pattern.hot"
        );
        assert_eq!(key(r#"{"size":"1MiB","mix":[{"op":"read","bs":4096}]}"#), "duration");
        assert_eq!(key(r#"{"sise":1}"#), "sise");
        assert_eq!(key(&format!(r#"{{{base},"ramp":2,"mix":[{{"op":"read","bs":4096}}]}}"#)), "ramp");
    }
}
