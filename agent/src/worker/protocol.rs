//! The JSON-lines protocol between nightshift and its GPU worker: one request per
//! line on the worker's stdin, any number of `progress` lines and one final response
//! per request on its stdout.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::gpu::ceilings::Ceilings;
use crate::gpu::{DeviceInfo, FunctionInfo};
use crate::measure::{Sample, StopReason, StopRule, Summary, TimingMethod, Verdict};
use crate::spec::plan::SizePlan;
use crate::spec::{DType, Tolerance};
use crate::validate::{ErrorStats, TrialKind};

pub const PROTOCOL_VERSION: u32 = 1;

/// A compiled kernel the worker loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelImage {
    pub cubin: PathBuf,
    pub entry: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationOpts {
    pub trials: u32,
    pub seed: u64,
    /// Run the candidate twice on the same inputs (a race check).
    pub deterministic: bool,
    /// The two runs must agree bit for bit (the spec's `deterministic = "bitwise"`);
    /// otherwise runs that both pass and differ only bitwise (float atomics) pass
    /// with a `nondeterministic` note.
    #[serde(default)]
    pub bitwise: bool,
    pub tolerances: Vec<(DType, Tolerance)>,
    /// Absolute tolerance for the large-magnitude trial, when the spec gives one.
    #[serde(default)]
    pub large_atol: Option<f64>,
}

impl ValidationOpts {
    /// The tolerance for `d` in a trial of this kind.
    pub fn tolerance(&self, d: DType, kind: TrialKind) -> Tolerance {
        let mut t = self
            .tolerances
            .iter()
            .find(|(x, _)| *x == d)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| Tolerance::default_for(d));
        if let (TrialKind::Large, Some(a), true) = (kind, self.large_atol, d.is_float()) {
            t.atol = a;
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureOpts {
    pub rule: StopRule,
    /// Warm-up time before sampling, ms.
    pub warmup_ms: f64,
    /// Kernels faster than this (µs, warm) are timed in batches (with `MethodChoice::Auto`).
    pub batch_below_us: f64,
    /// Cold or batch timing, or chosen by `batch_below_us`. A run pins each kernel's
    /// method to its baseline's, so all its figures are of one method.
    #[serde(default)]
    pub method: MethodChoice,
    /// Target duration of one batch sample, µs.
    pub batch_sample_us: f64,
    /// Window of back-to-back launches over which energy is read, ms (0: skip).
    pub energy_ms: f64,
    pub seed: u64,
}

impl Default for MeasureOpts {
    fn default() -> Self {
        MeasureOpts {
            rule: StopRule::default(),
            warmup_ms: 50.0,
            batch_below_us: 10.0,
            method: MethodChoice::Auto,
            batch_sample_us: 500.0,
            energy_ms: 500.0,
            seed: 0x5EED,
        }
    }
}

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

/// One configuration to validate (and measure) at concrete sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalJob {
    pub label: String,
    /// What runs as the candidate: `kernel` (the compiled configuration) or an
    /// external baseline through the same protocols.
    #[serde(default)]
    pub via: Via,
    pub kernel: KernelImage,
    pub reference: KernelImage,
    /// `sizes[0]` is the problem that is measured; all are validated.
    pub sizes: Vec<SizePlan>,
    pub validation: ValidationOpts,
    pub measure: Option<MeasureOpts>,
}

/// What a job runs as its candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    #[default]
    Kernel,
    /// The spec's `[external] cublas` call at each size.
    Cublas,
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

/// What the worker found for one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub outcome: Outcome,
    pub function: Option<FunctionInfo>,
    pub checks: Vec<Check>,
    pub measurement: Option<Measurement>,
    pub occupancy: Option<Occupancy>,
    pub validate_ms: f64,
    pub measure_ms: f64,
    /// Where validation's time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationCost>,
    /// Two runs on the same inputs both passed but differ bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nondeterministic: Option<Nondeterminism>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello,
    Ceilings,
    Evaluate {
        job: Box<EvalJob>,
    },
    /// Validate both, then measure them interleaved.
    Compare {
        a: Box<EvalJob>,
        b: Box<EvalJob>,
        min_gain: f64,
        /// Measure the side that passed when the other failed validation (a sweep's
        /// cell); otherwise neither is measured.
        #[serde(default)]
        lone: bool,
    },
    /// Run the reference at every validation size (`job.sizes[1..]`) on the first
    /// trial's inputs and write inputs, outputs and a manifest under `dir`, one
    /// directory per size, for a check against another implementation.
    DumpReference {
        job: Box<EvalJob>,
        kernel: String,
        dir: std::path::PathBuf,
    },
    /// Check the device's validation kernels against their host mirror.
    SelfCheck,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Ready {
        protocol: u32,
        device: Box<DeviceInfo>,
    },
    Progress {
        stage: String,
    },
    Ceilings {
        ceilings: Box<Ceilings>,
    },
    Evaluated {
        report: Box<WorkerReport>,
    },
    Compared {
        a: Box<WorkerReport>,
        b: Box<WorkerReport>,
        ab: Option<AbResult>,
    },
    Dumped {
        dirs: Vec<std::path::PathBuf>,
    },
    /// The validation kernels' self-check: how many cases, and the ones that failed.
    SelfChecked {
        cases: usize,
        failures: Vec<String>,
    },
    /// The request could not be carried out (infrastructure, not the candidate).
    Error {
        message: String,
    },
}

impl Response {
    /// True when the worker exits after sending this (a sticky CUDA error poisoned its
    /// context): the supervisor retires it at once, so the next request gets a fresh one.
    pub fn ends_worker(&self) -> bool {
        let crashed = |r: &WorkerReport| matches!(r.outcome, Outcome::Crashed { .. });
        match self {
            Response::Evaluated { report } => crashed(report),
            Response::Compared { a, b, .. } => crashed(a) || crashed(b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_single_json_lines() {
        for r in [Request::Hello, Request::Ceilings, Request::Shutdown] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::Hello).unwrap(),
            r#"{"op":"hello"}"#
        );
    }

    #[test]
    fn responses_round_trip() {
        let r = Response::Evaluated {
            report: Box::new(WorkerReport {
                outcome: Outcome::Race {
                    size: "n=3".into(),
                    trial: 1,
                    arg: "y".into(),
                    index: 7,
                },
                function: None,
                checks: vec![],
                measurement: None,
                occupancy: None,
                validate_ms: 1.0,
                measure_ms: 0.0,
                validation: None,
                nondeterministic: None,
            }),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), r);
        let p: Response =
            serde_json::from_str(r#"{"kind":"progress","stage":"validate"}"#).unwrap();
        assert_eq!(
            p,
            Response::Progress {
                stage: "validate".into()
            }
        );
    }

    #[test]
    fn outcomes_read_as_plain_words() {
        let o = Outcome::MutatedInput {
            size: "n=3".into(),
            trial: 0,
            arg: "x".into(),
            index: 2,
        };
        assert!(o.describe().contains("read-only input `x`"));
        assert_eq!(o.name(), "mutated_input");
        let h = Outcome::Hung {
            stage: "validate n=3 trial 0".into(),
            after_s: 10.0,
        };
        assert!(h.describe().contains("killed"));
    }
}
