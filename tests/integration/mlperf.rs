//! `mlperf-ckpt`: MLPerf Storage's checkpointing workload. The file table is computed here again,
//! from DLIO's formulas (`dlio_benchmark/checkpointing/base_checkpointing.py`) and the MLPerf
//! YAMLs, independently of the plugin, and compared with what the plugin plans and writes; the
//! files are opened as `torch.load` opens them (zip directory, pickle) with Python's standard
//! library; a scaled 8b run saves and loads 10 checkpoints, verified, with the rules checked.

use crate::common::{bin, files_under, shown, tempdir, workload};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// (name, layers, hidden, ffn, heads, kv heads, TP, PP, ZeRO, CLOSED ranks); vocab 128256.
type ModelRow = (&'static str, u64, u64, u64, u64, u64, u64, u64, u32, u64);
const MODELS: &[ModelRow] = &[
    ("llama3-8b", 32, 4096, 14336, 32, 8, 1, 1, 3, 8),
    ("llama3-70b", 80, 8192, 28672, 128, 8, 8, 1, 3, 64),
    ("llama3-405b", 126, 16384, 53248, 128, 8, 8, 32, 1, 512),
    ("llama3-1t", 128, 25872, 98304, 192, 32, 8, 64, 1, 1024),
];
const VOCAB: u64 = 128256;

/// Expected files of one checkpoint: name → (rank, element count and element bytes of each tensor).
pub(crate) type Table = BTreeMap<String, (u64, Vec<(u64, u64)>)>;

/// Every rank's files for `model` on `ranks` ranks (subset: sharded as the CLOSED run's), each
/// tensor's element count times `scale`, rounded up.
pub(crate) fn expected(model: &str, ranks: u64, subset: bool, scale: f64) -> Table {
    let &(_, l, h, ffn, heads, kv, tp, pp, zero, closed) = MODELS.iter().find(|m| m.0 == model).unwrap();
    let mp = tp * pp;
    let dp = if subset { closed / mp } else { ranks / mp };
    let kv_dim = h / heads * kv;
    let params = 2 * VOCAB * h + l * (2 * h + h * (h + 2 * kv_dim) + h * h + 3 * h * ffn) + h;
    let s = |n: u64| if scale >= 1.0 { n } else { ((n as f64 * scale).ceil() as u64).max(1) };
    let shard = if zero == 3 { dp } else { 1 };
    // Layer i's fp16 tensors on one rank: 0 the embedding, l+1 the LM head, l+2 the final norm.
    let layer = |i: u64| -> Vec<(u64, u64)> {
        let n: Vec<u64> = if i == 0 || i == l + 1 {
            vec![h * VOCAB / tp / shard]
        } else if i == l + 2 {
            vec![h / shard]
        } else {
            vec![
                h / shard,
                h * (h + 2 * kv_dim) / tp / shard,
                h * h / tp / shard,
                h / shard,
                2 * h * ffn / tp / shard,
                h * ffn / tp / shard,
            ]
        };
        n.into_iter().filter(|&n| n > 0).map(|n| (s(n), 2)).collect()
    };
    let mut t = Table::new();
    for r in 0..ranks {
        let (stage, d, m) = ((r / tp) % pp, r / mp, r % mp);
        let (per, rem) = (l / pp, l % pp);
        let first = if stage < rem { stage * (per + 1) + 1 } else { rem * (per + 1) + (stage - rem) * per + 1 };
        let last = if stage < rem { first + per } else { first + per - 1 };
        let (first, last) = (if stage == 0 { 0 } else { first }, if stage == pp - 1 { l + 2 } else { last });
        if zero == 3 {
            let all = (first..=last).flat_map(layer).collect();
            t.insert(format!("zero_pp_rank_{d}_mp_rank_{m}_model_states.pt"), (r, all));
        } else if d == 0 {
            for i in first..=last {
                t.insert(format!("layer_{i}-model_{m}_model_states.pt"), (r, layer(i)));
            }
        }
        let n = params / (dp * mp);
        let optim = [n, 5 * h, n, 5 * h, n, 5 * h].iter().map(|&n| (s(n), 4)).collect();
        t.insert(format!("zero_pp_rank_{d}_mp_rank_{m}_optim_states.pt"), (r, optim));
    }
    t
}

pub(crate) fn bytes(tensors: &[(u64, u64)]) -> u64 {
    tensors.iter().map(|(n, b)| n * b).sum()
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn text(o: &std::process::Output) -> String {
    shown(o)
}

/// `mlperf-ckpt-8b-scaled.toml` into `out`, with `sets` on top.
fn run_scaled(out: &Path, report: &Path, sets: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.args(["run", &workload("mlperf-ckpt-8b-scaled.toml"), "--json-report", report.to_str().unwrap()])
        .args(["--set", &format!("target.uri=file://{}", out.display())])
        .args(["--set", "params.time_between_checkpoints=0"]);
    for s in sets {
        c.args(["--set", s]);
    }
    c.output().unwrap()
}

fn metric(r: &Value, name: &str) -> f64 {
    r["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no {name}: {r}"))
        ["value"]
        .as_f64()
        .unwrap()
}

fn check<'a>(r: &'a Value, prefix: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no check '{prefix}…': {}", r["checks"]))
}

