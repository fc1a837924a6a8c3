//! Pure statistics over timing samples: quantiles, robust noise, bootstrap intervals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Resamples used by every bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Quantile `q` in [0, 1] of sorted data, linear interpolation between neighbours.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no samples");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    // Between its neighbours, exactly: `a * (1 - w) + b * w` can land an ulp outside
    // them (and below the minimum) when a == b.
    if a == b {
        return a;
    }
    (a + (b - a) * w).clamp(a.min(b), a.max(b))
}

pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(xs: &[f64]) -> f64 {
    quantile_sorted(&sorted(xs), 0.5)
}

/// Median absolute deviation, scaled to estimate a normal standard deviation.
pub fn mad_sigma(xs: &[f64]) -> f64 {
    let m = median(xs);
    let dev: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    1.4826 * median(&dev)
}

/// Relative standard error of the median from the MAD (robust to outliers);
/// the stopping rule watches this fall.
pub fn rel_se_of_median(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::INFINITY;
    }
    let m = median(xs);
    if m <= 0.0 {
        return f64::INFINITY;
    }
    1.2533 * mad_sigma(xs) / (xs.len() as f64).sqrt() / m
}

fn resample_median(xs: &[f64], rng: &mut ChaCha8Rng, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend((0..xs.len()).map(|_| xs[rng.random_range(0..xs.len())]));
    buf.sort_by(f64::total_cmp);
    quantile_sorted(buf, 0.5)
}

/// 95% percentile-bootstrap interval of the median.
pub fn bootstrap_median_ci(xs: &[f64], seed: u64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = Vec::with_capacity(xs.len());
    let meds: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| resample_median(xs, &mut rng, &mut buf))
        .collect();
    let s = sorted(&meds);
    (quantile_sorted(&s, 0.025), quantile_sorted(&s, 0.975))
}

/// 95% percentile-bootstrap interval of median(a) / median(b), the two sets resampled
/// independently. With a = baseline times and b = candidate times it is the speedup.
pub fn bootstrap_ratio_ci(a: &[f64], b: &[f64], seed: u64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = Vec::with_capacity(a.len().max(b.len()));
    let ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let ma = resample_median(a, &mut rng, &mut buf);
            let mb = resample_median(b, &mut rng, &mut buf);
            ma / mb
        })
        .collect();
    let s = sorted(&ratios);
    (quantile_sorted(&s, 0.025), quantile_sorted(&s, 0.975))
}

/// The 95% Wilson score interval of a proportion: `k` of `n`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054;
    let nf = n as f64;
    let p = k as f64 / nf;
    let d = 1.0 + z * z / nf;
    let c = p + z * z / (2.0 * nf);
    let h = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    let lo = if k == 0 { 0.0 } else { ((c - h) / d).max(0.0) };
    let hi = if k == n { 1.0 } else { ((c + h) / d).min(1.0) };
    (lo, hi)
}

/// What a set of samples says, in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// 95% bootstrap interval of the median.
    pub ci_lo: f64,
    pub ci_hi: f64,
}

impl Summary {
    pub fn of(xs: &[f64], seed: u64) -> Option<Summary> {
        if xs.is_empty() {
            return None;
        }
        let s = sorted(xs);
        let (ci_lo, ci_hi) = bootstrap_median_ci(xs, seed);
        Some(Summary {
            n: xs.len(),
            median: quantile_sorted(&s, 0.5),
            q1: quantile_sorted(&s, 0.25),
            q3: quantile_sorted(&s, 0.75),
            min: s[0],
            max: s[s.len() - 1],
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            ci_lo,
            ci_hi,
        })
    }

    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }

    /// Half the width of the 95% interval, relative to the median.
    pub fn rel_ci_half_width(&self) -> f64 {
        (self.ci_hi - self.ci_lo) / 2.0 / self.median
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_interval_of_one_repeated_value_is_that_value() {
        // Found by the property below: the old interpolation gave ci_lo one ulp under it.
        let x = 367269.3130400085;
        let s = Summary::of(&[x], 0).unwrap();
        assert_eq!((s.min, s.ci_lo, s.ci_hi, s.max), (x, x, x, x));
    }

    #[test]
    fn quantiles_of_known_data() {
        let xs = [5.0, 1.0, 3.0, 2.0, 4.0];
        let s = Summary::of(&xs, 1).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.q1, 2.0);
        assert_eq!(s.q3, 4.0);
        assert_eq!(s.iqr(), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    }

    #[test]
    fn identical_samples_have_a_degenerate_interval() {
        let xs = vec![7.0; 50];
        let s = Summary::of(&xs, 3).unwrap();
        assert_eq!((s.ci_lo, s.ci_hi), (7.0, 7.0));
        assert_eq!(rel_se_of_median(&xs), 0.0);
    }

    #[test]
    fn bootstrap_is_reproducible_for_a_seed() {
        let xs: Vec<f64> = (0..40).map(|i| 10.0 + (i % 7) as f64).collect();
        assert_eq!(bootstrap_median_ci(&xs, 9), bootstrap_median_ci(&xs, 9));
    }

    #[test]
    fn noise_falls_with_more_samples() {
        let few: Vec<f64> = (0..10).map(|i| 100.0 + (i % 5) as f64).collect();
        let many: Vec<f64> = (0..1000).map(|i| 100.0 + (i % 5) as f64).collect();
        assert!(rel_se_of_median(&many) < rel_se_of_median(&few) / 5.0);
    }

    proptest! {
        // Each case runs thousands of bootstrap resamples; fewer cases keep CI quick.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn summary_is_ordered(xs in prop::collection::vec(0.1f64..1e6, 1..200), seed in any::<u64>()) {
            let s = Summary::of(&xs, seed).unwrap();
            prop_assert!(s.min <= s.q1 && s.q1 <= s.median && s.median <= s.q3 && s.q3 <= s.max);
            prop_assert!(s.min <= s.ci_lo && s.ci_lo <= s.ci_hi && s.ci_hi <= s.max);
            prop_assert!(s.min <= s.mean && s.mean <= s.max);
        }

        #[test]
        fn ratio_interval_scales(xs in prop::collection::vec(1.0f64..100.0, 5..60), k in 1.1f64..10.0) {
            // b = a / k: the candidate is exactly k times faster.
            let ys: Vec<f64> = xs.iter().map(|x| x / k).collect();
            let (lo, hi) = bootstrap_ratio_ci(&xs, &ys, 5);
            prop_assert!(lo <= hi);
            // Same resampling indices on both sides are not guaranteed, but the point
            // estimate must be exactly k and inside the interval.
            let point = median(&xs) / median(&ys);
            prop_assert!((point - k).abs() < 1e-9 * k);
            prop_assert!(lo <= point * (1.0 + 1e-12) && point <= hi * (1.0 + 1e-12));
        }

        #[test]
        fn median_is_invariant_to_order(mut xs in prop::collection::vec(-1e6f64..1e6, 1..100)) {
            let m = median(&xs);
            xs.reverse();
            prop_assert_eq!(m, median(&xs));
        }
    }

    #[test]
    fn wilson_intervals_hold_known_values() {
        let (lo, hi) = wilson(0, 200);
        assert!(lo == 0.0 && (hi - 0.01884).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson(10, 100);
        assert!(
            (lo - 0.05523).abs() < 1e-4 && (hi - 0.17437).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
}
