//! Real MPI ranks (Open MPI's `mpirun`, on this machine, `--oversubscribe`): the ranks split the
//! work, the bytes are those of the same ranks run one by one with `--rank`, rank 0 writes one merged
//! report, and a rank that fails or is killed ends every rank within seconds. Built with
//! `--features mpi` (scripts/test does).
//!
//! `DGEN_TEST_MPIEXEC` names another launcher: MPICH's Hydra (`mpiexec.mpich`), for a build linked
//! against MPICH (`MPICC=mpicc.mpich`; README "Many hosts").

use crate::common::{bin, files_under, shown, tempdir, workload};
use crate::ranks::{blocks, HEADER};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PAYLOAD: u64 = 4 << 20;

/// The launcher to run, and whether it is Open MPI's (else MPICH's Hydra), from its `--version`.
fn launcher() -> &'static (String, bool) {
    static LAUNCHER: OnceLock<(String, bool)> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let exe = std::env::var("DGEN_TEST_MPIEXEC").unwrap_or_else(|_| "mpirun".into());
        let v = Command::new(&exe).arg("--version").output().unwrap_or_else(|e| panic!("{exe}: {e}"));
        let v = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
        let open_mpi = v.contains("Open MPI") || v.contains("OpenRTE");
        assert!(open_mpi || v.contains("HYDRA"), "{exe} is neither Open MPI's nor MPICH's launcher: {v}");
        (exe, open_mpi)
    })
}

fn mpirun(np: u32) -> Command {
    let (exe, open_mpi) = launcher();
    let mut c = Command::new(exe);
    if *open_mpi {
        c.args(["--oversubscribe", "--bind-to", "none", "-np", &np.to_string()])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl", "self,vader,tcp")
            .env("OMPI_MCA_btl_tcp_if_include", "lo")
            .env("OMPI_MCA_oob_tcp_if_include", "lo");
    } else {
        // Hydra runs more ranks than cores, binds nothing and passes the environment by default.
        c.args(["-launcher", "fork", "-n", &np.to_string()]);
    }
    c.arg(env!("CARGO_BIN_EXE_dgen-engine"));
    c
}

