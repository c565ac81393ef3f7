//! Data that behaves like real data: dedup extents (duplicates in aligned runs, so arrays that
//! deduplicate at 8–64 KiB see the ratio too) and compressibility mixes (each chunk an array
//! compresses on its own gets its class's ratio), each measured the way an array or a user would
//! measure it, on ≥ 256 MiB; the uniform profiles' bytes are pinned in `determinism`.

use crate::common::*;
use dgen_engine::{Generator, Profile};
use std::collections::HashSet;
use std::io::Write;

const LEN: u64 = 256 << 20;

/// Distinct chunks of `chunk` bytes over the first `len` bytes of stream 0, and how many chunks.
fn dedup_at(gen: &Generator, len: u64, chunk: usize) -> f64 {
    let step = 8 << 20;
    let mut buf = vec![0u8; step];
    let mut seen = HashSet::new();
    let mut n = 0u64;
    let mut pos = 0;
    while pos < len {
        gen.fill_par(0, pos, &mut buf);
        for c in buf.chunks(chunk) {
            seen.insert(hash(c));
            n += 1;
        }
        pos += step as u64;
    }
    n as f64 / seen.len() as f64
}

fn extent_profile(d: f64, c: f64, unit: u64, extent: u64) -> Profile {
    profile(d, c, unit).with_extent(extent).unwrap()
}

