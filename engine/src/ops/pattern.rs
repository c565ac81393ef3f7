//! What each operation is and where it goes: the kind and size drawn by weight from the mix, the
//! offset from the access pattern (sequential, uniform, zipf, hot sets). One [`Picker`] per ring, on
//! its own random stream, so rings never share a lock and a seed gives the same choices.

use super::spec::{MixEntry, OpKind, Pattern};

/// A small, fast generator (splitmix64): the choices need speed, not cryptography.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C909)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (n ≥ 1), by a multiply-high (bias below 2^-64 · n).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Weighted choice by thresholds on a 64-bit draw.
#[derive(Clone, Debug)]
struct Weighted<T: Copy> {
    items: Vec<(u64, T)>,
}

impl<T: Copy> Weighted<T> {
    fn new(items: impl Iterator<Item = (f64, T)>) -> Weighted<T> {
        let items: Vec<(f64, T)> = items.filter(|(w, _)| *w > 0.0).collect();
        let total: f64 = items.iter().map(|i| i.0).sum();
        let mut cum = 0.0;
        let n = items.len();
        let items = items
            .into_iter()
            .enumerate()
            .map(|(i, (w, t))| {
                cum += w;
                let bound = if i + 1 == n { u64::MAX } else { (cum / total * 18_446_744_073_709_551_616.0) as u64 };
                (bound, t)
            })
            .collect();
        Weighted { items }
    }
    #[inline]
    fn pick(&self, rng: &mut Rng) -> T {
        if self.items.len() == 1 {
            return self.items[0].1;
        }
        let x = rng.next_u64();
        self.items.iter().find(|(b, _)| x < *b).unwrap_or(self.items.last().expect("one item at least")).1
    }
}

/// Zipf over ranks 1 … n with exponent s, by rejection-inversion (Hörmann and Derflinger): O(1)
/// per draw and no table, whatever n.
#[derive(Clone, Debug)]
struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    s_val: f64,
}

fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut z = Zipf { n: n as f64, s, h_x1: 0.0, h_n: 0.0, s_val: 0.0 };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(z.n + 0.5);
        z.s_val = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }
    fn h_integral(&self, x: f64) -> f64 {
        let l = x.ln();
        helper2((1.0 - self.s) * l) * l
    }
    fn h_integral_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
    /// A rank in `[0, n)` (0 the most frequent).
    fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s_val || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64 - 1;
            }
        }
    }
}

/// One operation, chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub op: OpKind,
    pub offset: u64,
    pub len: u64,
}

/// Where operations of one ring go.
#[derive(Clone, Debug)]
enum Place {
    Sequential {
        next: u64,
    },
    Random,
    Zipf {
        zipf: Zipf,
        slots: u64,
        mult: u64,
    },
    /// (first byte, bytes) of each set, and the set chosen by weight (the last is the rest).
    Hot {
        sets: Vec<(u64, u64)>,
        choose: Weighted<usize>,
    },
}

/// The region operations go to: its size, the block (writes and trims are multiples of it, at
/// multiples of it) and what reads are aligned to.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    pub region: u64,
    /// Operations never cross a multiple of this (a pool's files); the region for one file.
    pub segment: u64,
    pub unit: u64,
    pub read_align: u64,
}

