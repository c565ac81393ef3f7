//! The operations engine through the library: random overwrites keep the live region's dedup and
//! compression exact, the read-back finds planted lost writes, torn and corrupt blocks.

use crate::common::{bin, shown, workload};
use dgen_engine::generator::region::RegionData;
use dgen_engine::generator::{Generator, Profile};
use dgen_engine::ops::check::ProblemKind;
use dgen_engine::ops::genmap::GenMap;
use dgen_engine::ops::spec::{JobSpec, OpKind};
use dgen_engine::ops::{self, Driver, JobEnv, Region};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn shm_dir(tag: &str) -> std::path::PathBuf {
    let d = std::path::PathBuf::from(format!("/dev/shm/dgen-ops-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn region(path: &std::path::Path, size: u64, direct: bool) -> Region {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    let f = o.open(path).unwrap();
    f.set_len(size).unwrap();
    Region::single(Arc::new(f), path.display().to_string(), 0, size, direct, if direct { 4096 } else { 1 })
}

fn run(spec: &str, r: &Region, data: &RegionData, map: &GenMap, prefill: bool, driver: Driver) -> ops::JobOutcome {
    let spec = JobSpec::parse(spec).unwrap();
    ops::check_against(&spec, r, data.unit(), data.unit()).unwrap();
    let cancel = AtomicBool::new(false);
    let env =
        JobEnv { region: r, data, map, journal: None, cancel: &cancel, seed: 9, driver, prefill, check_threads: 2 };
    let out = ops::run(&spec, &env).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    out
}

/// Distinct blocks and the zstd -1 ratio per block of the live region.
fn measure(path: &std::path::Path, unit: usize) -> (f64, f64) {
    let bytes = std::fs::read(path).unwrap();
    let mut seen = HashSet::new();
    let mut packed = 0usize;
    for b in bytes.chunks(unit) {
        seen.insert(xxhash_rust::xxh3::xxh3_128(b));
        packed += zstd::bulk::compress(b, 1).unwrap().len();
    }
    let n = bytes.len() / unit;
    (n as f64 / seen.len() as f64, bytes.len() as f64 / packed as f64)
}

#[test]
fn overwrites_keep_dedup_and_compression_exact_and_verify_passes() {
    let dir = shm_dir("exact");
    let path = dir.join("lun0");
    let size = 64u64 << 20;
    let r = region(&path, size, true);
    let data = RegionData::new(Generator::new(42, Profile::new(3.0, 2.0, 8192).unwrap()), 1, size / 8192);
    let map = GenMap::new(data.blocks(), 0);
    let blocks = data.blocks();
    let job = format!(
        r#"{{"mix":[{{"op":"write","bs":"8KiB"}}],"pattern":"random","depth":16,"ops":{},"verify":"end"}}"#,
        3 * blocks
    );
    let out = run(&job, &r, &data, &map, true, Driver::IoUring);
    assert_eq!(out.prefill.as_ref().unwrap().bytes, size);
    let w = out.figures(OpKind::Write);
    assert_eq!(w.total_ios, 3 * blocks);
    let check = out.check.unwrap();
    assert_eq!((check.checked, check.good, check.failed()), (blocks, blocks, 0), "{check:?}");
    let (d, c) = measure(&path, 8192);
    assert!((d - 3.0).abs() / 3.0 < 0.02, "dedup {d}");
    assert!((c - 2.0).abs() / 2.0 < 0.05, "compress {c}");
    // The generations moved: most blocks were written more than once.
    let moved = (0..blocks).filter(|&b| map.get(b) > 2).count() as u64;
    assert!(moved > blocks / 3, "{moved} of {blocks}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_read_back_tells_lost_torn_and_corrupt_blocks_apart() {
    let dir = shm_dir("lost");
    let path = dir.join("lun0");
    let size = 16u64 << 20;
    let unit = 4096u64;
    let r = region(&path, size, false);
    // Dedup 1: every block unique, so every lost write is visible.
    let data = RegionData::new(Generator::new(5, Profile::new(1.0, 2.0, unit).unwrap()), 2, size / unit);
    let map = GenMap::new(data.blocks(), 0);
    let job = r#"{"mix":[{"op":"write","bs":"4KiB"}],"pattern":"random","depth":8,"ops":8192}"#;
    run(job, &r, &data, &map, true, Driver::Psync);
    let old = std::fs::read(&path).unwrap();
    run(job, &r, &data, &map, false, Driver::IoUring);
    // Blocks written since the copy, put back as they were: lost writes.
    let rewritten: Vec<u64> = (0..data.blocks())
        .filter(|&b| {
            let at = (b * unit) as usize;
            let mut now = vec![0u8; unit as usize];
            r.file().read_exact_at(&mut now, b * unit).unwrap();
            now != old[at..at + unit as usize]
        })
        .collect();
    assert!(rewritten.len() > 100);
    let lost: Vec<u64> = rewritten.iter().copied().step_by(37).take(5).collect();
    for &b in &lost {
        let at = (b * unit) as usize;
        r.file().write_all_at(&old[at..at + unit as usize], b * unit).unwrap();
    }
    let torn = rewritten[1];
    let at = (torn * unit) as usize;
    r.file().write_all_at(&old[at..at + 2048], torn * unit).unwrap();
    let corrupt = rewritten[2];
    let mut byte = [0u8; 1];
    r.file().read_exact_at(&mut byte, corrupt * unit + 100).unwrap();
    r.file().write_all_at(&[byte[0] ^ 0x40], corrupt * unit + 100).unwrap();
    let out = run(r#"{"verify":"only"}"#, &r, &data, &map, false, Driver::IoUring);
    let c = out.check.unwrap();
    assert_eq!((c.lost_writes, c.torn, c.corrupt), (lost.len() as u64, 1, 1), "{c:?}");
    let offsets =
        |k: ProblemKind| -> Vec<u64> { c.problems.iter().filter(|p| p.kind == k).map(|p| p.offset).collect() };
    let mut want: Vec<u64> = lost.iter().map(|b| b * unit).collect();
    want.sort();
    assert_eq!(offsets(ProblemKind::LostWrite), want);
    assert_eq!(offsets(ProblemKind::Torn), vec![torn * unit]);
    assert_eq!(offsets(ProblemKind::Corrupt), vec![corrupt * unit]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Through the CLI: the `blocks` plugin and workloads/blocks.toml ----

/// `dgen-engine MODE workloads/blocks.toml` with its target in `root/out` and more `--set`s.
fn blocks_command(mode: &str, root: &Path, sets: &[String]) -> std::process::Command {
    let mut cmd = bin();
    cmd.args([mode, &workload("blocks.toml")])
        .args(["--set", &format!("target.uri=\"file://{}\"", root.join("out").display())]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

/// `run` (or `verify`) workloads/blocks.toml on `root`, with the JSON report and more `--set`s.
fn blocks(mode: &str, root: &Path, sets: &[String]) -> (Output, serde_json::Value) {
    let report = root.join(format!("report-{mode}-{}.json", sets.len()));
    let _ = std::fs::remove_file(&report);
    let out = blocks_command(mode, root, sets).args(["--json-report", report.to_str().unwrap()]).output().unwrap();
    let json = std::fs::read(&report).map(|b| serde_json::from_slice(&b).unwrap()).unwrap_or(serde_json::Value::Null);
    (out, json)
}

fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{report}"))
}

fn phases(list: &str) -> String {
    format!("params.phases=[{list}]")
}

#[test]
fn the_blocks_workload_reports_fio_figures_a_series_and_a_clean_read_back() {
    let dir = shm_dir("blocks");
    let size = 32u64 << 20;
    let (o, r) = blocks(
        "run",
        &dir,
        &[
            format!("params.size={size}"),
            phases(
                r#"{name="oltp",mix=[{op="read",weight=70,bs="8KiB"},{op="write",weight=30,bs="8KiB"}],pattern="random",depth=16,duration=3,ramp=1,series_interval=0.5,verify="end",min_iops=100}"#,
            ),
        ],
    );
    assert!(o.status.success(), "{}", shown(&o));
    let p = phase(&r, "oltp");
    for kind in ["read", "write"] {
        let k = &p[kind];
        assert!(k["iops"].as_f64().unwrap() > 100.0, "{k}");
        assert_eq!(k["io_bytes"].as_u64().unwrap(), k["total_ios"].as_u64().unwrap() * 8192, "{k}");
        assert!(k["bw_bytes"].as_u64().unwrap() > 0 && k["runtime"].as_u64().unwrap() >= 1900, "{k}");
        let pct = &k["clat_ns"]["percentile"];
        let (p50, p99) = (pct["50.000000"].as_u64().unwrap(), pct["99.000000"].as_u64().unwrap());
        assert!(0 < p50 && p50 <= p99 && pct["99.990000"].is_u64(), "{k}");
    }
    let reads = p["read"]["total_ios"].as_f64().unwrap();
    let share = reads / (reads + p["write"]["total_ios"].as_f64().unwrap());
    assert!((share - 0.7).abs() < 0.02, "read share {share}");
    let series = p["series"].as_array().unwrap();
    assert!(series.len() >= 7, "{} points", series.len());
    assert_eq!(series[0]["ramp"], true);
    assert_eq!(series[3]["ramp"], false);
    assert!(series[3]["read"]["ios"].as_u64().unwrap() > 0 && series[3]["write"]["lat_p99_ns"].as_u64().unwrap() > 0);
    let check = &p["region_check"];
    assert_eq!((check["blocks"].as_u64(), check["good"].as_u64()), (Some(size / 8192), Some(size / 8192)), "{check}");
    assert_eq!(phase(&r, "prefill")["prefill"]["bytes"].as_u64(), Some(size));
    let text = shown(&o);
    assert!(text.contains("oltp             read") && text.contains("0 lost writes"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn random_overwrites_through_the_cli_keep_dedup_3_and_compress_2() {
    let dir = shm_dir("cli-exact");
    let size = 48u64 << 20;
    let blocks_n = size / 8192;
    let (o, _) = blocks(
        "run",
        &dir,
        &[
            format!("params.size={size}"),
            phases(&format!(
                r#"{{name="over",mix=[{{op="write",bs="8KiB"}}],depth=32,ops={},verify="end"}}"#,
                3 * blocks_n
            )),
        ],
    );
    assert!(o.status.success(), "{}", shown(&o));
    let (d, c) = measure(&dir.join("out/lun0"), 8192);
    assert!((d - 3.0).abs() / 3.0 < 0.02, "dedup {d}");
    assert!((c - 2.0).abs() / 2.0 < 0.05, "compress {c}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_rate_cap_holds_per_interval() {
    let dir = shm_dir("rate");
    let (o, r) = blocks(
        "run",
        &dir,
        &[
            "params.size=\"16MiB\"".into(),
            phases(
                r#"{name="capped",mix=[{op="read",weight=70,bs="8KiB"},{op="write",weight=30,bs="8KiB"}],depth=16,duration=10,rate_iops=20000}"#,
            ),
        ],
    );
    assert!(o.status.success(), "{}", shown(&o));
    let series = phase(&r, "capped")["series"].as_array().unwrap().clone();
    let full: Vec<f64> = series
        .iter()
        .filter(|p| p["seconds"].as_f64() == Some(1.0))
        .map(|p| ["read", "write"].iter().map(|k| p[k]["ios"].as_f64().unwrap_or(0.0)).sum())
        .collect();
    assert!(full.len() >= 9, "{series:?}");
    for ios in &full {
        assert!((ios - 20000.0).abs() <= 200.0, "an interval did {ios} operations: {full:?}");
    }
    // Think time: one slot waiting 50 ms after each completion does about 20 operations a second.
    let (o, r) = blocks(
        "run",
        &dir,
        &[
            "params.size=\"16MiB\"".into(),
            phases(r#"{name="slow",mix=[{op="read",bs="8KiB"}],depth=1,duration=2,think=0.05}"#),
        ],
    );
    assert!(o.status.success(), "{}", shown(&o));
    let iops = phase(&r, "slow")["read"]["iops"].as_f64().unwrap();
    assert!((15.0..=21.0).contains(&iops), "{iops} IOPS with 50 ms of think time");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The journaled region's file and its blocks, for planting faults.
struct Planted {
    lost: Vec<u64>,
    torn: u64,
    corrupt: u64,
}

/// Puts back whole old blocks (lost writes), half of one (torn) and flips a byte of another.
fn plant(path: &Path, old: &[u8], unit: u64) -> Planted {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let now = std::fs::read(path).unwrap();
    let u = unit as usize;
    let changed: Vec<u64> =
        (0..now.len() / u).filter(|&b| now[b * u..(b + 1) * u] != old[b * u..(b + 1) * u]).map(|b| b as u64).collect();
    assert!(changed.len() > 50, "only {} blocks were rewritten", changed.len());
    let lost: Vec<u64> = changed.iter().copied().step_by(7).take(6).collect();
    for &b in &lost {
        f.write_all_at(&old[b as usize * u..(b as usize + 1) * u], b * unit).unwrap();
    }
    let (torn, corrupt) = (changed[1], changed[2]);
    f.write_all_at(&old[torn as usize * u..torn as usize * u + u / 2], torn * unit).unwrap();
    let at = corrupt * unit + 333;
    f.write_all_at(&[now[at as usize] ^ 0x10], at).unwrap();
    Planted { lost, torn, corrupt }
}

#[test]
fn verify_with_the_journal_names_lost_torn_and_corrupt_blocks_and_a_kill_leaves_none() {
    let dir = shm_dir("journal");
    let unit = 4096u64;
    // Dedup 1: every block's content is its own, so every lost write can be seen.
    let common = [
        "data.dedup=1".to_string(),
        "data.dedup_unit=\"4KiB\"".into(),
        "params.size=\"8MiB\"".into(),
        "params.journal=\"lun0.journal\"".into(),
    ];
    let writes = phases(r#"{name="w",mix=[{op="write",bs="4KiB"},{op="read",bs="4KiB"}],depth=8,ops=6000}"#);
    let with = |extra: &[String]| -> Vec<String> { common.iter().cloned().chain(extra.iter().cloned()).collect() };
    let (o, _) = blocks("run", &dir, &with(std::slice::from_ref(&writes)));
    assert!(o.status.success(), "{}", shown(&o));
    let path = dir.join("out/lun0");
    let old = std::fs::read(&path).unwrap();
    // A second run (a new process) goes on from the journal: no prefill.
    let (o, r) = blocks("run", &dir, &with(&[writes.clone(), "params.prefill_depth=4".into()]));
    assert!(o.status.success(), "{}", shown(&o));
    assert!(
        r["phases"].as_array().unwrap().iter().all(|p| p["prefill"].is_null()),
        "the journal made the prefill unnecessary: {r}"
    );
    let (o, r) = blocks("verify", &dir, &with(&[phases("")]));
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    assert_eq!(phase(&r, "verify")["region_check"]["good"].as_u64(), Some(2048));

    let p = plant(&path, &old, unit);
    let (o, r) = blocks("verify", &dir, &with(&[phases("")]));
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    let c = &phase(&r, "verify")["region_check"];
    assert_eq!(
        (c["lost_writes"].as_u64(), c["torn"].as_u64(), c["corrupt"].as_u64()),
        (Some(6), Some(1), Some(1)),
        "{c}"
    );
    let at = |kind: &str| -> Vec<u64> {
        c["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["kind"] == kind)
            .map(|x| x["offset"].as_u64().unwrap())
            .collect()
    };
    let mut lost: Vec<u64> = p.lost.iter().map(|b| b * unit).collect();
    lost.sort();
    assert_eq!(at("lost_write"), lost);
    assert_eq!(at("torn"), vec![p.torn * unit]);
    assert_eq!(at("corrupt"), vec![p.corrupt * unit]);
    let text = shown(&o);
    assert!(text.contains(&format!("block at byte {}: LOST WRITE", lost[0])), "{text}");

    // Start over, and kill -9 a run in the middle of its writes.
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    let mut cmd = blocks_command(
        "run",
        &dir,
        &with(&[phases(r#"{name="w",mix=[{op="write",bs="4KiB"}],depth=32,duration=60}"#)]),
    );
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let (o, r) = blocks("verify", &dir, &with(&[phases("")]));
    let c = &phase(&r, "verify")["region_check"];
    assert_eq!(o.status.code(), Some(0), "{}\n{c}", shown(&o));
    assert_eq!((c["lost_writes"].as_u64(), c["checked"].as_u64()), (Some(0), Some(2048)), "{c}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_jobs_and_regions_are_refused_naming_the_key() {
    let dir = shm_dir("malformed");
    let size = "params.size=\"4MiB\"".to_string();
    for (phase_list, key) in [
        (r#"{name="x",mix=[{op="read",weight=0,bs="4KiB"}],duration=1}"#, "job key 'mix'"),
        (r#"{name="x",mix=[{op="write",bs=6144}],duration=1}"#, "job key 'mix[0].bs'"),
        (r#"{name="x",mix=[{op="read",bs="4KiB"}],depth=0,duration=1}"#, "job key 'depth'"),
        (r#"{name="x",mix=[{op="read",bs="4KiB"}]}"#, "job key 'duration'"),
        (r#"{name="x",mix=[{op="read",bs="4KiB"}],duration=1,pattern={zipf=-1}}"#, "job key 'pattern.zipf'"),
    ] {
        let (o, r) = blocks("run", &dir, &[size.clone(), phases(phase_list)]);
        let text = shown(&o);
        assert_eq!(o.status.code(), Some(2), "{phase_list}: {text}");
        assert!(text.contains(key), "{phase_list}: no '{key}' in {text}");
        assert_eq!(r["error_kind"], "workload", "{r}");
    }
    // A read-back of a region past the end of its file (verify does not extend it).
    let (o, _) = blocks("run", &dir, &[size.clone(), "params.journal=\"j\"".into(), phases("")]);
    assert!(o.status.success(), "{}", shown(&o));
    let (o, _) = blocks("verify", &dir, &["params.size=\"8MiB\"".into(), "params.journal=\"j\"".into(), phases("")]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("job key 'size'") && shown(&o).contains("past the end"), "{}", shown(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_ends_a_job_within_a_second() {
    let dir = shm_dir("ctrlc");
    let mut cmd = blocks_command(
        "run",
        &dir,
        &[
            "params.size=\"8MiB\"".into(),
            phases(r#"{name="long",mix=[{op="read",bs="8KiB"},{op="write",bs="8KiB"}],depth=16,duration=120}"#),
        ],
    );
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let t = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(130), "{}", shown(&o));
    assert!(took < std::time::Duration::from_secs(1), "Ctrl-C took {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_million_operations_cost_the_plugin_no_more_memory_than_a_few() {
    let dir = shm_dir("million");
    // The plugin's whole allowance is 24 MiB: anything kept per operation would pass it.
    let (o, r) = blocks(
        "run",
        &dir,
        &[
            "params.size=\"8MiB\"".into(),
            "limits.memory=\"24MiB\"".into(),
            phases(r#"{name="many",mix=[{op="read",bs="4KiB"},{op="write",bs="4KiB"}],depth=32,ops=1000000}"#),
            "data.dedup_unit=\"4KiB\"".into(),
        ],
    );
    assert!(o.status.success(), "{}", shown(&o));
    let p = phase(&r, "many");
    let total = p["read"]["total_ios"].as_u64().unwrap() + p["write"]["total_ios"].as_u64().unwrap();
    assert_eq!(total, 1_000_000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pool_of_objects_is_one_region_and_a_lost_write_names_its_object() {
    let dir = shm_dir("pool");
    let unit = 4096u64;
    let common: Vec<String> = vec![
        "data.dedup=1".into(),
        "data.dedup_unit=\"4KiB\"".into(),
        "params.objects=8".into(),
        "params.size=\"2MiB\"".into(),
        "params.journal=\"pool.journal\"".into(),
    ];
    let with = |extra: &[String]| -> Vec<String> { common.iter().cloned().chain(extra.iter().cloned()).collect() };
    let writes =
        phases(r#"{name="w",mix=[{op="write",bs="12KiB"},{op="read",bs="8KiB"}],depth=16,ops=4000,verify="end"}"#);
    let (o, r) = blocks("run", &dir, &with(std::slice::from_ref(&writes)));
    assert!(o.status.success(), "{}", shown(&o));
    assert_eq!(phase(&r, "w")["region_check"]["good"].as_u64(), Some(8 * 512), "{r}");
    let files: Vec<String> =
        crate::common::files_under(&dir.join("out")).into_iter().filter(|f| f.starts_with("lun0.")).collect();
    assert_eq!(files.len(), 8, "{files:?}");
    // Operations never cross from one object to the next: 12 KiB writes fit 2 MiB objects whole,
    // and every block of every object was read back good. Now an old block goes back into one.
    let path = dir.join("out/lun0.000003");
    let old = std::fs::read(&path).unwrap();
    let (o, _) = blocks("run", &dir, &with(std::slice::from_ref(&writes)));
    assert!(o.status.success(), "{}", shown(&o));
    let now = std::fs::read(&path).unwrap();
    let b = (0..now.len() / unit as usize)
        .find(|&b| now[b * 4096..(b + 1) * 4096] != old[b * 4096..(b + 1) * 4096])
        .unwrap();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&old[b * 4096..(b + 1) * 4096], b as u64 * unit).unwrap();
    let (o, r) = blocks("verify", &dir, &with(&[phases("")]));
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    let c = &phase(&r, "verify")["region_check"];
    assert_eq!(c["lost_writes"].as_u64(), Some(1), "{c}");
    let p = &c["problems"][0];
    assert_eq!(
        (p["offset"].as_u64(), p["object"].as_str().map(|s| s.ends_with("lun0.000003"))),
        (Some(b as u64 * unit), Some(true)),
        "{c}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
