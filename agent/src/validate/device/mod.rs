//! The validation protocol on the device: the CUDA source of nightshift's own kernels
//! (input generation, comparison with the reference, bitwise difference, scrambling of
//! outputs before timed launches), and their exact mirror on the host.
//!
//! Inputs come from a counter-based generator (Philox4x32-10) keyed by the argument's
//! stream, so element `i` is a pure function of `(key, i)`: generated on the device in
//! parallel, and reproduced bit for bit by [`generate`] here. Every distribution is
//! computed in f64 with operations that IEEE 754 rounds exactly (+, -, *, /, sqrt,
//! conversions) and a logarithm of our own made of them; the kernels are compiled
//! without FMA contraction, so host and device agree to the bit.
//!
//! This module does no I/O and touches no GPU: the worker loads [`SOURCE`] and launches
//! it; the tests compare its results with the functions here.

mod source;

pub use source::SOURCE;

use crate::spec::{DType, Init};

use super::{BadElement, ErrorStats, TrialKind};

/// Options the kernels are compiled with: no FMA contraction (host and device must
/// round alike), IEEE division and square root.
pub const COMPILE_OPTIONS: [&str; 3] = ["--fmad=false", "--prec-div=true", "--prec-sqrt=true"];

/// Entry points of [`SOURCE`].
pub const GENERATE: &str = "ns_generate";
pub const COMPARE: &str = "ns_compare";
pub const FIRST_DIFF: &str = "ns_first_diff";
pub const SCRAMBLE: &str = "ns_scramble";

/// Threads per block of every kernel here.
pub const BLOCK: u32 = 256;

/// The stats record [`COMPARE`] accumulates into, as laid out on the device: 8 words.
pub const STATS_BYTES: usize = 64;

/// The initial stats record: counts 0, first bad at u64::MAX, maxima 0.
pub fn stats_init() -> [u8; STATS_BYTES] {
    let mut b = [0u8; STATS_BYTES];
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    b
}

/// The device's stats record as [`ErrorStats`]; `bad_element` reads the first bad
/// element's value and the reference's (the caller downloads two elements).
pub fn stats_from_device(
    raw: &[u8],
    elements: u64,
    bad_element: impl FnOnce(u64) -> (f64, f64),
) -> ErrorStats {
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let mut s = ErrorStats::clean(elements);
    s.bad = word(0);
    s.unwritten = word(1);
    s.non_finite = word(2);
    s.max_abs = f64::from_bits(word(4));
    s.max_rel = f64::from_bits(word(5));
    let (diff2, ref2) = (f64::from_bits(word(6)), f64::from_bits(word(7)));
    if s.bad > 0 && word(3) < elements {
        let index = word(3);
        let (got, expected) = bad_element(index);
        s.first_bad = Some(BadElement {
            index,
            got,
            expected,
        });
    }
    s.finish(diff2, ref2);
    s
}

/// The code of a dtype in [`SOURCE`].
pub fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F16 => 0,
        DType::Bf16 => 1,
        DType::F32 => 2,
        DType::F64 => 3,
        DType::I8 => 4,
        DType::U8 => 5,
        DType::I32 => 6,
        DType::U32 => 7,
        DType::I64 => 8,
        DType::U64 => 9,
    }
}

/// An element's poison pattern as the raw integer [`COMPARE`] reads.
pub fn poison_word(d: DType) -> u64 {
    let mut w = [0u8; 8];
    w[..d.size()].fill(d.poison_byte());
    u64::from_le_bytes(w)
}

/// What [`GENERATE`] is launched with for one argument: the distribution and its
/// parameters, the scale, and the Philox key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenParams {
    pub dist: i32,
    pub p0: f64,
    pub p1: f64,
    pub scale: f64,
    pub key: (u32, u32),
}

/// splitmix64: the Philox key of a stream seed.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of a stream seed (what [`super::inputs_for`] passes per argument).
pub fn key(seed: u64) -> (u32, u32) {
    let k = mix(seed);
    (k as u32, (k >> 32) as u32)
}

