//! The pseudo-random core: reduced-round AES in counter mode, plus a full-round keyed permutation used as
//! the block-key PRF.
//!
//! Why AES: every x86-64 server since 2010 has AES-NI, current ones (Ice Lake, Zen 3 and later) run two
//! 256-bit `vaesenc` per cycle, and counter mode gives random access to any 16-byte word of a block for
//! free. Four rounds are far more than an LZ compressor or a dedup index can tell from random; what we need
//! is incompressibility and uniqueness, not secrecy.
//!
//! Three kernels produce the *same bytes*: VAES (AVX2 width), AES-NI (128-bit) and a portable software
//! round. The software one defines the semantics (Intel's `aesenc`); unit tests hold the hardware kernels
//! to it, so a machine without AES-NI still writes identical data, only slower.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A 128-bit AES state or round key as (low, high) 64-bit little-endian halves.
pub type Block = [u64; 2];

/// Rounds of the keystream (counter-mode) function.
pub const STREAM_ROUNDS: usize = 4;
/// Rounds of the block-key PRF (a full AES round count, with independent round keys).
pub const PRF_ROUNDS: usize = 10;

/// Which implementation runs; all give identical output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 256-bit VAES + AVX2: two AES blocks per instruction.
    Vaes,
    /// 128-bit AES-NI.
    AesNi,
    /// Portable table-free software rounds (reference semantics).
    Soft,
}

impl Kernel {
    /// The fastest kernel this CPU runs. `DGEN_KERNEL=soft|aesni|vaes` forces one (for tests and
    /// benchmarks); a forced kernel the CPU lacks falls back to the detected one.
    pub fn detect() -> Kernel {
        let best = Self::best_available();
        match std::env::var("DGEN_KERNEL").ok().as_deref() {
            Some("soft") => Kernel::Soft,
            Some("aesni") if best != Kernel::Soft => Kernel::AesNi,
            _ => best,
        }
    }

    fn best_available() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("aes") && is_x86_feature_detected!("sse2") {
                if is_x86_feature_detected!("vaes") && is_x86_feature_detected!("avx2") {
                    return Kernel::Vaes;
                }
                return Kernel::AesNi;
            }
        }
        Kernel::Soft
    }

    /// Every kernel this CPU can run (for tests that compare them).
    pub fn all_available() -> Vec<Kernel> {
        let mut v = vec![Kernel::Soft];
        match Self::best_available() {
            Kernel::Vaes => v.extend([Kernel::AesNi, Kernel::Vaes]),
            Kernel::AesNi => v.push(Kernel::AesNi),
            Kernel::Soft => {}
        }
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vaes => "vaes",
            Kernel::AesNi => "aesni",
            Kernel::Soft => "soft",
        }
    }
}

/// Round keys of one keystream: `k[0]` whitens the counter, `k[1..]` are the round keys.
pub type StreamKeys = [Block; STREAM_ROUNDS + 1];

/// Writes keystream bytes `[byte_offset, byte_offset + out.len())` for `keys` into `out`.
/// Byte `i` of the keystream is byte `i % 16` of `AES_r(keys, counter = i / 16)`.
pub fn keystream(kernel: Kernel, keys: &StreamKeys, byte_offset: u64, out: &mut [u8]) {
    if out.is_empty() {
        return;
    }
    let mut ctr = byte_offset / 16;
    let head = (byte_offset % 16) as usize;
    let mut out = out;
    if head != 0 {
        // An unaligned start: make the whole first word and keep its tail.
        let mut w = [0u8; 16];
        keystream_words(kernel, keys, ctr, &mut w);
        let n = (16 - head).min(out.len());
        out[..n].copy_from_slice(&w[head..head + n]);
        out = &mut out[n..];
        ctr += 1;
    }
    let whole = out.len() / 16 * 16;
    if whole > 0 {
        keystream_words(kernel, keys, ctr, &mut out[..whole]);
        ctr += (whole / 16) as u64;
    }
    let tail = out.len() - whole;
    if tail > 0 {
        let mut w = [0u8; 16];
        keystream_words(kernel, keys, ctr, &mut w);
        out[whole..].copy_from_slice(&w[..tail]);
    }
}

