//! Data that behaves like real data: dedup extents (duplicates in aligned runs, so arrays that
//! deduplicate at 8–64 KiB see the ratio too) and compressibility mixes (each chunk an array
//! compresses on its own gets its class's ratio), each measured the way an array or a user would
//! measure it, on ≥ 256 MiB; the uniform profiles' bytes are pinned in `determinism`.

use crate::common::*;
use dgen_engine::generator::copies::CopySpec;
use dgen_engine::{Generator, Profile};
use std::collections::{BTreeMap, HashMap, HashSet};
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
        profile(2.0, 1.0, 4096).with_copies(CopySpec::Zipf(1.5), true).unwrap(),
        extent_profile(3.0, 2.0, 4096, 64 << 10)
            .with_copies(CopySpec::Zipf(1.1), true)
            .unwrap()
            .with_mix(&MIX)
            .unwrap(),
    ];
    for p in kinds {
        let gen = Generator::new(77, p.clone());
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
    let a: HashSet<u128> = reference(&Generator::new(1, p.clone()), 8 << 20).chunks(4096).map(hash).collect();
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
    assert!(o.status.success(), "{}", shown(&o));
    let err = shown(&o);
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
    assert!(o.status.success(), "{}", shown(&o));
    let p = profile(1.0, 1.0, 4096).with_extent(64 << 10).unwrap().with_mix(&[(0.5, 1.0), (0.5, 4.0)]).unwrap();
    assert!(o.stdout == reference(&Generator::new(3, p), 4 << 20));
    for (args, says) in [
        (&["--dedup-extent", "2KiB"][..], "--dedup-extent"),
        (&["--dedup-extent", "48KiB"][..], "--dedup-extent"),
        (&["--compress-mix", "0.5:2"][..], "add up to 0.5"),
        (&["--compress-mix", "0.5-2"][..], "FRACTION:RATIO"),
        (&["--compress-mix", "1:2", "--compress", "2"][..], "cannot be used with"),
        (&["--dedup-copies", "zipf:x"][..], "'--dedup-copies': 'x' is not a number"),
        (&["--dedup-copies", "zipf:3", "--dedup", "8"][..], "cannot reach dedup 8"),
        (&["--dedup-copies", "/nonexistent/copies.txt"][..], "/nonexistent/copies.txt"),
    ] {
        let o = run(&[&["gen", "--size", "1MiB", "-o", "/dev/null"][..], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(shown(&o).contains(says), "{args:?}: {}", shown(&o));
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
    assert!(o.status.success(), "{}", shown(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let data = &r["data"];
    assert_eq!(data["dedup_extent"], 65536, "{data}");
    assert_eq!(data["compress_mix"], serde_json::json!([[0.3, 1.0], [0.5, 2.0], [0.2, 8.0]]), "{data}");
    assert!((data["compress"].as_f64().unwrap() - 1.7391304347826086).abs() < 1e-9, "{data}");
    // A mix without an extent gets 32 KiB.
    write("compress_mix = [[0.5, 1], [0.5, 3]]");
    let o = run(&["run", wl.to_str().unwrap(), "-q", "--json-report", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", shown(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["data"]["dedup_extent"], 32768);
    // A duplicate-count distribution: zipf, or a histogram file beside the workload.
    std::fs::write(dir.join("copies.txt"), "1, 900\n3, 100\n").unwrap();
    for (data, want) in [
        ("dedup = 2\ndedup_copies = { zipf = 1.5 }", serde_json::json!({ "zipf": 1.5 })),
        ("dedup_copies = { histogram = \"copies.txt\" }", serde_json::json!({ "histogram": "", "rows": 2 })),
        ("dedup_copies = \"even\"", serde_json::Value::Null),
    ] {
        write(data);
        let o = run(&["run", wl.to_str().unwrap(), "-q", "--json-report", report.to_str().unwrap()]);
        assert!(o.status.success(), "{data}: {}", shown(&o));
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let got = &r["data"]["dedup_copies"];
        match want.get("histogram") {
            Some(_) => {
                assert!(got["histogram"].as_str().unwrap().ends_with("copies.txt"), "{got}");
                assert_eq!(got["rows"], 2);
                assert!((r["data"]["dedup"].as_f64().unwrap() - 1.2).abs() < 1e-9, "{}", r["data"]);
            }
            None => assert_eq!(got, &want, "{data}"),
        }
        if !want.is_null() {
            let bytes = r["data"]["dedup_table"]["bytes"].as_u64().unwrap();
            assert!(bytes > 0 && bytes < 4 << 20, "{}", r["data"]);
        }
    }
    // Bad values name the file, the line and the key.
    for (data, line, says) in [
        ("dedup_copies = { zipf = 0 }", 7, "data.dedup_copies: 'zipf:0' the zipf exponent 0 must be from 0.1 to 10"),
        ("dedup = 9\ndedup_copies = { zipf = 3 }", 8, "cannot reach dedup 9"),
        ("dedup_copies = \"lumpy\"", 7, "data.dedup_copies: \"lumpy\" is not"),
        ("dedup_copies = { histogram = \"none.txt\" }", 7, "none.txt"),
        ("dedup = 5\ndedup_copies = { histogram = \"copies.txt\" }", 7, "data.dedup: '5' the histogram"),
        ("compress = 2\ncompress_mix = [[1, 2]]", 8, "data.compress_mix: give compress or compress_mix, not both"),
        ("compress_mix = [[0.5, 2]]", 7, "data.compress_mix: '[0.5, 2]' the fractions add up to 0.5"),
        ("dedup_extent = \"3KiB\"", 7, "data.dedup_extent: '3 KiB' must be a power of two"),
        ("compress_mix = [[0.5, 2, 3]]", 7, "compress_mix"),
    ] {
        write(data);
        let o = run(&["run", wl.to_str().unwrap(), "-q"]);
        assert_eq!(o.status.code(), Some(2), "{data}: {}", shown(&o));
        let err = shown(&o);
        assert!(err.contains(&format!("w.toml:{line}")) && err.contains(says), "{data}: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Copies per distinct block over the first `len` bytes: the ratio and the histogram (the fraction
/// of distinct blocks with each copy count).
fn copy_histogram(gen: &Generator, len: u64) -> (f64, BTreeMap<u64, f64>) {
    let unit = gen.profile().unit() as usize;
    let step = 8 << 20;
    let mut buf = vec![0u8; step];
    let mut copies: HashMap<u128, u64> = HashMap::new();
    let mut pos = 0;
    while pos < len {
        gen.fill_par(0, pos, &mut buf);
        for c in buf.chunks(unit) {
            *copies.entry(hash(c)).or_default() += 1;
        }
        pos += step as u64;
    }
    let distinct = copies.len() as f64;
    let mut h = BTreeMap::new();
    for &k in copies.values() {
        *h.entry(k).or_default() += 1.0 / distinct;
    }
    ((len / unit as u64) as f64 / distinct, h)
}

/// Total variation distance between two histograms: half the sum of their differences.
fn tv(a: &BTreeMap<u64, f64>, b: &[(u64, f64)]) -> f64 {
    let mut keys: Vec<u64> = a.keys().copied().chain(b.iter().map(|x| x.0)).collect();
    keys.sort_unstable();
    keys.dedup();
    let bm: BTreeMap<u64, f64> = b.iter().copied().collect();
    keys.iter().map(|k| (a.get(k).unwrap_or(&0.0) - bm.get(k).unwrap_or(&0.0)).abs()).sum::<f64>() / 2.0
}

#[test]
fn duplicate_counts_follow_the_distribution_and_the_ratio_holds() {
    let dir = tempdir("realism-copies");
    let hist = dir.join("copies.txt");
    std::fs::write(&hist, "# copies, blocks (as DEDISbench's)\n1, 6000\n2, 2000\n4 1000\n10, 100\n50, 10\n").unwrap();
    let cases = [
        (CopySpec::Zipf(2.0), 2.0f64, 4096u64, 4096u64),
        (CopySpec::Zipf(1.2), 4.0, 4096, 4096),
        (CopySpec::histogram_file(&hist).unwrap(), 0.0, 4096, 4096),
        (CopySpec::Zipf(1.5), 3.0, 4096, 64 << 10),
    ];
    let mut failures = Vec::new();
    for (spec, d, unit, extent) in cases {
        let label = format!("{spec} D={d} extent {extent}");
        let p = Profile::new(d.max(1.0), 1.0, unit).unwrap().with_extent(extent).unwrap();
        let p = p.with_copies(spec, d > 0.0).unwrap();
        let want_d = p.dedup();
        let table: Vec<(u64, f64)> = p.copies().unwrap().histogram().to_vec();
        let gen = Generator::new(21, p);
        let (got_d, h) = copy_histogram(&gen, 1 << 30);
        let dist = tv(&h, &table);
        eprintln!("{label}: dedup {got_d:.4} (want {want_d:.4}), TV {dist:.4}, table {} B", gen.table_bytes());
        eprintln!("  measured {:?}", h.iter().take(8).map(|(k, f)| format!("{k}:{f:.4}")).collect::<Vec<_>>());
        eprintln!("  table    {:?}", table.iter().take(8).map(|(k, f)| format!("{k}:{f:.4}")).collect::<Vec<_>>());
        if extent == unit && (got_d / want_d - 1.0).abs() > 0.01 {
            failures.push(format!("{label}: dedup {got_d:.4}, want {want_d:.4} ±1 %"));
        }
        if extent == unit && dist > 0.03 {
            failures.push(format!("{label}: histogram {dist:.4} from the distribution (total variation), want ≤ 0.03"));
        }
        if extent > unit {
            // At the extent, every block of an extent shares its copies: measure there.
            let got = dedup_at(&gen, 1 << 30, extent as usize);
            if (got / want_d - 1.0).abs() > 0.02 {
                failures.push(format!("{label}: dedup at the extent {got:.4}, want {want_d:.4} ±2 %"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(dir).ok();
}

/// Copies whose runs are long next to a short stream's rows, on few columns (1 MiB extents: 4 a
/// row), hold another ratio than the distribution's mean over that length: the generator says
/// which, exactly as counting the blocks finds it, and `gen` prints it.
#[test]
fn a_stream_too_short_for_its_copies_says_the_ratio_it_holds() {
    let zipf = |extent: u64| {
        let p = Profile::new(4.0, 1.0, 4096).unwrap().with_extent(extent).unwrap();
        Generator::new(1, p.with_copies(CopySpec::Zipf(2.0), true).unwrap())
    };
    let (short, long) = (zipf(1 << 20), zipf(4096));
    let held = short.dedup_over(LEN).unwrap();
    let counted = dedup_at(&short, LEN, 4096);
    assert!((held - counted).abs() < 1e-9, "said {held}, counted {counted}");
    assert!(held / 4.0 - 1.0 > 0.01, "{held}: this case strays from D");
    let held_long = long.dedup_over(1 << 30).unwrap();
    assert!((held_long / 4.0 - 1.0).abs() < 0.01, "{held_long}");
    let args = ["gen", "--dedup", "4", "--seed", "1", "--size", "256MiB", "-o", "/dev/null"];
    let o = run(&[&args[..], &["--dedup-copies", "zipf:2", "--dedup-extent", "1MiB"]].concat());
    assert!(o.status.success(), "{}", shown(&o));
    let said = format!("dedup: this stream holds {held:.4}, the profile 4: its copies need more rows");
    assert!(shown(&o).contains(&said), "{}", shown(&o));
    // Even copies hold D exactly past the first D rows: nothing to say.
    let o = run(&args);
    assert!(!shown(&o).contains("this stream holds"), "{}", shown(&o));
}

/// A sample from known parts: text, random data, zeros, a file repeated 3 times and one 10 times.
fn known_sample(dir: &std::path::Path) {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let rnd = |seed: u64, len: usize| {
        let mut v = vec![0u8; len];
        Generator::new(seed, profile(1.0, 1.0, 4096)).fill(0, 0, &mut v);
        v
    };
    let words = ["storage", "array", "dedup", "block", "the", "of", "checkpoint", "tensor", "a", "write"];
    let mut text = std::io::BufWriter::new(std::fs::File::create(dir.join("text.txt")).unwrap());
    let mut x = 7u64;
    for _ in 0..(3 << 20) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        write!(text, "{} ", words[(x >> 60) as usize % words.len()]).unwrap();
    }
    drop(text);
    std::fs::write(dir.join("random.bin"), rnd(1, 32 << 20)).unwrap();
    std::fs::write(dir.join("zeros.bin"), vec![0u8; 256 << 10]).unwrap();
    let a = rnd(2, 8 << 20);
    for i in 0..3 {
        std::fs::write(dir.join(format!("copy{i}.bin")), &a).unwrap();
    }
    let b = rnd(3, 1 << 20);
    for i in 0..10 {
        std::fs::write(dir.join(format!("sub/small{i}.bin")), &b).unwrap();
    }
}

fn profile_json(paths: &[&std::path::Path]) -> serde_json::Value {
    let mut args = vec!["profile", "--json", "-q"];
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}", shown(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_sample_profiled_and_generated_again_has_the_sample_s_statistics() {
    let dir = tempdir("realism-profile");
    let sample = dir.join("sample");
    known_sample(&sample);
    let p = profile_json(&[&sample]);
    // What the parts make: 8 MiB × 3 + 1 MiB × 10 + 64 zero blocks over 64,000-odd blocks.
    assert_eq!(p["files"], 16);
    let d = p["dedup"][0]["ratio"].as_f64().unwrap();
    let blocks = p["dedup"][0]["chunks"].as_f64().unwrap();
    let distinct = blocks - 2.0 * 2048.0 - 9.0 * 256.0 - 63.0;
    assert!((d - blocks / distinct).abs() < 1e-9, "dedup {d}, want {}", blocks / distinct);
    assert_eq!(p["extent"], 65536, "whole files repeat: 64 KiB runs");
    let copies: Vec<(u64, u64)> =
        p["copies"].as_array().unwrap().iter().map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap())).collect();
    assert!(copies.contains(&(3, 2048)) && copies.contains(&(10, 256)) && copies.contains(&(64, 1)), "{copies:?}");
    // The mix: random blocks raw, text about 3-4:1, zeros at the top class.
    let mix = p["compress_mix"].as_array().unwrap();
    assert!(mix.iter().any(|c| c[1] == 1.0 && c[0].as_f64().unwrap() > 0.7), "{mix:?}");
    assert!(mix.iter().any(|c| (3.0..6.0).contains(&c[1].as_f64().unwrap())), "text: {mix:?}");

    // The table it printed, given to gen: 1 GiB with the same statistics.
    let table = dir.join("data.toml");
    std::fs::write(&table, p["data"].as_str().unwrap()).unwrap();
    let out = dir.join("gen");
    std::fs::create_dir_all(&out).unwrap();
    let o = run(&["gen", "--data", table.to_str().unwrap(), "--size", "1GiB", "--seed", "5", "-q", "-o"]
        .iter()
        .copied()
        .chain([out.join("data.bin").to_str().unwrap()])
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{}", shown(&o));
    let q = profile_json(&[&out]);
    let d2 = q["dedup"][0]["ratio"].as_f64().unwrap();
    eprintln!("sample dedup {d:.4}, generated {d2:.4}; sample {} generated {}", p["copies"], q["copies"]);
    assert!((d2 / d - 1.0).abs() <= 0.01, "dedup {d2}, the sample's {d}");
    for (u, (a, b)) in p["dedup"].as_array().unwrap().iter().zip(q["dedup"].as_array().unwrap()).enumerate() {
        let (a, b) = (a["ratio"].as_f64().unwrap(), b["ratio"].as_f64().unwrap());
        assert!((b / a - 1.0).abs() <= 0.02, "dedup at unit #{u}: {b}, the sample's {a}");
    }
    // Copies per distinct block: the sample's shares, binned (1, 2–5, 6–20, more).
    let shares = |v: &serde_json::Value| {
        let mut s = [0f64; 4];
        for r in v.as_array().unwrap() {
            let (k, n) = (r[0].as_u64().unwrap(), r[1].as_f64().unwrap());
            s[match k {
                1 => 0,
                2..=5 => 1,
                6..=20 => 2,
                _ => 3,
            }] += n;
        }
        let t: f64 = s.iter().sum();
        s.map(|x| x / t)
    };
    let (a, b) = (shares(&p["copies"]), shares(&q["copies"]));
    let tv: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0;
    assert!(tv <= 0.03, "copies shares {b:?}, the sample's {a:?}");
    // Compressibility: each class's share of blocks within 0.03 of the sample's.
    let classes = |v: &serde_json::Value| -> Vec<(f64, f64)> {
        v["compress_mix"].as_array().unwrap().iter().map(|c| (c[0].as_f64().unwrap(), c[1].as_f64().unwrap())).collect()
    };
    let (ca, cb) = (classes(&p), classes(&q));
    for (f, r) in &ca {
        let near = cb.iter().min_by(|x, y| (x.1.ln() - r.ln()).abs().total_cmp(&(y.1.ln() - r.ln()).abs())).unwrap();
        assert!((near.0 - f).abs() <= 0.03, "class {r}: {} of blocks, the sample's {f} ({cb:?})", near.0);
    }
    // Nothing of the sample is in the generated data.
    let sample_blocks: HashSet<u128> = std::fs::read(sample.join("text.txt")).unwrap().chunks(4096).map(hash).collect();
    let generated = std::fs::read(out.join("data.bin")).unwrap();
    assert!(generated.chunks(4096).all(|c| !sample_blocks.contains(&hash(c))));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_plugin_fills_with_a_profile_of_its_own() {
    // The objects plugin's payloads with zipf copies and a mix, through `fill-ext`; every payload
    // block read back from the files.
    let dir = tempdir("realism-fill-ext");
    let out = dir.join("out");
    let payload_data = r#"params.payload_data={ dedup = 2, dedup_copies = { zipf = 2 }, compress_mix = [[0.5, 1], [0.5, 4]], dedup_extent = 4096 }"#;
    let o = run(&[
        "run",
        &workload("objects.toml"),
        "-q",
        "--set",
        &format!("target.uri=\"file://{}\"", out.display()),
        "--set",
        "params.count=32",
        "--set",
        "params.distribution=\"fixed\"",
        "--set",
        "params.size=16777216",
        "--set",
        "params.footer=false",
        "--set",
        payload_data,
    ]);
    assert!(o.status.success(), "{}", shown(&o));
    let mut copies: HashMap<u128, u64> = HashMap::new();
    let mut z = zstd::bulk::Compressor::new(1).unwrap();
    let (mut raw, mut four) = (0u64, 0u64);
    for f in files_under(&out) {
        let data = std::fs::read(out.join(&f)).unwrap();
        // The payload follows the plugin's 24-byte header.
        for c in data[24..].chunks_exact(4096) {
            *copies.entry(hash(c)).or_default() += 1;
            let r = 4096.0 / z.compress(c).unwrap().len() as f64;
            if r < 1.5 {
                raw += 1;
            } else if r > 3.0 {
                four += 1;
            }
        }
    }
    let blocks: u64 = copies.values().sum();
    let d = blocks as f64 / copies.len() as f64;
    let singles = copies.values().filter(|&&k| k == 1).count() as f64 / copies.len() as f64;
    eprintln!("fill-ext payloads: dedup {d:.4}, {singles:.3} of distinct blocks once, raw {raw} vs 4:1 {four}");
    assert!((d / 2.0 - 1.0).abs() < 0.02, "dedup {d}");
    // zipf 2 with mean 2: about 64 % of distinct blocks are unique (even copies would have none).
    assert!((0.55..0.72).contains(&singles), "{singles}");
    let share = raw as f64 / (raw + four) as f64;
    assert!((share - 0.5).abs() < 0.03, "raw share {share}");
    // A bad profile is the plugin's error, naming the field.
    let o = run(&[
        "run",
        &workload("objects.toml"),
        "-q",
        "--set",
        &format!("target.uri=\"file://{}\"", dir.join("bad").display()),
        "--set",
        r#"params.payload_data={ dedup = 9, dedup_copies = { zipf = 3 } }"#,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", shown(&o));
    assert!(
        shown(&o).contains("fill-ext: dedup-copies = zipf:3: zipf with exponent 3 cannot reach dedup 9"),
        "{}",
        shown(&o)
    );
    std::fs::remove_dir_all(dir).ok();
}
