//! The A/B decision, valid however often it looks: a paired, sequential sign test.
//!
//! The two arms are sampled interleaved (A B A B ...), so sample `i` of each arm forms
//! a pair measured under the same conditions, and drift cancels in the pair's ratio
//! `a_i / b_i`. The speedup is the median of those ratios; its interval is the
//! distribution-free interval of a median from order statistics (the sign test's),
//! exact for any distribution of the pairs' ratios, with no resampling and no seed.
//!
//! Looking at an interval after every chunk and stopping at the first one that clears
//! a bar spends its confidence: the chance that one of many looks misses is much more
//! than 5%. So the looks are planned: at most [`MAX_LOOKS`], at pair counts growing
//! by half each time (and one more when sampling hits its cap), each at level
//! `1 - ALPHA / MAX_LOOKS`. By the union bound the intervals of every look cover the
//! true median ratio together with probability at least `1 - ALPHA` (95%), so the
//! verdict of whichever look stops the sampling rests on a 95% interval, as the README
//! promises. Assumption: the pairs' ratios are independent draws of one distribution
//! (interleaving makes slow drift cancel; what it cannot remove widens the interval).

use serde::{Deserialize, Serialize};

use super::stats::{quantile_sorted, sorted};
use super::Verdict;

/// The chance, over the whole sequence of looks, that the interval acted on misses
/// the true median ratio.
pub const ALPHA: f64 = 0.05;

/// Looks planned per comparison.
pub const MAX_LOOKS: usize = 10;

/// Pairs before the first look; each next look waits for half as many again.
pub const FIRST_LOOK: usize = 20;

/// The confidence level of each look's interval.
pub fn level_per_look() -> f64 {
    1.0 - ALPHA / MAX_LOOKS as f64
}

/// The pair counts at which looks are taken: 20, 30, 45, 68, ... (growing by half).
pub fn schedule() -> Vec<usize> {
    let mut out = Vec::with_capacity(MAX_LOOKS);
    let mut n = FIRST_LOOK as f64;
    for _ in 0..MAX_LOOKS {
        out.push(n.ceil() as usize);
        n *= 1.5;
    }
    out
}

/// One look at the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// Pairs it rests on.
    pub pairs: usize,
    /// The median of the pairs' ratios (A's time over B's: B's speedup).
    #[serde(with = "crate::nonfinite")]
    pub speedup: f64,
    #[serde(with = "crate::nonfinite")]
    pub ci_lo: f64,
    #[serde(with = "crate::nonfinite")]
    pub ci_hi: f64,
    pub verdict: Verdict,
}

/// The ratios `a_i / b_i` of the first `min(len)` pairs, sorted.
pub fn pair_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    let r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x / y)
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    sorted(&r)
}

/// ln P(X <= k) for X ~ Binomial(n, 1/2), k < n, summed in log space (no underflow
/// for any n).
fn ln_binomial_cdf_half(n: usize, k: usize) -> f64 {
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_pmf = ln_half_n; // i = 0
    let mut acc = ln_pmf;
    for i in 0..k {
        ln_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        let (hi, lo) = if acc > ln_pmf {
            (acc, ln_pmf)
        } else {
            (ln_pmf, acc)
        };
        acc = hi + (lo - hi).exp().ln_1p();
    }
    acc
}

/// The distribution-free interval of the median of sorted data at level `1 - alpha`:
/// `[x_(l), x_(n+1-l)]` (1-based) with the largest `l` such that
/// `P(Binomial(n, 1/2) <= l - 1) <= alpha / 2`. None when `n` is too small for any.
pub fn median_interval(sorted: &[f64], alpha: f64) -> Option<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let target = (alpha / 2.0).ln();
    // P(X <= l - 1) grows with l: find the largest l - 1 = k with it at most alpha/2.
    let mut k: Option<usize> = None;
    for j in 0..n / 2 {
        if ln_binomial_cdf_half(n, j) <= target {
            k = Some(j);
        } else {
            break;
        }
    }
    let l = k? + 1;
    Some((sorted[l - 1], sorted[n - l]))
}

/// The look at all pairs of `a` and `b` (A's and B's kept samples, index-aligned).
pub fn look(a: &[f64], b: &[f64], min_gain: f64) -> Look {
    let r = pair_ratios(a, b);
    let speedup = if r.is_empty() {
        f64::NAN
    } else {
        quantile_sorted(&r, 0.5)
    };
    let (ci_lo, ci_hi) =
        median_interval(&r, 1.0 - level_per_look()).unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    Look {
        pairs: r.len(),
        speedup,
        ci_lo,
        ci_hi,
        verdict: Verdict::from_interval(ci_lo, ci_hi, min_gain),
    }
}

/// The sequential rule: looks at the planned pair counts (and once more when sampling
/// stops on a cap), and asks to stop at the first look that is not AMBIGUOUS or when
/// the looks are used up.
#[derive(Debug, Clone)]
pub struct Sequential {
    min_gain: f64,
    schedule: Vec<usize>,
    pub looks: Vec<Look>,
}