/// `out.len()` must be a multiple of 16.
fn keystream_words(kernel: Kernel, keys: &StreamKeys, ctr: u64, out: &mut [u8]) {
    debug_assert_eq!(out.len() % 16, 0);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Vaes` is only produced after runtime detection of vaes+avx2+aes.
        Kernel::Vaes => unsafe { x86::keystream_vaes(keys, ctr, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::AesNi` is only produced after runtime detection of aes.
        Kernel::AesNi => unsafe { x86::keystream_aesni(keys, ctr, out) },
        _ => soft::keystream(keys, ctr, out),
    }
}

/// The keyed permutation `E(x) = aesenc^10(x ^ k0)` with independent round keys: distinct inputs always
/// give distinct outputs, so distinct (stream, content) pairs always get distinct block keys.
pub fn prf(kernel: Kernel, keys: &[Block; PRF_ROUNDS + 1], x: Block) -> Block {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Vaes` implies avx2 (so avx) and aes were detected.
        Kernel::Vaes => unsafe { x86::prf_vex(keys, x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::AesNi` implies AES-NI was detected.
        Kernel::AesNi => unsafe { x86::prf_aesni(keys, x) },
        _ => soft::prf(keys, x),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    #[inline(always)]
    fn load(b: Block) -> __m128i {
        // SAFETY: plain register construction, sse2 is baseline on x86_64.
        unsafe { _mm_set_epi64x(b[1] as i64, b[0] as i64) }
    }

    // Every kernel body exists twice: once legacy-SSE encoded for CPUs without AVX, once VEX encoded
    // for the VAES kernel. A legacy-SSE instruction right after 256/512-bit code (ours, or the CRC32C
    // kernel's) with dirty upper register halves costs a state transition on Intel cores (perf showed
    // 97 % of `prf_aesni`'s time on its first instruction); VEX-encoded 128-bit code has no such cost.
    // The bodies are `inline(always)` so that each wrapper compiles them with its own features.

    #[target_feature(enable = "aes,sse2")]
    pub(super) fn prf_aesni(keys: &[Block; PRF_ROUNDS + 1], x: Block) -> Block {
        prf_body(keys, x)
    }

    #[target_feature(enable = "aes,avx")]
    pub(super) fn prf_vex(keys: &[Block; PRF_ROUNDS + 1], x: Block) -> Block {
        prf_body(keys, x)
    }

    #[target_feature(enable = "aes,sse2")]
    pub(super) fn keystream_aesni(keys: &StreamKeys, ctr: u64, out: &mut [u8]) {
        // SAFETY: this wrapper enables aes and sse2.
        unsafe { keystream_body(keys, ctr, out) }
    }

    #[target_feature(enable = "aes,avx")]
    fn keystream_aesni_vex(keys: &StreamKeys, ctr: u64, out: &mut [u8]) {
        // SAFETY: this wrapper enables aes and avx.
        unsafe { keystream_body(keys, ctr, out) }
    }

    #[inline(always)]
    fn prf_body(keys: &[Block; PRF_ROUNDS + 1], x: Block) -> Block {
        // SAFETY: only called from wrappers that enable aes (and sse2 or avx).
        unsafe {
            let mut s = _mm_xor_si128(load(x), load(keys[0]));
            for k in &keys[1..] {
                s = _mm_aesenc_si128(s, load(*k));
            }
            let mut out = [0u64; 2];
            // `out` is 16 writable bytes; storeu has no alignment requirement.
            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s);
            [u64::from_le(out[0]), u64::from_le(out[1])]
        }
    }

    /// # Safety
    /// Only for wrappers that enable aes (and sse2 or avx).
    #[inline(always)]
    unsafe fn keystream_body(keys: &StreamKeys, ctr: u64, out: &mut [u8]) {
        let k: [__m128i; STREAM_ROUNDS + 1] = std::array::from_fn(|i| load(keys[i]));
        let words = out.len() / 16;
        let p = out.as_mut_ptr() as *mut __m128i;
        let mut c = _mm_set_epi64x(0, ctr as i64);
        let one = _mm_set_epi64x(0, 1);
        let mut i = 0;
        // Four independent counters per step hide the aesenc latency.
        while i + 4 <= words {
            let c1 = _mm_add_epi64(c, one);
            let c2 = _mm_add_epi64(c1, one);
            let c3 = _mm_add_epi64(c2, one);
            let mut x =
                [_mm_xor_si128(c, k[0]), _mm_xor_si128(c1, k[0]), _mm_xor_si128(c2, k[0]), _mm_xor_si128(c3, k[0])];
            for kr in &k[1..] {
                for v in x.iter_mut() {
                    *v = _mm_aesenc_si128(*v, *kr);
                }
            }
            for (j, v) in x.iter().enumerate() {
                // SAFETY: i + j < words, so the 16 bytes at word i + j are inside `out`.
                unsafe { _mm_storeu_si128(p.add(i + j), *v) };
            }
            c = _mm_add_epi64(c3, one);
            i += 4;
        }
        while i < words {
            let mut x = _mm_xor_si128(c, k[0]);
            for kr in &k[1..] {
                x = _mm_aesenc_si128(x, *kr);
            }
            // SAFETY: i < words.
            unsafe { _mm_storeu_si128(p.add(i), x) };
            c = _mm_add_epi64(c, one);
            i += 1;
        }
    }

    #[target_feature(enable = "aes,sse2,avx2,vaes")]
    pub(super) fn keystream_vaes(keys: &StreamKeys, ctr: u64, out: &mut [u8]) {
        let words = out.len() / 16;
        let pairs = words / 2;
        let k: [__m256i; STREAM_ROUNDS + 1] = std::array::from_fn(|i| _mm256_broadcastsi128_si256(load(keys[i])));
        let p = out.as_mut_ptr() as *mut __m256i;
        // Each 256-bit register holds two counters: (ctr, ctr + 1).
        let mut c = _mm256_set_epi64x(0, ctr as i64 + 1, 0, ctr as i64);
        let two = _mm256_set_epi64x(0, 2, 0, 2);
        let mut i = 0;
        while i + 4 <= pairs {
            let c1 = _mm256_add_epi64(c, two);
            let c2 = _mm256_add_epi64(c1, two);
            let c3 = _mm256_add_epi64(c2, two);
            let mut x = [
                _mm256_xor_si256(c, k[0]),
                _mm256_xor_si256(c1, k[0]),
                _mm256_xor_si256(c2, k[0]),
                _mm256_xor_si256(c3, k[0]),
            ];
            for kr in &k[1..] {
                for v in x.iter_mut() {
                    *v = _mm256_aesenc_epi128(*v, *kr);
                }
            }
            for (j, v) in x.iter().enumerate() {
                // SAFETY: i + j < pairs, so the 32 bytes at pair i + j are inside `out`.
                unsafe { _mm256_storeu_si256(p.add(i + j), *v) };
            }
            c = _mm256_add_epi64(c3, two);
            i += 4;
        }
        while i < pairs {
            let mut x = _mm256_xor_si256(c, k[0]);
            for kr in &k[1..] {
                x = _mm256_aesenc_epi128(x, *kr);
            }
            // SAFETY: i < pairs.
            unsafe { _mm256_storeu_si256(p.add(i), x) };
            c = _mm256_add_epi64(c, two);
            i += 1;
        }
        if words % 2 == 1 {
            let done = pairs * 2;
            keystream_aesni_vex(keys, ctr + done as u64, &mut out[done * 16..]);
        }
    }
}