fn objects_args(out: &Path, report: &Path, count: u64, size: u64) -> Vec<String> {
    [
        "run",
        &workload("objects.toml"),
        "-q",
        "--json-report",
        report.to_str().unwrap(),
        "--seed",
        "11",
        "--set",
        &format!("target.uri=file://{}", out.display()),
        "--set",
        &format!("params.count={count}"),
        "--set",
        "params.distribution=\"fixed\"",
        "--set",
        "params.footer=false",
        "--set",
        &format!("params.size={size}"),
        "--set",
        "data.dedup=2",
        "--set",
        r#"params.phases=["put","get"]"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn text(o: &Output) -> String {
    shown(o)
}

#[test]
fn four_ranks_write_what_four_single_ranks_write_and_rank_0_merges_them() {
    let dir = tempdir("mpi-objects");
    let (out, report) = (dir.join("mpi"), dir.join("mpi.json"));
    let o = mpirun(4).args(objects_args(&out, &report, 16, PAYLOAD)).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json(&report);
    assert_eq!((r["world_size"].as_u64(), r["objects"].as_u64()), (Some(4), Some(16)), "{r}");
    let ranks = r["ranks"].as_array().unwrap();
    assert_eq!(ranks.iter().map(|x| x["rank"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let sum: u64 = ranks.iter().map(|x| x["bytes"].as_u64().unwrap()).sum();
    assert_eq!(r["bytes"].as_u64(), Some(sum));
    assert_eq!(sum, 16 * (PAYLOAD + HEADER as u64));
    for x in ranks {
        assert_eq!(x["objects"], 4, "{x}");
        assert!(x["host"].as_str().is_some_and(|h| !h.is_empty()) && x["gbps"].as_f64().unwrap() > 0.0, "{x}");
    }
    // The merged phases: every rank's operations, both throughputs.
    let put = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "put").unwrap();
    let get = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "get").unwrap();
    assert_eq!((put["ops"].as_u64(), put["bytes"].as_u64()), (Some(16), Some(sum)), "{put}");
    assert_eq!((get["reads"].as_u64(), get["read_failures"].as_u64()), (Some(16), Some(0)), "{get}");
    for p in [put, get] {
        assert!(p["gbps"].as_f64().unwrap() > 0.0 && p["slowest_rank_gbps"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["seconds"].as_f64().unwrap() + 1e-6 >= p["slowest_rank_seconds"].as_f64().unwrap() * 0.5, "{p}");
        assert!(p["latency_us"]["p50"].as_u64().unwrap() <= p["latency_us"]["max"].as_u64().unwrap());
    }
    // Stonewalled: what every rank had done when the first finished its share, over that time.
    let sw = &put["stonewall"];
    let (sw_s, sw_b) = (sw["seconds"].as_f64().unwrap(), sw["bytes"].as_u64().unwrap());
    assert!(sw_s > 0.0 && sw_s <= put["slowest_rank_seconds"].as_f64().unwrap() + 1e-9, "{put}");
    assert!(sw_b > 0 && sw_b <= sum, "{put}");
    assert_eq!(r["object_list"].as_array().unwrap().len(), 16);
    // Only rank 0 talks: one table.
    assert_eq!(text(&o).matches("all 4 ranks on 1 hosts").count(), 0, "quiet: {}", text(&o));
    // The same seed and world size, one rank at a time without MPI: the same bytes.
    let single = dir.join("single");
    for rank in 0..4 {
        let o = bin()
            .args(objects_args(&single, &dir.join(format!("s{rank}.json")), 16, PAYLOAD))
            .args(["--rank", &rank.to_string(), "--world-size", "4"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let names = files_under(&out);
    assert_eq!(names.len(), 16);
    assert_eq!(names, files_under(&single));
    for n in &names {
        assert!(std::fs::read(out.join(n)).unwrap() == std::fs::read(single.join(n)).unwrap(), "{n} differs");
    }
    // A verify of the 4-rank run: from 4 ranks, and from one process taking the ranks in turn.
    let verify = |mut cmd: Command, extra: &[&str]| {
        cmd.args(["verify", &workload("objects.toml"), "--json-report", dir.join("v.json").to_str().unwrap()])
            .args(objects_args(&out, &dir.join("unused.json"), 16, PAYLOAD).iter().skip(5))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = verify(mpirun(4), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&dir.join("v.json"))["verify"].as_array().map(Vec::len), Some(4), "rank 0's own verdicts");
    let o = verify(bin(), &["--world-size", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&dir.join("v.json"));
    assert_eq!((v["world_size"].as_u64(), v["ranks_in_turn"].as_bool()), (Some(4), Some(true)), "{v}");
    // One flipped byte in rank 3's object: the one-process verify finds it and names it.
    let victim = out.join("obj-000007.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1 << 20] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    let o = verify(bin(), &["--world-size", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("obj-000007.bin") && text(&o).contains("rank 3"), "{}", text(&o));
    bytes[1 << 20] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    // All ranks' data together has the ratio asked for.
    let (n, distinct) = blocks(&names.iter().map(|n| out.join(n)).collect::<Vec<_>>());
    let ratio = n as f64 / distinct as f64;
    assert!((ratio - 2.0).abs() < 0.05, "dedup over all ranks {ratio:.4}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn four_ranks_of_ckpt_save_what_four_ranks_in_turn_save() {
    let dir = tempdir("mpi-ckpt");
    let args = |out: &Path, report: &Path| -> Vec<String> {
        ["run", &workload("ckpt.toml"), "-q", "--json-report", report.to_str().unwrap(), "--seed", "5"]
            .iter()
            .map(|s| s.to_string())
            .chain(
                [
                    format!("target.uri=file://{}", out.display()),
                    "params.model=\"tiny\"".into(),
                    "params.ranks=8".into(),
                    "params.steps=2".into(),
                    "params.min_gbps=0".into(),
                    "params.restore=1".into(),
                ]
                .into_iter()
                .flat_map(|s| ["--set".to_string(), s]),
            )
            .collect()
    };
    let (out, report) = (dir.join("mpi"), dir.join("mpi.json"));
    let o = mpirun(4).args(args(&out, &report)).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json(&report);
    // Per step: 8 shards, a manifest per rank, rank 0's index.
    assert_eq!(r["objects"].as_u64(), Some(2 * (8 + 4 + 1)), "{r}");
    let ranks = r["ranks"].as_array().unwrap();
    let sum = |k: &str| ranks.iter().map(|x| x[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((r["bytes"].as_u64(), sum("objects")), (Some(sum("bytes")), 26));
    let restore = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "restore").unwrap();
    assert_eq!(restore["read_failures"], 0, "{restore}");
    assert!(restore["reads"].as_u64().unwrap() > 16, "{restore}");
    // Rank 0's checks are about all hosts: the throughput over every rank's bytes.
    let checks = r["checks"].as_array().unwrap();
    let save = checks.iter().find(|c| c["name"] == "throughput GB/s (all hosts)").unwrap_or_else(|| panic!("{r}"));
    let merged_gbps =
        sum("bytes") as f64 / ranks.iter().map(|x| x["seconds"].as_f64().unwrap()).fold(0.0, f64::max) / 1e9;
    let observed = save["observed"].as_f64().unwrap();
    assert!((observed - merged_gbps).abs() <= 0.05 * merged_gbps, "{observed} vs {merged_gbps}");
    assert!(checks.iter().any(|c| c["name"] == "restore throughput GB/s (all hosts)"), "{r}");
    let single = dir.join("single");
    let o = bin().args(args(&single, &dir.join("single.json"))).args(["--world-size", "4"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let names = files_under(&out);
    assert_eq!(names, files_under(&single));
    assert_eq!(names.len(), 26);
    for n in &names {
        assert!(std::fs::read(out.join(n)).unwrap() == std::fs::read(single.join(n)).unwrap(), "{n} differs");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Files under their final names are whole (the objects plugin's size); nothing else looks complete.
fn complete_or_absent(out: &Path, size: u64) {
    for n in files_under(out) {
        let len = std::fs::metadata(out.join(&n)).unwrap().len();
        if n.ends_with(".bin") && !n.contains(".tmp") && !n.starts_with('.') {
            assert_eq!(len, size, "{n} looks complete but is {len} bytes");
        }
    }
}

#[test]
fn a_rank_that_fails_ends_every_rank_and_the_report_names_it() {
    let dir = tempdir("mpi-fail");
    let (out, report) = (dir.join("out"), dir.join("r.json"));
    // Rank 2's second object cannot be written: a directory has its name.
    std::fs::create_dir_all(out.join("obj-000006.bin")).unwrap();
    let t = Instant::now();
    let o = mpirun(4).args(objects_args(&out, &report, 16, PAYLOAD)).output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("rank 2: error: ") && text(&o).contains("obj-000006.bin"), "{}", text(&o));
    let r = json(&report);
    assert_eq!(r["error_kind"], "rank", "{r}");
    assert!(r["error"].as_str().unwrap().starts_with("rank 2 failed: "), "{r}");
    std::fs::remove_dir_all(out.join("obj-000006.bin")).unwrap();
    complete_or_absent(&out, PAYLOAD + HEADER as u64);
    std::fs::remove_dir_all(dir).ok();
}

/// A workload running the hostile plugin, built from source, in `mode` with `extra` TOML (params
/// and limits) appended, writing to `dir/out`: returns (workload, out).
fn hostile_workload(dir: &Path, mode: &str, extra: &str) -> (PathBuf, PathBuf) {
    let wasm = dir.join("hostile.wasm");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/hostile");
    let o =
        bin().args(["plugin", "build", crate_dir.to_str().unwrap(), "-o", wasm.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.join("out");
    let workload = dir.join("w.toml");
    std::fs::write(
        &workload,
        format!(
            "name = \"{mode}\"\nplugin = \"{}\"\n[target]\nuri = \"file://{}\"\n{extra}\n[params]\nmode = \"{mode}\"\n",
            wasm.display(),
            out.display()
        ),
    )
    .unwrap();
    (workload, out)
}

#[test]
fn a_plugin_that_traps_on_rank_2_only_ends_every_rank_and_is_named() {
    let dir = tempdir("mpi-trap");
    let (workload, out) = hostile_workload(&dir, "rank2", "");
    let report = dir.join("r.json");
    let t = Instant::now();
    let o = mpirun(4)
        .args(["run", workload.to_str().unwrap(), "-q", "--json-report", report.to_str().unwrap()])
        .args(["--set", "params.how=trap", "--set", "params.count=400", "--set", "params.size=8388608"])
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(4), "a plugin fault is exit 4: {}", text(&o));
    assert!(text(&o).contains("rank 2: error: plugin 'hostile-host"), "{}", text(&o));
    assert!(text(&o).contains("rank 2 gives up after object 0"), "{}", text(&o));
    let r = json(&report);
    assert!(r["error"].as_str().unwrap().starts_with("rank 2 failed: plugin 'hostile-host"), "{r}");
    // The others stopped long before writing their 400 objects, and left nothing that looks whole.
    assert!(files_under(&out).len() < 3 * 400, "{}", files_under(&out).len());
    complete_or_absent(&out, 8 << 20);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_rank_that_hangs_is_stopped_by_its_deadline_and_ends_every_rank() {
    let dir = tempdir("mpi-hang");
    // Fuel to spare: only the deadline can end rank 2's loop. The others wait at a barrier, which
    // does not count against theirs.
    let (workload, out) = hostile_workload(&dir, "rank2", "[limits]\nfuel = 1e19\ndeadline = 3");
    let report = dir.join("r.json");
    let t = Instant::now();
    let o = mpirun(4)
        .args(["run", workload.to_str().unwrap(), "-q", "--json-report", report.to_str().unwrap()])
        .args(["--set", "params.how=hang", "--set", "params.count=5", "--set", "params.size=1048576"])
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(45), "took {:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(4), "a plugin fault is exit 4: {}", text(&o));
    assert!(text(&o).contains("rank 2: error: plugin 'hostile-host"), "{}", text(&o));
    assert!(text(&o).contains("deadline"), "{}", text(&o));
    let r = json(&report);
    assert!(r["error"].as_str().unwrap().starts_with("rank 2 failed: "), "{r}");
    complete_or_absent(&out, 1 << 20);
    std::fs::remove_dir_all(dir).ok();
}

/// The PIDs of `dgen-engine` processes writing under `out` that are MPI rank `rank` (from their
/// command line and environment: other tests run ranks too).
fn rank_pids(out: &Path, rank: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let is_engine = String::from_utf8_lossy(&cmd).contains(&format!("file://{}", out.display()));
        let want = [format!("OMPI_COMM_WORLD_RANK={rank}"), format!("PMI_RANK={rank}")];
        if is_engine && env.split(|&b| b == 0).any(|v| want.iter().any(|w| v == w.as_bytes())) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_rank_killed_mid_run_ends_every_rank_within_seconds() {
    let dir = tempdir("mpi-kill");
    let (out, report) = (dir.join("out"), dir.join("r.json"));
    let mut child = mpirun(3)
        .args(objects_args(&out, &report, 600, 4 << 20))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until rank 1 has written something, then kill it outright.
    let t = Instant::now();
    let victim = loop {
        assert!(t.elapsed() < Duration::from_secs(60), "rank 1 never started writing");
        if !files_under(&out).is_empty() {
            if let Some(&pid) = rank_pids(&out, 1).first() {
                break pid;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "the other ranks did not end within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = child.wait_with_output().unwrap();
    assert!(!status.success(), "{}", text(&o));
    // No rank is left running, and no file looks complete that is not.
    std::thread::sleep(Duration::from_millis(500));
    for r in 0..3 {
        assert!(rank_pids(&out, r).is_empty(), "rank {r} still runs");
    }
    complete_or_absent(&out, (4 << 20) + HEADER as u64);
    std::fs::remove_dir_all(dir).ok();
}

/// `mpirun` with the environment of `cmd` (credentials, endpoints) passed on to the ranks.
fn mpirun_like(np: u32, cmd: &Command) -> Command {
    let mut m = mpirun(np);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => m.env(k, v),
            None => m.env_remove(k),
        };
    }
    m
}

/// Two ranks to S3 and to Azure: the objects hold the same bytes as two ranks' files, and no upload
/// is left open.
#[test]
fn two_ranks_to_s3_and_azure_store_what_they_store_in_files() {
    use crate::azure::{azurite, bin_az, Container};
    use crate::objects::Remote;
    use crate::s3::{bin_s3, moto, Bucket};
    let dir = tempdir("mpi-cloud");
    let size = 12u64 << 20;
    let set = |uri: String| -> Vec<String> {
        let mut a = objects_args(&dir.join("unused"), &dir.join("r.json"), 6, size);
        let at = a.iter().position(|x| x.starts_with("target.uri=")).unwrap();
        a[at] = format!("target.uri={uri}");
        a
    };
    // The reference: both ranks' files, one after the other in one process.
    let files = dir.join("files");
    let o = bin().args(set(format!("file://{}", files.display()))).args(["--world-size", "2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let names = files_under(&files);
    assert_eq!(names.len(), 6);
    let bucket = Bucket::new("mpi");
    let s3 = bin_s3(&moto().endpoint);
    let o = mpirun_like(2, &s3)
        .args(set(bucket.uri("ck")))
        .args(["--set", "target.part_size=\"5MiB\"", "--set", "target.multipart_threshold=\"5MiB\""])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&dir.join("r.json"))["world_size"], 2);
    assert!(bucket.uploads().is_empty(), "uploads left open: {:?}", bucket.uploads());
    let container = Container::new("mpi");
    let az = bin_az(&azurite().connection_string());
    let o = mpirun_like(2, &az).args(set(container.uri("ck"))).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for n in &names {
        let want = std::fs::read(files.join(n)).unwrap();
        assert!(bucket.get(&format!("ck/{n}")) == want, "S3 {n} differs from the file");
        assert!(container.get(&format!("ck/{n}")) == want, "Azure {n} differs from the file");
    }
    assert_eq!(bucket.list("ck/").len(), 6);
    assert_eq!(container.list("ck/").len(), 6);
    assert!(container.uncommitted("ck/").is_empty(), "{:?}", container.uncommitted("ck/"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn stonewalling_ends_a_phase_for_every_rank_when_the_first_finishes_and_says_so() {
    let dir = tempdir("mpi-stonewall");
    let (out, report) = (dir.join("out"), dir.join("r.json"));
    // Three objects on two ranks: rank 0 writes two, one after the other; rank 1 one, so it is
    // done first and ends the put for rank 0 while rank 0's second object is still being written.
    // O_DIRECT and few buffers, so a rank's time is its bytes on the disk, not the page cache's.
    let size = 96u64 << 20;
    let mut args = objects_args(&out, &report, 3, size);
    let sets = ["stonewall=true", "pipeline.concurrency=1", "pipeline.buffers=4", "target.file.direct=true"];
    args.extend(sets.iter().flat_map(|s| ["--set".to_string(), s.to_string()]));
    let o = mpirun(2).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json(&report);
    let put = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "put").unwrap_or_else(|| panic!("{r}"));
    assert_eq!(put["stonewalled_by"], 1, "{put}");
    let cut = put["cut_objects"].as_u64().unwrap();
    assert!(cut >= 1, "{put}");
    let rank0 = &r["ranks"][0]["phases"][0];
    assert_eq!(rank0["stonewalled_by"], 1, "{r}");
    // What was cut is gone: on disk exactly the objects the report lists, each whole, nothing else.
    let listed: Vec<String> =
        r["object_list"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().into()).collect();
    let mut on_disk = files_under(&out);
    on_disk.sort();
    let mut want = listed.clone();
    want.sort();
    assert_eq!(on_disk, want, "{r}");
    assert_eq!(listed.len() as u64 + cut, 3, "{r}");
    complete_or_absent(&out, size + HEADER as u64);
    // The get phase read back (and verified) what the put left. Stonewalling holds for it too: the
    // rank done first may cut the other's read, which is then counted as cut, never as a failure.
    let get = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "get").unwrap();
    let (reads, cut_reads) = (get["reads"].as_u64().unwrap(), get["cut_reads"].as_u64().unwrap());
    assert_eq!((reads + cut_reads, r["read_failures"].as_u64()), (listed.len() as u64, Some(0)), "{r}");
    assert!(reads >= 1, "{r}");
    assert!(cut_reads == 0 || !get["stonewalled_by"].is_null(), "{get}");
    // Without the key every rank writes its whole share.
    std::fs::remove_dir_all(&out).ok();
    let o = mpirun(2).args(objects_args(&out, &report, 3, size)).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json(&report);
    assert_eq!(files_under(&out).len(), 3, "{r}");
    assert!(
        r["phases"].as_array().unwrap().iter().all(|p| p["stonewalled_by"].is_null() && p["cut_objects"] == 0),
        "{r}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn eight_ranks_of_the_scaled_mlperf_8b_checkpoint_save_and_load_every_file_verified() {
    let dir = tempdir("mpi-mlperf");
    let (out, report) = (dir.join("ckpt"), dir.join("r.json"));
    let o = mpirun(8)
        .args(["run", &workload("mlperf-ckpt-8b-scaled.toml"), "--json-report", report.to_str().unwrap()])
        .args(["--set", &format!("target.uri=file://{}", out.display())])
        .args(["--set", "params.time_between_checkpoints=0", "--set", "params.recovery_rank_shift=true"])
        .output()
        .unwrap();
    // The scaled run breaks the full-size rule (exit 1); everything else holds.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = json(&report);
    assert_eq!(r["world_size"], 8, "{r}");
    // One process per rank: each saved its own two files per checkpoint, named as DLIO's.
    let table = crate::mlperf::expected("llama3-8b", 8, false, 0.001);
    let mut names: Vec<String> =
        (1..=10).flat_map(|s| table.keys().map(move |n| format!("llama3-8b/global_epoch1_step{s}/{n}"))).collect();
    names.sort();
    assert_eq!(files_under(&out), names);
    for (name, (rank, tensors)) in &table {
        let path = out.join("llama3-8b/global_epoch1_step10").join(name);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > crate::mlperf::bytes(tensors), "{name}");
        let row = r["ranks"].as_array().unwrap().iter().find(|x| x["rank"] == *rank).unwrap();
        assert!(row["bytes"].as_u64().unwrap() >= 10 * size, "{row}");
    }
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 20, "{r}");
    let checks = r["checks"].as_array().unwrap();
    let find = |p: &str| {
        checks.iter().find(|c| c["name"].as_str().unwrap().starts_with(p)).unwrap_or_else(|| panic!("{p}: {r}"))
    };
    assert_eq!(find("load reads passing verify")["passed"], true, "{r}");
    assert_eq!(find("rule: CLOSED rank count")["passed"], true);
    assert_eq!(find("rule: loads read from storage")["passed"], true);
    assert_eq!(find("rule: full-size checkpoint")["passed"], false);
    // The 8 ranks share one node (MPI's shared-memory split says so): the shift does not apply.
    assert!(text(&o).contains("(8 ranks, 8 per node): recovery_rank_shift does not apply"), "{}", text(&o));
    let metric = |n: &str| {
        r["metrics"].as_array().unwrap().iter().find(|m| m["name"] == n).map(|m| m["value"].as_f64().unwrap())
    };
    assert!(metric("save_checkpoint_io_mean_GB_per_second").unwrap() > 0.0, "{r}");
    assert!(metric("load_checkpoint_io_mean_GB_per_second").unwrap() > 0.0, "{r}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn jobs_under_mpi_merge_their_figures_and_series_across_ranks() {
    let dir = tempdir("mpi-jobs");
    let report = dir.join("r.json");
    let o = mpirun(2)
        .args(["run", &workload("blocks.toml"), "-q", "--json-report", report.to_str().unwrap()])
        .args(["--set", &format!("target.uri=file://{}", dir.join("out").display())])
        .args(["--set", "params.size=\"8MiB\"", "--set", "target.file.direct=false"])
        .args(["--set", r#"params.phases=[{name="oltp",mix=[{op="read",weight=70,bs="8KiB"},{op="write",weight=30,bs="8KiB"}],depth=8,duration=2,series_interval=0.5,verify="end"}]"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", shown(&o));
    assert_eq!(
        files_under(&dir.join("out")).iter().filter(|f| f.starts_with("lun0.r")).count(),
        2,
        "a region per rank"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let merged = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "oltp").unwrap();
    let of_ranks: Vec<&serde_json::Value> = r["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["phases"].as_array().unwrap().iter().find(|p| p["name"] == "oltp").unwrap())
        .collect();
    for kind in ["read", "write"] {
        let sum: u64 = of_ranks.iter().map(|p| p[kind]["total_ios"].as_u64().unwrap()).sum();
        assert_eq!(merged[kind]["total_ios"].as_u64(), Some(sum), "{kind}");
        assert!(merged[kind]["clat_ns"]["percentile"]["99.000000"].as_u64().unwrap() > 0);
    }
    // Interval by interval, the merged series holds both ranks' operations.
    let series = merged["series"].as_array().unwrap();
    assert!(series.len() >= 4);
    for (i, p) in series.iter().enumerate() {
        let sum: u64 = of_ranks.iter().filter_map(|k| k["series"][i]["read"]["ios"].as_u64()).sum();
        assert_eq!(p["read"]["ios"].as_u64().unwrap_or(0), sum, "interval {i}");
    }
    assert_eq!(merged["region_check"]["good"].as_u64(), Some(2 * 1024));
    std::fs::remove_dir_all(&dir).unwrap();
}
