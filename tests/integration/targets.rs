//! Workloads and their targets: every shipped workload moves between kinds with `--set target.uri`
//! alone, each kind's table is checked whichever kind is used, and keys are named where they are.

use crate::common::*;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped workloads, by file name.
fn shipped() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("workloads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    names
}

/// What keeps a full-size workload small enough for a test: the MLPerf ones write a 105 GiB
/// checkpoint ten times, so they run one at 1/10,000 of its size, without the rules (which fail
/// a scaled run by design and are tested in `mlperf`).
fn small(name: &str) -> &'static [&'static str] {
    if name.contains("mlperf") {
        &[
            "params.scale=0.0001",
            "params.num_checkpoints_write=1",
            "params.num_checkpoints_read=1",
            "params.time_between_checkpoints=0",
            "params.rules=false",
            "target.file.direct=false",
        ]
    } else if name == "blocks.toml" {
        // A 4 GiB region and a minute of operations, cut to 8 MiB and half a second; the journal
        // lets `verify` read it back in a new process.
        &[
            "params.size=\"8MiB\"",
            "params.journal=\"lun0.journal\"",
            "params.phases=[{name=\"oltp\",mix=[{op=\"read\",weight=70,bs=\"8KiB\"},{op=\"write\",weight=30,bs=\"8KiB\"}],depth=8,duration=0.5,verify=\"end\"}]",
        ]
    } else {
        &[]
    }
}

#[test]
fn every_shipped_workload_runs_on_a_file_target_with_the_uri_alone() {
    let names = shipped();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        let dir = tempdir(&format!("retarget-{name}"));
        let uri = format!("target.uri=file://{}", dir.display());
        let wl = workload(&name);
        let mut args = vec!["run", wl.as_str(), "--set", &uri, "-q"];
        args.extend(small(&name).iter().flat_map(|s| ["--set", *s]));
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", shown(&o));
        let files = files_under(&dir);
        assert!(!files.is_empty(), "{name}: nothing written");
        assert!(files.iter().all(|f| !f.contains(".dgen-tmp.")), "{name}: {files:?}");
        let mut args = vec!["verify", wl.as_str(), "--set", &uri, "-q"];
        args.extend(small(&name).iter().flat_map(|s| ["--set", *s]));
        let v = run(&args);
        assert_eq!(v.status.code(), Some(0), "{name}: verify: {}", shown(&v));
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn every_shipped_workload_runs_on_the_null_target() {
    for name in shipped() {
        // Read-backs need storage; the null target keeps nothing.
        let mut args =
            vec!["run".to_string(), workload(&name), "--set".into(), "target.uri=null://".into(), "-q".into()];
        args.extend(small(&name).iter().flat_map(|s| ["--set".to_string(), s.to_string()]));
        if name.contains("mlperf") {
            args.extend(["--set".into(), "params.num_checkpoints_read=0".into()]);
        } else if name.contains("ckpt") {
            args.extend(["--set".into(), "params.verify=false".into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", shown(&o));
    }
}

/// Writes `body` (after a name and plugin line) as a workload and runs it; the error text.
fn refused(dir: &Path, body: &str, sets: &[&str]) -> (Option<i32>, String) {
    let plugin = root().join("tests/fixtures/objects-sdk-1.0.0.wasm");
    let wl = dir.join("w.toml");
    std::fs::write(&wl, format!("name = \"t\"\nplugin = \"{}\"\n{body}", plugin.display())).unwrap();
    let mut args = vec!["run", wl.to_str().unwrap(), "-q"];
    for s in sets {
        args.extend(["--set", s]);
    }
    // Credentials a user of an S3-compatible store would export (checked only when S3 is used).
    let o = bin()
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (o.status.code(), shown(&o))
}

#[test]
fn each_kinds_table_is_checked_and_named_whichever_kind_is_used() {
    let dir = tempdir("target-tables");
    let out = dir.join("out");
    let file_uri = format!("[target]\nuri = \"file://{}\"\n", out.display());
    let cases = [
        // A typo under [target.s3] is found on a file run too, at its line.
        (
            format!("{file_uri}[target.s3]\npart_sise = \"8MiB\"\n"),
            "w.toml:6: target.s3.part_sise: unknown key; [target.s3] takes endpoint",
        ),
        (
            format!("{file_uri}[target.s3]\npart_size = \"1MiB\"\n"),
            "w.toml:6: target.s3.part_size: must be from 5 MiB to 5 GiB",
        ),
        (
            format!("{file_uri}[target.azure]\naccount = \"Bad_Name\"\n"),
            "w.toml:6: target.azure.account: 'Bad_Name' is not a storage account name",
        ),
        (
            format!("{file_uri}[target.file]\nqueue_depth = 0\n"),
            "w.toml:6: target.file.queue_depth: 0 is out of range: must be from 1 to 1024",
        ),
        (
            format!("{file_uri}[target.file]\ndirect = \"yes\"\n"),
            "w.toml:6: target.file.direct: expected true or false, found string",
        ),
        // Flat and in the table: given twice.
        (
            format!("{file_uri}queue_depth = 4\n[target.file]\nqueue_depth = 8\n"),
            "w.toml:7: target.file.queue_depth: is also given as target.queue_depth",
        ),
        (format!("{file_uri}[target.nfs]\nx = 1\n"), "target.nfs: unknown key"),
        (format!("{file_uri}s3 = 3\n"), "target.s3: expected a table"),
    ];
    for (body, want) in &cases {
        let (code, err) = refused(&dir, body, &[]);
        assert_eq!(code, Some(2), "{body}: {err}");
        assert!(err.contains(want), "{body}:\nwant {want}\ngot  {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(!out.exists(), "a refused workload wrote something");
}

#[test]
fn only_the_uris_kind_is_used() {
    let dir = tempdir("target-kind");
    let out = dir.join("out");
    // S3 and Azure settings that would fail if used; the file run does not touch them.
    let body = "[target]\nuri = \"s3://bkt/p\"\n[target.s3]\nendpoint = \"http://127.0.0.1:1\"\nretries = 0\n\
         [target.azure]\nendpoint = \"http://127.0.0.1:1\"\n[target.file]\nengine = \"pwrite\"\nqueue_depth = 2\n\
         [params]\ncount = 3\nsize = 10000\n"
        .to_string();
    let (code, err) = refused(&dir, &body, &[&format!("target.uri=file://{}", out.display())]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(files_under(&out).len(), 3);
    // The file table was used: its engine is the one in the report.
    let json = dir.join("r.json");
    let plugin = root().join("tests/fixtures/objects-sdk-1.0.0.wasm");
    std::fs::write(dir.join("w.toml"), format!("name = \"t\"\nplugin = \"{}\"\n{body}", plugin.display())).unwrap();
    let wl = dir.join("w.toml");
    let o = run(&[
        "run",
        wl.to_str().unwrap(),
        "-q",
        "--set",
        &format!("target.uri=file://{}", out.display()),
        "--json-report",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["engine"], "pwrite", "{report}");
    // On its own URI the S3 table is used: the endpoint it names is unreachable (exit 3).
    let (code, err) = refused(&dir, &body, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
