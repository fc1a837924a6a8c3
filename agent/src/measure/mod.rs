//! The measurement protocol: warm-up is done by the caller; this module takes samples in
//! chunks, reads clocks around each chunk, discards throttled chunks (counted, kept in
//! the raw record), and stops on noise, on a plateau, or at a cap. The GPU side is a
//! [`SampleSource`], so the stopping logic is tested without a GPU.

pub mod sequential;
pub mod stats;
pub mod verdict;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use stats::Summary;
pub use verdict::Verdict;

/// One raw timing sample with its labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Microseconds per launch.
    pub us: f64,
    /// SM clock read right after the chunk this sample belongs to.
    pub sm_clock_mhz: Option<u32>,
    /// True when a throttle reason was active around the chunk; such samples are
    /// kept here but left out of every statistic.
    pub throttled: bool,
}

/// Clock state read around a chunk of samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub sm_clock_mhz: Option<u32>,
    /// Active throttle reasons that slow the clock (power cap, thermal, ...).
    pub throttle_reasons: Vec<String>,
}

/// How samples were timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum TimingMethod {
    /// L2 flushed before each sample; CUDA events around one launch.
    Cold,
    /// `launches` back-to-back launches between two events, rotating through
    /// `buffer_sets` copies of the arguments so the L2 cannot hold the working set.
    Batch { launches: u32, buffer_sets: u32 },
}

/// Why sampling stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The 95% interval of the median is narrower than the target.
    Converged,
    /// The noise stopped falling.
    Plateau,
    /// The A/B verdict is settled.
    Decided,
    /// Every planned look of the A/B comparison was taken without a verdict.
    LooksUsed,
    TimeCap,
    SampleCap,
}

/// When to stop taking samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    pub min_samples: usize,
    pub max_samples: usize,
    pub max_time: Duration,
    /// Target relative half-width of the 95% interval of the median.
    pub target_rel: f64,
    /// Samples per chunk; clocks are read around each chunk.
    pub chunk: usize,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule {
            min_samples: 20,
            max_samples: 2000,
            max_time: Duration::from_secs(3),
            target_rel: 0.005,
            chunk: 10,
        }
    }
}

/// The raw record of one arm (configuration) of a measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub samples: Vec<Sample>,
}

impl Arm {
    /// Samples that count (not throttled), in µs.
    pub fn kept(&self) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| !s.throttled)
            .map(|s| s.us)
            .collect()
    }
    pub fn discarded(&self) -> usize {
        self.samples.iter().filter(|s| s.throttled).count()
    }
    pub fn clock_range(&self) -> Option<(u32, u32)> {
        let clocks: Vec<u32> = self.samples.iter().filter_map(|s| s.sm_clock_mhz).collect();
        Some((*clocks.iter().min()?, *clocks.iter().max()?))
    }
}

/// The GPU side of sampling: takes one chunk of interleaved samples, one vector per arm.
pub trait SampleSource {
    type Error;
    fn arms(&self) -> usize;
    fn take(&mut self, n: usize) -> Result<Vec<Vec<f64>>, Self::Error>;
    fn telemetry(&mut self) -> Telemetry;
    /// Called between chunks, e.g. to tell the supervisor the worker is alive.
    fn progress(&mut self, _taken: usize) {}
}

/// Outcome of [`sample`]: the raw record per arm and why it stopped.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub arms: Vec<Arm>,
    pub stop: StopReason,
    pub throttle_reasons: Vec<String>,
    pub elapsed: Duration,
}