/// Draws operations for one ring.
#[derive(Clone, Debug)]
pub struct Picker {
    rng: Rng,
    kinds: Weighted<usize>,
    /// Per mix entry: its kind and its sizes by weight.
    entries: Vec<(OpKind, Weighted<u64>)>,
    place: Place,
    region: u64,
    segment: u64,
    /// Offsets of writes and trims are multiples of this (the dedup unit); of reads, of `read_align`.
    unit: u64,
    read_align: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Picker {
    /// A picker for ring `index` of `rings` over a region of `region` bytes.
    pub fn new(mix: &[MixEntry], pattern: &Pattern, space: Space, seed: u64, index: u32, rings: u32) -> Picker {
        let Space { region, segment, unit, read_align } = space;
        let kinds = Weighted::new(mix.iter().enumerate().map(|(i, e)| (e.weight, i)));
        let entries = mix.iter().map(|e| (e.op, Weighted::new(e.sizes.iter().map(|&(b, w)| (w, b))))).collect();
        let place = match pattern {
            // Each ring starts its own stretch of the region, as fio's jobs with offset_increment.
            Pattern::Sequential => Place::Sequential { next: region / unit * index as u64 / rings as u64 * unit },
            Pattern::Random => Place::Random,
            Pattern::Zipf(s) => {
                let slots = (region / unit).max(1);
                // Spread the hot ranks over the region: rank k goes to slot k · mult mod slots.
                let mut mult = (slots as f64 * 0.618_033_988_75) as u64 | 1;
                while gcd(mult, slots) != 1 {
                    mult += 2;
                }
                Place::Zipf { zipf: Zipf::new(slots, *s), slots, mult: mult % slots.max(1) }
            }
            Pattern::Hot(sets) => {
                let units = region / unit;
                let mut start = 0u64;
                let mut out = Vec::new();
                let mut weights = Vec::new();
                for &(space, ops) in sets {
                    let n = ((space * units as f64).round() as u64).min(units - start);
                    out.push((start * unit, n * unit));
                    weights.push(ops);
                    start += n;
                }
                out.push((start * unit, (units - start) * unit));
                weights.push((1.0 - weights.iter().sum::<f64>()).max(0.0));
                let choose = Weighted::new(weights.into_iter().enumerate().map(|(i, w)| (w, i)));
                Place::Hot { sets: out, choose }
            }
        };
        Picker {
            rng: Rng::new(seed.wrapping_add((index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))),
            kinds,
            entries,
            place,
            region,
            segment,
            unit,
            read_align,
        }
    }

    /// The next operation; an fsync has offset and length 0.
    #[inline]
    pub fn draw(&mut self) -> Pick {
        let (op, sizes) = &self.entries[self.kinds.pick(&mut self.rng)];
        let op = *op;
        if op == OpKind::Fsync {
            return Pick { op, offset: 0, len: 0 };
        }
        let len = sizes.pick(&mut self.rng);
        let align = if op == OpKind::Read { self.read_align.max(len.min(self.unit)) } else { self.unit };
        Pick { op, offset: self.offset(len, align), len }
    }

    /// A new offset for an operation of `len` bytes aligned to `align` (when its first was busy),
    /// moved back within its segment if it would cross into the next.
    #[inline]
    pub fn offset(&mut self, len: u64, align: u64) -> u64 {
        let at = self.anywhere(len, align);
        let within = at % self.segment;
        if within + len <= self.segment {
            at
        } else {
            at - within + (self.segment - len) / align * align
        }
    }

    #[inline]
    fn anywhere(&mut self, len: u64, align: u64) -> u64 {
        let fits = |at: u64, region: u64| at + len <= region;
        match &mut self.place {
            Place::Sequential { next } => {
                let mut at = *next / align * align;
                if !fits(at, self.region) {
                    at = 0;
                }
                *next = at + len;
                at
            }
            Place::Random => self.rng.below((self.region - len) / align + 1) * align,
            Place::Zipf { zipf, slots, mult } => {
                let rank = zipf.sample(&mut self.rng);
                let slot = ((rank as u128 * *mult as u128) % *slots as u128) as u64;
                let at = slot * self.unit / align * align;
                if fits(at, self.region) {
                    at
                } else {
                    (self.region - len) / align * align
                }
            }
            Place::Hot { sets, choose } => {
                let (start, bytes) = sets[choose.pick(&mut self.rng)];
                if bytes < len {
                    return self.rng.below((self.region - len) / align + 1) * align;
                }
                let at = start.div_ceil(align) * align;
                let room = (start + bytes).saturating_sub(at + len) / align + 1;
                at + self.rng.below(room) * align
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(op: OpKind, bs: u64) -> Vec<MixEntry> {
        vec![MixEntry { op, weight: 1.0, sizes: vec![(bs, 1.0)] }]
    }

    #[test]
    fn offsets_stay_in_the_region_and_aligned() {
        let region = 1 << 20;
        for pattern in [Pattern::Sequential, Pattern::Random, Pattern::Zipf(1.2), Pattern::Hot(vec![(0.1, 0.9)])] {
            let mut p = Picker::new(
                &mix(OpKind::Write, 8192),
                &pattern,
                Space { region, segment: region, unit: 4096, read_align: 512 },
                1,
                0,
                1,
            );
            for _ in 0..10_000 {
                let k = p.draw();
                assert!(k.offset + k.len <= region && k.offset.is_multiple_of(4096), "{pattern:?} {k:?}");
            }
        }
    }

    #[test]
    fn operations_never_cross_a_segment() {
        let (region, segment) = (64 << 20, 1 << 20);
        for pattern in [Pattern::Sequential, Pattern::Random, Pattern::Zipf(0.8)] {
            let mut p = Picker::new(
                &mix(OpKind::Write, 12288),
                &pattern,
                Space { region, segment, unit: 4096, read_align: 512 },
                3,
                0,
                1,
            );
            for _ in 0..20_000 {
                let k = p.draw();
                assert_eq!(k.offset / segment, (k.offset + k.len - 1) / segment, "{pattern:?} {k:?}");
            }
        }
    }

    #[test]
    fn weights_and_hot_sets_are_kept() {
        let m = vec![
            MixEntry { op: OpKind::Read, weight: 70.0, sizes: vec![(4096, 1.0)] },
            MixEntry { op: OpKind::Write, weight: 30.0, sizes: vec![(4096, 1.0), (8192, 3.0)] },
        ];
        let region = 100 << 20;
        let mut p = Picker::new(
            &m,
            &Pattern::Hot(vec![(0.1, 0.9)]),
            Space { region, segment: region, unit: 4096, read_align: 512 },
            7,
            0,
            1,
        );
        let (mut reads, mut big, mut hot) = (0, 0, 0);
        let n = 200_000;
        for _ in 0..n {
            let k = p.draw();
            reads += (k.op == OpKind::Read) as u32;
            big += (k.len == 8192) as u32;
            hot += (k.offset < region / 10) as u32;
        }
        let share = |x: u32| x as f64 / n as f64;
        assert!((share(reads) - 0.7).abs() < 0.01, "{}", share(reads));
        assert!((share(big) - 0.3 * 0.75).abs() < 0.01, "{}", share(big));
        assert!((share(hot) - 0.9).abs() < 0.01, "{}", share(hot));
    }

    #[test]
    fn zipf_favours_few_blocks() {
        let z = Zipf::new(1000, 1.2);
        let mut rng = Rng::new(3);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        // P(rank 1) = 1 / H(1000, 1.2) ≈ 0.22 for s = 1.2.
        let p1 = counts[0] as f64 / 100_000.0;
        assert!((p1 - 0.22).abs() < 0.02, "{p1}");
        assert!(counts[0] > counts[1] && counts[1] > counts[10]);
    }
}