#[test]
fn the_plan_of_every_model_names_and_sizes_each_rank_s_files_as_dlio_does() {
    let dir = tempdir("mlperf-plan");
    // Every model at its CLOSED size, the subset runs, and world sizes a test can run.
    let cases: &[(&str, u64, bool)] = &[
        ("llama3-8b", 8, false),
        ("llama3-8b", 4, false),
        ("llama3-70b", 64, false),
        ("llama3-70b", 8, false),
        ("llama3-70b", 8, true),
        ("llama3-405b", 512, false),
        ("llama3-405b", 8, true),
        ("llama3-1t", 1024, false),
        ("llama3-1t", 8, true),
    ];
    for &(model, ranks, subset) in cases {
        let out = dir.join(format!("{model}-{ranks}-{subset}"));
        let o = bin()
            .args(["run", &workload("mlperf-ckpt-8b.toml"), "-q"])
            .args(["--set", &format!("target.uri=file://{}", out.display())])
            .args(["--set", "target.file.direct=false", "--set", "params.plan=true"])
            .args(["--set", &format!("params.model=\"{model}\""), "--set", &format!("params.simulate_ranks={ranks}")])
            .args(["--set", &format!("params.subset={subset}")])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{model} x{ranks}: {}", text(&o));
        let plan = json(&out.join(model).join("plan.json"));
        let want = expected(model, ranks, subset, 1.0);
        let got: BTreeMap<String, (u64, u64)> = plan["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let name = f["name"].as_str().unwrap();
                let short = name.strip_prefix(&format!("{model}/global_epoch1_step1/")).unwrap().to_string();
                (short, (f["rank"].as_u64().unwrap(), f["tensor_bytes"].as_u64().unwrap()))
            })
            .collect();
        let want_short: BTreeMap<String, (u64, u64)> =
            want.iter().map(|(n, (r, t))| (n.clone(), (*r, bytes(t)))).collect();
        assert_eq!(got, want_short, "{model} on {ranks} ranks (subset {subset})");
        let total: u64 = want.values().map(|(_, t)| bytes(t)).sum();
        let gib = plan["checkpoint_size_GB"].as_f64().unwrap();
        assert!((gib - total as f64 / (1u64 << 30) as f64).abs() < 1e-9, "{model}: {gib}");
        // Every file is its tensors and the container around them: a few hundred bytes per tensor
        // (its pickle, its record's headers, the alignment).
        for f in plan["files"].as_array().unwrap() {
            let (t, fb) = (f["tensor_bytes"].as_u64().unwrap(), f["file_bytes"].as_u64().unwrap());
            assert!(fb > t && fb - t < 4096 + 512 * f["tensors"].as_u64().unwrap(), "{f}");
        }
    }
    // The sizes MLPerf Storage quotes (`LLM_SIZE_BY_RANK`, model and optimizer GB) and the 8b
    // numbers worked out by hand: 1,003,782,656 fp16 elements of model and 3 x 1,003,782,656 +
    // 3 x 20,480 fp32 elements of optimizer per rank.
    let t8 = expected("llama3-8b", 8, false, 1.0);
    assert_eq!(bytes(&t8["zero_pp_rank_3_mp_rank_0_model_states.pt"].1), 2_007_565_312);
    assert_eq!(bytes(&t8["zero_pp_rank_3_mp_rank_0_optim_states.pt"].1), 12_045_637_632);
    let gib = |m: &str, n: u64, opt: bool| {
        expected(m, n, false, 1.0)
            .iter()
            .filter(|(name, _)| name.ends_with("optim_states.pt") == opt)
            .map(|(_, (_, t))| bytes(t))
            .sum::<u64>() as f64
            / (1u64 << 30) as f64
    };
    for (m, n, model_gb, optim_gb) in
        [("llama3-8b", 8, 15.0, 90.0), ("llama3-70b", 64, 130.0, 781.0), ("llama3-405b", 512, 755.0, 4533.0)]
    {
        assert!((gib(m, n, false) - model_gb).abs() / model_gb < 0.01, "{m} model {}", gib(m, n, false));
        assert!((gib(m, n, true) - optim_gb).abs() / optim_gb < 0.01, "{m} optimizer {}", gib(m, n, true));
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Opens every `.pt` file below `dir` as `torch.load` would — the zip directory, `data.pkl`
/// unpickled with torch's classes stood in for — and prints, per file, each tensor's element
/// count, element size, its record's size and whether that record's data is 64-byte aligned.
const TORCH_LOAD: &str = r#"
import collections, io, json, os, pickle, struct, sys, zipfile
def rebuild(storage, offset, size, stride, requires_grad, hooks):
    return {"storage": storage, "size": size}
class Loader(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"): return rebuild
        if module == "torch" and name in ("HalfStorage", "FloatStorage"): return name
        if (module, name) == ("collections", "OrderedDict"): return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name}")
    def persistent_load(self, pid): return pid
def leaves(d):
    for v in d.values():
        if isinstance(v, dict) and "storage" not in v: yield from leaves(v)
        else: yield v
out = {}
for root, _, names in os.walk(sys.argv[1]):
    for n in names:
        if not n.endswith(".pt"): continue
        path = os.path.join(root, n)
        z = zipfile.ZipFile(path)
        assert z.read("archive/byteorder") == b"little" and z.read("archive/version") == b"3\n"
        state = Loader(io.BytesIO(z.read("archive/data.pkl"))).load()
        info = {i.filename: i for i in z.infolist()}
        tensors = []
        with open(path, "rb") as f:
            for t in leaves(state):
                tag, kind, key, where, numel = t["storage"]
                assert tag == "storage" and where == "cpu" and t["size"] == (numel,)
                rec = info["archive/data/" + key]
                f.seek(rec.header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", f.read(4))
                start = rec.header_offset + 30 + name_len + extra_len
                tensors.append([numel, 2 if kind == "HalfStorage" else 4, rec.file_size, start % 64 == 0])
        out[os.path.relpath(path, sys.argv[1])] = tensors
print(json.dumps(out))
"#;

#[test]
fn a_scaled_8b_run_saves_and_loads_ten_checkpoints_as_dlio_names_them_verified_with_the_rules_checked() {
    let dir = tempdir("mlperf-8b");
    let out = dir.join("ckpt");
    let report = dir.join("r.json");
    // Plain buffered writes, and the page cache kept: the loads come from memory, which the cache
    // rule must catch.
    let o = run_scaled(&out, &report, &["target.file.cache=\"keep\"", "target.file.uncached=false"]);
    assert_eq!(o.status.code(), Some(1), "rules fail, so the run does: {}", text(&o));
    let r = json(&report);
    // 10 saves and 10 loads, each its own phase.
    let phases: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    let want: Vec<String> =
        (1..=10).map(|i| format!("save_ckpt{i}")).chain((1..=10).map(|i| format!("load_ckpt{i}"))).collect();
    assert_eq!(phases, want);
    // The files: 8 ranks' model and optimizer shards in each of 10 step folders, named as DLIO's.
    let table = expected("llama3-8b", 8, false, 0.001);
    let mut names: Vec<String> =
        (1..=10).flat_map(|s| table.keys().map(move |n| format!("llama3-8b/global_epoch1_step{s}/{n}"))).collect();
    names.sort();
    assert_eq!(files_under(&out), names);
    // Opened as torch.load opens them: each tensor where the table says, its record exactly its
    // bytes, aligned.
    let o2 = std::process::Command::new("python3").args(["-c", TORCH_LOAD, out.to_str().unwrap()]).output().unwrap();
    assert!(o2.status.success(), "{}", text(&o2));
    let opened: BTreeMap<String, Vec<(u64, u64, u64, bool)>> = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(opened.len(), 160);
    for (name, tensors) in &opened {
        let short = name.rsplit('/').next().unwrap();
        let want: Vec<(u64, u64, u64, bool)> = table[short].1.iter().map(|&(n, b)| (n, b, n * b, true)).collect();
        assert_eq!(tensors, &want, "{name}");
    }
    // Every load read checked against what was saved.
    let loads = check(&r, "load reads passing verify");
    assert_eq!(loads["passed"], true, "{loads}");
    assert!(loads["observed"].as_f64().unwrap() > 1000.0, "{loads}");
    // DLIO's figures, named as DLIO names them; the checkpoint size in GiB.
    let size: u64 = table.values().map(|(_, t)| bytes(t)).sum();
    assert!((metric(&r, "checkpoint_size_GB") - size as f64 / (1u64 << 30) as f64).abs() < 1e-12);
    for m in ["save", "load"] {
        let io = metric(&r, &format!("{m}_checkpoint_io_mean_GB_per_second"));
        let d = metric(&r, &format!("{m}_checkpoint_duration_mean_seconds"));
        assert!(io > 0.0 && d > 0.0, "{m}: {io} GB/s, {d} s");
        metric(&r, &format!("{m}_checkpoint_io_stdev_GB_per_second"));
        metric(&r, &format!("{m}_checkpoint_duration_stdev_seconds"));
    }
    metric(&r, "rank_7_save_GB_per_second");
    assert_eq!(metric(&r, "scale"), 0.001);
    // The rules: 8 ranks is CLOSED for 8b; a scaled run is not; the loads came from memory; the
    // report is on the checkpoint's file system.
    assert_eq!(check(&r, "rule: CLOSED rank count for llama3-8b")["passed"], true);
    assert_eq!(check(&r, "rule: full-size checkpoint")["passed"], false);
    let cache = check(&r, "rule: loads read from storage");
    assert_eq!(cache["passed"], false, "{cache}");
    assert!(cache["observed"].as_f64().unwrap() > 0.5, "{cache}");
    assert_eq!(check(&r, "rule: checkpoint and results on different file systems")["passed"], false);
    assert!(text(&o).contains("scaled 0.001"), "{}", text(&o));

    // The loads again, in a run of their own after a drop of the page cache, with the report on
    // another file system (tmpfs): those rules pass now, and every byte is still checked.
    let shm = Path::new("/dev/shm");
    let report2 =
        if shm.is_dir() { shm.join(format!("dgen-mlperf-{}.json", std::process::id())) } else { dir.join("r2.json") };
    let o = run_scaled(&out, &report2, &["params.num_checkpoints_write=0"]);
    let r = json(&report2);
    std::fs::remove_file(&report2).ok();
    assert_eq!(r["phases"].as_array().unwrap().len(), 10, "{}", text(&o));
    assert_eq!(check(&r, "load reads passing verify")["passed"], true, "{}", text(&o));
    let cache = check(&r, "rule: loads read from storage");
    assert_eq!(cache["passed"], true, "{cache}");
    if shm.is_dir() {
        assert_eq!(check(&r, "rule: checkpoint and results on different file systems")["passed"], true);
    }
    assert!(r.get("metrics").is_some() && metric(&r, "load_checkpoint_io_mean_GB_per_second") > 0.0);
    // The only rule left failing is the scale.
    let failing: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    if shm.is_dir() {
        assert_eq!(failing, ["rule: full-size checkpoint (scale = 1)"]);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn with_rank_shift_rank_r_loads_the_files_rank_r_plus_ranks_per_node_saved() {
    let dir = tempdir("mlperf-shift");
    let out = dir.join("ckpt");
    let report = dir.join("r.json");
    let o = run_scaled(
        &out,
        &report,
        &[
            "params.recovery_rank_shift=true",
            "params.ranks_per_node=4",
            "params.num_checkpoints_write=2",
            "params.num_checkpoints_read=2",
        ],
    );
    let r = json(&report);
    let t = text(&o);
    for rank in 0..8 {
        assert!(t.contains(&format!("rank {rank} loads the files of rank {}", (rank + 4) % 8)), "{t}");
    }
    assert!(r["summary"].as_str().unwrap().contains("loads shifted by 4 ranks"), "{r}");
    // What each rank loaded is what the other rank saved, byte for byte.
    assert_eq!(check(&r, "load reads passing verify")["passed"], true, "{t}");
    // One node of 8 ranks: the shift does not apply, and the run says so.
    let o = run_scaled(
        &out,
        &report,
        &["params.recovery_rank_shift=true", "params.num_checkpoints_write=1", "params.num_checkpoints_read=1"],
    );
    assert!(text(&o).contains("recovery_rank_shift does not apply"), "{}", text(&o));
    std::fs::remove_dir_all(dir).ok();
}

/// DLIO's model keys, overriding the YAML's one by one: what DLIO itself printed for this shape
/// (`mpirun -np 8 dlio_benchmark workload=llama3_8b ++workload.model.num_layers=4
/// ++workload.model.transformer.hidden_size=512 …`, branch mlperf_storage_v2.0: "Total number of
/// parameters in the model: 30052864", summary.json `checkpoint_size_GB` 0.3920736312866211),
/// the file table of the formulas here, and a rule saying the model is not the rules' model.
#[test]
fn a_model_reshaped_with_dlio_s_keys_plans_what_dlio_computed_for_that_shape() {
    let dir = tempdir("mlperf-reshaped");
    let shape = [
        "params.num_layers=4",
        "params.hidden_size=512",
        "params.ffn_hidden_size=1792",
        "params.vocab_size=16032",
        "params.num_attention_heads=4",
        "params.num_kv_heads=1",
    ];
    let out = dir.join("plan");
    let mut c = bin();
    c.args([
        "run",
        &workload("mlperf-ckpt-8b-scaled.toml"),
        "-q",
        "--set",
        "params.plan=true",
        "--set",
        "params.scale=1",
    ])
    .args(["--set", &format!("target.uri=file://{}", out.display())]);
    for s in shape {
        c.args(["--set", s]);
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = json(&out.join("llama3-8b/plan.json"));
    assert_eq!(plan["parameters"].as_u64(), Some(30_052_864), "{plan}");
    let gib = plan["checkpoint_size_GB"].as_f64().unwrap();
    assert!((gib - 0.3920736312866211).abs() < 1e-12, "{gib}");
    assert_eq!(plan["files"].as_array().unwrap().len(), 16);

    // Run, the rule names the keys that made it another model.
    let report = dir.join("r.json");
    let o = run_scaled(
        &dir.join("out"),
        &report,
        &[&shape[..], &["params.scale=1", "params.num_checkpoints_write=1", "params.num_checkpoints_read=1"]].concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = json(&report);
    let rule = check(&r, "rule: the model's shape as the rules give it");
    assert_eq!(rule["passed"], false, "{rule}");
    assert!(rule["name"].as_str().unwrap().contains("num_layers = 4, hidden_size = 512"), "{rule}");
    assert!(r["summary"].as_str().unwrap().contains("reshaped (num_layers = 4"), "{}", r["summary"]);
    assert!((metric(&r, "checkpoint_size_GB") - 0.3920736312866211).abs() < 1e-12);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_mlperf_params_name_what_is_wrong() {
    let dir = tempdir("mlperf-bad");
    let report = dir.join("r.json");
    for (set, says) in [
        ("params.model=\"llama3-7b\"", "unknown model 'llama3-7b'"),
        ("params.scale=0", "params.scale = 0"),
        ("params.num_checkpoints_read=11", "more than the 10 checkpoints this run writes"),
        ("params.simulate_ranks=0", "params.simulate_ranks = 0"),
        ("params.time_between_checkpoints=-1", "params.time_between_checkpoints = -1"),
        ("params.recovery_rank_shfit=true", "recovery_rank_shfit"),
        ("params.hidden_size=0", "params.hidden_size = 0: it must be from 1 to"),
        ("params.num_layers=0", "params.num_layers = 0: it must be from 1 to 4096"),
        ("params.num_kv_heads=64", "num_kv_heads 64 is more than num_attention_heads 32"),
    ] {
        let o = run_scaled(&dir.join("out"), &report, &[set]);
        assert_ne!(o.status.code(), Some(0), "{set}");
        assert!(text(&o).contains(says), "{set}: {}", text(&o));
    }
    std::fs::remove_dir_all(dir).ok();
}