/// Takes samples until `decide` or the rule says stop. `decide` sees the kept samples
/// of every arm once `min_samples` are kept in each (and whether a cap is about to
/// stop the sampling: its last chance), and returns a reason to stop.
pub fn sample<S: SampleSource>(
    src: &mut S,
    rule: &StopRule,
    mut decide: impl FnMut(&[Vec<f64>], bool) -> Option<StopReason>,
) -> Result<Sampled, S::Error> {
    let start = Instant::now();
    let mut arms = vec![Arm::default(); src.arms()];
    let mut reasons: Vec<String> = Vec::new();
    let mut before = src.telemetry();
    loop {
        let chunk = src.take(rule.chunk.max(1))?;
        let after = src.telemetry();
        let throttled = !before.throttle_reasons.is_empty() || !after.throttle_reasons.is_empty();
        for r in before
            .throttle_reasons
            .iter()
            .chain(&after.throttle_reasons)
        {
            if !reasons.contains(r) {
                reasons.push(r.clone());
            }
        }
        for (arm, xs) in arms.iter_mut().zip(chunk) {
            arm.samples.extend(xs.into_iter().map(|us| Sample {
                us,
                sm_clock_mhz: after.sm_clock_mhz,
                throttled,
            }));
        }
        before = after;
        let taken = arms.iter().map(|a| a.samples.len()).min().unwrap_or(0);
        src.progress(taken);
        let kept: Vec<Vec<f64>> = arms.iter().map(Arm::kept).collect();
        let n_kept = kept.iter().map(Vec::len).min().unwrap_or(0);
        let cap = if n_kept >= rule.max_samples || taken >= rule.max_samples * 4 {
            Some(StopReason::SampleCap)
        } else if start.elapsed() >= rule.max_time {
            Some(StopReason::TimeCap)
        } else {
            None
        };
        let stop = if n_kept >= rule.min_samples {
            decide(&kept, cap.is_some())
        } else {
            None
        };
        let stop = stop.or(cap);
        if let Some(stop) = stop {
            return Ok(Sampled {
                arms,
                stop,
                throttle_reasons: reasons,
                elapsed: start.elapsed(),
            });
        }
    }
}

/// The single-configuration stopping rule: converged when 1.96 x the relative standard
/// error of the median is under the target; plateau when it has not fallen by 5% over
/// the last 5 checks after three times the minimum samples.
pub fn noise_rule(rule: StopRule) -> impl FnMut(&[Vec<f64>], bool) -> Option<StopReason> {
    let mut history: Vec<f64> = Vec::new();
    move |kept: &[Vec<f64>], _capped: bool| {
        let xs = &kept[0];
        let noise = 1.96 * stats::rel_se_of_median(xs);
        history.push(noise);
        if noise <= rule.target_rel {
            return Some(StopReason::Converged);
        }
        if xs.len() >= 3 * rule.min_samples && history.len() > 5 {
            let old = history[history.len() - 6];
            if noise > 0.95 * old {
                return Some(StopReason::Plateau);
            }
        }
        None
    }
}