#[test]
fn with_an_extent_every_dedup_unit_up_to_it_sees_the_ratio() {
    let mut failures = Vec::new();
    for (d, extent, len) in [(2.0, 8u64 << 10, LEN), (3.0, 64 << 10, LEN), (2.0, 1 << 20, 1 << 30)] {
        let gen = Generator::new(5, extent_profile(d, 1.0, 4096, extent));
        let mut chunk = 4096;
        while chunk <= extent as usize {
            let got = dedup_at(&gen, len, chunk);
            eprintln!("D={d} extent {extent}: dedup at {chunk} B = {got:.4}");
            if (got / d - 1.0).abs() > 0.01 {
                failures.push(format!("D={d} extent {extent}: dedup at {chunk} B is {got:.4}, want {d} ±1 %"));
            }
            chunk *= 2;
        }
        // Beyond the extent, runs of different contents meet: the ratio falls off.
        let beyond = dedup_at(&gen, len, 2 * extent as usize);
        if beyond > d * 0.9 {
            failures.push(format!("D={d} extent {extent}: dedup at twice the extent is {beyond:.3}, not below"));
        }
    }
    // Today's default (extent = unit), for contrast: 8 KiB chunks see little of D = 2.
    let plain = dedup_at(&Generator::new(5, profile(2.0, 1.0, 4096)), LEN, 8192);
    assert!(plain < 1.3, "without an extent, dedup at 8 KiB is {plain}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_extent_leaves_the_compression_ratio_and_zero_sectors_alone() {
    for (d, c) in [(2.0, 3.0), (4.0, 1.5)] {
        let gen = Generator::new(9, extent_profile(d, c, 4096, 64 << 10));
        let r = measure(&gen, LEN, true);
        assert!((r.dedup() / d - 1.0).abs() <= 0.01, "D={d} C={c}: dedup {}", r.dedup());
        assert!((r.zstd / c - 1.0).abs() <= 0.05, "D={d} C={c}: zstd {}", r.zstd);
        assert!((r.gzip / c - 1.0).abs() <= 0.10, "D={d} C={c}: gzip {}", r.gzip);
        assert_eq!(r.zero_sectors, 0);
    }
}

const MIX: [(f64, f64); 3] = [(0.3, 1.0), (0.5, 2.0), (0.2, 8.0)];

/// Per-chunk zstd -1 ratios over `len` bytes, each chunk compressed on its own as an array does,
/// binned to the nearest class ratio (in log terms): the share of chunks in each class and the
/// class's mean ratio.
fn chunk_classes(gen: &Generator, len: u64, chunk: usize, ratios: &[f64]) -> Vec<(f64, f64)> {
    let step = 8 << 20;
    let mut buf = vec![0u8; step];
    let mut count = vec![0u64; ratios.len()];
    let mut sum = vec![0f64; ratios.len()];
    let mut z = zstd::bulk::Compressor::new(1).unwrap();
    let mut pos = 0;
    while pos < len {
        gen.fill_par(0, pos, &mut buf);
        for c in buf.chunks(chunk) {
            let out = z.compress(c).unwrap();
            // An array stores a chunk raw when compressing it saves too little: cap at 1.
            let r = (c.len() as f64 / out.len() as f64).max(1.0);
            let i = (0..ratios.len())
                .min_by(|&a, &b| (r.ln() - ratios[a].ln()).abs().total_cmp(&(r.ln() - ratios[b].ln()).abs()))
                .unwrap();
            count[i] += 1;
            sum[i] += r;
        }
        pos += step as u64;
    }
    let total: u64 = count.iter().sum();
    count.iter().zip(&sum).map(|(&n, &s)| (n as f64 / total as f64, s / n.max(1) as f64)).collect()
}

#[test]
fn each_chunk_an_array_compresses_gets_its_class_and_the_mix_holds() {
    let p = profile(1.0, 1.0, 4096).with_extent(32 << 10).unwrap().with_mix(&MIX).unwrap();
    let implied = 1.0 / MIX.iter().map(|(f, r)| f / r).sum::<f64>();
    assert!((p.compress() - implied).abs() < 1e-12, "{}", p.compress());
    let gen = Generator::new(3, p);
    let ratios: Vec<f64> = MIX.iter().map(|m| m.1).collect();
    let mut failures = Vec::new();
    for chunk in [4096usize, 8192, 32768] {
        let got = chunk_classes(&gen, LEN, chunk, &ratios);
        eprintln!("{chunk} B chunks, (share, mean ratio) per class: {got:.4?}");
        for ((f, r), (share, mean)) in MIX.iter().zip(&got) {
            if (share - f).abs() > 0.01 {
                failures.push(format!("{chunk} B chunks: class {r}: {share:.4} of the chunks, want {f} ±0.01"));
            }
            if (mean / r - 1.0).abs() > 0.06 {
                failures.push(format!("{chunk} B chunks: class {r}: mean ratio {mean:.3}, want {r} ±6 %"));
            }
        }
    }
    // The stream as a whole compresses by what the mix implies.
    let r = measure(&gen, LEN, true);
    eprintln!("stream: zstd -3 {:.3}, lz4 {:.3}, gzip -6 {:.3}; the mix implies {implied:.3}", r.zstd, r.lz4, r.gzip);
    if (r.zstd / implied - 1.0).abs() > 0.05 {
        failures.push(format!("stream zstd -3 ratio {:.3}, the mix implies {implied:.3} ±5 %", r.zstd));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_mix_does_not_move_the_dedup_ratio_and_dedup_does_not_move_the_mix() {
    let ratios: Vec<f64> = MIX.iter().map(|m| m.1).collect();
    let alone = chunk_classes(&Generator::new(4, profile(1.0, 1.0, 4096).with_mix(&MIX).unwrap()), LEN, 4096, &ratios);
    for d in [2.0, 5.0] {
        let p = profile(d, 1.0, 4096).with_extent(32 << 10).unwrap().with_mix(&MIX).unwrap();
        let gen = Generator::new(4, p);
        let (blocks, distinct) = distinct_blocks(&gen, LEN);
        let got = blocks as f64 / distinct as f64;
        assert!((got / d - 1.0).abs() <= 0.01, "D={d} with the mix: dedup {got}");
        let with = chunk_classes(&gen, LEN, 4096, &ratios);
        for (i, ((a, _), (b, _))) in alone.iter().zip(&with).enumerate() {
            assert!((a - b).abs() <= 0.01, "D={d}: class {} share {b:.4}, {a:.4} without dedup", ratios[i]);
        }
    }
}

fn reference(gen: &Generator, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    gen.fill(0, 0, &mut v);
    v
}

#[test]
fn new_profile_kinds_are_deterministic_under_any_threads_chunking_and_access() {
    let kinds = [
        extent_profile(2.0, 2.0, 4096, 64 << 10),
        extent_profile(3.0, 1.0, 512, 1 << 20),
        profile(2.0, 1.0, 4096).with_mix(&MIX).unwrap(),
        profile(1.5, 1.0, 8192).with_extent(32 << 10).unwrap().with_mix(&[(0.5, 1.0), (0.5, 4.0)]).unwrap(),
    ];
    for p in kinds {
        let gen = Generator::new(77, p);
        let len = 12 << 20;
        let want = reference(&gen, len);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut v = vec![0u8; len];
            pool.install(|| gen.fill_par(0, 0, &mut v));
            assert!(v == want, "{p}: {threads} threads");
        }
        // Odd chunks, in order and then backwards (random access).
        let mut v = vec![0u8; len];
        let cuts: Vec<usize> = (0..len).step_by(777_777).chain([len]).collect();
        for w in cuts.windows(2).rev() {
            gen.fill(0, w[0] as u64, &mut v[w[0]..w[1]]);
        }
        assert!(v == want, "{p}: odd chunks backwards");
        // A streaming reader gives the same bytes.
        let mut r = gen.reader(0, len as u64);
        let mut s = Vec::new();
        std::io::copy(&mut r, &mut s).unwrap();
        assert!(s == want, "{p}: reader");
    }
    // A different seed shares no block.
    let p = extent_profile(2.0, 1.0, 4096, 64 << 10).with_mix(&MIX).unwrap();
    let a: HashSet<u128> = reference(&Generator::new(1, p), 8 << 20).chunks(4096).map(hash).collect();
    let b: HashSet<u128> = reference(&Generator::new(2, p), 8 << 20).chunks(4096).map(hash).collect();
    assert_eq!(a.intersection(&b).count(), 0);
}

#[test]
fn bad_extents_and_mixes_are_refused_with_the_key() {
    let e = |p: Result<Profile, dgen_engine::Error>| p.unwrap_err().to_string();
    assert!(e(profile(1.0, 1.0, 8192).with_extent(4096)).contains("dedup_extent"));
    assert!(e(profile(1.0, 1.0, 4096).with_extent(48 << 10)).contains("power of two"));
    assert!(e(profile(1.0, 1.0, 4096).with_extent(2 << 20)).contains("1 MiB"));
    assert!(e(profile(1.0, 1.0, 4096).with_mix(&[(0.5, 2.0), (0.4, 3.0)])).contains("add up to 0.9"));
    assert!(e(profile(1.0, 1.0, 4096).with_mix(&[(1.0, 0.5)])).contains("ratio 0.5"));
    assert!(e(profile(1.0, 1.0, 512).with_mix(&[(1.0, 32.0)])).contains("from 1 to 16"));
    assert!(e(profile(1.0, 1.0, 4096).with_mix(&[])).contains("from 1 to 8"));
}

#[test]
fn gen_takes_an_extent_and_a_mix_and_says_so() {
    let o = run(&[
        "gen",
        "--size",
        "64MiB",
        "--seed",
        "3",
        "--dedup",
        "2",
        "--dedup-extent",
        "32KiB",
        "--compress-mix",
        "0.3:1,0.5:2,0.2:8",
        "-o",
        "/dev/null",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("compress mix 0.3:1,0.5:2,0.2:8 (stream 1.739)") && err.contains("extent 32 KiB"), "{err}");
    // The same bytes as the library's.
    let o = run(&[
        "gen",
        "--size",
        "4MiB",
        "--seed",
        "3",
        "--dedup-extent",
        "64KiB",
        "--compress-mix",
        "0.5:1,0.5:4",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = profile(1.0, 1.0, 4096).with_extent(64 << 10).unwrap().with_mix(&[(0.5, 1.0), (0.5, 4.0)]).unwrap();
    assert!(o.stdout == reference(&Generator::new(3, p), 4 << 20));
    for (args, says) in [
        (&["--dedup-extent", "2KiB"][..], "--dedup-extent"),
        (&["--dedup-extent", "48KiB"][..], "--dedup-extent"),
        (&["--compress-mix", "0.5:2"][..], "add up to 0.5"),
        (&["--compress-mix", "0.5-2"][..], "FRACTION:RATIO"),
        (&["--compress-mix", "1:2", "--compress", "2"][..], "cannot be used with"),
    ] {
        let o = run(&[&["gen", "--size", "1MiB", "-o", "/dev/null"][..], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn workload_data_tables_take_an_extent_and_a_mix() {
    let dir = tempdir("realism-workload");
    let wl = dir.join("w.toml");
    let write = |data: &str| {
        let mut f = std::fs::File::create(&wl).unwrap();
        let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/objects");
        writeln!(f, "name = \"mix\"\nplugin = \"{}\"\nseed = 1", plugin.display()).unwrap();
        writeln!(f, "[target]\nuri = \"null://\"\n[data]\n{data}\n[params]\ncount = 2\nsize = 4194304").unwrap();
    };
    write("dedup = 2\ncompress_mix = [[0.3, 1], [0.5, 2.0], [0.2, 8]]\ndedup_extent = \"64KiB\"");
    let report = dir.join("r.json");
    let o = run(&["run", wl.to_str().unwrap(), "-q", "--json-report", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let data = &r["data"];
    assert_eq!(data["dedup_extent"], 65536, "{data}");
    assert_eq!(data["compress_mix"], serde_json::json!([[0.3, 1.0], [0.5, 2.0], [0.2, 8.0]]), "{data}");
    assert!((data["compress"].as_f64().unwrap() - 1.7391304347826086).abs() < 1e-9, "{data}");
    // A mix without an extent gets 32 KiB.
    write("compress_mix = [[0.5, 1], [0.5, 3]]");
    let o = run(&["run", wl.to_str().unwrap(), "-q", "--json-report", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["data"]["dedup_extent"], 32768);
    // Bad values name the file, the line and the key.
    for (data, line, says) in [
        ("compress = 2\ncompress_mix = [[1, 2]]", 8, "data.compress_mix: give compress or compress_mix, not both"),
        ("compress_mix = [[0.5, 2]]", 7, "data.compress_mix: '[0.5, 2]' the fractions add up to 0.5"),
        ("dedup_extent = \"3KiB\"", 7, "data.dedup_extent: '3 KiB' must be a power of two"),
        ("compress_mix = [[0.5, 2, 3]]", 7, "compress_mix"),
    ] {
        write(data);
        let o = run(&["run", wl.to_str().unwrap(), "-q"]);
        assert_eq!(o.status.code(), Some(2), "{data}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("w.toml:{line}")) && err.contains(says), "{data}: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}
