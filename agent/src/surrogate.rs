//! The model behind the search that follows the pattern library: a Gaussian process
//! (gprx: a Matérn 5/2 kernel with one length scale per tunable, its hyperparameters
//! fitted by maximum marginal likelihood) over the tunables' positions, fitted to
//! the log of every time measured so far, and the expected improvement of each
//! configuration not measured yet. Pure computation (no I/O, no clock, no
//! randomness of its own); the fit runs on one thread, so the same observations give
//! the same answer on any machine and a resumed run replays the same choices.

use gprx::kernel::{ConstantKernel, KernelSpec, MaternArdKernel, MaternNu};
use gprx::{GaussianLikelihood, Gpr};

/// The chosen configuration and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// Its index among the candidates given.
    pub index: usize,
    /// The model's median time for it, µs (None: chosen without a model).
    pub predicted_us: Option<f64>,
    /// Its expected improvement of ln(time) over the best measured.
    pub expected_improvement: f64,
    /// How it was chosen, in words (for the journal and the report).
    pub how: String,
}

/// The standard normal's density and distribution function (erfc after W. J. Cody's
/// rational approximation as given in Numerical Recipes, |error| < 1.2e-7).
fn phi(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn big_phi(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    0.5 * erfc
}

/// Expected improvement (minimising) of a normal prediction over `best`.
pub fn expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    if sd <= 1e-12 || !sd.is_finite() {
        return (best - mean).max(0.0);
    }
    let z = (best - mean) / sd;
    (best - mean) * big_phi(z) + sd * phi(z)
}

/// Column-major points (n rows, d columns) from row vectors.
fn column_major(rows: &[Vec<f64>], d: usize) -> Vec<f64> {
    let mut x = Vec::with_capacity(rows.len() * d);
    for j in 0..d {
        x.extend(rows.iter().map(|r| r[j]));
    }
    x
}

/// The candidate farthest from every observation (ties: the first): where the model
/// cannot be fitted, exploration.
fn farthest(observed: &[(Vec<f64>, f64)], candidates: &[Vec<f64>]) -> usize {
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let mut best = (0, f64::NEG_INFINITY);
    for (i, c) in candidates.iter().enumerate() {
        let d = observed
            .iter()
            .map(|(o, _)| dist(o, c))
            .fold(f64::INFINITY, f64::min);
        if d > best.1 {
            best = (i, d);
        }
    }
    best.0
}

/// The candidate with the largest expected improvement under a Gaussian process fitted
/// to `observed` (points in [0, 1]^d, each with its measured median time in µs).
/// None when there is no candidate. With fewer than three observations, or a fit
/// that fails, the candidate farthest from what was measured (said in `how`).
pub fn suggest(observed: &[(Vec<f64>, f64)], candidates: &[Vec<f64>]) -> Option<Suggestion> {
    if candidates.is_empty() {
        return None;
    }
    let d = candidates[0].len();
    let observed: Vec<(Vec<f64>, f64)> = observed
        .iter()
        .filter(|(p, t)| p.len() == d && t.is_finite() && *t > 0.0)
        .cloned()
        .collect();
    let explore = |why: String| Suggestion {
        index: farthest(&observed, candidates),
        predicted_us: None,
        expected_improvement: 0.0,
        how: why,
    };
    if observed.len() < 3 || d == 0 {
        return Some(explore(format!(
            "the point farthest from the {} measured (too few for a model)",
            observed.len()
        )));
    }
    match fit_and_rank(&observed, candidates, d) {
        Ok(s) => Some(s),
        Err(e) => Some(explore(format!(
            "the point farthest from those measured (the model could not be fitted: {e})"
        ))),
    }
}

