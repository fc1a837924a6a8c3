//! After the patterns: when the library has nothing left for a kernel and budget
//! remains, the controller searches the kernel's whole space with a model of what it
//! measured ([`crate::surrogate`]: a Gaussian process over the tunables, fitted to the
//! median of every configuration measured on the kernel as its best's rewrites
//! leave it), one candidate at a time, each the untried allowed configuration with the
//! largest expected improvement, validated and decided by the A/B verdict like any
//! other, under the pattern name [`SEARCH`]. It stops when nothing is left, when the
//! budget refuses the next candidate, or (the ROI rule) when it has spent the pattern
//! budget `factor` times over without a gain. `budgets.toml` `[search]
//! after_patterns = false` makes a kernel done instead.
//!
//! With `[search] interleave = true` the search does not wait for the patterns: once
//! the model has a point more than the kernel has tunables, and the patterns' last
//! [`INTERLEAVE_AFTER`] candidates were not FAST, one search candidate is taken before
//! the pattern's next one (its line of attack is set aside and resumed after, or
//! dropped when the search found a new best, whose neighbourhood every pattern then
//! tries again).
//!
//! Also here: the tunables no applicable pattern moves, said at the start of a kernel.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::patterns::Prediction;
use crate::spec::space::SearchSpace;
use crate::spec::Config;

/// The pattern name of the model's candidates in the journal and the report.
pub const SEARCH: &str = "model-search";

/// Pattern candidates in a row without a FAST verdict before a search candidate is
/// interleaved.
pub(super) const INTERLEAVE_AFTER: usize = 2;

/// The most configurations the model scores per choice; a larger space is sampled
/// (seeded by the kernel's name and the number of points measured).
const MAX_SCORED: u64 = 4096;

/// A tunable's value as its position among the tunable's values, in [0, 1].
fn point(spec: &KernelSpec, c: &Config) -> Option<Vec<f64>> {
    spec.tunables
        .iter()
        .map(|t| {
            let i = t.values.iter().position(|v| Some(v) == c.0.get(&t.name))?;
            Some(if t.values.len() > 1 {
                i as f64 / (t.values.len() - 1) as f64
            } else {
                0.0
            })
        })
        .collect()
}

/// A seed from the kernel's name and how much it measured: the same journal gives the
/// same sample of a large space.
fn seed(name: &str, n: usize) -> u64 {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
        .wrapping_add(n as u64)
}

impl Controller {
    /// Records a measured median of `kernel` (for the model).
    pub(super) fn measured(&mut self, kernel: usize, c: &Candidate, profile: Option<&Profile>) {
        let t = profile.and_then(|p| p.signals.get("time_us").copied());
        if let Some(t) = t.filter(|t| t.is_finite() && *t > 0.0) {
            self.kernels[kernel].measured.push((c.clone(), t));
        }
    }

    /// Whether the search may go on for `kernel`: on in the budgets, not dropped.
    fn search_on(&self, kernel: usize) -> bool {
        self.budgets.search.after_patterns && !self.kernels[kernel].dropped.contains(SEARCH)
    }

    /// Sets the pattern's line of attack on `kernel` aside for one search candidate,
    /// when the patterns stopped paying and the model has points enough; whether it
    /// did.
    pub(super) fn interleave(&mut self, kernel: usize) -> bool {
        let k = &self.kernels[kernel];
        // The points the model would be fitted to: those of the best's rewrites.
        let points = k
            .measured
            .iter()
            .filter(|(c, _)| k.best.as_ref().is_some_and(|b| b.rewrites == c.rewrites))
            .count();
        // A proposer's answers were paid for: their line is never set aside.
        let due = self.budgets.search.interleave
            && self.search_on(kernel)
            && k.stash.is_none()
            && k.misses >= INTERLEAVE_AFTER
            && k.attack.as_ref().is_some_and(|a| {
                a.pattern != SEARCH && self.proposal_attempts(&a.pattern).is_none()
            })
            && points > k.spec.tunables.len();
        if !due {
            return false;
        }
        let Some((c, prediction)) = self.search_next(kernel) else {
            return false;
        };
        let k = &mut self.kernels[kernel];
        let attack = k.attack.take().expect("checked above");
        k.stash = Some((attack, k.best.clone()));
        k.misses = 0;
        self.search_with(kernel, c, prediction);
        true
    }

    /// Makes the search's candidate `c` the line of attack on `kernel`, its ROI
    /// spend carried over.
    pub(super) fn search_with(&mut self, kernel: usize, c: Candidate, prediction: Prediction) {
        let k = &mut self.kernels[kernel];
        k.searching = Some(prediction);
        k.attack = Some(Attack {
            pattern: SEARCH.into(),
            queue: VecDeque::from([c]),
            spent_s: k.search_spent_s,
            gained: false,
        });
    }

