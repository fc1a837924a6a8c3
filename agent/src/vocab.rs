//! The words every stage speaks: what happened to a candidate ([`Outcome`]), its
//! validation checks, its timing record ([`Measurement`]), occupancy and energy, the
//! interleaved A/B result ([`AbResult`]) and how a measurement times ([`MethodChoice`]).
//! The worker's wire protocol carries them; the evaluator, the controller's
//! dispatcher, the journal, the report, sweeps and benches read them. They live here,
//! not in the protocol, so that no stage depends on the wire to name a result.

use serde::{Deserialize, Serialize};

use crate::measure::{Sample, StopReason, Summary, TimingMethod, Verdict};
use crate::validate::{ErrorStats, TrialKind};

/// How a measurement chooses its timing method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodChoice {
    /// Batch when the fastest arm's warm time is under `batch_below_us`, else cold.
    #[default]
    Auto,
    Cold,
    Batch,
}

impl MethodChoice {
    /// The choice that reproduces `m`.
    pub fn of(m: &TimingMethod) -> MethodChoice {
        match m {
            TimingMethod::Cold => MethodChoice::Cold,
            TimingMethod::Batch { .. } => MethodChoice::Batch,
        }
    }
}

/// What happened to a candidate. Failures are outcomes, recorded and reported; `Err`
/// elsewhere means the infrastructure broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Correct at every size and trial (and measured, when asked).
    Passed,
    CompileFailed {
        log: String,
    },
    /// The configuration cannot run on this device at this size.
    Unlaunchable {
        reason: String,
    },
    Incorrect {
        size: String,
        trial: usize,
        kind: TrialKind,
        arg: String,
        stats: Box<ErrorStats>,
        /// When the wrong output came from elsewhere than a validation launch:
        /// `after timing` (the last launch of a measurement, checked after it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
    /// Wrote outside one of its buffers (into the guard region around it).
    OutOfBounds {
        size: String,
        trial: usize,
        arg: String,
        /// `before` the start or `after` the end of the buffer.
        side: String,
        /// Guard bytes that changed.
        bytes: usize,
    },
    /// Two runs on the same inputs gave different answers.
    Race {
        size: String,
        trial: usize,
        arg: String,
        index: u64,
    },
    /// A read-only input changed during the run.
    MutatedInput {
        size: String,
        trial: usize,
        arg: String,
        index: u64,
    },
    /// The watchdog killed the worker.
    Hung {
        stage: String,
        after_s: f64,
    },
    /// A sticky CUDA error, or the worker died.
    Crashed {
        stage: String,
        error: String,
    },
    /// Faster than the device's measured ceilings allow.
    Implausible {
        what: String,
        achieved: f64,
        ceiling: f64,
    },
    /// Every sample was taken while the GPU throttled.
    Unmeasurable {
        reason: String,
    },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::CompileFailed { .. } => "compile_failed",
            Outcome::Unlaunchable { .. } => "unlaunchable",
            Outcome::Incorrect { .. } => "incorrect",
            Outcome::OutOfBounds { .. } => "out_of_bounds",
            Outcome::Race { .. } => "race",
            Outcome::MutatedInput { .. } => "mutated_input",
            Outcome::Hung { .. } => "hung",
            Outcome::Crashed { .. } => "crashed",
            Outcome::Implausible { .. } => "implausible",
            Outcome::Unmeasurable { .. } => "unmeasurable",
        }
    }

    /// One line in plain words.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Passed => "passed validation".into(),
            Outcome::CompileFailed { log } => {
                format!("compile failed: {}", log.lines().find(|l| l.contains("error")).unwrap_or("see the log"))
            }
            Outcome::Unlaunchable { reason } => format!("cannot launch: {reason}"),
            Outcome::Incorrect { size, trial, kind, arg, stats, stage } => {
                let what = if stats.unwritten > 0 {
                    format!("{} of {} elements never written", stats.unwritten, stats.elements)
                } else if stats.non_finite > 0 {
                    format!("{} NaN/inf elements where the reference is finite", stats.non_finite)
                } else {
                    format!("{} of {} elements outside tolerance", stats.bad, stats.elements)
                };
                let first = stats.first_bad.map(|b| format!("; first at [{}]: got {}, expected {}", b.index, b.got, b.expected)).unwrap_or_default();
                let when = stage.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
                format!(
                    "wrong `{arg}`{when} at {size}, trial {trial} ({kind:?} inputs): {what} (max abs {:.3e}, max rel {:.3e}, rel L2 {:.3e}){first}",
                    stats.max_abs, stats.max_rel, stats.rel_l2
                )
            }
            Outcome::OutOfBounds { size, trial, arg, side, bytes } => format!(
                "wrote outside `{arg}`: {bytes} guard byte(s) {side} the buffer changed ({size}, trial {trial})"
            ),
            Outcome::Race { size, trial, arg, index } => {
                format!("race: two runs on the same inputs differ in `{arg}` at [{index}] ({size}, trial {trial})")
            }
            Outcome::MutatedInput { size, trial, arg, index } => {
                format!("wrote its read-only input `{arg}` (first change at [{index}], {size}, trial {trial})")
            }
            Outcome::Hung { stage, after_s } => format!("hung: no progress for {after_s:.0} s during {stage}; the worker was killed"),
            Outcome::Crashed { stage, error } => format!("crashed during {stage}: {error}"),
            Outcome::Implausible { what, achieved, ceiling } => format!(
                "implausible: {what} {achieved:.1} is {:.0}% of the measured ceiling {ceiling:.1}; rejected as a measurement or cost-model error",
                100.0 * achieved / ceiling
            ),
            Outcome::Unmeasurable { reason } => format!("unmeasurable: {reason}"),
        }
    }
}