/// Reference semantics, straight from FIPS-197 and Intel's definition of `aesenc`.
mod soft {
    use super::*;

    const fn gf_mul(mut a: u8, mut b: u8) -> u8 {
        let mut r = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                r ^= a;
            }
            let hi = a & 0x80;
            a <<= 1;
            if hi != 0 {
                a ^= 0x1b;
            }
            b >>= 1;
        }
        r
    }

    const fn make_sbox() -> [u8; 256] {
        let mut s = [0u8; 256];
        let mut x = 0usize;
        while x < 256 {
            // Multiplicative inverse as x^254 (0 maps to 0).
            let mut inv = 1u8;
            let mut i = 0;
            while i < 254 {
                inv = gf_mul(inv, x as u8);
                i += 1;
            }
            if x == 0 {
                inv = 0;
            }
            let b = inv;
            s[x] = b ^ b.rotate_left(1) ^ b.rotate_left(2) ^ b.rotate_left(3) ^ b.rotate_left(4) ^ 0x63;
            x += 1;
        }
        s
    }

    static SBOX: [u8; 256] = make_sbox();

    fn to_bytes(b: Block) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&b[0].to_le_bytes());
        s[8..].copy_from_slice(&b[1].to_le_bytes());
        s
    }

    fn from_bytes(s: &[u8; 16]) -> Block {
        [u64::from_le_bytes(s[..8].try_into().unwrap()), u64::from_le_bytes(s[8..].try_into().unwrap())]
    }

    /// One `aesenc`: ShiftRows, SubBytes, MixColumns, then xor the round key.
    pub(super) fn aesenc(state: Block, key: Block) -> Block {
        let s = to_bytes(state);
        let mut t = [0u8; 16];
        for c in 0..4 {
            for r in 0..4 {
                t[4 * c + r] = SBOX[s[4 * ((c + r) % 4) + r] as usize];
            }
        }
        let mut m = [0u8; 16];
        for c in 0..4 {
            let a = [t[4 * c], t[4 * c + 1], t[4 * c + 2], t[4 * c + 3]];
            m[4 * c] = gf_mul(a[0], 2) ^ gf_mul(a[1], 3) ^ a[2] ^ a[3];
            m[4 * c + 1] = a[0] ^ gf_mul(a[1], 2) ^ gf_mul(a[2], 3) ^ a[3];
            m[4 * c + 2] = a[0] ^ a[1] ^ gf_mul(a[2], 2) ^ gf_mul(a[3], 3);
            m[4 * c + 3] = gf_mul(a[0], 3) ^ a[1] ^ a[2] ^ gf_mul(a[3], 2);
        }
        let r = from_bytes(&m);
        [r[0] ^ key[0], r[1] ^ key[1]]
    }

    pub(super) fn prf(keys: &[Block; PRF_ROUNDS + 1], x: Block) -> Block {
        let mut s = [x[0] ^ keys[0][0], x[1] ^ keys[0][1]];
        for k in &keys[1..] {
            s = aesenc(s, *k);
        }
        s
    }

    pub(super) fn keystream(keys: &StreamKeys, ctr: u64, out: &mut [u8]) {
        for (i, w) in out.chunks_exact_mut(16).enumerate() {
            let c = ctr + i as u64;
            let mut s = [c ^ keys[0][0], keys[0][1]];
            for k in &keys[1..] {
                s = aesenc(s, *k);
            }
            w.copy_from_slice(&to_bytes(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn soft_aesenc_matches_fips197_round() {
        // FIPS-197 appendix B, round 1: state after AddRoundKey, then start of round 2 with its round key.
        let hex = |s: &str| -> [u8; 16] {
            let v: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
            v.try_into().unwrap()
        };
        let to_block = |b: [u8; 16]| -> Block {
            [u64::from_le_bytes(b[..8].try_into().unwrap()), u64::from_le_bytes(b[8..].try_into().unwrap())]
        };
        let start = to_block(hex("193de3bea0f4e22b9ac68d2ae9f84808"));
        let rk1 = to_block(hex("a0fafe1788542cb123a339392a6c7605"));
        let want = to_block(hex("a49c7ff2689f352b6b5bea43026a5049"));
        assert_eq!(soft::aesenc(start, rk1), want);
    }

    #[test]
    fn all_kernels_give_identical_bytes() {
        let mut s = 7u64;
        for _ in 0..50 {
            let keys: StreamKeys = std::array::from_fn(|_| [splitmix(&mut s), splitmix(&mut s)]);
            let prf_keys: [Block; PRF_ROUNDS + 1] = std::array::from_fn(|_| [splitmix(&mut s), splitmix(&mut s)]);
            let off = splitmix(&mut s) % 5000;
            let len = (splitmix(&mut s) % 3000) as usize;
            let x = [splitmix(&mut s), splitmix(&mut s)];
            let mut reference = vec![0u8; len];
            keystream(Kernel::Soft, &keys, off, &mut reference);
            let want_prf = prf(Kernel::Soft, &prf_keys, x);
            for k in Kernel::all_available() {
                let mut got = vec![0u8; len];
                keystream(k, &keys, off, &mut got);
                assert_eq!(got, reference, "kernel {k:?} offset {off} len {len}");
                assert_eq!(prf(k, &prf_keys, x), want_prf, "prf kernel {k:?}");
            }
        }
    }

    #[test]
    fn keystream_is_random_access() {
        let keys: StreamKeys = std::array::from_fn(|i| [i as u64 * 3 + 1, i as u64 * 5 + 2]);
        let kernel = Kernel::detect();
        let mut whole = vec![0u8; 4096];
        keystream(kernel, &keys, 0, &mut whole);
        for (off, len) in [(0usize, 1usize), (1, 15), (15, 17), (17, 100), (4000, 96), (33, 4063)] {
            let mut part = vec![0u8; len];
            keystream(kernel, &keys, off as u64, &mut part);
            assert_eq!(part, whole[off..off + len]);
        }
    }
}