fn fit_and_rank(
    observed: &[(Vec<f64>, f64)],
    candidates: &[Vec<f64>],
    d: usize,
) -> Result<Suggestion, String> {
    // ln(time), standardised: the model's prior (mean 0, variance about 1) fits any
    // kernel's scale.
    let ln: Vec<f64> = observed.iter().map(|(_, t)| t.ln()).collect();
    let n = ln.len() as f64;
    let mean = ln.iter().sum::<f64>() / n;
    let sd = (ln.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n)
        .sqrt()
        .max(1e-6);
    let y: Vec<f64> = ln.iter().map(|v| (v - mean) / sd).collect();
    let rows: Vec<Vec<f64>> = observed.iter().map(|(p, _)| p.clone()).collect();
    let x = column_major(&rows, d);
    let xs = column_major(candidates, d);
    let e = |e: gprx::GprError| e.to_string();
    // One thread: the same sums in the same order wherever it runs.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| e.to_string())?;
    let pred = pool.install(|| -> Result<gprx::Prediction, String> {
        let kernel = KernelSpec::from(ConstantKernel::new(1.0).map_err(e)?)
            * KernelSpec::from(
                MaternArdKernel::new(&vec![0.3; d], MaternNu::FiveHalves).map_err(e)?,
            );
        let gpr = Gpr::new(kernel, GaussianLikelihood::new(1e-2).map_err(e)?);
        let fitted = gpr
            .fit(&x, rows.len(), d, &y)
            .map_err(|(_, err)| err.to_string())?;
        fitted.predict(&xs, candidates.len(), d).map_err(e)
    })?;
    let best = y.iter().copied().fold(f64::INFINITY, f64::min);
    let mut choice: Option<(usize, f64)> = None;
    for i in 0..candidates.len() {
        let (m, v) = (pred.mean[i], pred.variance[i]);
        if !(m.is_finite() && v.is_finite()) {
            continue;
        }
        let ei = expected_improvement(m, v.max(0.0).sqrt(), best);
        if choice.is_none_or(|(_, b)| ei > b) {
            choice = Some((i, ei));
        }
    }
    let (index, ei) = choice.ok_or("the model predicted nothing finite")?;
    let predicted_us = (pred.mean[index] * sd + mean).exp();
    Ok(Suggestion {
        index,
        predicted_us: Some(predicted_us),
        expected_improvement: ei * sd,
        how: format!(
            "the largest expected improvement under a Gaussian process fitted to {} measured configurations",
            observed.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_functions_are_right() {
        assert!((big_phi(0.0) - 0.5).abs() < 1e-7);
        assert!((big_phi(1.96) - 0.975_002).abs() < 1e-6);
        assert!((big_phi(-1.0) - 0.158_655).abs() < 1e-6);
        // EI of a sure thing is the improvement; of a worse mean with spread, small.
        assert!((expected_improvement(1.0, 0.0, 2.0) - 1.0).abs() < 1e-12);
        assert!(expected_improvement(3.0, 0.1, 2.0) < 1e-6);
        assert!(expected_improvement(2.0, 1.0, 2.0) > 0.39);
    }

    /// A bowl with its minimum at (0.75, 0.25): after a few points the model goes
    /// there, not to the far corner.
    fn bowl(p: &[f64]) -> f64 {
        100.0 * (1.0 + 4.0 * (p[0] - 0.75).powi(2) + 4.0 * (p[1] - 0.25).powi(2))
    }

    fn grid() -> Vec<Vec<f64>> {
        let mut g = Vec::new();
        for i in 0..=8 {
            for j in 0..=8 {
                g.push(vec![i as f64 / 8.0, j as f64 / 8.0]);
            }
        }
        g
    }

    #[test]
    fn the_model_finds_the_bottom_of_a_bowl_and_answers_the_same_twice() {
        let mut observed: Vec<(Vec<f64>, f64)> = [[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]]
            .iter()
            .map(|p| (p.to_vec(), bowl(p)))
            .collect();
        let mut candidates: Vec<Vec<f64>> = grid()
            .into_iter()
            .filter(|c| !observed.iter().any(|(o, _)| o == c))
            .collect();
        for _ in 0..12 {
            let s = suggest(&observed, &candidates).unwrap();
            assert_eq!(
                suggest(&observed, &candidates).unwrap(),
                s,
                "not deterministic"
            );
            let c = candidates.remove(s.index);
            observed.push((c.clone(), bowl(&c)));
        }
        let best = observed.iter().map(|o| o.1).fold(f64::INFINITY, f64::min);
        // The minimum of the grid is 100 at (0.75, 0.25); 16 of 81 points measured.
        assert!(best < 100.0 * 1.02, "best found {best}: {observed:?}");
    }

    #[test]
    fn too_few_points_explore_and_nothing_to_choose_is_none() {
        let c = grid();
        assert!(suggest(&[], &[]).is_none());
        let s = suggest(&[(vec![0.0, 0.0], 10.0)], &c).unwrap();
        assert_eq!(c[s.index], vec![1.0, 1.0]);
        assert!(s.predicted_us.is_none() && s.how.contains("too few"));
    }
}
