//! `mlperf-ckpt`: MLPerf Storage's checkpointing workload (DLIO's `llama3-*` YAMLs), reproduced file
//! for file and byte count for byte count, at native speed, every byte verifiable.
//!
//! Each rank saves, per checkpoint N, the files DLIO's checkpointing code computes for it (`model`
//! says which, with the formulas and where they come from) into `{folder}/global_epoch1_stepN/`:
//! `torch.save` archives (`torchzip`) whose tensor records are synthetic payload in the run's data
//! profile, so an array's dedup and compression see what the workload asks for. The run is the
//! rules': `num_checkpoints_write` saves, then `num_checkpoints_read` loads, each checkpoint a
//! phase (`save_ckpt{N}`, `load_ckpt{N}`) that starts at a barrier of all ranks after
//! `time_between_checkpoints` of think time, each file fsynced. Figures are DLIO's, named as DLIO
//! names them (metrics `save_checkpoint_io_mean_GB_per_second` …; "GB" is GiB, as DLIO's): a
//! checkpoint's duration is the slowest rank's, its throughput the checkpoint's size over it.
//!
//! Params: `model` (llama3-8b, llama3-70b, llama3-405b, llama3-1t), `num_checkpoints_write` (10),
//! `num_checkpoints_read` (10), `time_between_checkpoints` (5 s), `recovery_rank_shift` (false:
//! rank r loads the files rank r + ranks-per-node saved — another node's), `ranks_per_node` (what
//! the host says), `subset` (false: this run's ranks save their share of a full CLOSED run's
//! checkpoint), `simulate_ranks` (the ranks of the run in all, shared by its processes, each
//! playing its share with its own files and figures: 8 alone is one process playing 8 ranks, the
//! same under `mpirun -np 8` one each; default one per process), `scale` (1: every tensor's element count times this, rounded up), `read_check`
//! (verify, crc, none), `rules` (true: the rules as checks), `folder` (the model's name), `plan`
//! (false: write only `{folder}/plan.json`, the table of every rank's files, and nothing else);
//! and DLIO's model keys, each overriding the model's (`num_layers`, `hidden_size`,
//! `ffn_hidden_size`, `num_attention_heads`, `num_kv_heads`, `vocab_size`) so that a side-by-side
//! gives DLIO and this plugin the same smaller model — not the rules' model, and a rule says so.
//!
//! With `num_checkpoints_write = 0` the checkpoints are on storage already (an earlier run with the
//! same seed and params saved them): they are described again and declared, so the loads still check
//! every byte.

// `is_multiple_of` is newer than the Debian toolchain plugins may be built with.
#![allow(clippy::manual_is_multiple_of)]

mod model;
mod torchzip;

use dgen_plugin_sdk::{
    export_plugin, log, metric, read_range, wait_all, wait_reads, Config, Plugin, ReadCheck, Report, Target,
};
use model::{File, Layout};
use serde::Deserialize;
use serde_json::json;
use torchzip::Container;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_model")]
    model: String,
    #[serde(default = "ten")]
    num_checkpoints_write: u32,
    #[serde(default = "ten")]
    num_checkpoints_read: u32,
    #[serde(default = "five")]
    time_between_checkpoints: f64,
    #[serde(default)]
    recovery_rank_shift: bool,
    #[serde(default)]
    ranks_per_node: Option<u32>,
    #[serde(default)]
    subset: bool,
    #[serde(default)]
    simulate_ranks: Option<u32>,
    #[serde(default = "unscaled")]
    scale: f64,
    #[serde(default = "default_check")]
    read_check: String,
    #[serde(default = "yes")]
    rules: bool,
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    plan: bool,
    // Overrides of the model's shape, named as DLIO's YAML names them, so a benchmark can give
    // this plugin and DLIO the same smaller model; a run with any of them is not the rules' model.
    #[serde(default)]
    num_layers: Option<u64>,
    #[serde(default)]
    hidden_size: Option<u64>,
    #[serde(default)]
    ffn_hidden_size: Option<u64>,
    #[serde(default)]
    num_attention_heads: Option<u64>,
    #[serde(default)]
    num_kv_heads: Option<u64>,
    #[serde(default)]
    vocab_size: Option<u64>,
}

