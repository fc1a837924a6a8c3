//! The validation protocol's pure half: seeded input generation (signed by default,
//! a large-magnitude trial), output comparison against the reference with per-dtype
//! tolerances, and the error figures that are recorded (max abs, max rel, relative L2).
//! The worker runs kernels; everything that decides "correct" lives here, and in
//! `device`, the same protocol as kernels that run on the GPU.

pub mod device;

use serde::{Deserialize, Serialize};

use crate::spec::plan::{ArgPlan, SizePlan};
use crate::spec::{DType, Init, Io, Tolerance};

/// Which kind of inputs a trial draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialKind {
    /// The spec's distribution (signed by default).
    Normal,
    /// The same distribution scaled by the arg's `large_scale`.
    Large,
}

/// The seed of trial `trial` at size `size` of a run seeded with `base`.
pub fn trial_seed(base: u64, size: usize, trial: usize) -> u64 {
    base ^ (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (trial as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// Generates `len` elements of `dtype` as little-endian bytes: what the device's
/// generator writes for the same stream ([`device::generate`]).
pub fn generate(
    dtype: DType,
    len: u64,
    init: Init,
    kind: TrialKind,
    large_scale: f64,
    seed: u64,
) -> Vec<u8> {
    device::generate(
        dtype,
        len,
        &device::GenParams::new(dtype, init, kind, large_scale, seed),
    )
}

/// The stream seed of argument `arg` of a trial seeded `seed`.
pub fn arg_seed(seed: u64, arg: usize) -> u64 {
    seed.wrapping_add(arg as u64)
}

/// Fresh inputs for every `in`/`inout` buffer of `plan` (None for outputs and
/// scalars), each argument drawn from its own stream of `seed`.
pub fn inputs_for(plan: &SizePlan, kind: TrialKind, seed: u64) -> Vec<Option<Vec<u8>>> {
    plan.args
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            ArgPlan::Buffer {
                dtype,
                len,
                io: Io::In | Io::Inout,
                init,
                large_scale,
                ..
            } => Some(generate(
                *dtype,
                *len,
                *init,
                kind,
                *large_scale,
                seed.wrapping_add(i as u64),
            )),
            _ => None,
        })
        .collect()
}

/// How far an output is from the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    pub elements: u64,
    #[serde(with = "crate::nonfinite")]
    pub max_abs: f64,
    #[serde(with = "crate::nonfinite")]
    pub max_rel: f64,
    /// ||out - ref|| / ||ref|| (0 when both are zero).
    #[serde(with = "crate::nonfinite")]
    pub rel_l2: f64,
    /// Elements outside tolerance (NaN included).
    pub bad: u64,
    /// Elements that still hold the poison value: never written by the kernel.
    pub unwritten: u64,
    /// Elements that are NaN or infinite where the reference is finite.
    pub non_finite: u64,
    /// The first element outside tolerance.
    pub first_bad: Option<BadElement>,
}

/// One element outside tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BadElement {
    pub index: u64,
    #[serde(with = "crate::nonfinite")]
    pub got: f64,
    #[serde(with = "crate::nonfinite")]
    pub expected: f64,
}

impl ErrorStats {
    /// `elements` compared, nothing wrong yet.
    pub fn clean(elements: u64) -> ErrorStats {
        ErrorStats {
            elements,
            max_abs: 0.0,
            max_rel: 0.0,
            rel_l2: 0.0,
            bad: 0,
            unwritten: 0,
            non_finite: 0,
            first_bad: None,
        }
    }

    /// Counts element `index` as bad, keeping the first one seen.
    fn record_bad(&mut self, index: u64, got: f64, expected: f64) {
        self.bad += 1;
        if self.first_bad.is_none() {
            self.first_bad = Some(BadElement {
                index,
                got,
                expected,
            });
        }
    }

    pub fn passed(&self) -> bool {
        self.bad == 0
    }

