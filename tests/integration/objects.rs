//! What the object-store tests (S3 on moto, Azure on Azurite) check the same way: a store seen from
//! the outside ([`Remote`]), streams written through a sink and read back byte for byte, a workload
//! written to files and to the store with equal bytes and a `verify` that catches one flipped byte,
//! the interrupted big-object run, and workload key errors naming file:line.

use crate::common::*;
use dgen_engine::object::Content;
use dgen_engine::pipeline::executor::{ExecConfig, Executor, ObjectJob, PipelineStats};
use dgen_engine::sink::Sink;
use dgen_engine::Generator;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

/// A bucket or container as a user's own client sees it.
pub trait Remote {
    /// `scheme://root/prefix`.
    fn uri(&self, prefix: &str) -> String;
    /// Objects a reader sees under `prefix`, with their sizes, sorted.
    fn list(&self, prefix: &str) -> Vec<(String, u64)>;
    fn get(&self, key: &str) -> Vec<u8>;
    /// Writes `data` as a new object (one the engine did not write: no identity).
    fn put(&self, key: &str, data: Vec<u8>);
    /// Replaces an object's bytes keeping its user metadata (its identity), as damage inside the
    /// store would: the same object, other bytes.
    fn corrupt(&self, key: &str, data: Vec<u8>);
}

/// Writes stream `i` of `gen` as object `o{i}` of each size through `sink` (buffers of `buffer`
/// bytes), then reads every one back from `remote` under `prefix` and compares bytes and CRC32C.
pub fn write_and_compare(
    sink: &dyn Sink,
    remote: &dyn Remote,
    prefix: &str,
    gen: &Generator,
    sizes: &[u64],
    buffer: u64,
) -> PipelineStats {
    let cfg = ExecConfig { buffer_size: buffer as usize, buffers: 8, threads: 2, open_objects: 2, crc: true };
    let exec = Executor::new(sink, gen.clone(), cfg).unwrap();
    let jobs = sizes.iter().enumerate().map(|(i, &size)| ObjectJob {
        name: format!("o{i}"),
        size,
        content: Content::Stream { stream: i as u64, offset: 0 },
    });
    let stats = exec.run(jobs, &mut (), &AtomicBool::new(false)).unwrap();
    assert_eq!(exec.pool().available(), exec.pool().count(), "buffers not returned");
    for (i, &size) in sizes.iter().enumerate() {
        let key = format!("{prefix}o{i}");
        let mut want = vec![0u8; size as usize];
        gen.fill(i as u64, 0, &mut want);
        let got = remote.get(&key);
        assert_eq!(got.len(), want.len(), "{key}");
        assert!(got == want, "{key}: bytes differ");
        let crc = stats.objects.iter().find(|o| o.name == format!("o{i}")).unwrap().crc32c;
        assert_eq!(crc, Some(crc32c::crc32c(&want)), "{key}");
    }
    stats
}

