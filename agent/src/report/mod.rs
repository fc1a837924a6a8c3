//! The iteration report, built from a run's journal alone: `report.md` for a person,
//! `report.json` (the same figures, with a schema version) and `samples.csv` (every raw
//! sample with its labels). Every timing figure is recomputed here from the raw
//! samples the journal holds (medians, bootstrap intervals with the run's recorded
//! seed, speedups), never copied from a summary, so `verify` can recompute the report
//! and name any figure that differs. A fraction of a ceiling above 100% is never
//! printed as a percentage: it is a flagged anomaly.

mod build;
mod by_kernel;
mod cells;
pub(crate) mod chart;
pub mod compare;
mod derive;
mod evidence;
mod html;
pub(crate) mod plot;
mod proposals;
mod render;
#[cfg(test)]
mod tests;
pub(crate) mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::evaluate::Evaluation;
use crate::journal::Typed;
use crate::measure::stats::Summary;
use crate::measure::TimingMethod;
use crate::study::StudyResult;
use crate::vocab::Outcome;

pub use build::build;
pub use evidence::{Arm, Evidence};
pub use html::html;
pub use plot::plots;
pub use proposals::{Money, ProposalReport, ProposerSpend};
pub use render::{markdown, samples_csv};
pub use verify::{verify, verify_page};

/// 2: every kept change's and final comparison's samples (`evidence`).
pub const SCHEMA_VERSION: u32 = 2;

/// What wrote a page of the report, stamped in it: `--verify` can only render again
/// what the same version and report format wrote.
pub const GENERATOR: &str = concat!(
    "nightshift ",
    env!("CARGO_PKG_VERSION"),
    ", report format 2"
);

/// A page as written to disk, with its stamp: `report.md` and the plots carry it as
/// a comment on their first line (the HTML page has its own `<meta>`).
pub fn stamped(name: &str, text: &str) -> String {
    if name.ends_with(".md") {
        format!("<!-- written by {GENERATOR} -->\n{text}")
    } else if name.ends_with(".svg") {
        // After the root element's start: an SVG file still begins with `<svg`.
        match text.split_once('\n') {
            Some((first, rest)) => format!("{first}\n<!-- written by {GENERATOR} -->\n{rest}"),
            None => text.to_string(),
        }
    } else {
        text.to_string()
    }
}

