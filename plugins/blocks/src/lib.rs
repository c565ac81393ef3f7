//! `blocks`: an array tester's workload — a region of one file (or the target's device), written
//! whole first, then phases of random and mixed I/O in place, each a job of the host's operations
//! engine (contract 1.2), with checks such as `min_iops` and `max_p99_ms`.
//!
//! Each phase is a table of job keys (`mix`, `pattern`, `depth`, `jobs`, `duration` or `ops`,
//! `ramp`, `rate_iops`, `rate_bytes`, `think`, `fsync_every`, `verify`, `series_interval`) plus
//! `name` and its checks. Under `dgen-engine verify` the plugin runs no phase: it reads the region
//! back and checks every block against its generation (`journal` says where the generations are
//! kept across runs and crashes).
//!
//! On several hosts (rank r of W), each works on its own file, `OBJECT.rR`.

use dgen_plugin_sdk::{export_plugin, job, log, phase, Config, JobResult, Plugin, Report};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The file in the target root (ignored on a device).
    #[serde(default = "default_object")]
    object: String,
    /// A pool of this many files (`OBJECT.000000` …), each `size` bytes, as one region.
    #[serde(default)]
    objects: Option<u64>,
    /// The region's size (per object, in a pool): bytes, or a string such as "4GiB".
    #[serde(default = "default_size")]
    size: Value,
    /// Write it whole first when absent, short, or its generations are not known.
    #[serde(default = "yes")]
    prefill: bool,
    /// The generation map on disk (a file below the target root).
    #[serde(default)]
    journal: Option<String>,
    /// The phases, each a job.
    #[serde(default)]
    phases: Vec<Map<String, Value>>,
    /// The region's own data profile (the run's `[data]` otherwise).
    #[serde(default)]
    data: Option<Value>,
    /// O_DIRECT (the target's setting otherwise).
    #[serde(default)]
    direct: Option<bool>,
    /// "io_uring" or "psync".
    #[serde(default)]
    engine: Option<String>,
    /// Depth and jobs of the prefill (those of the first phase otherwise).
    #[serde(default)]
    prefill_depth: Option<u64>,
}

fn default_object() -> String {
    "lun0".into()
}
fn default_size() -> Value {
    json!("4GiB")
}
fn yes() -> bool {
    true
}

/// Keys of a phase that are the plugin's, not the job's.
const OWN: [&str; 5] = ["name", "min_iops", "max_p99_ms", "min_bw_mbps", "max_p50_ms"];

struct Blocks;

impl Blocks {
    fn base(p: &Params, cfg: &Config) -> Map<String, Value> {
        let mut m = Map::new();
        let object = if cfg.world_size > 1 { format!("{}.r{}", p.object, cfg.rank) } else { p.object.clone() };
        m.insert("object".into(), json!(object));
        m.insert("size".into(), p.size.clone());
        if let Some(n) = p.objects {
            m.insert("objects".into(), json!(n));
        }
        if let Some(j) = &p.journal {
            let j = if cfg.world_size > 1 { format!("{j}.r{}", cfg.rank) } else { j.clone() };
            m.insert("journal".into(), json!(j));
        }
        if let Some(d) = &p.data {
            m.insert("data".into(), d.clone());
        }
        if let Some(d) = p.direct {
            m.insert("direct".into(), json!(d));
        }
        if let Some(e) = &p.engine {
            m.insert("engine".into(), json!(e));
        }
        m
    }
}

fn num(phase: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match phase.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("phase key {key} = {v}: not a number")),
    }
}

fn checks(mut report: Report, name: &str, phase: &Map<String, Value>, r: &JobResult) -> Result<Report, String> {
    if let Some(min) = num(phase, "min_iops")? {
        report = report.check_ge(&format!("{name}: iops"), r.iops(), min);
    }
    if let Some(min) = num(phase, "min_bw_mbps")? {
        let bw: u64 = r.ops.iter().map(|o| o.bw_bytes).sum();
        report = report.check_ge(&format!("{name}: MB/s"), bw as f64 / 1e6, min);
    }
    for (key, pick) in [("max_p99_ms", 99.0), ("max_p50_ms", 50.0)] {
        if let Some(max) = num(phase, key)? {
            for o in &r.ops {
                let ns = if pick == 99.0 { o.lat_p99_ns } else { o.lat_p50_ns };
                report = report.check_le(&format!("{name}: {} p{pick} ms", o.op), ns as f64 / 1e6, max);
            }
        }
    }
    if let Some(c) = &r.check {
        report = report
            .check_eq(&format!("{name}: lost writes"), c.lost_writes as f64, 0.0)
            .check_eq(&format!("{name}: torn blocks"), c.torn as f64, 0.0)
            .check_eq(&format!("{name}: corrupt blocks"), c.corrupt as f64, 0.0);
    }
    Ok(report)
}