/// One validation comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub size: String,
    pub trial: usize,
    pub kind: TrialKind,
    pub arg: String,
    pub stats: ErrorStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    pub uj_per_launch: f64,
    pub avg_power_w: f64,
    pub launches: u64,
    pub window_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Occupancy {
    pub ctas: u64,
    pub sms: u32,
    pub active_blocks_per_sm: u32,
    /// CTAs / (SMs x active blocks per SM); infinite when no block can be resident.
    #[serde(with = "crate::nonfinite")]
    pub waves: f64,
    /// Resident threads per SM / the SM's maximum.
    pub theoretical: f64,
}

/// The timing record of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub method: TimingMethod,
    /// Every raw sample, µs per launch, throttled ones flagged.
    pub samples: Vec<Sample>,
    /// Statistics of the samples that count; None when all were throttled.
    pub summary: Option<Summary>,
    pub discarded_throttled: usize,
    pub stop: StopReason,
    pub throttle_reasons: Vec<String>,
    pub sm_clock_mhz: Option<(u32, u32)>,
    pub warmup_us_per_launch: f64,
    pub energy: Option<Energy>,
    pub utilization_gpu_pct: Option<u32>,
    pub wall_ms: f64,
}

/// Where one job's validation time went, ms of wall time each (the GPU synchronized).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationCost {
    /// Generating inputs on the device.
    pub generate_ms: f64,
    /// Running the reference (for outputs not kept from an earlier job).
    pub reference_ms: f64,
    /// Running the candidate (twice per trial with the race check).
    pub candidate_ms: f64,
    /// Comparing outputs, inputs and guards.
    pub compare_ms: f64,
    /// Reference outputs computed, and reused from an earlier job of this worker.
    pub references_computed: u32,
    pub references_reused: u32,
    /// Where the reused ones were kept: `device` or `host` memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_on: Vec<String>,
    /// The job passed validation earlier in this worker (the current best of a
    /// run): it was not validated again; `checks` are those of that validation.
    #[serde(default)]
    pub validated_earlier: bool,
}

/// Two passing runs that differ only bitwise: allowed (float atomics, split
/// reductions) unless the spec asks for bitwise determinism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nondeterminism {
    pub size: String,
    pub trial: usize,
    pub arg: String,
    /// The first element that differs.
    pub index: u64,
}

/// The interleaved A/B result (speedup = time of A / time of B).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbResult {
    /// The median of the pairs' time ratios (A over B).
    pub speedup: f64,
    /// Its interval at the level of one look (`measure::sequential`): together the
    /// looks' intervals hold the true ratio with 95% probability.
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub verdict: Verdict,
    pub min_gain: f64,
    pub pairs: usize,
    pub stop: StopReason,
    /// Looks taken at the evidence (at most `measure::sequential::MAX_LOOKS`).
    #[serde(default)]
    pub looks: Option<usize>,
}

/// A verdict's figures as committed and journaled: what of an [`AbResult`] the
/// evidence keeps (`pairs` and `min_gain` are unknown in journals written before
/// they were recorded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbFigures {
    pub verdict: Verdict,
    pub speedup: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub pairs: Option<usize>,
    pub min_gain: Option<f64>,
}

impl From<&AbResult> for AbFigures {
    fn from(a: &AbResult) -> Self {
        AbFigures {
            verdict: a.verdict,
            speedup: a.speedup,
            ci_lo: a.ci_lo,
            ci_hi: a.ci_hi,
            pairs: Some(a.pairs),
            min_gain: Some(a.min_gain),
        }
    }
}