    /// Sets the relative L2 error from the sums of squared differences and squared
    /// reference values; any non-finite output makes every error figure infinite.
    fn finish(&mut self, diff2: f64, ref2: f64) {
        if self.non_finite > 0 {
            self.max_abs = f64::INFINITY;
            self.max_rel = f64::INFINITY;
            self.rel_l2 = f64::INFINITY;
        } else {
            self.rel_l2 = if ref2 > 0.0 {
                (diff2 / ref2).sqrt()
            } else if diff2 > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
        }
    }
}

/// Compares `out` with `reference` element by element: |out - ref| <= atol + rtol * |ref|.
/// A non-finite reference element must be matched exactly (same class).
pub fn compare(dtype: DType, out: &[u8], reference: &[u8], tol: Tolerance) -> ErrorStats {
    let n = (out.len().min(reference.len()) / dtype.size()) as u64;
    let poison = vec![dtype.poison_byte(); dtype.size()];
    let mut s = ErrorStats::clean(n);
    let (mut diff2, mut ref2) = (0.0f64, 0.0f64);
    let sz = dtype.size();
    for i in 0..n as usize {
        let raw = &out[i * sz..(i + 1) * sz];
        let got = dtype.read(out, i);
        let want = dtype.read(reference, i);
        let unwritten =
            raw == poison.as_slice() && reference[i * sz..(i + 1) * sz] != *poison.as_slice();
        if unwritten {
            s.unwritten += 1;
        }
        let ok = if !want.is_finite() {
            (want.is_nan() && got.is_nan()) || want == got
        } else if !got.is_finite() {
            s.non_finite += 1;
            false
        } else {
            let d = (got - want).abs();
            s.max_abs = s.max_abs.max(d);
            if want != 0.0 {
                s.max_rel = s.max_rel.max(d / want.abs());
            } else if d > 0.0 {
                s.max_rel = f64::INFINITY;
            }
            diff2 += d * d;
            ref2 += want * want;
            !unwritten && d <= tol.atol + tol.rtol * want.abs()
        };
        if !ok {
            s.record_bad(i as u64, got, want);
        }
    }
    s.finish(diff2, ref2);
    s
}

/// A top-k result: indices (an integer buffer) and their scores, `k` per row.
#[derive(Debug, Clone, Copy)]
pub struct TopKView<'a> {
    pub index_dtype: DType,
    pub index: &'a [u8],
    pub score_dtype: DType,
    pub scores: &'a [u8],
}

/// Compares top-k index sets row by row (`k` entries a row). The scores are compared
/// position by position by [`compare`] on their own; here an index is correct when
/// it is in range, not repeated in its row, and either in the reference's set or tied
/// (within `tol`, by the candidate's score) with the reference's boundary score, the
/// k-th best. Symmetrically, a reference index the candidate left out must be such a
/// boundary tie. Near-equal scores computed in a different order may legitimately
/// swap places at the boundary; nothing else may differ.
pub fn compare_topk(
    got: TopKView,
    reference: TopKView,
    k: usize,
    range: u64,
    tol: Tolerance,
) -> ErrorStats {
    let isz = got.index_dtype.size();
    let n = (got.index.len().min(reference.index.len()) / isz) as u64;
    let poison = vec![got.index_dtype.poison_byte(); isz];
    let mut s = ErrorStats::clean(n);
    let tied = |score: f64, boundary: f64| {
        score.is_finite() && (score - boundary).abs() <= tol.atol + tol.rtol * boundary.abs()
    };
    let rows = n as usize / k.max(1);
    for r in 0..rows {
        let at = |v: &TopKView, j: usize| v.index_dtype.read(v.index, r * k + j);
        let score = |v: &TopKView, j: usize| v.score_dtype.read(v.scores, r * k + j);
        let want: Vec<f64> = (0..k).map(|j| at(&reference, j)).collect();
        let have: Vec<f64> = (0..k).map(|j| at(&got, j)).collect();
        let boundary = (0..k)
            .map(|j| score(&reference, j))
            .fold(f64::INFINITY, f64::min);
        for j in 0..k {
            let i = r * k + j;
            let c = have[j];
            let unwritten = got.index[i * isz..(i + 1) * isz] == *poison.as_slice();
            let invalid = c < 0.0 || c >= range as f64 || have[..j].contains(&c);
            let stranger = !want.contains(&c) && !tied(score(&got, j), boundary);
            if unwritten {
                s.unwritten += 1;
            }
            if unwritten || invalid || stranger {
                s.record_bad(i as u64, c, want[j]);
            }
        }
        for (j, w) in want.iter().enumerate() {
            if !have.contains(w) && !tied(score(&reference, j), boundary) {
                // A reference entry above the boundary is missing.
                s.record_bad((r * k + j) as u64, f64::NAN, *w);
            }
        }
    }
    s
}