/// Relative width of a 95% interval above which a caveat is written.
const WIDE_INTERVAL: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub run_id: String,
    pub device: String,
    pub branch: Option<String>,
    /// `finished`, or `did not finish` (killed; resumable).
    pub state: String,
    pub stop: String,
    pub machine: Option<Machine>,
    pub spend: SpendReport,
    pub kernels: Vec<KernelReport>,
    /// One per line of attack: a pattern's consecutive candidates on a kernel.
    pub lines: Vec<Line>,
    /// Every candidate.
    pub iterations: Vec<Iteration>,
    pub patterns: Vec<PatternRoi>,
    pub pivots: Vec<Pivot>,
    pub failures: Vec<Failure>,
    pub predictions: Vec<PredictionCheck>,
    pub studies: Vec<StudyReport>,
    pub caveats: Vec<String>,
    pub reproduce: Vec<String>,
    /// Every rewrite candidate: kept (with its source diff), rejected, or not
    /// applicable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<RewriteReport>,
    /// Every question to a code-writing proposer, in order, and what came of it
    /// (its candidate is also among `iterations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<ProposalReport>,
    /// The samples behind every kept change and every final comparison, drawn in
    /// the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// Per kernel, the tunables no applicable pattern moved, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmoved: Vec<(String, Vec<String>)>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// A rewrite candidate and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewriteReport {
    pub kernel: String,
    pub pattern: String,
    /// The candidate: configuration and rewrites.
    pub config: String,
    /// `kept <sha>`, `rejected: <outcome or verdict>`, `not applicable: <why>`.
    pub decision: String,
    pub speedup: Option<Speedup>,
    /// The NVRTC options it was compiled with (none when it was not compiled).
    #[serde(default)]
    pub options: Vec<String>,
    /// Its source's diff against the kernel as written (kept ones only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub name: String,
    pub uuid: String,
    pub arch: String,
    pub sms: u64,
    pub display_driver: Option<String>,
    pub cuda_driver: Option<String>,
    pub nvrtc: Option<String>,
    pub max_sm_clock_mhz: Option<f64>,
    /// DRAM bandwidth implied by the driver's memory clock and bus width, GB/s.
    pub dram_datasheet_gbs: Option<f64>,
    pub dram_measured_gbs: Option<f64>,
    pub fp32_measured_gflops: Option<f64>,
    pub tensor_f16_measured_gflops: Option<f64>,
    /// SM clocks seen across every sample of the run, MHz.
    pub sm_clock_range_mhz: Option<(u32, u32)>,
    pub samples: usize,
    pub throttled_samples: usize,
    /// Median relative width of the 95% intervals of the medians measured.
    pub median_noise: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendReport {
    /// From the run's first record to its last, the time it was down included.
    pub wall_s: f64,
    /// Seconds the daemon was not running between a crash or kill and a resume
    /// (counted by the wall limit, not as GPU time: the provider may have billed it).
    #[serde(default)]
    pub down_s: f64,
    #[serde(default)]
    pub resumes: usize,
    pub gpu_s: f64,
    /// GPU time at the device's price; a proposer's bills are apart, in `proposer`.
    pub dollars: f64,
    pub price_per_gpu_hour: f64,
    pub wall_limit_s: Option<f64>,
    pub gpu_limit_s: Option<f64>,
    pub dollars_limit: Option<f64>,
    /// GPU seconds by stage (compile, validate, measure, idle).
    pub by_stage: BTreeMap<String, f64>,
    /// GPU seconds by kernel (its candidates, final comparison, study and idle time);
    /// `run` for time charged to no kernel.
    pub by_kernel: BTreeMap<String, f64>,
    /// What a code-writing proposer cost beside the GPU, and the total the dollar
    /// budget counts (None: the run asked no proposer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposer: Option<ProposerSpend>,
}

/// A median with its 95% interval, µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub median_us: f64,
    pub ci_lo_us: f64,
    pub ci_hi_us: f64,
    pub samples: usize,
    pub method: String,
}

/// A speedup of B over A with its 95% interval, recomputed from both sides' samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Speedup {
    pub x: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub verdict: String,
    pub min_gain: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelReport {
    pub kernel: String,
    pub baseline_config: String,
    pub baseline: Option<Timing>,
    pub best_config: String,
    /// The best measured interleaved with the baseline at the end of the kernel.
    pub best: Option<Timing>,
    pub speedup: Option<Speedup>,
    /// Of the best (or the baseline when nothing won): `x% of DRAM` or an anomaly.
    pub roofline: Option<String>,
    pub energy_uj_per_launch: Option<f64>,
    pub registers: Option<u64>,
    pub commit: Option<String>,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Iteration {
    pub kernel: String,
    pub pattern: String,
    pub config: String,
    pub against: Option<String>,
    pub outcome: String,
    pub timing: Option<Timing>,
    pub speedup: Option<Speedup>,
    /// `committed <sha>`, `reverted: <reason>`.
    pub decision: String,
    pub gpu_s: f64,
    pub dollars: f64,
}

/// One iteration of the loop: a pattern's line of attack on a kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub kernel: String,
    pub pattern: String,
    pub prediction: String,
    pub candidates: usize,
    /// By outcome class: faster, same, slower, ambiguous, or the failure.
    pub outcomes: BTreeMap<String, usize>,
    /// What came of it: the commits, or why nothing was kept.
    pub decision: String,
    pub gpu_s: f64,
    /// Its GPU time at the device's price.
    pub dollars: f64,
    /// The bills of the proposer's questions on it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proposer_dollars: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternRoi {
    pub pattern: String,
    pub candidates: usize,
    pub fast: usize,
    pub gpu_s: f64,
    /// Its candidates' GPU time at the device's price.
    pub dollars: f64,
    /// Product of the speedups of its commits (1 when none).
    pub gain: f64,
    /// The bills of the proposer's questions under it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proposer_dollars: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pivot {
    pub kernel: String,
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub outcome: String,
    pub count: usize,
    /// Up to three examples: `kernel config: what happened`.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionCheck {
    pub kernel: String,
    pub pattern: String,
    pub predicted: String,
    pub predicted_x: Option<f64>,
    /// The best speedup measured among the line's candidates (None: none measured).
    pub measured_x: Option<f64>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    pub kernel: String,
    pub config: String,
    pub cut_short: Option<String>,
    pub result: StudyResult,
    pub gpu_s: f64,
    pub dollars: f64,
}