impl GenParams {
    pub fn new(dtype: DType, init: Init, kind: TrialKind, large_scale: f64, seed: u64) -> Self {
        let scale = match kind {
            TrialKind::Large if dtype.is_float() => large_scale,
            _ => 1.0,
        };
        let (dist, p0, p1) = match init {
            Init::Normal => (0, 0.0, 0.0),
            Init::Uniform { low, high } => (1, low, high),
            Init::Randint { low, high } => (2, low as f64, high as f64),
            Init::Constant { value } => (3, value, 0.0),
        };
        // Integers are not scaled (a large trial of indices would leave their range).
        let scale = if dist == 2 { 1.0 } else { scale };
        GenParams {
            dist,
            p0,
            p1,
            scale,
            key: key(seed),
        }
    }

    /// Element `i` as [`GENERATE`] computes it, before it is stored in its dtype.
    pub fn value(&self, i: u64) -> f64 {
        let (k0, k1) = self.key;
        match self.dist {
            0 => normal(i, k0, k1) * self.scale,
            1 => (self.p0 + (self.p1 - self.p0) * uniform01(i, k0, k1)) * self.scale,
            2 => {
                let v = self.p0 + (uniform01(i, k0, k1) * (self.p1 - self.p0)).floor();
                if v >= self.p1 {
                    self.p1 - 1.0
                } else {
                    v
                }
            }
            _ => self.p0 * self.scale,
        }
    }
}

/// `n` elements of `dtype` exactly as [`GENERATE`] writes them, little-endian.
pub fn generate(dtype: DType, n: u64, p: &GenParams) -> Vec<u8> {
    let mut out = Vec::with_capacity(n as usize * dtype.size());
    for i in 0..n {
        store(dtype, p.value(i), &mut out);
    }
    out
}

/// Philox4x32-10 of counter `c` under key `(k0, k1)`.
pub fn philox(mut c: [u32; 4], mut k0: u32, mut k1: u32) -> [u32; 4] {
    for r in 0..10 {
        if r > 0 {
            k0 = k0.wrapping_add(0x9E37_79B9);
            k1 = k1.wrapping_add(0xBB67_AE85);
        }
        let p0 = 0xD251_1F53u64 * c[0] as u64;
        let p1 = 0xCD9E_8D57u64 * c[2] as u64;
        let (lo0, hi0) = (p0 as u32, (p0 >> 32) as u32);
        let (lo1, hi1) = (p1 as u32, (p1 >> 32) as u32);
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0];
    }
    c
}

fn u01(x: u32) -> f64 {
    (x as f64 + 0.5) * (1.0 / 4_294_967_296.0)
}

/// ln(x) for a positive, finite, normal x, as [`SOURCE`] computes it.
pub fn ln(x: f64) -> f64 {
    let b = x.to_bits();
    let mut e = ((b >> 52) & 0x7FF) as i32 - 1023;
    let mut m = f64::from_bits((b & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut p = 1.0 / 25.0;
    for k in (0..=11).rev() {
        p = p * t2 + 1.0 / (2 * k + 1) as f64;
    }
    2.0 * t * p + e as f64 * std::f64::consts::LN_2
}

fn normal(i: u64, k0: u32, k1: u32) -> f64 {
    for attempt in 0..32u32 {
        let c = philox([i as u32, (i >> 32) as u32, attempt, 0], k0, k1);
        let u = 2.0 * u01(c[0]) - 1.0;
        let v = 2.0 * u01(c[1]) - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * ln(s) / s).sqrt();
        }
    }
    0.0
}

fn uniform01(i: u64, k0: u32, k1: u32) -> f64 {
    u01(philox([i as u32, (i >> 32) as u32, 0, 0], k0, k1)[0])
}

