//! The data is what was asked for: dedup ratio measured by hashing every dedup-unit block, compression
//! ratio measured with zstd -3, lz4 and gzip -6, for the D × C matrix and four dedup units; and each
//! ratio stays put when the other one changes.

use crate::common::*;
use dgen_engine::Generator;

const DS: [f64; 5] = [1.0, 1.5, 2.0, 4.0, 7.3];
const CS: [f64; 5] = [1.0, 1.5, 2.0, 3.0, 5.0];
const LEN: u64 = 64 << 20;

fn within(got: f64, want: f64, tol: f64) -> bool {
    (got / want - 1.0).abs() <= tol
}

fn matrix(unit: u64, seed: u64) {
    // Enough blocks that ±1 % is a count of several blocks, not a fraction of one.
    let dedup_len = LEN.max(4096 * unit);
    let mut m = [[None; 5]; 5];
    let mut failures = Vec::new();
    for (i, &d) in DS.iter().enumerate() {
        for (j, &c) in CS.iter().enumerate() {
            let gen = Generator::new(seed, profile(d, c, unit));
            let mut r = measure(&gen, LEN, true);
            if dedup_len > LEN {
                (r.blocks, r.distinct) = distinct_blocks(&gen, dedup_len);
            }
            let label = format!("U={unit} D={d} C={c}");
            let want_distinct = r.blocks as f64 / d;
            if !within(r.distinct as f64, want_distinct, 0.01) {
                failures.push(format!("{label}: {} distinct blocks, want {want_distinct:.1} ±1 %", r.distinct));
            }
            if !within(r.zstd, c, 0.05) {
                failures.push(format!("{label}: zstd ratio {:.3}, want {c} ±5 %", r.zstd));
            }
            if !within(r.lz4, c, 0.10) {
                failures.push(format!("{label}: lz4 ratio {:.3}, want {c} ±10 %", r.lz4));
            }
            if !within(r.gzip, c, 0.10) {
                failures.push(format!("{label}: gzip ratio {:.3}, want {c} ±10 %", r.gzip));
            }
            if r.zero_sectors != 0 {
                failures.push(format!("{label}: {} all-zero 512-byte sectors", r.zero_sectors));
            }
            m[i][j] = Some(r);
        }
    }
    // Independence: C does not move dedup, D does not move zstd.
    for i in 0..5 {
        for j in 0..5 {
            let r = m[i][j].unwrap();
            let no_c = m[i][0].unwrap();
            let no_d = m[0][j].unwrap();
            if !within(r.dedup(), no_c.dedup(), 0.01) {
                failures.push(format!(
                    "U={unit} D={} C={}: dedup {:.4} moved from {:.4} at C=1",
                    DS[i],
                    CS[j],
                    r.dedup(),
                    no_c.dedup()
                ));
            }
            if !within(r.zstd, no_d.zstd, 0.05) {
                failures.push(format!(
                    "U={unit} D={} C={}: zstd {:.3} moved from {:.3} at D=1",
                    DS[i], CS[j], r.zstd, no_d.zstd
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn matrix_unit_4k() {
    matrix(4096, 42);
}

#[test]
fn matrix_unit_512() {
    matrix(512, 7);
}

#[test]
fn matrix_unit_64k() {
    matrix(64 << 10, 1234);
}

#[test]
fn matrix_unit_1m() {
    matrix(1 << 20, 99);
}

#[test]
fn odd_ratios_hold_too() {
    // Not in the grid: real-valued ratios and a unit-sized granule.
    for (d, c, unit) in [(1.25, 2.7, 8192), (3.3, 1.1, 4096), (10.0, 12.0, 4096), (1.0, 16.0, 512), (1.0, 100.0, 4096)]
    {
        let gen = Generator::new(5, profile(d, c, unit));
        let r = measure(&gen, 96 << 20, true);
        assert!(within(r.dedup(), d, 0.01), "D={d}: measured {}", r.dedup());
        assert!(within(r.zstd, c, 0.05), "C={c} U={unit}: zstd {}", r.zstd);
        assert_eq!(r.zero_sectors, 0);
    }
}

#[test]
fn short_streams_get_the_ratio_their_length_allows() {
    // Copies sit 4 MiB apart, so a 16 MiB stream can hold at most 4 copies of a block: D=8 gives 4.
    let gen = Generator::new(3, profile(8.0, 1.0, 4096));
    let (blocks, distinct) = distinct_blocks(&gen, 16 << 20);
    assert_eq!(blocks / distinct, 4);
}

#[test]
fn no_two_sectors_of_a_block_are_equal() {
    // Arrays that deduplicate at 512 B must not find duplicates inside a block: the compressible
    // filler repeats with an odd period, so sector-aligned windows never line up.
    for (c, unit) in [(3.0, 4096u64), (5.0, 4096), (2.0, 65536), (1.5, 1 << 20), (16.0, 512), (100.0, 4096)] {
        let gen = Generator::new(77, profile(1.0, c, unit));
        let mut buf = vec![0u8; (4 << 20).max(unit as usize * 2)];
        gen.fill(0, 0, &mut buf);
        for (b, block) in buf.chunks(unit as usize).enumerate() {
            let sectors: std::collections::HashSet<u128> = block.chunks(512).map(hash).collect();
            assert_eq!(sectors.len(), block.len() / 512, "C={c} U={unit}: block {b} repeats a sector");
        }
    }
}