impl Sequential {
    pub fn new(min_gain: f64) -> Sequential {
        Sequential {
            min_gain,
            schedule: schedule(),
            looks: Vec::new(),
        }
    }

    /// Called after each chunk with the kept samples of both arms; `capped` when the
    /// sampling is about to stop on a cap (the last chance to look). True: stop.
    pub fn decide(&mut self, kept: &[Vec<f64>], capped: bool) -> bool {
        let pairs = kept[0].len().min(kept[1].len());
        let due = self
            .schedule
            .get(self.looks.len())
            .is_some_and(|n| pairs >= *n);
        if self.looks.len() >= MAX_LOOKS || !(due || capped) {
            return self.looks.len() >= MAX_LOOKS;
        }
        let l = look(&kept[0], &kept[1], self.min_gain);
        self.looks.push(l);
        l.verdict != Verdict::Ambiguous || self.looks.len() >= MAX_LOOKS
    }

    /// The last look taken (the verdict of the comparison).
    pub fn last(&self) -> Option<Look> {
        self.looks.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn the_binomial_tail_matches_small_exact_values() {
        // P(X <= 3), X ~ B(20, 1/2) = 1351 / 2^20.
        let p = ln_binomial_cdf_half(20, 3).exp();
        assert!((p - 1351.0 / 1_048_576.0).abs() < 1e-15, "{p}");
        // Large n does not underflow: P(X <= n/2 - 1) is just under 1/2.
        let p = ln_binomial_cdf_half(5000, 2499).exp();
        assert!(p > 0.48 && p < 0.5, "{p}");
    }

    #[test]
    fn the_median_interval_uses_the_sign_test_order_statistics() {
        let xs: Vec<f64> = (1..=20).map(f64::from).collect();
        // alpha 0.05: P(B(20,.5) <= 5) = 0.0207 <= 0.025 < P(<= 6) = 0.0577: l = 6.
        assert_eq!(median_interval(&xs, 0.05), Some((6.0, 15.0)));
        // Too few pairs for a 99.5% interval.
        assert_eq!(median_interval(&xs[..5], 0.005), None);
    }

    #[test]
    fn the_schedule_grows_by_half_from_twenty() {
        assert_eq!(&schedule()[..5], &[20, 30, 45, 68, 102]);
        assert_eq!(schedule().len(), MAX_LOOKS);
        assert!((level_per_look() - 0.995).abs() < 1e-12);
    }

    /// Simulated A/A comparisons: noise with drift shared by the two arms of a pair.
    fn simulate(ratio: f64, noise: f64, comparisons: usize, seed: u64) -> [usize; 4] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z = Normal::new(0.0, noise).unwrap();
        let mut counts = [0usize; 4];
        for _ in 0..comparisons {
            let mut s = Sequential::new(0.02);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let mut drift = 1.0;
            loop {
                for _ in 0..10 {
                    drift *= 1.0 + 0.002 * (rng.random::<f64>() - 0.5);
                    a.push(100.0 * ratio * drift * (1.0 + z.sample(&mut rng)));
                    b.push(100.0 * drift * (1.0 + z.sample(&mut rng)));
                }
                let capped = a.len() >= 2000;
                if a.len() >= 20 && s.decide(&[a.clone(), b.clone()], capped) || capped {
                    break;
                }
            }
            let v = s.last().map_or(Verdict::Ambiguous, |l| l.verdict);
            counts[match v {
                Verdict::Fast => 0,
                Verdict::Slow => 1,
                Verdict::Same => 2,
                Verdict::Ambiguous => 3,
            }] += 1;
        }
        counts
    }

    #[test]
    fn a_against_itself_is_rarely_fast_or_slow_however_often_it_looks() {
        // Noise near the bar makes false verdicts likeliest: 1.5% per sample.
        let [fast, slow, same, amb] = simulate(1.0, 0.015, 400, 11);
        assert!(fast + slow <= 8, "{fast} FAST and {slow} SLOW of 400");
        assert!(same > 300, "{same} SAME, {amb} AMBIGUOUS");
    }

    #[test]
    fn a_true_five_percent_gain_is_found() {
        let [fast, ..] = simulate(1.05, 0.015, 200, 12);
        assert!(fast >= 190, "{fast} of 200");
        // A gain below the bar is never FAST.
        let [fast, ..] = simulate(1.01, 0.01, 200, 13);
        assert!(fast <= 4, "{fast} of 200 at a true 1%");
    }

    #[test]
    fn the_decision_uses_every_pair_at_its_look() {
        let a: Vec<f64> = (0..20).map(|i| 110.0 + (i % 3) as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| 100.0 + (i % 5) as f64 * 0.1).collect();
        let mut s = Sequential::new(0.02);
        assert!(!s.decide(&[a[..10].to_vec(), b[..10].to_vec()], false));
        assert!(s.looks.is_empty(), "no look before the first planned one");
        assert!(s.decide(&[a.clone(), b.clone()], false));
        let l = s.last().unwrap();
        assert_eq!(l, look(&a, &b, 0.02));
        assert_eq!((l.pairs, l.verdict), (20, Verdict::Fast));
    }
}