/// Writes `big.bin` (200 MiB + 7) through `sink` — made with 96 MiB parts — from 8 MiB buffers,
/// twelve a part, and reads it back from `remote`; then a pool smaller than one part is refused with a
/// message naming what to change.
pub fn big_parts_from_many_buffers(sink: &dyn Sink, remote: &dyn Remote) {
    let gen = Generator::new(9, profile(1.0, 1.0, 4096));
    let size = 200 * MIB + 7;
    let job = || ObjectJob { name: "big.bin".into(), size, content: Content::Stream { stream: 1, offset: 0 } };
    let cfg = ExecConfig { buffer_size: 8 << 20, buffers: 16, threads: 2, open_objects: 2, crc: false };
    let exec = Executor::new(sink, gen.clone(), cfg).unwrap();
    exec.run([job()], &mut (), &AtomicBool::new(false)).unwrap();
    let mut want = vec![0u8; size as usize];
    gen.fill(1, 0, &mut want);
    assert!(remote.get("big.bin") == want, "bytes differ");
    let cfg = ExecConfig { buffer_size: 8 << 20, buffers: 4, threads: 2, open_objects: 2, crc: false };
    let exec = Executor::new(sink, gen.clone(), cfg).unwrap();
    let err = exec.run([job()], &mut (), &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(err.contains("needs parts of 96 MiB") && err.contains("pipeline.buffers"), "{err}");
}

/// `run workloads/objects.toml` (12 objects, header reserved and patched in last) to files and to
/// `remote` under `objs/` with `bin_remote()`: the same names and bytes; `verify` passes, then fails
/// with exit 1 naming the offset of one flipped byte. Returns the object names.
pub fn same_bytes_as_files(remote: &dyn Remote, tag: &str, bin_remote: &dyn Fn() -> Command) -> Vec<String> {
    let dir = tempdir(tag);
    let wl = workload("objects.toml");
    let file_uri = format!("target.uri=file://{}", dir.display());
    let remote_uri = format!("target.uri={}", remote.uri("objs"));
    let common = ["--set", "params.count=12", "--set", "params.size=9000000", "-q"];
    let out = bin().args(["run", &wl, "--set", &file_uri]).args(common).output().unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    let out = bin_remote().args(["run", &wl, "--set", &remote_uri]).args(common).output().unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    let files = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    let mut files: Vec<String> = files.collect();
    files.sort();
    let keys: Vec<String> =
        remote.list("objs/").into_iter().map(|(k, _)| k.trim_start_matches("objs/").into()).collect();
    assert_eq!(keys, files);
    assert!(keys.len() == 12, "{keys:?}");
    for f in &files {
        let want = std::fs::read(dir.join(f)).unwrap();
        assert!(remote.get(&format!("objs/{f}")) == want, "{f} differs between the file and the store");
    }
    // verify reads every object back with ranged reads; a changed object fails it.
    let out = bin_remote().args(["verify", &wl, "--set", &remote_uri]).args(common).output().unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    let biggest = files.iter().max_by_key(|f| std::fs::metadata(dir.join(f)).unwrap().len()).unwrap();
    let mut bad = remote.get(&format!("objs/{biggest}"));
    let at = bad.len() / 2;
    bad[at] ^= 1;
    remote.corrupt(&format!("objs/{biggest}"), bad);
    let out = bin_remote().args(["verify", &wl, "--set", &remote_uri]).args(common).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(shown(&out).contains(&format!("differs at byte offset {at}")), "{}", shown(&out));
    std::fs::remove_dir_all(dir).ok();
    files
}

/// The size of each object of [`interrupted_run`]: header, payload, CRC footer.
pub const BIG_OBJECT: u64 = 24 + 25165824 + 4;

/// The big-object workload the failure tests interrupt: 24 objects of 24 MiB, no retries, 4 requests
/// in flight, stderr captured.
pub fn interrupted_run(mut cmd: Command, uri: &str) -> std::process::Child {
    cmd.args(["run", &workload("objects.toml"), "-q", "--set", &format!("target.uri={uri}")])
        .args(["--set", "params.count=24", "--set", "params.distribution=\"fixed\"", "--set", "params.size=25165824"])
        .args(["--set", "target.retries=0", "--set", "target.concurrency=4"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// After an interrupted run: every object a reader sees is whole, and not all were written.
pub fn only_whole_objects(remote: &dyn Remote, prefix: &str) {
    let objects = remote.list(prefix);
    for (key, size) in &objects {
        assert_eq!(*size, BIG_OBJECT, "{key} is partial");
    }
    assert!(objects.len() < 24, "the run was not interrupted: {objects:?}");
}

/// Each `[target]` table, in a workload of the objects plugin, is refused with exit 2 and a message
/// containing the expected text (which names file:line and key).
pub fn target_tables_are_refused(tag: &str, cases: &[(&str, &str)]) {
    let dir = tempdir(tag);
    let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/objects");
    for (i, (target, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("w{i}.toml"));
        std::fs::write(&f, format!("name = \"t\"\nplugin = \"{}\"\n\n\n\n{target}", plugin.display())).unwrap();
        let out = run(&["run", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", shown(&out));
        assert!(shown(&out).contains(want), "{target}: {}", shown(&out));
    }
    std::fs::remove_dir_all(dir).ok();
}
