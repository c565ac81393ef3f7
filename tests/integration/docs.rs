//! The documentation tells the truth: the examples it marks as runnable (fenced as ```` ```sh test ````)
//! run as written, and the reference names every field the JSON report writes.

use crate::common::*;
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of every ```` ```sh test ```` block of `text`.
fn runnable(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            inside = !inside && t == "```sh test";
            continue;
        }
        if inside && !t.is_empty() && !t.starts_with('#') {
            out.push(t.to_string());
        }
    }
    out
}

#[test]
fn the_documented_examples_run_as_written() {
    let dir = tempdir("doc-examples");
    let bin = Path::new(env!("CARGO_BIN_EXE_dgen-engine"));
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut docs = vec![root().join("README.md")];
    docs.extend(std::fs::read_dir(root().join("docs")).unwrap().flatten().map(|e| e.path()));
    let mut ran = 0;
    for doc in docs {
        for line in runnable(&std::fs::read_to_string(&doc).unwrap()) {
            // Paths in the examples are the repository's; the commands run in a scratch directory.
            let line = line
                .replace("workloads/", &format!("{}/workloads/", root().display()))
                .replace("tests/fixtures/", &format!("{}/tests/fixtures/", root().display()));
            let o = std::process::Command::new("bash")
                .args(["-o", "pipefail", "-c", &line])
                .current_dir(&dir)
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}: `{line}` failed: {}", doc.display(), shown(&o));
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} examples are marked runnable");
    std::fs::remove_dir_all(dir).ok();
}

fn keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                keys(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn the_reference_names_every_field_of_the_report() {
    let dir = tempdir("doc-reference");
    let reference = std::fs::read_to_string(root().join("docs/reference.md")).unwrap();
    let out = |name: &str| format!("target.uri=\"file://{}\"", dir.join(name).display());
    let runs: Vec<Vec<String>> = vec![
        vec!["run".into(), workload("ckpt.toml"), "--set".into(), out("ckpt")],
        vec!["run".into(), workload("ckpt.toml"), "--set".into(), out("turn"), "--world-size".into(), "2".into()],
        vec![
            "run".into(),
            workload("objects.toml"),
            "--set".into(),
            out("objects"),
            "--set".into(),
            "params.count=4".into(),
            "--set".into(),
            "params.phases=[\"put\", \"get\", \"stat\"]".into(),
            "--set".into(),
            "data.dedup_copies=\"zipf:1.2\"".into(),
        ],
        vec![
            "run".into(),
            workload("blocks.toml"),
            "--set".into(),
            out("blocks"),
            "--set".into(),
            "params.size=\"4MiB\"".into(),
            "--set".into(),
            "params.phases=[{name=\"x\",mix=[{op=\"read\",bs=\"8KiB\"},{op=\"write\",bs=\"8KiB\"},{op=\"trim\",weight=0.01,bs=\"8KiB\"},{op=\"fsync\",weight=0.01}],duration=1,ramp=0.2,series_interval=0.5,verify=\"end\"}]".into(),
        ],
        vec!["run".into(), dir.join("missing.toml").display().to_string()],
    ];
    let mut all = BTreeSet::new();
    for (i, args) in runs.iter().enumerate() {
        let json = dir.join(format!("r{i}.json"));
        let o = bin().args(args).args(["-q", "--json-report", json.to_str().unwrap()]).output().unwrap();
        let text = std::fs::read(&json).unwrap_or_else(|_| panic!("{args:?}: no report: {}", shown(&o)));
        keys(&serde_json::from_slice(&text).unwrap(), &mut all);
    }
    // Fields the runs above do not reach: a failed read, a note, a stonewall, the copy table.
    let unreached = [
        "offset",
        "verdict",
        "level",
        "text",
        "at_s",
        "by_rank",
        "compress_mix",
        "coordination",
        "kind",
        "expected",
        "found",
    ];
    for k in unreached.into_iter().chain(["barriers", "barrier_s", "gather_s", "gathered_bytes", "merge_s"]) {
        all.insert(k.to_string());
    }
    let missing: Vec<&String> = all.iter().filter(|k| !reference.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "docs/reference.md does not name: {missing:?}");
    std::fs::remove_dir_all(dir).ok();
}
