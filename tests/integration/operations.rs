//! The operations engine through the library: random overwrites keep the live region's dedup and
//! compression exact, the read-back finds planted lost writes, torn and corrupt blocks.

use dgen_engine::generator::region::RegionData;
use dgen_engine::generator::{Generator, Profile};
use dgen_engine::ops::check::ProblemKind;
use dgen_engine::ops::genmap::GenMap;
use dgen_engine::ops::spec::{JobSpec, OpKind};
use dgen_engine::ops::{self, Driver, JobEnv, Region};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
    Region {
        file: Arc::new(f),
        name: path.display().to_string(),
        offset: 0,
        size,
        direct,
        align: if direct { 4096 } else { 1 },
    }
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
            r.file.read_exact_at(&mut now, b * unit).unwrap();
            now != old[at..at + unit as usize]
        })
        .collect();
    assert!(rewritten.len() > 100);
    let lost: Vec<u64> = rewritten.iter().copied().step_by(37).take(5).collect();
    for &b in &lost {
        let at = (b * unit) as usize;
        r.file.write_all_at(&old[at..at + unit as usize], b * unit).unwrap();
    }
    let torn = rewritten[1];
    let at = (torn * unit) as usize;
    r.file.write_all_at(&old[at..at + 2048], torn * unit).unwrap();
    let corrupt = rewritten[2];
    let mut byte = [0u8; 1];
    r.file.read_exact_at(&mut byte, corrupt * unit + 100).unwrap();
    r.file.write_all_at(&[byte[0] ^ 0x40], corrupt * unit + 100).unwrap();
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