/// f32 to f16 bits, rounding to nearest even, as [`SOURCE`] does.
pub fn f16_bits(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = (x >> 16) & 0x8000;
    let ax = x & 0x7FFF_FFFF;
    if ax >= 0x7F80_0000 {
        return (sign | if ax > 0x7F80_0000 { 0x7E00 } else { 0x7C00 }) as u16;
    }
    if ax < 0x0080_0000 {
        return sign as u16;
    }
    let e = (ax >> 23) as i32 - 127;
    let mant = (ax & 0x7F_FFFF) | 0x80_0000;
    if e > 15 {
        return (sign | 0x7C00) as u16;
    }
    if e >= -14 {
        let (mut q, rem) = (mant >> 13, mant & 0x1FFF);
        if rem > 0x1000 || (rem == 0x1000 && q & 1 == 1) {
            q += 1;
        }
        let h = (((e + 15) as u32) << 10) + (q - 0x400);
        return (sign | h.min(0x7C00)) as u16;
    }
    let s = -(e + 1);
    if s > 24 {
        return sign as u16;
    }
    let (mut q, rem, half) = (mant >> s, mant & ((1 << s) - 1), 1u32 << (s - 1));
    if rem > half || (rem == half && q & 1 == 1) {
        q += 1;
    }
    (sign | q) as u16
}

/// f32 to bf16 bits, rounding to nearest even, as [`SOURCE`] does.
pub fn bf16_bits(f: f32) -> u16 {
    let x = f.to_bits();
    if x & 0x7FFF_FFFF > 0x7F80_0000 {
        return ((x >> 16) | 0x40) as u16;
    }
    (x.wrapping_add(0x7FFF + ((x >> 16) & 1)) >> 16) as u16
}

/// Stores `v` as [`SOURCE`]'s `ns_store` does: floats rounded to nearest even (f16 and
/// bf16 through f32), integers rounded half away from zero and saturated (NaN to 0),
/// which is [`DType::encode`] for every type but the half-precision ones.
pub fn store(dtype: DType, v: f64, out: &mut Vec<u8>) {
    match dtype {
        DType::F16 => out.extend_from_slice(&f16_bits(v as f32).to_le_bytes()),
        DType::Bf16 => out.extend_from_slice(&bf16_bits(v as f32).to_le_bytes()),
        _ => dtype.encode(v, out),
    }
}

