//! What an evaluation records: the [`Evaluation`] of one configuration (its outcome,
//! compile, checks, measurement, stage times) and what it cost by stage.

use serde::{Deserialize, Serialize};

use super::judge::Roofline;
use crate::budget::Stage;
use crate::gpu::FunctionInfo;
use crate::spec::plan::problem_label;
use crate::spec::{Config, KernelSpec};
use crate::vocab::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileInfo {
    pub ms: f64,
    pub cached: bool,
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedSize {
    pub size: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub compile_ms: f64,
    pub validate_ms: f64,
    pub measure_ms: f64,
    pub total_ms: f64,
}

/// Everything known about one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub kernel: String,
    pub config: Config,
    /// Set when an external baseline (e.g. cuBLAS) ran instead of the kernel: what ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    pub problem: String,
    pub outcome: Outcome,
    pub compile: Option<CompileInfo>,
    pub function: Option<FunctionInfo>,
    pub checks: Vec<Check>,
    pub skipped_sizes: Vec<SkippedSize>,
    pub measurement: Option<Measurement>,
    pub occupancy: Option<Occupancy>,
    pub roofline: Option<Roofline>,
    /// Figures that need a second look (e.g. at the ceiling within noise).
    pub anomalies: Vec<String>,
    pub times: StageTimes,
    /// Where validation's time went (generate, reference, candidate, compare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationCost>,
    /// Two runs on the same inputs both passed and differ bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nondeterministic: Option<Nondeterminism>,
    /// The rewrites of the kernel this configuration ran as (`name:key=value,...`;
    /// empty: the kernel as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<String>,
}

impl Evaluation {
    pub(super) fn new(spec: &KernelSpec, config: &Config, outcome: Outcome) -> Self {
        Evaluation {
            kernel: spec.name.clone(),
            config: config.clone(),
            external: None,
            problem: problem_label(&spec.problem),
            outcome,
            compile: None,
            function: None,
            checks: vec![],
            skipped_sizes: vec![],
            measurement: None,
            occupancy: None,
            roofline: None,
            anomalies: vec![],
            times: StageTimes::default(),
            validation: None,
            nondeterministic: None,
            rewrites: spec
                .rewritten
                .as_ref()
                .map(|r| r.rewrites.clone())
                .unwrap_or_default(),
        }
    }

    pub fn median_us(&self) -> Option<f64> {
        self.measurement.as_ref()?.summary.map(|s| s.median)
    }

    /// The samples that count (not taken while throttled), µs per launch.
    pub fn kept_samples(&self) -> Vec<f64> {
        self.measurement
            .as_ref()
            .map(|m| {
                m.samples
                    .iter()
                    .filter(|s| !s.throttled)
                    .map(|s| s.us)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The cost of one evaluation by stage, from its own timers: the same figures whether
/// it ran now or is replayed from the journal. `compile`, `validate` (the candidate),
/// `revalidate` (the incumbent it was compared with, `against`, when the worker had to
/// validate it again), `measure` (warm-up, sampling, the check after timing, energy:
/// nothing for a candidate that failed validation), and `idle`: whatever else the
/// evaluation's wall time held the GPU for (the worker's round trip, the other side's
/// cached compile). They add up to the evaluation's wall time.
pub fn cost_of(e: &Evaluation, against: Option<&Evaluation>) -> Vec<(Stage, f64)> {
    let t = &e.times;
    let s = |ms: f64| ms.max(0.0) / 1e3;
    let parts = [
        (Stage::Compile, s(t.compile_ms)),
        (Stage::Validate, s(t.validate_ms)),
        (
            Stage::Revalidate,
            against.map_or(0.0, |a| s(a.times.validate_ms)),
        ),
        (Stage::Measure, s(t.measure_ms)),
    ];
    let counted: f64 = parts.iter().map(|p| p.1).sum();
    let total = s(t.total_ms).max(counted);
    let mut out: Vec<(Stage, f64)> = parts
        .into_iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.1 > 0.0)
        .map(|(_, p)| p)
        .collect();
    if total - counted > 0.0 {
        out.push((Stage::Idle, total - counted));
    }
    out
}
