//! Helpers shared by the test modules: measuring what a storage array or a compressor would see.

use dgen_engine::{Generator, Profile};
use std::collections::HashSet;
use std::io::Write;

/// What a user would measure on a stream.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub blocks: u64,
    pub distinct: u64,
    pub zstd: f64,
    pub lz4: f64,
    pub gzip: f64,
    pub zero_sectors: u64,
}

impl Measured {
    pub fn dedup(&self) -> f64 {
        self.blocks as f64 / self.distinct as f64
    }
}

/// Counts bytes written to it.
#[derive(Default)]
pub struct Counter(pub u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn hash(b: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(b)
}

/// Distinct dedup-unit blocks of stream 0 over `len` bytes (hashing only; cheap).
pub fn distinct_blocks(gen: &Generator, len: u64) -> (u64, u64) {
    let unit = gen.profile().unit() as usize;
    let chunk = (8 << 20).max(unit);
    let mut buf = vec![0u8; chunk];
    let mut seen = HashSet::new();
    let mut blocks = 0;
    let mut pos = 0u64;
    while pos < len {
        let n = (chunk as u64).min(len - pos) as usize;
        gen.fill_par(0, pos, &mut buf[..n]);
        for b in buf[..n].chunks(unit) {
            seen.insert(hash(b));
            blocks += 1;
        }
        pos += n as u64;
    }
    (blocks, seen.len() as u64)
}

/// Dedup, zstd -3, lz4 and gzip -6 ratios and all-zero 512 B sectors of stream 0 over `len` bytes.
pub fn measure(gen: &Generator, len: u64, with_compressors: bool) -> Measured {
    let unit = gen.profile().unit() as usize;
    let chunk = (4 << 20).max(unit);
    let mut buf = vec![0u8; chunk];
    let mut seen = HashSet::new();
    let (mut blocks, mut zero_sectors) = (0u64, 0u64);
    let mut zstd = zstd::stream::Encoder::new(Counter::default(), 3).unwrap();
    let mut lz4 = lz4_flex::frame::FrameEncoder::new(Counter::default());
    let mut gzip = flate2::write::GzEncoder::new(Counter::default(), flate2::Compression::new(6));
    let mut pos = 0u64;
    while pos < len {
        let n = (chunk as u64).min(len - pos) as usize;
        let data = &mut buf[..n];
        gen.fill_par(0, pos, data);
        for b in data.chunks(unit) {
            seen.insert(hash(b));
            blocks += 1;
        }
        zero_sectors += data.chunks(512).filter(|s| s.iter().all(|&x| x == 0)).count() as u64;
        if with_compressors {
            zstd.write_all(data).unwrap();
            lz4.write_all(data).unwrap();
            gzip.write_all(data).unwrap();
        }
        pos += n as u64;
    }
    let ratio = |c: u64| len as f64 / c as f64;
    let (z, l, g) = if with_compressors {
        (ratio(zstd.finish().unwrap().0), ratio(lz4.finish().unwrap().0), ratio(gzip.finish().unwrap().0))
    } else {
        (0.0, 0.0, 0.0)
    };
    Measured { blocks, distinct: seen.len() as u64, zstd: z, lz4: l, gzip: g, zero_sectors }
}

pub fn profile(d: f64, c: f64, unit: u64) -> Profile {
    Profile::new(d, c, unit).unwrap()
}

/// The `dgen-engine` binary under test.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_dgen-engine"))
}

/// Runs `dgen-engine ARGS` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().expect("run dgen-engine")
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh, empty directory for one test.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dgen-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
