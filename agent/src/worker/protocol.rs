//! The JSON-lines protocol between nightshift and its GPU worker: one request per
//! line on the worker's stdin, any number of `progress` lines and one final response
//! per request on its stdout.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::gpu::ceilings::Ceilings;
use crate::gpu::{DeviceInfo, FunctionInfo};
use crate::measure::StopRule;
use crate::spec::plan::SizePlan;
use crate::spec::{DType, Tolerance};
use crate::validate::TrialKind;
use crate::vocab::{
    AbResult, Check, Measurement, MethodChoice, Nondeterminism, Occupancy, Outcome, ValidationCost,
};

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
