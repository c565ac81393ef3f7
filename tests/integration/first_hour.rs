//! The first hour of a new user: each mistake a newcomer makes is caught before the run, with a
//! message that says what to fix, the documented exit code and `error_kind`.

use crate::common::*;

/// A JSON report that cannot be written is found before anything runs, not after the workload.
#[test]
fn an_unwritable_json_report_is_refused_before_the_run() {
    let dir = tempdir("report-path");
    let out = dir.join("out");
    let report = dir.join("nodir").join("r.json");
    let uri = format!("target.uri=\"file://{}\"", out.display());
    let o = run(&["run", &workload("objects.toml"), "--set", &uri, "--json-report", report.to_str().unwrap()]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot write the JSON report") && err.contains("nothing was run"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(files_under(&out).is_empty(), "the workload ran: {:?}", files_under(&out));
    std::fs::remove_dir_all(dir).ok();
}

/// An S3 target with no credentials anywhere says so, and where it looked: `denied`, not a
/// network failure.
#[test]
fn missing_s3_credentials_are_denied_and_say_where_they_were_looked_for() {
    use crate::objects::Remote;
    use crate::s3::{bin_s3, moto, Bucket};
    let bucket = Bucket::new("nocreds");
    let dir = tempdir("nocreds");
    let json = dir.join("r.json");
    let o = bin_s3(&moto().endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["run", &workload("objects.toml"), "-q", "--set", &format!("target.uri={}", bucket.uri("x"))])
        .args(["--json-report", json.to_str().unwrap()])
        .output()
        .unwrap();
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("no AWS credentials found") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(err.contains("IMDS") && !err.contains("cannot reach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["error_kind"], "denied", "{report}");
    std::fs::remove_dir_all(dir).ok();
}

/// An error names where its value was written: the one `--set` it came from (not all of them, and
/// not the file line the `--set` replaced), or the file's line; a misspelt table is named as a
/// table, with the nearest valid one.
#[test]
fn errors_name_the_set_or_the_line_they_came_from() {
    let wl = workload("ckpt.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--set", "params.ranks=2", "--set", "data.compres=3"],
            "error: --set data.compres=3: unknown field `compres`, expected one of `dedup`, `compress`",
        ),
        (vec!["--set", "data.compress=500"], "error: --set data.compress=500: data.compress: '500' must be"),
    ];
    let report = tempdir("set-origin").join("r.json");
    for (sets, want) in cases {
        let o =
            bin().arg("run").arg(&wl).args(&sets).args(["--json-report", report.to_str().unwrap()]).output().unwrap();
        let err = shown(&o);
        assert_eq!(o.status.code(), Some(2), "{sets:?}: {err}");
        assert!(err.starts_with(want), "{sets:?}: {err}");
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(r["error_kind"], "workload", "{sets:?}: {r}");
        assert!(!err.contains("params.ranks=2") && !err.contains("ckpt.toml:"), "{sets:?}: {err}");
    }
    let dir = tempdir("typo-table");
    let text = std::fs::read_to_string(&wl).unwrap().replace("[pipeline]", "[pipline]");
    let line = text.lines().position(|l| l.starts_with("[pipline]")).unwrap() + 1;
    let file = dir.join("typo.toml");
    std::fs::write(&file, text.replace("../plugins/ckpt", &format!("{}/plugins/ckpt", env!("CARGO_MANIFEST_DIR"))))
        .unwrap();
    let o = run(&["run", file.to_str().unwrap()]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let want = format!("{}:{line}: [pipline] is not a table of a workload", file.display());
    assert!(err.contains(&want) && err.contains("did you mean [pipeline]?"), "{err}");
    assert!(!err.contains("data.pipline"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// A mistyped or unknown plugin parameter is the workload's error (exit 2, before anything runs),
/// naming where it was written and what the plugin takes — not a plugin fault after the header.
#[test]
fn plugin_params_are_checked_against_what_the_plugin_declares() {
    let dir = tempdir("params");
    let out = dir.join("out");
    let uri = format!("target.uri=\"file://{}\"", out.display());
    let wl = workload("ckpt.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--set", "params.rank=8"],
            "error: --set params.rank=8: params.rank: plugin 'ckpt 0.3.0' takes no such param (did you mean 'ranks'?); \
             it takes: min_gbps, min_restore_gbps, model, ranks, restore, restore_check, save, steps, verify",
        ),
        (vec!["--set", "params.ranks=\"four\""], "params.ranks: '\"four\"' is not an integer"),
        (vec!["--set", "params.model=\"huge\""], "params.model: unknown model 'huge': plugin 'ckpt 0.3.0' takes one of \"tiny\", \"small\""),
        (vec!["--set", "params.verify=1"], "params.verify: '1' is not true or false"),
    ];
    let json = dir.join("r.json");
    for (sets, want) in cases {
        let o = bin()
            .arg("run")
            .arg(&wl)
            .args(["--set", &uri, "--json-report", json.to_str().unwrap()])
            .args(&sets)
            .output()
            .unwrap();
        let err = shown(&o);
        assert_eq!(o.status.code(), Some(2), "{sets:?}: {err}");
        assert!(err.contains(want), "{sets:?}: {err}");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(report["error_kind"], "workload", "{sets:?}: {report}");
        assert_eq!(err.trim_end().lines().filter(|l| !l.starts_with(' ')).count(), 1, "{sets:?}: {err}");
        assert!(!err.contains("dgen-engine run:") && !err.contains("stopped with an error"), "{sets:?}: {err}");
        assert!(files_under(&out).is_empty(), "{sets:?}: something was written");
    }
    // A list where the objects plugin takes one: the workload's error, not the plugin's.
    let o = run(&["run", &workload("objects.toml"), "--set", &uri, "--set", "params.phases=\"put\""]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("params.phases: '\"put\"' is not a list"), "{err}");
    // In the file: its line.
    let text = std::fs::read_to_string(&wl).unwrap().replace("steps = 2", "stepz = 2");
    let line = text.lines().position(|l| l.starts_with("stepz")).unwrap() + 1;
    let file = dir.join("typo.toml");
    std::fs::write(&file, text.replace("../plugins/ckpt", &format!("{}/plugins/ckpt", env!("CARGO_MANIFEST_DIR"))))
        .unwrap();
    let o = run(&["run", file.to_str().unwrap(), "--set", &uri]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:{line}: params.stepz:", file.display())), "{err}");
    assert!(err.contains("did you mean 'steps'?"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// The checkpoint workload moves to `null://` with that one key: its read-backs are said once to be
/// impossible there — not mismatches, not a failed check — and the run passes.
#[test]
fn a_sink_that_keeps_nothing_says_verification_is_not_possible_once() {
    let o = run(&["run", &workload("ckpt.toml"), "--set", "target.uri=\"null://\""]);
    let text = shown(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(text.matches("verifying is not possible there").count(), 1, "{text}");
    assert!(text.contains("8 read-backs the plugin asked for were not done"), "{text}");
    assert!(!text.contains("MISMATCH") && !text.contains("FAIL"), "{text}");
    // `verify` on it has nothing to read: refused before it starts.
    let o = run(&["verify", &workload("ckpt.toml"), "--set", "target.uri=\"null://\""]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("keeps nothing"), "{err}");
}

/// One corrupted shard is one mismatch: the manifest of the shards' CRCs, described again under
/// `verify`, holds the CRCs of the shards as they were meant to be, so it is not a second one, and
/// the counts agree with each other.
#[test]
fn one_corrupted_shard_is_one_mismatch() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempdir("one-corrupt");
    let out = dir.join("out");
    let uri = format!("target.uri=\"file://{}\"", out.display());
    let o = run(&["run", &workload("ckpt.toml"), "--set", &uri, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let shard = out.join("step-000001/model-00002-of-00004.safetensors");
    let mut f = std::fs::OpenOptions::new().write(true).open(&shard).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"\xde\xad\xbe").unwrap();
    drop(f);
    let o = run(&["verify", &workload("ckpt.toml"), "--set", &uri]);
    let text = shown(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let mismatches: Vec<&str> = text.lines().filter(|l| l.contains("MISMATCH")).collect();
    assert_eq!(mismatches.len(), 1, "{text}");
    assert!(mismatches[0].contains("model-00002-of-00004.safetensors"), "{text}");
    assert!(!text.contains("MISMATCH step-000001/manifest"), "{text}");
    let verified = text.lines().find(|l| l.starts_with("verified ")).unwrap();
    let total: usize = verified.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(verified.ends_with(&format!("{} identical, 1 not", total - 1)), "{text}");
    std::fs::remove_dir_all(dir).ok();
}

/// Ctrl-C as `timeout -s INT` sends it (to the process and to its group: two signals at once) removes
/// the temporary every time, and ends the process within a second, whatever the compressor.
#[test]
fn ctrl_c_leaves_no_temporary_and_ends_within_a_second() {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let dir = tempdir("ctrl-c");
    let out = dir.join("f.bin");
    let cases: Vec<(Vec<&str>, u64)> =
        vec![(vec![], 150), (vec![], 300), (vec![], 450), (vec![], 600), (vec!["--output-compress", "zstd:19"], 1500)];
    for (extra, after_ms) in cases {
        let mut child = bin()
            .args(["gen", "--size", "8GiB", "-q", "-o", out.to_str().unwrap()])
            .args(&extra)
            .process_group(0)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let pid = Pid::from_raw(child.id() as i32);
        let sent = Instant::now();
        let _ = kill(pid, Signal::SIGINT);
        let _ = killpg(pid, Signal::SIGINT);
        let status = child.wait().unwrap();
        let took = sent.elapsed();
        let left: Vec<String> = files_under(&dir).into_iter().filter(|f| f.contains(".dgen-tmp.")).collect();
        assert!(left.is_empty(), "{extra:?} at {after_ms} ms: left {left:?}");
        assert!(took < Duration::from_secs(1), "{extra:?} at {after_ms} ms: ended {took:?} after Ctrl-C");
        // Interrupted (130), or done before the signal came.
        assert!(matches!(status.code(), Some(130) | Some(0)), "{extra:?} at {after_ms} ms: {status:?}");
        for f in ["f.bin", "f.bin.zst"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The table's figures mean what they say and read at a glance: a one-phase run's rate is its
/// phase's; over several phases there is no rate over a span holding pauses; checks are rounded to
/// what they compare; a phase of stats, lists and deletes shows operations per second.
#[test]
fn the_table_figures_are_what_they_say() {
    let dir = tempdir("figures");
    let json = dir.join("r.json");
    let uri = format!("target.uri=\"file://{}\"", dir.join("out").display());
    let o = run(&["run", &workload("ckpt.toml"), "--set", &uri, "--json-report", json.to_str().unwrap()]);
    let text = shown(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["phases"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["gbps"], r["phases"][0]["gbps"], "{r}");
    assert_eq!(r["seconds"], r["phases"][0]["seconds"], "{r}");
    // A check's observed value: two decimals here (its threshold, 0.05, has two... plus one).
    let check = text.lines().find(|l| l.contains("throughput GB/s")).expect(&text);
    let observed = check.split_whitespace().rev().nth(2).unwrap();
    assert!(observed.split('.').nth(1).is_some_and(|d| d.len() == 3), "{check}");

    let o = run(&[
        "run",
        &workload("objects.toml"),
        "--set",
        &format!("target.uri=\"file://{}\"", dir.join("objects").display()),
        "--set",
        "params.count=8",
        "--set",
        "params.phases=[\"put\", \"stat\", \"list\", \"delete\"]",
    ]);
    let text = shown(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let headline = text.lines().nth(1).unwrap();
    assert!(headline.contains("over 4 phases") && !headline.contains("GB/s"), "{text}");
    for phase in ["stat", "list", "delete"] {
        let row = text.lines().find(|l| l.starts_with(phase)).expect(&text);
        let cells: Vec<&str> = row.split_whitespace().collect();
        // name, "0 B" (two words), ops, seconds, then the rate: none in GB/s, operations per second.
        assert!(cells[5] == "-" && row.ends_with(" ops/s"), "{row}");
    }
    // Sixteen ranks' metrics named alike are one line each family, with the detail in the JSON.
    let o = run(&[
        "run",
        &workload("mlperf-ckpt-8b-scaled.toml"),
        "--set",
        "target.uri=\"null://\"",
        "--set",
        "params.simulate_ranks=16",
        "--set",
        "params.num_checkpoints_read=0",
        "--set",
        "params.num_checkpoints_write=1",
        "--set",
        "params.rules=false",
    ]);
    let text = shown(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("metric rank_N_save_GB_per_second, 16 of them: min "), "{text}");
    assert!(!text.contains("metric rank_3_save"), "{text}");
    std::fs::remove_dir_all(dir).ok();
}
