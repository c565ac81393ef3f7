//! Ranks without a launcher (`--rank R --world-size N`): each rank does its share of the plugin's
//! work with bytes of its own, deterministic, and the dedup ratio holds over all ranks' data together.

use crate::common::{bin, files_under, hash, shown, tempdir, workload};
use std::collections::HashSet;
use std::path::Path;

const PAYLOAD: u64 = 8 << 20;
/// The objects plugin's header before each payload.
pub(crate) const HEADER: usize = 24;

fn put(dir: &Path, rank: u32, world: u32, dedup: f64) -> (std::process::Output, serde_json::Value) {
    let report = dir.join(format!("rank{rank}.json"));
    let o = bin()
        .args(["run", &workload("objects.toml"), "-q", "--json-report", report.to_str().unwrap()])
        .args(["--set", &format!("target.uri=file://{}", dir.join("out").display())])
        .args(["--set", "params.count=16", "--set", "params.distribution=\"fixed\"", "--set", "params.footer=false"])
        .args(["--set", &format!("params.size={PAYLOAD}"), "--set", &format!("data.dedup={dedup}")])
        .args(["--seed", "7", "--rank", &rank.to_string(), "--world-size", &world.to_string()])
        .output()
        .unwrap();
    let r = std::fs::read(&report).map(|b| serde_json::from_slice(&b).unwrap()).unwrap_or_default();
    (o, r)
}

/// (blocks, distinct blocks) over the payloads of `files`, in 4 KiB blocks from the payload start.
pub(crate) fn blocks(files: &[std::path::PathBuf]) -> (u64, usize) {
    let mut seen = HashSet::new();
    let mut n = 0;
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        for b in bytes[HEADER..].chunks_exact(4096) {
            seen.insert(hash(b));
            n += 1;
        }
    }
    (n, seen.len())
}

#[test]
fn four_ranks_split_the_objects_and_hold_the_dedup_ratio_together() {
    let dir = tempdir("ranks-dedup");
    for rank in 0..4 {
        let (o, r) = put(&dir, rank, 4, 2.0);
        assert_eq!(o.status.code(), Some(0), "rank {rank}: {}", shown(&o));
        assert_eq!(r["objects"], 4, "rank {rank} writes a quarter: {r}");
    }
    let out = dir.join("out");
    let names = files_under(&out);
    assert_eq!(names.len(), 16, "{names:?}");
    let path = |i: u64| out.join(format!("obj-{i:06}.bin"));
    let all: Vec<_> = (0..16).map(path).collect();
    let (n, distinct) = blocks(&all);
    let ratio = n as f64 / distinct as f64;
    assert!((ratio - 2.0).abs() < 0.04, "all ranks' data together: dedup {ratio:.4}, want 2");
    // Within one rank the copies of its blocks are other ranks' rows: it dedups on its own at ~1.
    let rank1: Vec<_> = (0..16).filter(|i| i % 4 == 1).map(path).collect();
    let (n1, d1) = blocks(&rank1);
    assert!((n1 as f64 / d1 as f64) < 1.05, "rank 1 alone: {}", n1 as f64 / d1 as f64);
    // Each rank's bytes are its own and the same on a rerun (whichever host runs it).
    let again = tempdir("ranks-again");
    let (o, _) = put(&again, 2, 4, 2.0);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    for i in [2u64, 6, 10, 14] {
        let f = format!("obj-{i:06}.bin");
        assert_eq!(std::fs::read(out.join(&f)).unwrap(), std::fs::read(again.join("out").join(&f)).unwrap(), "{f}");
    }
    assert_eq!(files_under(&again.join("out")).len(), 4);
    // Rank r of 4 is not what one process alone writes for the same object.
    let alone = tempdir("ranks-alone");
    let (o, _) = put(&alone, 0, 1, 2.0);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let a = std::fs::read(alone.join("out/obj-000001.bin")).unwrap();
    assert_ne!(a[HEADER..], std::fs::read(path(1)).unwrap()[HEADER..]);
    for d in [dir, again, alone] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn a_rank_outside_the_world_is_a_usage_error() {
    let o = bin().args(["run", &workload("objects.toml"), "--rank", "4", "--world-size", "4"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("--rank '4': is not below --world-size 4"), "{}", shown(&o));
    let o = bin().args(["run", &workload("objects.toml"), "--rank", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("--world-size"), "{}", shown(&o));
}

#[test]
fn ckpt_ranks_save_their_own_shards_and_restore_them_later() {
    let dir = tempdir("ranks-ckpt");
    let uri = format!("target.uri=file://{}", dir.join("out").display());
    let ckpt = |rank: u32, extra: &[&str]| {
        let report = dir.join(format!("ckpt{rank}.json"));
        let o = bin()
            .args(["run", &workload("ckpt.toml"), "-q", "--json-report", report.to_str().unwrap(), "--set", &uri])
            .args(["--set", "params.model=\"tiny\"", "--set", "params.ranks=4", "--set", "params.steps=1"])
            .args(["--rank", &rank.to_string(), "--world-size", "2", "--set", "params.min_gbps=0"])
            .args(extra.iter().flat_map(|s| ["--set", s]))
            .output()
            .unwrap();
        let r: serde_json::Value =
            std::fs::read(&report).map(|b| serde_json::from_slice(&b).unwrap()).unwrap_or_default();
        (o, r)
    };
    for rank in 0..2 {
        let (o, r) = ckpt(rank, &[]);
        assert_eq!(o.status.code(), Some(0), "rank {rank}: {}", shown(&o));
        // Two shards and a manifest each; host 0 also the index.
        assert_eq!(r["objects"], 3 + (rank == 0) as u64, "rank {rank}: {r}");
    }
    let mut names = files_under(&dir.join("out"));
    names.sort();
    assert_eq!(
        names,
        [
            "step-000000/manifest-host00000.json",
            "step-000000/manifest-host00001.json",
            "step-000000/model-00001-of-00004.safetensors",
            "step-000000/model-00002-of-00004.safetensors",
            "step-000000/model-00003-of-00004.safetensors",
            "step-000000/model-00004-of-00004.safetensors",
            "step-000000/model.safetensors.index.json",
        ]
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/step-000000/manifest-host00001.json")).unwrap()).unwrap();
    let shards: Vec<&str> = m["shards"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        shards,
        ["step-000000/model-00002-of-00004.safetensors", "step-000000/model-00004-of-00004.safetensors"]
    );
    assert_eq!((m["host_rank"].as_u64(), m["world_size"].as_u64()), (Some(1), Some(2)));
    // Each rank restores (and verifies) its own shards, written by the earlier run.
    for rank in 0..2 {
        let (o, r) = ckpt(rank, &["params.save=false", "params.restore=1"]);
        assert_eq!(o.status.code(), Some(0), "rank {rank}: {}", shown(&o));
        let restore = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "restore").unwrap().clone();
        assert_eq!(restore["read_failures"], 0, "{restore}");
        assert!(restore["reads"].as_u64().unwrap() > 2, "{restore}");
    }
    // A shard replaced by another one fails the restore of the rank that owns it.
    std::fs::rename(
        dir.join("out/step-000000/model-00002-of-00004.safetensors"),
        dir.join("out/step-000000/model-00001-of-00004.safetensors"),
    )
    .unwrap();
    let (o, _) = ckpt(0, &["params.save=false", "params.restore=1"]);
    assert_ne!(o.status.code(), Some(0), "{}", shown(&o));
    std::fs::remove_dir_all(dir).ok();
}