impl Params {
    /// The overridden keys, as `key = value`.
    fn reshaped(&self) -> Vec<String> {
        [
            ("num_layers", self.num_layers),
            ("hidden_size", self.hidden_size),
            ("ffn_hidden_size", self.ffn_hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("vocab_size", self.vocab_size),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")))
        .collect()
    }

    /// `m` with the overrides applied, checked as DLIO's formulas need them.
    fn shape(&self, mut m: model::Model) -> Result<model::Model, String> {
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(format!("params.{name} = {v}: it must be from {lo} to {hi}"))
            }
        };
        if let Some(v) = self.num_layers {
            m.layers = range("num_layers", v, 1, 4096)?;
        }
        if let Some(v) = self.hidden_size {
            m.hidden = range("hidden_size", v, 1, 1 << 20)?;
        }
        if let Some(v) = self.ffn_hidden_size {
            m.ffn = range("ffn_hidden_size", v, 1, 1 << 22)?;
        }
        if let Some(v) = self.num_attention_heads {
            m.heads = range("num_attention_heads", v, 1, 1 << 16)?;
        }
        if let Some(v) = self.num_kv_heads {
            m.kv_heads = range("num_kv_heads", v, 1, 1 << 16)?;
        }
        if let Some(v) = self.vocab_size {
            m.vocab = range("vocab_size", v, 1, 1 << 24)?;
        }
        // No divisibility rule for hidden / heads: DLIO's formulas divide with a floor (llama3-1t's
        // 25,872 over 192 heads does not divide), and so do ours.
        if m.kv_heads > m.heads {
            return Err(format!("num_kv_heads {} is more than num_attention_heads {}", m.kv_heads, m.heads));
        }
        if m.layers < m.pp {
            return Err(format!("num_layers {} is fewer than {}'s {} pipeline stages", m.layers, m.name, m.pp));
        }
        Ok(m)
    }
}

fn default_model() -> String {
    "llama3-8b".into()
}
fn ten() -> u32 {
    10
}
fn five() -> f64 {
    5.0
}
fn unscaled() -> f64 {
    1.0
}
fn default_check() -> String {
    "verify".into()
}
fn yes() -> bool {
    true
}

const GIB: f64 = (1u64 << 30) as f64;
/// The page-cache share at or under which a load counts as read from storage.
const CACHED_AT_MOST: f64 = 0.05;

impl Params {
    fn check(&self) -> Result<(), String> {
        let range = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("params.{name} = {v}: it must be from {lo} to {hi}"))
            }
        };
        range("num_checkpoints_write", self.num_checkpoints_write as f64, 0.0, 1000.0)?;
        range("num_checkpoints_read", self.num_checkpoints_read as f64, 0.0, 1000.0)?;
        range("time_between_checkpoints", self.time_between_checkpoints, 0.0, 86400.0)?;
        if let Some(n) = self.simulate_ranks {
            range("simulate_ranks", n as f64, 1.0, 4096.0)?;
        }
        if let Some(n) = self.ranks_per_node {
            range("ranks_per_node", n as f64, 1.0, 1_000_000.0)?;
        }
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            return Err(format!("params.scale = {}: it must be above 0 and at most 1", self.scale));
        }
        if self.num_checkpoints_write == 0 && self.num_checkpoints_read == 0 && !self.plan {
            return Err("num_checkpoints_write = 0 and num_checkpoints_read = 0: nothing to do".into());
        }
        if self.num_checkpoints_write > 0 && self.num_checkpoints_read > self.num_checkpoints_write {
            return Err(format!(
                "num_checkpoints_read = {} is more than the {} checkpoints this run writes",
                self.num_checkpoints_read, self.num_checkpoints_write
            ));
        }
        Ok(())
    }
}