/// The A/B stopping rule: the planned looks of `seq` (see [`sequential`]); stops at
/// the first that is not AMBIGUOUS, or when the looks are used up.
pub fn verdict_rule(
    seq: &mut sequential::Sequential,
) -> impl FnMut(&[Vec<f64>], bool) -> Option<StopReason> + '_ {
    move |kept: &[Vec<f64>], capped: bool| {
        if !seq.decide(kept, capped) {
            return None;
        }
        match seq.last().map(|l| l.verdict) {
            Some(Verdict::Ambiguous) | None => Some(StopReason::LooksUsed),
            Some(_) => Some(StopReason::Decided),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A scripted stand-in for the GPU: noisy samples around fixed means, and a
    /// throttle window. Used only to test stopping decisions.
    struct Scripted {
        means: Vec<f64>,
        noise: f64,
        rng: ChaCha8Rng,
        chunks: usize,
        throttled_chunks: std::ops::Range<usize>,
    }

    impl SampleSource for Scripted {
        type Error = ();
        fn arms(&self) -> usize {
            self.means.len()
        }
        fn take(&mut self, n: usize) -> Result<Vec<Vec<f64>>, ()> {
            self.chunks += 1;
            Ok(self
                .means
                .iter()
                .map(|m| {
                    (0..n)
                        .map(|_| m * (1.0 + self.noise * (self.rng.random::<f64>() - 0.5)))
                        .collect()
                })
                .collect())
        }
        fn telemetry(&mut self) -> Telemetry {
            Telemetry {
                sm_clock_mhz: Some(1980),
                throttle_reasons: if self.throttled_chunks.contains(&self.chunks) {
                    vec!["sw_power_cap".into()]
                } else {
                    vec![]
                },
            }
        }
    }

    fn scripted(means: &[f64], noise: f64) -> Scripted {
        Scripted {
            means: means.to_vec(),
            noise,
            rng: ChaCha8Rng::seed_from_u64(1),
            chunks: 0,
            throttled_chunks: 0..0,
        }
    }

    #[test]
    fn quiet_samples_converge_quickly() {
        let rule = StopRule::default();
        let mut src = scripted(&[100.0], 0.001);
        let out = sample(&mut src, &rule, noise_rule(rule)).unwrap();
        assert_eq!(out.stop, StopReason::Converged);
        assert_eq!(out.arms[0].samples.len(), rule.min_samples);
    }

    #[test]
    fn noisy_samples_stop_at_plateau_or_cap_never_early() {
        let rule = StopRule {
            max_samples: 300,
            ..StopRule::default()
        };
        let mut src = scripted(&[100.0], 0.8);
        let out = sample(&mut src, &rule, noise_rule(rule)).unwrap();
        assert_ne!(out.stop, StopReason::Converged);
        assert!(out.arms[0].samples.len() > rule.min_samples);
    }

    #[test]
    fn throttled_chunks_are_kept_raw_but_not_counted() {
        let rule = StopRule::default();
        let mut src = scripted(&[100.0], 0.001);
        src.throttled_chunks = 1..3;
        let out = sample(&mut src, &rule, noise_rule(rule)).unwrap();
        let arm = &out.arms[0];
        // Chunk 1 is throttled after it and chunk 2 before and after, chunk 3 before.
        assert_eq!(arm.discarded(), 30);
        assert_eq!(arm.kept().len(), rule.min_samples);
        assert_eq!(out.throttle_reasons, vec!["sw_power_cap".to_string()]);
    }

    #[test]
    fn all_throttled_stops_at_the_time_cap_with_nothing_kept() {
        let rule = StopRule {
            max_time: Duration::from_millis(50),
            ..StopRule::default()
        };
        let mut src = scripted(&[100.0], 0.001);
        src.throttled_chunks = 0..usize::MAX;
        let out = sample(&mut src, &rule, noise_rule(rule)).unwrap();
        assert!(matches!(
            out.stop,
            StopReason::TimeCap | StopReason::SampleCap
        ));
        assert!(out.arms[0].kept().is_empty());
    }

    #[test]
    fn ab_sampling_decides_clear_differences() {
        let rule = StopRule::default();
        let mut src = scripted(&[100.0, 80.0], 0.02);
        let mut seq = sequential::Sequential::new(0.02);
        let out = sample(&mut src, &rule, verdict_rule(&mut seq)).unwrap();
        assert_eq!(out.stop, StopReason::Decided);
        let l = seq.last().unwrap();
        assert_eq!(
            l,
            sequential::look(&out.arms[0].kept(), &out.arms[1].kept(), 0.02)
        );
        assert_eq!(l.verdict, Verdict::Fast);
        assert!(l.ci_lo < 1.25 && 1.25 < l.ci_hi);
    }

    #[test]
    fn ab_sampling_of_equal_arms_is_same() {
        let rule = StopRule {
            max_samples: 4000,
            max_time: Duration::from_secs(20),
            ..StopRule::default()
        };
        let mut src = scripted(&[100.0, 100.0], 0.01);
        let mut seq = sequential::Sequential::new(0.02);
        let out = sample(&mut src, &rule, verdict_rule(&mut seq)).unwrap();
        assert_eq!(out.stop, StopReason::Decided);
        assert_eq!(seq.last().unwrap().verdict, Verdict::Same);
    }
}