/// What [`SCRAMBLE`] writes over `n` bytes under `key`.
pub fn scramble(n: usize, key: (u32, u32)) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let words = n / 16;
    for i in 0..=words {
        let c = philox([i as u32, (i >> 32) as u32, 0x5C4A_3B1D, 0], key.0, key.1);
        for w in c {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_random123_known_answer() {
        // Random123's kat_vectors: philox4x32_10, counter 0, key 0.
        assert_eq!(
            philox([0, 0, 0, 0], 0, 0),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        // ... and counter and key all ones.
        assert_eq!(
            philox([u32::MAX; 4], u32::MAX, u32::MAX),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
    }

    #[test]
    fn the_logarithm_is_within_two_ulps_of_libm() {
        let mut x = 1e-20f64;
        while x < 1.0 {
            let (a, b) = (ln(x), x.ln());
            assert!(
                (a - b).abs() <= 2.0 * f64::EPSILON * b.abs().max(1.0),
                "ln({x}) = {a}, libm {b}"
            );
            x *= 1.37;
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn f16_and_bf16_rounding_match_the_half_crate_everywhere() {
        // Every f32 with a 16-bit stride through the patterns, and the edges.
        let mut patterns: Vec<u32> = (0..=u32::MAX).step_by(65_519).collect();
        patterns.extend([
            0x3380_0000, // 2^-24: the smallest f16 subnormal
            0x3300_0000, // 2^-25: a tie that rounds to 0
            0x3300_0001,
            0x387F_E000, // just under the smallest normal
            0x477F_E000, // 65504: the largest f16
            0x477F_F000, // 65520: rounds to infinity
            0x477F_EFFF,
            0x7F80_0000,
            0xFF80_0000,
            0x0000_0001,
        ]);
        for bits in patterns {
            let f = f32::from_bits(bits);
            if f.is_nan() {
                assert!(half::f16::from_bits(f16_bits(f)).is_nan());
                assert!(half::bf16::from_bits(bf16_bits(f)).is_nan());
                continue;
            }
            assert_eq!(
                f16_bits(f),
                half::f16::from_f32(f).to_bits(),
                "f16 of {f:e} ({bits:#x})"
            );
            assert_eq!(
                bf16_bits(f),
                half::bf16::from_f32(f).to_bits(),
                "bf16 of {f:e} ({bits:#x})"
            );
        }
    }

    #[test]
    fn every_distribution_is_seeded_signed_bounded_and_scaled() {
        let p = |init, kind, seed| GenParams::new(DType::F32, init, kind, 1000.0, seed);
        let a = generate(DType::F32, 4000, &p(Init::Normal, TrialKind::Normal, 42));
        assert_eq!(
            a,
            generate(DType::F32, 4000, &p(Init::Normal, TrialKind::Normal, 42))
        );
        assert_ne!(
            a,
            generate(DType::F32, 4000, &p(Init::Normal, TrialKind::Normal, 43))
        );
        let v: Vec<f64> = (0..4000).map(|i| DType::F32.read(&a, i)).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            mean.abs() < 0.06 && (var - 1.0).abs() < 0.08,
            "{mean} {var}"
        );
        let large = generate(DType::F32, 4000, &p(Init::Normal, TrialKind::Large, 42));
        let max = (0..4000).fold(0.0f64, |m, i| m.max(DType::F32.read(&large, i).abs()));
        assert!(max > 1000.0, "{max}");
        let u = generate(
            DType::F64,
            2000,
            &GenParams::new(
                DType::F64,
                Init::Uniform {
                    low: -2.0,
                    high: 3.0,
                },
                TrialKind::Normal,
                1.0,
                1,
            ),
        );
        assert!((0..2000).all(|i| (-2.0..3.0).contains(&DType::F64.read(&u, i))));
        for d in [DType::I32, DType::I8, DType::U64] {
            let r = generate(
                d,
                2000,
                &GenParams::new(
                    d,
                    Init::Randint { low: 3, high: 10 },
                    TrialKind::Large,
                    1000.0,
                    1,
                ),
            );
            let vals: std::collections::BTreeSet<i64> =
                (0..2000).map(|i| d.read(&r, i) as i64).collect();
            assert_eq!(vals, (3..10).collect(), "{d}");
        }
        let ones = generate(
            DType::Bf16,
            10,
            &GenParams::new(
                DType::Bf16,
                Init::Constant { value: 1.0 },
                TrialKind::Normal,
                1.0,
                0,
            ),
        );
        assert!((0..10).all(|i| DType::Bf16.read(&ones, i) == 1.0));
    }

    #[test]
    fn stores_saturate_and_round_like_the_device() {
        let one = |d: DType, v: f64| {
            let mut b = Vec::new();
            store(d, v, &mut b);
            d.read(&b, 0)
        };
        assert_eq!(one(DType::I8, 300.0), 127.0);
        assert_eq!(one(DType::U8, -3.0), 0.0);
        assert_eq!(one(DType::I32, 2.5), 3.0);
        assert_eq!(one(DType::I32, -2.5), -3.0);
        assert_eq!(one(DType::U32, f64::NAN), 0.0);
        assert_eq!(one(DType::F16, 1e6), f64::INFINITY);
    }

    #[test]
    fn a_device_stats_record_reads_as_error_stats() {
        let mut raw = stats_init().to_vec();
        assert_eq!(
            stats_from_device(&raw, 10, |_| unreachable!()),
            ErrorStats::clean(10)
        );
        raw[0..8].copy_from_slice(&2u64.to_le_bytes());
        raw[24..32].copy_from_slice(&7u64.to_le_bytes());
        raw[32..40].copy_from_slice(&0.5f64.to_bits().to_le_bytes());
        raw[48..56].copy_from_slice(&1.0f64.to_bits().to_le_bytes());
        raw[56..64].copy_from_slice(&4.0f64.to_bits().to_le_bytes());
        let s = stats_from_device(&raw, 10, |i| (i as f64, 1.5));
        assert_eq!(s.bad, 2);
        assert_eq!(s.max_abs, 0.5);
        assert_eq!(s.rel_l2, 0.5);
        assert_eq!(
            s.first_bad,
            Some(BadElement {
                index: 7,
                got: 7.0,
                expected: 1.5
            })
        );
    }

    #[test]
    fn scrambled_bytes_are_keyed_and_cover_odd_lengths() {
        let a = scramble(37, (1, 2));
        assert_eq!(a.len(), 37);
        assert_eq!(a, scramble(37, (1, 2)));
        assert_ne!(a, scramble(37, (1, 3)));
        assert_eq!(&scramble(64, (1, 2))[..37], &a[..]);
    }
}