/// Index of the first element where two runs differ bit for bit (a race), if any.
pub fn first_difference(dtype: DType, a: &[u8], b: &[u8]) -> Option<u64> {
    let sz = dtype.size();
    a.chunks(sz)
        .zip(b.chunks(sz))
        .position(|(x, y)| x != y)
        .map(|i| i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    const TOL: Tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-6,
    };

    fn i32s(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Checks candidate top-3 rows against the reference rows.
    fn topk(got: (&[i32], &[f32]), want: (&[i32], &[f32]), range: u64) -> ErrorStats {
        let (gi, gs, wi, ws) = (i32s(got.0), f32s(got.1), i32s(want.0), f32s(want.1));
        fn view<'a>(index: &'a [u8], scores: &'a [u8]) -> TopKView<'a> {
            TopKView {
                index_dtype: DType::I32,
                index,
                score_dtype: DType::F32,
                scores,
            }
        }
        compare_topk(view(&gi, &gs), view(&wi, &ws), 3, range, TOL)
    }

    #[test]
    fn topk_accepts_the_same_set_in_another_order_and_boundary_ties() {
        let want: (&[i32], &[f32]) = (&[7, 3, 9, 1, 2, 5], &[0.9, 0.8, 0.5, 0.7, 0.6, 0.4]);
        // Interior entries swapped (equal scores), and the boundary entry 9 replaced
        // by 4 whose score ties it.
        let got: (&[i32], &[f32]) = (&[3, 7, 4, 1, 2, 5], &[0.9, 0.8, 0.5, 0.7, 0.6, 0.4]);
        let s = topk(got, want, 10);
        assert!(s.passed(), "{s:?}");
        assert_eq!(s.elements, 6);
    }

    #[test]
    fn topk_rejects_wrong_missing_repeated_and_out_of_range_indices() {
        let want: (&[i32], &[f32]) = (&[7, 3, 9], &[0.9, 0.8, 0.5]);
        let sc: &[f32] = &[0.9, 0.8, 0.5];
        // An interior entry replaced: 3 (score 0.8, above the boundary) is missing.
        let s = topk((&[7, 4, 9], sc), want, 10);
        assert_eq!(s.bad, 2, "the stranger and the missing entry: {s:?}");
        assert_eq!(s.first_bad.unwrap().index, 1);
        // A stranger at the boundary whose score does not tie it.
        let s = topk((&[7, 3, 4], &[0.9, 0.8, 0.4]), want, 10);
        assert!(!s.passed());
        // Repeated and out-of-range indices.
        assert!(!topk((&[7, 7, 9], sc), want, 10).passed());
        assert!(!topk((&[7, 3, 10], sc), want, 10).passed());
        assert!(!topk((&[7, 3, -1], sc), want, 10).passed());
        // Never written: the poison pattern.
        let poison = i32::from_le_bytes([0xA5; 4]);
        let s = topk((&[7, 3, poison], sc), want, 1 << 31);
        assert_eq!(s.unwritten, 1);
        assert!(!s.passed());
    }

    #[test]
    fn equal_outputs_pass() {
        let a = f32s(&[1.0, -2.0, 0.0]);
        let s = compare(DType::F32, &a, &a, TOL);
        assert!(s.passed());
        assert_eq!((s.max_abs, s.max_rel, s.rel_l2), (0.0, 0.0, 0.0));
    }

    #[test]
    fn small_relative_error_passes_large_fails() {
        let r = f32s(&[1000.0, 1.0]);
        let ok = compare(DType::F32, &f32s(&[1000.005, 1.0]), &r, TOL);
        assert!(ok.passed(), "{ok:?}");
        let bad = compare(DType::F32, &f32s(&[1000.5, 1.0]), &r, TOL);
        assert_eq!(bad.bad, 1);
        assert_eq!(bad.first_bad.unwrap().index, 0);
        assert!((bad.max_rel - 5e-4).abs() < 1e-6);
    }

    #[test]
    fn poisoned_element_is_reported_unwritten() {
        let r = f32s(&[1.0, 2.0, 3.0]);
        let mut out = f32s(&[1.0, 2.0, 3.0]);
        out[8..12].copy_from_slice(&[0xFF; 4]);
        let s = compare(DType::F32, &out, &r, TOL);
        assert_eq!((s.bad, s.unwritten, s.non_finite), (1, 1, 1));
        assert_eq!(s.first_bad.unwrap().index, 2);
        assert!(s.rel_l2.is_infinite());
    }

    #[test]
    fn error_stats_with_infinities_survive_json() {
        // Regression: infinite figures became JSON null, the parent could not read the
        // worker's answer, and a wrong kernel was reported as hung.
        let r = f32s(&[0.0, 1.0]);
        let s = compare(DType::F32, &f32s(&[f32::NAN, 1.0]), &r, TOL);
        let back: ErrorStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(back.max_rel.is_infinite() && back.first_bad.unwrap().got.is_nan());
        assert_eq!(back.bad, 1);
    }

    #[test]
    fn nan_output_fails_even_with_huge_tolerance() {
        let r = f32s(&[1.0]);
        let s = compare(
            DType::F32,
            &f32s(&[f32::NAN]),
            &r,
            Tolerance {
                rtol: 1e9,
                atol: 1e9,
            },
        );
        assert!(!s.passed());
    }

    #[test]
    fn integer_outputs_are_exact() {
        let r: Vec<u8> = [5i32, 6].iter().flat_map(|x| x.to_le_bytes()).collect();
        let o: Vec<u8> = [5i32, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = Tolerance::default_for(DType::I32);
        assert_eq!(compare(DType::I32, &o, &r, t).bad, 1);
        assert!(compare(DType::I32, &r, &r, t).passed());
    }

    #[test]
    fn generated_inputs_are_signed_seeded_and_scaled() {
        let a = generate(
            DType::F32,
            1000,
            Init::Normal,
            TrialKind::Normal,
            1000.0,
            42,
        );
        let b = generate(
            DType::F32,
            1000,
            Init::Normal,
            TrialKind::Normal,
            1000.0,
            42,
        );
        let c = generate(
            DType::F32,
            1000,
            Init::Normal,
            TrialKind::Normal,
            1000.0,
            43,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let vals: Vec<f64> = (0..1000).map(|i| DType::F32.read(&a, i)).collect();
        assert!(vals.iter().any(|v| *v < 0.0) && vals.iter().any(|v| *v > 0.0));
        let large = generate(DType::F32, 1000, Init::Normal, TrialKind::Large, 1000.0, 42);
        let big: Vec<f64> = (0..1000).map(|i| DType::F32.read(&large, i)).collect();
        let max = big.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max > 1000.0, "large trial reaches large magnitudes: {max}");
        let idx = generate(
            DType::I32,
            100,
            Init::Randint { low: 0, high: 10 },
            TrialKind::Large,
            1000.0,
            1,
        );
        assert!((0..100).all(|i| (0.0..10.0).contains(&DType::I32.read(&idx, i))));
    }

    #[test]
    fn trial_seeds_differ() {
        let seeds: std::collections::BTreeSet<u64> = (0..4)
            .flat_map(|s| (0..4).map(move |t| trial_seed(7, s, t)))
            .collect();
        assert_eq!(seeds.len(), 16);
    }

    #[test]
    fn race_detection_finds_the_first_differing_element() {
        let a = f32s(&[1.0, 2.0, 3.0]);
        let b = f32s(&[1.0, 2.5, 3.0]);
        assert_eq!(first_difference(DType::F32, &a, &b), Some(1));
        assert_eq!(first_difference(DType::F32, &a, &a), None);
    }
}