fn summary_line(name: &str, r: &JobResult) -> String {
    let kinds: Vec<String> =
        r.ops.iter().map(|o| format!("{} {:.0} IOPS p99 {:.3} ms", o.op, o.iops, o.lat_p99_ns as f64 / 1e6)).collect();
    format!("{name}: {}", kinds.join(", "))
}

impl Plugin for Blocks {
    fn run(cfg: &Config) -> Result<Report, String> {
        let p: Params = cfg.params()?;
        let base = Blocks::base(&p, cfg);
        let mut report = Report::new();
        let mut lines = Vec::new();
        if cfg.verify_only {
            phase("verify");
            let mut spec = base.clone();
            spec.insert("verify".into(), json!("only"));
            spec.insert("create".into(), json!(false));
            let r = job(&Value::Object(spec))?;
            let c = r.check.as_ref().ok_or("the host did no read-back")?;
            lines.push(format!(
                "verify: {} blocks checked, {} lost writes, {} torn, {} corrupt",
                c.checked, c.lost_writes, c.torn, c.corrupt
            ));
            report =
                checks(report, "verify", &Map::new(), &r)?.check_ge("verify: blocks checked", c.checked as f64, 1.0);
            return Ok(report.summary(lines.join("; ")));
        }
        let first = p.phases.first();
        if p.prefill {
            phase("prefill");
            let mut spec = base.clone();
            spec.insert("prefill".into(), json!(true));
            let depth = p.prefill_depth.map(|d| json!(d)).or_else(|| first.and_then(|f| f.get("depth").cloned()));
            spec.insert("depth".into(), depth.unwrap_or(json!(16)));
            if let Some(j) = first.and_then(|f| f.get("jobs")) {
                spec.insert("jobs".into(), j.clone());
            }
            let r = job(&Value::Object(spec))?;
            if r.prefill_bytes > 0 {
                log!("prefill wrote {} bytes", r.prefill_bytes);
            }
        }
        for (i, ph) in p.phases.iter().enumerate() {
            let name = match ph.get("name") {
                Some(Value::String(s)) => s.clone(),
                None => format!("phase{}", i + 1),
                Some(v) => return Err(format!("phases[{i}].name = {v}: not a string")),
            };
            phase(&name);
            let mut spec = base.clone();
            for (k, v) in ph {
                if !OWN.contains(&k.as_str()) {
                    spec.insert(k.clone(), v.clone());
                }
            }
            let r = job(&Value::Object(spec)).map_err(|e| format!("phases[{i}] ({name}): {e}"))?;
            lines.push(summary_line(&name, &r));
            report = checks(report, &name, ph, &r)?;
        }
        Ok(report.summary(lines.join("; ")))
    }
}

export_plugin!(
    Blocks,
    name = "blocks",
    version = "0.1.0",
    params = "object (lun0; ignored on a device), objects (1: a pool of that many files OBJECT.000000 …), size (4GiB, per object), prefill (true), journal (none: a file below the root keeping the generations), phases: list of jobs (mix, pattern, depth, jobs, duration or ops, ramp, rate_iops, rate_bytes, think, fsync_every, verify, series_interval) with name and checks min_iops, max_p99_ms, max_p50_ms, min_bw_mbps; data (the run's), direct, engine, prefill_depth",
    keys = {
        object: "string",
        objects: "integer",
        size: "size",
        prefill: "boolean",
        journal: "string",
        phases: "list",
        data: "table",
        direct: "boolean",
        engine: "io_uring|psync",
        prefill_depth: "integer",
    }
);
