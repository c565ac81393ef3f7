//! Reads, stats, lists, deletes and phases, through the shipped plugins: what a user looks at after
//! a run that saves and restores — the phases' figures, a corrupted object found, cold reads, and
//! one clear line when an object is missing, truncated or the server goes away.

use crate::azure::{azurite, bin_az, Container};
use crate::common::*;
use crate::objects::Remote;
use crate::s3::{bin_s3, Bucket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const SIZE: u64 = 3 << 20;
const OBJECT: u64 = SIZE + 24 + 4; // payload, header, CRC32C footer

/// `run workloads/objects.toml` with 8 fixed objects of SIZE payload at `uri`, the JSON report in
/// `report`, and more `--set`s.
fn objects(mut cmd: Command, uri: &str, report: &Path, sets: &[&str]) -> (Output, serde_json::Value) {
    cmd.args(["run", &workload("objects.toml"), "--json-report", report.to_str().unwrap()])
        .args(["--set", &format!("target.uri={uri}"), "--set", "params.count=8"])
        .args(["--set", "params.distribution=\"fixed\"", "--set", &format!("params.size={SIZE}")]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    let json = std::fs::read(report).map(|b| serde_json::from_slice(&b).unwrap()).unwrap_or(serde_json::Value::Null);
    (out, json)
}

fn text(o: &Output) -> String {
    shown(o)
}

fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{report}"))
}

#[test]
fn phases_are_reported_with_their_own_figures() {
    let dir = tempdir("phases");
    let uri = format!("file://{}", dir.join("out").display());
    let phases = r#"params.phases=["put","get","stat","list","delete"]"#;
    let (o, r) = objects(bin(), &uri, &dir.join("r.json"), &[phases]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let names: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["put", "get", "stat", "list", "delete"], "{r}");
    let (put, get) = (phase(&r, "put"), phase(&r, "get"));
    assert_eq!((put["written"].as_u64(), put["writes"].as_u64()), (Some(8 * OBJECT), Some(8)), "{put}");
    assert_eq!(
        (get["read_bytes"].as_u64(), get["reads"].as_u64(), get["written"].as_u64()),
        (Some(8 * OBJECT), Some(8), Some(0))
    );
    assert_eq!(get["read_failures"], 0);
    for p in [put, get] {
        assert!(p["gbps"].as_f64().unwrap() > 0.0 && p["seconds"].as_f64().unwrap() > 0.0, "{p}");
        let l = &p["latency_us"];
        assert!(l["p50"].as_u64().unwrap() <= l["p99"].as_u64().unwrap(), "{p}");
        assert!(l["p99"].as_u64().unwrap() <= l["max"].as_u64().unwrap(), "{p}");
        assert!(l["p999"].is_u64(), "{p}");
    }
    // Each phase's time split holds what its own work took: the put generated and wrote, the get
    // read; neither holds the other's.
    let (ps, gs) = (&put["time_split"], &get["time_split"]);
    let s = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(s(ps, "generate_s") > 0.0 && s(ps, "writes_in_flight_s") > 0.0, "{ps}");
    assert_eq!((s(ps, "read_calls_s"), s(ps, "reads_in_flight_s")), (0.0, 0.0), "{ps}");
    assert!(s(gs, "read_calls_s") > 0.0 && s(gs, "reads_in_flight_s") > 0.0, "{gs}");
    assert_eq!((s(gs, "generate_s"), s(gs, "writes_in_flight_s")), (0.0, 0.0), "{gs}");
    assert!(s(gs, "reads_in_flight_s") <= s(gs, "window_s") + 1e-3, "{gs}");
    assert_eq!((phase(&r, "stat")["ops"].as_u64(), phase(&r, "stat")["bytes"].as_u64()), (Some(8), Some(0)));
    assert_eq!(phase(&r, "list")["meta_ops"], 1);
    assert_eq!(phase(&r, "delete")["ops"], 8);
    // Everything the plugin checked passed: the stat sizes, the listing's count and bytes, the deletes.
    for c in r["checks"].as_array().unwrap() {
        assert_eq!(c["passed"], true, "{c}");
    }
    assert!(files_under(&dir.join("out")).is_empty(), "delete left {:?}", files_under(&dir.join("out")));
    // The table has one row per phase.
    let t = text(&o);
    for name in names {
        assert!(t.lines().any(|l| l.starts_with(name)), "no row for {name}:\n{t}");
    }
    assert!(t.contains("  put time: generating "), "{t}");
    assert!(t.contains("  get time: reads in flight "), "{t}");
    // Off a terminal, the progress log says when each phase starts.
    assert!(t.contains("progress: phase get started"), "{t}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_flipped_byte_is_found_by_verify_and_crc_and_not_by_none() {
    let dir = tempdir("flipped");
    let uri = format!("file://{}", dir.join("out").display());
    let (o, _) = objects(bin(), &uri, &dir.join("w.json"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let victim = dir.join("out/obj-000003.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1_000_003] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();
    let get = |check: &str| {
        let sets = [r#"params.phases=["get"]"#, &format!("params.get_check=\"{check}\"")];
        objects(bin(), &uri, &dir.join(format!("{check}.json")), &sets)
    };
    let (o, r) = get("verify");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("obj-000003.bin") && t.contains("differs at byte offset 1000003"), "{t}");
    assert_eq!(phase(&r, "get")["read_failures"], 1, "{r}");
    assert_eq!(r["read_failure_list"][0]["name"], "obj-000003.bin");
    let (o, _) = get("crc");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("obj-000003.bin") && t.contains("CRC32C mismatch"), "{t}");
    // `none` reads and counts, and checks nothing: the flipped byte goes unseen, which is what the
    // check is for (a pure read-throughput measurement).
    let (o, r) = get("none");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(phase(&r, "get")["read_bytes"].as_u64(), Some(8 * OBJECT));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cold_reads_drop_the_page_cache_and_keep_keeps_it() {
    let dir = tempdir("cold");
    let uri = format!("file://{}", dir.join("out").display());
    let phases = r#"params.phases=["put","get"]"#;
    let (o, r) = objects(bin(), &uri, &dir.join("drop.json"), &[phases]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let cached = phase(&r, "get")["cached_fraction"].as_f64().unwrap();
    assert!(cached < 0.01, "after cache = \"drop\", {cached} of the pages were resident");
    assert!(phase(&r, "put")["cached_fraction"].is_null());
    std::fs::remove_dir_all(dir.join("out")).ok();
    let (o, r) = objects(bin(), &uri, &dir.join("keep.json"), &[phases, r#"target.cache="keep""#]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let cached = phase(&r, "get")["cached_fraction"].as_f64().unwrap();
    assert!(cached > 0.9, "with cache = \"keep\" the just-written pages were {cached} resident");
    assert!(text(&o).contains("in page cache at start"), "{}", text(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn uncached_buffered_writes_hold_the_same_bytes_and_say_so() {
    let dir = tempdir("uncached");
    let uri = format!("file://{}", dir.join("out").display());
    let phases = r#"params.phases=["put","get"]"#;
    let verify = r#"params.get_check="verify""#;
    // "auto": uncached where the kernel takes RWF_DONTCACHE, plain otherwise; either way the files
    // read back identical and the report names what was used.
    let (o, r) = objects(bin(), &uri, &dir.join("auto.json"), &[phases, verify, r#"target.file.uncached="auto""#]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!((phase(&r, "get")["reads"].as_u64(), r["read_failures"].as_u64()), (Some(8), Some(0)), "{r}");
    let engine = r["engine"].as_str().unwrap().to_string();
    let supported = engine.ends_with(", uncached");
    assert!(
        supported || text(&o).contains("uncached buffered writes are not supported here"),
        "{engine}: {}",
        text(&o)
    );
    std::fs::remove_dir_all(dir.join("out")).ok();
    // true: required; where the kernel lacks it the run stops before writing, naming the key.
    let (o, r) = objects(bin(), &uri, &dir.join("on.json"), &[phases, verify, "target.file.uncached=true"]);
    if supported {
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(r["read_failures"].as_u64(), Some(0), "{r}");
        assert!(r["engine"].as_str().unwrap().ends_with(", uncached"), "{r}");
    } else {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("target.file.uncached") && text(&o).contains("RWF_DONTCACHE"), "{}", text(&o));
    }
    std::fs::remove_dir_all(dir.join("out")).ok();
    // O_DIRECT writes bypass the cache already: the key changes nothing and is accepted.
    let (o, r) = objects(
        bin(),
        &uri,
        &dir.join("d.json"),
        &[phases, verify, "target.file.uncached=true", "target.file.direct=true"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!r["engine"].as_str().unwrap().contains("uncached"), "{r}");
    std::fs::remove_dir_all(dir.join("out")).ok();
    let (o, _) = objects(bin(), &uri, &dir.join("bad.json"), &[phases, r#"target.file.uncached="sometimes""#]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("uncached") && text(&o).contains("sometimes"), "{}", text(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn readahead_advice_reads_the_same_bytes_and_a_bad_value_names_the_key() {
    let dir = tempdir("readahead");
    let uri = format!("file://{}", dir.join("out").display());
    let phases = r#"params.phases=["put","get"]"#;
    for (i, ra) in ["off", "sequential", "normal"].iter().enumerate() {
        let set = format!("target.readahead=\"{ra}\"");
        let report = dir.join(format!("r{i}.json"));
        let (o, r) = objects(bin(), &uri, &report, &[phases, r#"params.get_check="verify""#, &set]);
        assert_eq!(o.status.code(), Some(0), "readahead {ra}: {}", text(&o));
        assert_eq!((phase(&r, "get")["reads"].as_u64(), r["read_failures"].as_u64()), (Some(8), Some(0)), "{ra}");
        std::fs::remove_dir_all(dir.join("out")).ok();
    }
    let (o, _) = objects(bin(), &uri, &dir.join("bad.json"), &[phases, r#"target.readahead="sideways""#]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("readahead") && text(&o).contains("sideways"), "{}", text(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_missing_or_truncated_object_is_one_line_and_exit_3() {
    let dir = tempdir("missing");
    let uri = format!("file://{}", dir.join("out").display());
    let get = [r#"params.phases=["get"]"#];
    let (o, _) = objects(bin(), &uri, &dir.join("m.json"), &get);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let last = err.trim().lines().last().unwrap();
    assert!(last.starts_with("error: ") && last.contains("obj-000000.bin") && last.contains("No such file"), "{err}");
    let (o, _) = objects(bin(), &uri, &dir.join("w.json"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let victim = dir.join("out/obj-000005.bin");
    std::fs::OpenOptions::new().write(true).open(&victim).unwrap().set_len(OBJECT - 100).unwrap();
    let (o, r) = objects(bin(), &uri, &dir.join("t.json"), &get);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let last = err.trim().lines().last().unwrap();
    assert!(last.contains("obj-000005.bin") && last.contains("shorter than the"), "{err}");
    assert_eq!(r["error_kind"], "storage", "{r}");
    // A read never writes: the truncated file is as it was.
    assert_eq!(std::fs::metadata(&victim).unwrap().len(), OBJECT - 100);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_1_0_plugin_runs_as_one_phase() {
    let dir = tempdir("phase-1-0");
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects-sdk-1.0.0.wasm");
    let wl = dir.join("w.toml");
    std::fs::write(
        &wl,
        format!("name = \"t\"\nplugin = \"{}\"\n[params]\ncount = 3\nsize = 10000\n", plugin.display()),
    )
    .unwrap();
    let report = dir.join("r.json");
    let uri = format!("target.uri=file://{}", dir.join("out").display());
    let o = run(&["run", wl.to_str().unwrap(), "-q", "--set", &uri, "--json-report", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["plugin"]["contract"], "dgen:plugin@1.0.0", "{r}");
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "{r}");
    assert_eq!((phases[0]["name"].as_str(), phases[0]["writes"].as_u64()), (Some("run"), Some(3)));
    assert_eq!(phases[0]["written"], r["bytes"]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_checkpoint_is_restored_by_a_later_run_with_the_same_seed() {
    let dir = tempdir("restore");
    let uri = format!("target.uri=file://{}", dir.join("ckpt").display());
    let report = dir.join("r.json");
    let ckpt = |sets: &[&str]| {
        let mut c = bin();
        c.args(["run", &workload("ckpt.toml"), "-q", "--json-report", report.to_str().unwrap(), "--set", &uri])
            .args(["--set", r#"params.model="tiny""#, "--set", "params.ranks=2", "--set", "params.steps=1"])
            // The workload's throughput floor is for a real disk, not for one shared by the tests.
            .args(["--set", "params.min_gbps=0"]);
        for s in sets {
            c.args(["--set", s]);
        }
        let o = c.output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (o, r)
    };
    let (o, r) = ckpt(&["params.restore=1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let names: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["save", "restore"], "{r}");
    let shards: u64 = r["object_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["name"].as_str().unwrap().ends_with(".safetensors"))
        .map(|o| o["size"].as_u64().unwrap())
        .sum();
    assert_eq!(phase(&r, "restore")["read_bytes"].as_u64(), Some(shards), "{r}");
    // A later run re-reads and verifies it without writing.
    let (o, r) = ckpt(&["params.save=false", "params.restore=1", r#"params.restore_check="verify""#]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(r["objects"], 0, "{r}");
    let restore = phase(&r, "restore");
    assert_eq!((restore["read_bytes"].as_u64(), restore["written"].as_u64()), (Some(shards), Some(0)), "{r}");
    // Each shard's header length, header and every tensor: more reads than shards.
    assert!(restore["reads"].as_u64().unwrap() > 2 * 2, "{restore}");
    assert_eq!(restore["cached_fraction"].as_f64(), Some(0.0), "{restore}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn s3_reads_ranges_and_fails_in_one_line_on_a_missing_object_and_a_lost_server() {
    let dir = tempdir("s3-reads");
    let bucket = Bucket::new("reads");
    let endpoint = crate::s3::moto().endpoint.clone();
    let phases = r#"params.phases=["put","get","stat","list"]"#;
    let (o, r) =
        objects(bin_s3(&endpoint), &bucket.uri("r"), &dir.join("a.json"), &[phases, "params.range_size=1000000"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let get = phase(&r, "get");
    // Random 1 MB ranges, about as many bytes as the objects hold, all verified.
    assert_eq!(get["reads"].as_u64(), Some(8 * (OBJECT / 1_000_000)), "{get}");
    assert_eq!(get["read_failures"], 0);
    assert!(get["cached_fraction"].is_null(), "{get}");
    let get_only = [r#"params.phases=["get"]"#];
    let (o, _) = objects(bin_s3(&endpoint), &bucket.uri("none"), &dir.join("b.json"), &get_only);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(last.starts_with("error: s3://") && last.contains("none/obj-000000.bin"), "{err}");
    // An object cut short in the store is not the one written: one line, exit 3.
    use crate::objects::Remote;
    bucket.corrupt("r/obj-000002.bin", vec![7u8; 1000]);
    let (o, _) = objects(bin_s3(&endpoint), &bucket.uri("r"), &dir.join("t.json"), &get_only);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(last.contains("obj-000002.bin") && last.contains("shorter than the"), "{err}");
    // One put there by someone else is not the engine's: not read at all.
    bucket.put("r/obj-000002.bin", vec![7u8; 1000]);
    let (o, _) = objects(bin_s3(&endpoint), &bucket.uri("r"), &dir.join("u.json"), &get_only);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(last.contains("obj-000002.bin") && last.contains("carries no dgen-engine identity"), "{err}");
    // The server goes away while objects are being read.
    let big = Bucket::new("reads-outage");
    let sets = ["params.count=24", "params.size=25165824", "target.retries=0"];
    let (o, _) = objects(bin_s3(&endpoint), &big.uri("o"), &dir.join("c.json"), &sets);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let relay = Relay::start(&endpoint);
    let mut c = bin_s3(&relay.endpoint());
    c.args(["run", &workload("objects.toml"), "-q", "--set", &format!("target.uri={}", big.uri("o"))])
        .args(["--set", r#"params.phases=["get"]"#, "--set", r#"params.get_check="none""#])
        .args(["--set", "target.retries=0", "--set", "pipeline.buffer_size=\"1MiB\""])
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    relay.wait_for(20_000);
    relay.outage(Duration::from_secs(3));
    let out = child.wait_with_output().unwrap();
    let err = shown(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    let lost = last.contains("cannot reach") || last.contains("connection was lost");
    assert!(last.starts_with("error: s3://") && lost, "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn azure_reads_back_and_a_missing_or_shorter_blob_is_one_line() {
    let dir = tempdir("az-reads");
    let container = Container::new("reads");
    let conn = azurite().connection_string();
    let phases = r#"params.phases=["put","get","list","delete"]"#;
    let (o, r) =
        objects(bin_az(&conn), &container.uri("r"), &dir.join("a.json"), &[phases, r#"params.get_check="crc""#]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(phase(&r, "get")["read_bytes"].as_u64(), Some(8 * OBJECT), "{r}");
    assert!(container.list("r/").is_empty(), "delete left {:?}", container.list("r/"));
    // A blob cut short in the store is not the one written: one line, exit 3.
    let (o, _) = objects(bin_az(&conn), &container.uri("t"), &dir.join("c.json"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    crate::objects::Remote::corrupt(&container, "t/obj-000002.bin", vec![7u8; 1000]);
    let (o, _) = objects(bin_az(&conn), &container.uri("t"), &dir.join("d.json"), &[r#"params.phases=["get"]"#]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(last.contains("obj-000002.bin") && last.contains("shorter than the"), "{err}");
    let (o, _) = objects(bin_az(&conn), &container.uri("r"), &dir.join("b.json"), &[r#"params.phases=["get"]"#]);
    let err = shown(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap();
    assert!(last.starts_with("error: az://") && last.contains("r/obj-000000.bin"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn azurite_stopped_mid_read_fails_the_run_in_one_line() {
    let dir = tempdir("az-read-stop");
    let server = crate::azure::Azurite::start(Some(&dir.join("azurite")));
    let container = Container::on(&server, "readstop");
    let relay = Relay::start(&server.endpoint);
    let conn = server.connection_string().replace(&format!(":{}/", server.port), &format!(":{}/", relay.port()));
    let sets = ["params.count=24", "params.size=25165824", "target.retries=0"];
    let (o, _) = objects(bin_az(&conn), &container.uri("s"), &dir.join("w.json"), &sets);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut c = bin_az(&conn);
    c.args(["run", &workload("objects.toml"), "-q", "--set", &format!("target.uri={}", container.uri("s"))])
        .args(["--set", r#"params.phases=["get"]"#, "--set", r#"params.get_check="none""#])
        .args(["--set", "pipeline.buffer_size=\"1MiB\""])
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .stderr(std::process::Stdio::piped());
    let before = relay.relayed.load(std::sync::atomic::Ordering::Relaxed);
    let child = c.spawn().unwrap();
    relay.wait_for(before + 20_000);
    server.stop();
    let out = child.wait_with_output().unwrap();
    let err = shown(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(last.starts_with("error: az://") && last.contains("cannot reach"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