    /// When the interleaved search candidate is done (or its line was dropped), the
    /// stashed pattern's line of attack resumes, or is dropped when the search found
    /// a new best; whether a line resumed.
    pub(super) fn resume_stash(&mut self, kernel: usize) -> bool {
        let k = &mut self.kernels[kernel];
        if k.attack.is_some() {
            return false;
        }
        match k.stash.take() {
            Some((attack, best)) if best == k.best => {
                k.attack = Some(attack);
                true
            }
            _ => false,
        }
    }

    /// The search's next candidate for `kernel`, with the model's prediction, or None
    /// (off, dropped, or every allowed configuration tried).
    pub(super) fn search_next(&mut self, kernel: usize) -> Option<(Candidate, Prediction)> {
        if !self.search_on(kernel) {
            return None;
        }
        let k = &self.kernels[kernel];
        let best = k.best.clone()?;
        let space = SearchSpace::new(&k.spec);
        let size = space.size();
        let indices: Vec<u64> = if size <= MAX_SCORED {
            (0..size).collect()
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed(&k.spec.name, k.measured.len()));
            let mut v: Vec<u64> = sample(
                &mut rng,
                size.min(usize::MAX as u64) as usize,
                MAX_SCORED as usize,
            )
            .into_iter()
            .map(|i| i as u64)
            .collect();
            v.sort_unstable();
            v
        };
        let open: Vec<Candidate> = indices
            .into_iter()
            .filter_map(|i| space.get(i))
            .filter(|c| k.spec.violated(&k.spec.problem, c).is_empty())
            .map(|c| best.at(c))
            .filter(|c| !k.tried.contains(c))
            .collect();
        let points: Vec<Vec<f64>> = open
            .iter()
            .filter_map(|c| point(&k.spec, &c.config))
            .collect();
        if points.len() != open.len() {
            return None;
        }
        // What was measured as the best's rewrites leave the kernel.
        let observed: Vec<(Vec<f64>, f64)> = k
            .measured
            .iter()
            .filter(|(c, _)| c.rewrites == best.rewrites)
            .filter_map(|(c, t)| Some((point(&k.spec, &c.config)?, *t)))
            .collect();
        let best_us = k
            .measured
            .iter()
            .rev()
            .find(|(c, _)| *c == best)
            .map(|(_, t)| *t);
        let s = crate::surrogate::suggest(&observed, &points)?;
        let predicted = match (s.predicted_us, best_us) {
            (Some(p), Some(b)) if p > 0.0 => b / p,
            _ => 1.0,
        };
        let note = match s.predicted_us {
            Some(p) => format!(
                "{}; the model's median {p:.2} µs, expected improvement {:.3} in ln(time)",
                s.how, s.expected_improvement
            ),
            None => s.how.clone(),
        };
        Some((
            open[s.index].clone(),
            Prediction {
                speedup: predicted,
                note: Some(note),
            },
        ))
    }

    /// The tunables of `kernel` no applicable moves pattern moves at its current
    /// profile, each with the patterns that would and why they do not apply.
    pub(super) fn unmoved(&self, kernel: usize) -> Vec<String> {
        let k = &self.kernels[kernel];
        let signals = self.signals(kernel);
        let moves = |p: &Pattern, role: crate::spec::Role| match &p.body {
            Body::Moves(m) => m.iter().any(|m| m.role == role),
            _ => false,
        };
        let applicable = self.library.applicable(&signals);
        let after = if self.budgets.search.after_patterns {
            "only the model search after the patterns reaches it"
        } else {
            "it stays at its baseline value ([search] after_patterns = false)"
        };
        k.spec
            .tunables
            .iter()
            .filter(|t| t.values.len() > 1)
            .filter(|t| !applicable.iter().any(|p| moves(p, t.role)))
            .map(|t| {
                let role = format!("{:?}", t.role).to_lowercase();
                let would: Vec<String> = self
                    .library
                    .patterns
                    .iter()
                    .filter(|p| moves(p, t.role))
                    .map(|p| {
                        format!(
                            "{} (when {})",
                            p.name,
                            p.when.as_ref().map_or("always", |w| w.src())
                        )
                    })
                    .collect();
                let why = if would.is_empty() {
                    format!("no pattern in the library moves role `{role}`")
                } else {
                    format!(
                        "the patterns that move role `{role}` do not apply: {}",
                        would.join(", ")
                    )
                };
                format!("{} (role {role}): {why}; {after}", t.name)
            })
            .collect()
    }
}