/// A file of one rank's checkpoint, laid out.
struct Saved {
    rank: u64,
    name: String,
    container: Container,
}

/// Rank `rank`'s files of checkpoint `step`.
fn saved(layout: &Layout, folder: &str, seed: u64, step: u32, rank: u64) -> Vec<Saved> {
    layout
        .files(rank)
        .into_iter()
        .enumerate()
        .map(|(i, f): (usize, File)| {
            // PyTorch's per-save number: deterministic here, as everything else is.
            let id = (seed ^ ((step as u64) << 40) ^ (rank << 12) ^ i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                % 10_000_000_000_000_000_000;
            Saved {
                rank,
                name: format!("{folder}/{}/{}", model::step_folder(step), f.name),
                container: Container::new(&f.tensors, id),
            }
        })
        .collect()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    // Population deviation, as numpy's `np.std` (DLIO's).
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

fn write_json(name: &str, value: &serde_json::Value) -> Result<(), String> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let mut t = Target::open(name)?;
    t.write(&text)?;
    t.commit()
}

struct MlperfCkpt;

impl Plugin for MlperfCkpt {
    fn run(config: &Config) -> Result<Report, String> {
        let p: Params = config.params()?;
        p.check()?;
        let model = p.shape(model::model(&p.model)?)?;
        let reshaped = p.reshaped();
        let procs = config.world_size.max(1) as u64;
        let ranks = p.simulate_ranks.map_or(procs, u64::from);
        if ranks % procs != 0 {
            return Err(format!(
                "simulate_ranks = {ranks} cannot be shared by {procs} processes: it must be a multiple of them"
            ));
        }
        let k = ranks / procs;
        let layout = Layout::new(model.clone(), ranks, p.subset, p.scale)?;
        let mine: Vec<u64> = (config.rank as u64 * k..(config.rank as u64 + 1) * k).collect();
        let folder = p.folder.clone().unwrap_or_else(|| p.model.clone());
        let size_gib = layout.checkpoint_gib();
        let mut scaled = if p.scale < 1.0 { format!(", scaled {}", p.scale) } else { String::new() };
        if !reshaped.is_empty() {
            scaled += &format!(", reshaped ({})", reshaped.join(", "));
        }
        let subset = if p.subset { " (subset)" } else { "" };

        if p.plan {
            if config.rank == 0 {
                let files: Vec<_> = (0..ranks)
                    .flat_map(|r| {
                        saved(&layout, &folder, config.seed, 1, r).into_iter().zip(layout.files(r)).map(
                            move |(s, f)| {
                                json!({ "rank": r, "name": s.name, "state": if f.model { "model" } else { "optimizer" },
                                    "tensor_bytes": f.bytes(), "file_bytes": s.container.size(),
                                    "tensors": f.tensors.len() })
                            },
                        )
                    })
                    .collect();
                write_json(
                    &format!("{folder}/plan.json"),
                    &json!({
                        "model": p.model, "ranks": ranks, "subset": p.subset, "scale": p.scale,
                        "tp": model.tp, "pp": model.pp, "dp": layout.dp, "zero_stage": model.zero,
                        "parameters": layout.parameters(), "checkpoint_size_GB": size_gib, "files": files,
                    }),
                )?;
                wait_all()?;
            }
            return Ok(Report::new().summary(format!(
                "plan of {} on {ranks} ranks{subset}{scaled}: {size_gib:.6} GB per checkpoint (nothing else written)",
                p.model
            )));
        }

        let check = match p.read_check.as_str() {
            "none" => ReadCheck::None,
            "crc" => ReadCheck::Crc,
            "verify" => ReadCheck::Verify,
            other => return Err(format!("unknown read_check '{other}' (verify, crc, none)")),
        };
        let facts = dgen_plugin_sdk::facts();
        // A node of `ranks_per_node` ranks (what the host says: its processes, times the ranks each
        // plays); the shift sends rank r to the files of rank r + that, another node's.
        let per_node = p.ranks_per_node.map_or(facts.node_ranks.max(1) as u64 * k, u64::from);
        let shift = if p.recovery_rank_shift && ranks / per_node >= 2 { per_node } else { 0 };
        if p.recovery_rank_shift && shift == 0 {
            log!(
                warn,
                "this run is on one node ({ranks} ranks, {per_node} per node): recovery_rank_shift does not apply"
            );
        }
        let own_bytes: u64 = mine.iter().flat_map(|&r| layout.files(r)).map(|f| f.bytes()).sum();
        let files_per_ckpt: u64 = mine.iter().map(|&r| layout.files(r).len() as u64).sum();
        let (nw, nr) = (p.num_checkpoints_write, p.num_checkpoints_read);
        dgen_plugin_sdk::expect(own_bytes * nw as u64, files_per_ckpt * nw as u64);
        if config.rank == 0 {
            log!(
                "{} on {ranks} ranks{subset} (TP {} PP {} DP {}, ZeRO {}){scaled}: {size_gib:.6} GB per checkpoint",
                p.model,
                model.tp,
                model.pp,
                layout.dp,
                model.zero
            );
        }
        let multi = procs > 1;
        let totals = |phase: bool| {
            if multi {
                dgen_plugin_sdk::world_totals(phase)
            } else if phase {
                dgen_plugin_sdk::phase_totals()
            } else {
                dgen_plugin_sdk::totals()
            }
        };

        // Saves.
        let mut save_s = Vec::new();
        let mut rank_save_s: Vec<Vec<f64>> = vec![Vec::new(); mine.len()];
        for step in 1..=nw {
            if p.time_between_checkpoints > 0.0 {
                dgen_plugin_sdk::pause(p.time_between_checkpoints);
            }
            dgen_plugin_sdk::phase(&format!("save_ckpt{step}"));
            let start = dgen_plugin_sdk::totals().seconds;
            let mut opened = Vec::new();
            for &r in &mine {
                for s in saved(&layout, &folder, config.seed, step, r) {
                    let at = dgen_plugin_sdk::totals().seconds - start;
                    let mut t = Target::open_sized(&s.name, s.container.size())?;
                    s.container.write(&mut t)?;
                    t.commit()?;
                    opened.push((s.name, s.rank, at));
                }
            }
            let done = wait_all()?;
            // Each simulated rank's save ends when its last file is durable.
            for (i, &r) in mine.iter().enumerate() {
                let end = opened
                    .iter()
                    .filter(|o| o.1 == r)
                    .filter_map(|o| done.iter().find(|d| d.name == o.0).map(|d| o.2 + d.latency_us as f64 / 1e6))
                    .fold(0.0, f64::max);
                rank_save_s[i].push(end);
            }
            let t = totals(true);
            save_s.push(t.seconds);
            if config.rank == 0 {
                log!("checkpoint {step} saved in {:.4} s: {:.4} GB/s", t.seconds, size_gib / t.seconds.max(1e-9));
            }
        }

        // Loads: with no saves in this run, describe the checkpoints again (same order, same
        // bytes) and declare them, so their reads can be checked.
        if nw == 0 && nr > 0 {
            for step in 1..=nr {
                for &r in &mine {
                    for s in saved(&layout, &folder, config.seed, step, r) {
                        if check != ReadCheck::None {
                            let mut t = Target::open_sized(&s.name, s.container.size())?;
                            s.container.write(&mut t)?;
                            t.declare()?;
                        }
                    }
                }
            }
        }
        // A rank loads files this process described only when the shift stays among its own
        // simulated ranks; another process's it reads unchecked.
        let source = |r: u64| (r + shift) % ranks;
        let ours = |r: u64| mine.contains(&source(r));
        let mut load_s = Vec::new();
        let (mut reads, mut passed, mut unchecked, mut max_cached) = (0u64, 0u64, 0u64, None::<f64>);
        for step in 1..=nr {
            if p.time_between_checkpoints > 0.0 {
                dgen_plugin_sdk::pause(p.time_between_checkpoints);
            }
            dgen_plugin_sdk::phase(&format!("load_ckpt{step}"));
            // Every rank's loads are in flight together, each file as torch.load reads it.
            let per_rank: Vec<Vec<Saved>> =
                mine.iter().map(|&r| saved(&layout, &folder, config.seed, step, source(r))).collect();
            for (i, files) in per_rank.iter().enumerate() {
                let c = if ours(mine[i]) { check } else { ReadCheck::None };
                if c == ReadCheck::None && check != ReadCheck::None {
                    unchecked += files.len() as u64;
                }
                if step == 1 && shift > 0 {
                    log!("rank {} loads the files of rank {}", mine[i], source(mine[i]));
                }
                for s in files {
                    for (off, len) in s.container.loads() {
                        read_range(&s.name, off, len, c)?;
                    }
                }
            }
            for r in wait_reads()? {
                reads += 1;
                passed += r.passed as u64;
            }
            if let Some(c) = dgen_plugin_sdk::facts().cached_fraction {
                max_cached = Some(max_cached.map_or(c, |m: f64| m.max(c)));
            }
            let t = totals(true);
            load_s.push(t.seconds);
            if config.rank == 0 {
                log!("checkpoint {step} loaded in {:.4} s: {:.4} GB/s", t.seconds, size_gib / t.seconds.max(1e-9));
            }
        }

        // DLIO's figures.
        let gbps = |s: &[f64]| s.iter().map(|&d| size_gib / d.max(1e-9)).collect::<Vec<_>>();
        let mut summary =
            vec![format!("{} on {ranks} ranks{subset}{scaled}, {size_gib:.4} GB per checkpoint", p.model)];
        metric("checkpoint_size_GB", size_gib);
        metric("ranks", ranks as f64);
        metric("scale", p.scale);
        if nw > 0 {
            let (io, io_sd) = mean_std(&gbps(&save_s));
            let (d, d_sd) = mean_std(&save_s);
            metric("save_checkpoint_io_mean_GB_per_second", io);
            metric("save_checkpoint_io_stdev_GB_per_second", io_sd);
            metric("save_checkpoint_duration_mean_seconds", d);
            metric("save_checkpoint_duration_stdev_seconds", d_sd);
            summary.push(format!("save {io:.4} GB/s ({io_sd:.4}), {d:.4} s ({d_sd:.4}) x {nw}"));
            for (i, &r) in mine.iter().enumerate() {
                let rank_gib = layout.files(r).iter().map(|f| f.bytes()).sum::<u64>() as f64 / GIB;
                let (m, _) = mean_std(&rank_save_s[i].iter().map(|&s| rank_gib / s.max(1e-9)).collect::<Vec<_>>());
                metric(&format!("rank_{r}_save_GB_per_second"), m);
                metric(&format!("rank_{r}_checkpoint_GB"), rank_gib);
            }
        }
        if nr > 0 {
            let (io, io_sd) = mean_std(&gbps(&load_s));
            let (d, d_sd) = mean_std(&load_s);
            metric("load_checkpoint_io_mean_GB_per_second", io);
            metric("load_checkpoint_io_stdev_GB_per_second", io_sd);
            metric("load_checkpoint_duration_mean_seconds", d);
            metric("load_checkpoint_duration_stdev_seconds", d_sd);
            summary.push(format!("load {io:.4} GB/s ({io_sd:.4}), {d:.4} s ({d_sd:.4}) x {nr}"));
        }
        if shift > 0 {
            summary.push(format!("loads shifted by {shift} ranks"));
        }

        let mut report = Report::new();
        if nr > 0 && check != ReadCheck::None {
            report = report.check_eq(&format!("load reads passing {}", p.read_check), passed as f64, reads as f64);
            if unchecked > 0 {
                // What another process saved, this one cannot check; each checks its own instead.
                summary.push(format!("{unchecked} files loaded from other processes' ranks read unchecked"));
            }
        }
        if p.rules {
            report = rules(report, &p, &layout, &facts, nr, max_cached, own_bytes);
        }
        Ok(report.summary(summary.join("; ")))
    }
}

/// MLPerf Storage's checkpointing rules, each a named check; a run that breaks one still ran, and
/// the check says why it does not count.
fn rules(
    mut report: Report,
    p: &Params,
    layout: &Layout,
    facts: &dgen_plugin_sdk::Facts,
    nr: u32,
    max_cached: Option<f64>,
    own_bytes: u64,
) -> Report {
    let m = &layout.model;
    let closed_ranks = layout.ranks == m.closed || (p.subset && layout.ranks == model::SUBSET_RANKS);
    report = report.check_eq(
        &format!(
            "rule: CLOSED rank count for {} ({} ranks, or {} in subset mode)",
            m.name,
            m.closed,
            model::SUBSET_RANKS
        ),
        layout.ranks as f64,
        if closed_ranks { layout.ranks as f64 } else { m.closed as f64 },
    );
    report = report.check_eq("rule: full-size checkpoint (scale = 1)", p.scale, 1.0);
    let reshaped = p.reshaped();
    if !reshaped.is_empty() {
        report = report.check(&format!("rule: the model's shape as the rules give it: {}", reshaped.join(", ")), false);
    }
    if nr > 0 {
        // This node's checkpoint data: its processes' ranks' (each process's about the same).
        let node_data = own_bytes as f64 * facts.node_ranks.max(1) as f64 * nr as f64;
        let ram = facts.node_memory as f64;
        let name = "rule: loads read from storage (page cache dropped, O_DIRECT, or node data >= 3x its RAM)";
        report = if !facts.page_cache {
            report.check(&format!("{name}: reads bypass the page cache"), true)
        } else if ram > 0.0 && node_data >= 3.0 * ram {
            report.check_ge(&format!("{name}: node data / RAM"), node_data / ram, 3.0)
        } else {
            match max_cached {
                Some(c) => report.check_le(&format!("{name}: largest page-cache share at a load"), c, CACHED_AT_MOST),
                None => report.check(&format!("{name}: not measured"), false),
            }
        };
    }
    match facts.results_elsewhere {
        Some(apart) => report.check(
            if apart {
                "rule: checkpoint and results on different file systems"
            } else {
                "rule: checkpoint and results on different file systems: the report is on the checkpoint's"
            },
            apart,
        ),
        None => report.check(
            "rule: checkpoint and results on different file systems: cannot tell (no --json-report, or not files)",
            false,
        ),
    }
}

export_plugin!(
    MlperfCkpt,
    name = "mlperf-ckpt",
    version = "0.2.0",
    params = "model: llama3-8b|llama3-70b|llama3-405b|llama3-1t (llama3-8b), num_checkpoints_write (10), num_checkpoints_read (10), time_between_checkpoints (5), recovery_rank_shift (false), ranks_per_node (the host's), subset (false), simulate_ranks (one per process), scale (1), read_check: verify|crc|none (verify), rules (true), folder (the model), plan (false), num_layers / hidden_size / ffn_hidden_size / num_attention_heads / num_kv_heads / vocab_size (the model's)",
    keys = {
        model: "llama3-8b|llama3-70b|llama3-405b|llama3-1t",
        num_checkpoints_write: "integer",
        num_checkpoints_read: "integer",
        time_between_checkpoints: "number",
        recovery_rank_shift: "boolean",
        ranks_per_node: "integer",
        subset: "boolean",
        simulate_ranks: "integer",
        scale: "number",
        read_check: "verify|crc|none",
        rules: "boolean",
        folder: "string",
        plan: "boolean",
        num_layers: "integer",
        hidden_size: "integer",
        ffn_hidden_size: "integer",
        num_attention_heads: "integer",
        num_kv_heads: "integer",
        vocab_size: "integer",
    }
);