/// What went wrong building or verifying a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Journal(String),
    #[error("figure `{figure}` differs: {found} where the raw samples give {expected}")]
    Differs {
        figure: String,
        found: String,
        expected: String,
    },
}

fn method_name(e: &Evaluation) -> String {
    match e.measurement.as_ref().map(|m| m.method) {
        Some(TimingMethod::Cold) => "cold".into(),
        Some(TimingMethod::Batch { launches, .. }) => format!("batch of {launches}"),
        None => "-".into(),
    }
}

/// The median and interval of an evaluation, from its raw samples.
pub fn timing(e: &Evaluation, seed: u64) -> Option<Timing> {
    if e.outcome != Outcome::Passed {
        return None;
    }
    let k = e.kept_samples();
    let s = Summary::of(&k, seed)?;
    Some(Timing {
        median_us: s.median,
        ci_lo_us: s.ci_lo,
        ci_hi_us: s.ci_hi,
        samples: s.n,
        method: method_name(e),
    })
}

/// B over A, from the raw pairs, as the worker computes it: the look at every pair
/// (`measure::sequential`), which is the look that stopped the comparison.
pub fn speedup(a: &Evaluation, b: &Evaluation, seed: u64, min_gain: f64) -> Option<Speedup> {
    // Both sides measured (they were interleaved: sample i of each is a pair).
    timing(a, seed)?;
    timing(b, seed)?;
    let l = crate::measure::sequential::look(&a.kept_samples(), &b.kept_samples(), min_gain);
    Some(Speedup {
        x: l.speedup,
        ci_lo: l.ci_lo,
        ci_hi: l.ci_hi,
        verdict: l.verdict.as_str().to_string(),
        min_gain,
    })
}

fn eval_of(v: &Typed<Evaluation>) -> Option<Evaluation> {
    v.get().cloned()
}

/// `x% of the DRAM ceiling` (or compute), or an anomaly above 100%.
fn roofline_text(e: &Evaluation, timing: &Timing, ceilings: Option<&Value>) -> Option<String> {
    let r = e.roofline.as_ref()?;
    let c = ceilings?;
    let secs = timing.median_us * 1e-6;
    let (what, achieved, ceiling, unit) = if r.bound == "memory" {
        (
            "DRAM bandwidth",
            r.bytes / secs / 1e9,
            c.get("dram_gbs")?.as_f64()?,
            "GB/s",
        )
    } else {
        let key = match r.compute {
            crate::spec::ComputeKind::Fp32 => "fp32_gflops",
            crate::spec::ComputeKind::TensorF16 => "tensor_f16_gflops",
        };
        (
            "arithmetic throughput",
            r.flops / secs / 1e9,
            c.get(key)?.as_f64()?,
            "GFLOP/s",
        )
    };
    let f = achieved / ceiling;
    Some(if f > 1.0 {
        format!(
            "ANOMALY: {achieved:.1} {unit} of {what} is above the measured ceiling {ceiling:.1} {unit}; not a result (the cost model overstates the traffic, or the ceiling was measured low)"
        )
    } else {
        format!(
            "{:.1}% of the measured {what} ceiling ({achieved:.1} of {ceiling:.1} {unit})",
            100.0 * f
        )
    })
}
