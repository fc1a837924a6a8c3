//! The iteration report, built from a run's journal alone: `report.md` for a person,
//! `report.json` (the same figures, with a schema version) and `samples.csv` (every raw
//! sample with its labels). Every timing figure is recomputed here from the raw
//! samples the journal holds (medians, bootstrap intervals with the run's recorded
//! seed, speedups), never copied from a summary, so `verify` can recompute the report
//! and name any figure that differs. A fraction of a ceiling above 100% is never
//! printed as a percentage: it is a flagged anomaly.

pub mod compare;
pub(crate) mod plot;
mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::{Budgets, Ledger};
use crate::evaluate::Evaluation;
use crate::journal::{Event, Record, Typed};
use crate::measure::stats::Summary;
use crate::measure::TimingMethod;
use crate::study::StudyResult;
use crate::vocab::Outcome;

pub use render::{markdown, samples_csv};

pub const SCHEMA_VERSION: u32 = 1;

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
    pub dollars: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternRoi {
    pub pattern: String,
    pub candidates: usize,
    pub fast: usize,
    pub gpu_s: f64,
    pub dollars: f64,
    /// Product of the speedups of its commits (1 when none).
    pub gain: f64,
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

/// The seed the run's bootstrap used (from its `Machine` record), else the default.
fn seed_of(records: &[Record]) -> u64 {
    records
        .iter()
        .find_map(|r| match &r.event {
            Event::Machine { measure, .. } => measure.get("seed").and_then(Value::as_u64),
            _ => None,
        })
        .unwrap_or_else(|| crate::worker::protocol::MeasureOpts::default().seed)
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

/// Builds the report of a run from its journal records.
pub fn build(run_id: &str, records: &[Record]) -> Report {
    let seed = seed_of(records);
    let mut device = String::new();
    let mut branch = None;
    let mut budgets: Option<Budgets> = None;
    let mut machine_rec: Option<(Value, Value)> = None;
    let mut stop =
        "did not finish: killed or crashed; `nightshift run --resume` continues it".to_string();
    let mut finished = false;
    let mut proposals: Vec<Proposed> = Vec::new();
    let mut iterations: Vec<Iteration> = Vec::new();
    let mut kernels: Vec<KernelReport> = Vec::new();
    let mut pivots = Vec::new();
    let mut studies = Vec::new();
    let mut charges_by_config: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut by_stage: BTreeMap<String, f64> = BTreeMap::new();
    let mut by_kernel: BTreeMap<String, f64> = BTreeMap::new();
    let mut gpu_s = 0.0;
    let mut all_timings: Vec<Timing> = Vec::new();
    let mut samples = 0usize;
    let mut throttled = 0usize;
    let mut clocks: Option<(u32, u32)> = None;
    let mut note_samples = |e: &Evaluation| {
        if let Some(m) = &e.measurement {
            for s in &m.samples {
                samples += 1;
                throttled += s.throttled as usize;
                if let Some(c) = s.sm_clock_mhz {
                    clocks = Some(clocks.map_or((c, c), |(a, b)| (a.min(c), b.max(c))));
                }
            }
        }
    };
    let kernel_entry = |ks: &mut Vec<KernelReport>, name: &str| -> usize {
        if let Some(i) = ks.iter().position(|k| k.kernel == name) {
            return i;
        }
        ks.push(KernelReport {
            kernel: name.to_string(),
            baseline_config: String::new(),
            baseline: None,
            best_config: String::new(),
            best: None,
            speedup: None,
            roofline: None,
            energy_uj_per_launch: None,
            registers: None,
            commit: None,
            state: "in progress".into(),
        });
        ks.len() - 1
    };
    let mut best_eval: BTreeMap<String, Evaluation> = BTreeMap::new();
    let mut nondeterministic: Vec<String> = Vec::new();
    let mut overcounts: BTreeMap<String, String> = BTreeMap::new();
    for rec in records {
        match &rec.event {
            Event::RunStarted {
                device: d,
                budgets: b,
                git_branch,
                ..
            } => {
                device = d.clone();
                branch = git_branch.clone();
                budgets = b.get().cloned();
            }
            Event::Resumed { budgets: b, .. } if !b.is_null() => {
                budgets = b.get().cloned();
            }
            Event::Machine {
                device: d,
                ceilings,
                ..
            } => machine_rec = Some((d.clone(), ceilings.clone())),
            Event::Proposal {
                kernel,
                pattern,
                prediction,
                predicted,
                ..
            } => proposals.push(Proposed {
                kernel: kernel.clone(),
                pattern: pattern.clone(),
                text: prediction.clone(),
                // The number as recorded, or (older journals) read from the words.
                speedup: predicted
                    .as_ref()
                    .map(|p| p.speedup)
                    .or_else(|| predicted_x(prediction)),
            }),
            Event::Evaluated {
                kernel,
                config,
                pattern,
                evaluation,
                ..
            } => {
                let Some(e) = eval_of(evaluation) else {
                    continue;
                };
                if let Some(n) = &e.nondeterministic {
                    nondeterministic.push(format!("{} {config} (`{}`)", kernel, n.arg));
                }
                if let Some(a) = e
                    .anomalies
                    .iter()
                    .find(|a| a.starts_with(crate::evaluate::COST_MODEL_OVERCOUNTS))
                {
                    overcounts
                        .entry(kernel.clone())
                        .or_insert_with(|| a.clone());
                }
                note_samples(&e);
                let t = timing(&e, seed);
                all_timings.extend(t.clone());
                match pattern {
                    None => {
                        let i = kernel_entry(&mut kernels, kernel);
                        let k = &mut kernels[i];
                        k.baseline_config = config.clone();
                        k.best_config = config.clone();
                        k.baseline = t.clone();
                        k.best = t.clone();
                        k.registers = e.function.as_ref().map(|f| f.registers as u64);
                        k.energy_uj_per_launch = e
                            .measurement
                            .as_ref()
                            .and_then(|m| m.energy.as_ref())
                            .map(|x| x.uj_per_launch);
                        best_eval.insert(kernel.clone(), e);
                    }
                    Some(p) => iterations.push(Iteration {
                        kernel: kernel.clone(),
                        pattern: p.clone(),
                        config: config.clone(),
                        against: None,
                        outcome: e.outcome.name().to_string(),
                        timing: t,
                        speedup: None,
                        decision: if e.outcome == Outcome::Passed {
                            "not decided when the run stopped".into()
                        } else {
                            format!("rejected: {}", e.outcome.describe())
                        },
                        gpu_s: 0.0,
                        dollars: 0.0,
                    }),
                }
            }
            Event::Verdict {
                kernel,
                config,
                baseline,
                min_gain,
                against,
                ..
            } => {
                let it = iterations
                    .iter_mut()
                    .rev()
                    .find(|i| &i.kernel == kernel && &i.config == config);
                let (Some(it), Some(a)) = (it, eval_of(against)) else {
                    continue;
                };
                note_samples(&a);
                it.against = Some(baseline.clone());
                let b = records.iter().find_map(|r| match &r.event {
                    Event::Evaluated {
                        kernel: k,
                        config: c,
                        evaluation,
                        ..
                    } if k == kernel && c == config => eval_of(evaluation),
                    _ => None,
                });
                if let Some(b) = b {
                    it.speedup = speedup(&a, &b, seed, min_gain.unwrap_or(0.02));
                }
            }
            Event::Commit {
                kernel,
                config,
                sha,
            } => {
                if let Some(it) = iterations
                    .iter_mut()
                    .rev()
                    .find(|i| &i.kernel == kernel && &i.config == config)
                {
                    it.decision = format!("committed {}", &sha[..sha.len().min(10)]);
                }
                // The committed candidate's own measurement is the best's, until a
                // final comparison measures it beside the baseline.
                let timing = iterations
                    .iter()
                    .rev()
                    .find(|i| &i.kernel == kernel && &i.config == config)
                    .and_then(|i| i.timing.clone());
                let i = kernel_entry(&mut kernels, kernel);
                kernels[i].best_config = config.clone();
                kernels[i].commit = Some(sha.clone());
                if timing.is_some() {
                    kernels[i].best = timing;
                }
                if let Some(e) = records.iter().rev().find_map(|r| match &r.event {
                    Event::Evaluated {
                        kernel: k,
                        config: c,
                        evaluation,
                        ..
                    } if k == kernel && c == config => eval_of(evaluation),
                    _ => None,
                }) {
                    let k = &mut kernels[i];
                    k.registers = e.function.as_ref().map(|f| f.registers as u64);
                    k.energy_uj_per_launch = e
                        .measurement
                        .as_ref()
                        .and_then(|m| m.energy.as_ref())
                        .map(|x| x.uj_per_launch);
                    best_eval.insert(kernel.clone(), e);
                }
            }
            Event::Revert {
                kernel,
                config,
                reason,
            } => {
                if let Some(it) = iterations
                    .iter_mut()
                    .rev()
                    .find(|i| &i.kernel == kernel && &i.config == config)
                {
                    it.decision = format!("reverted: {reason}");
                }
            }
            Event::Pivot {
                kernel,
                pattern,
                reason,
            } => pivots.push(Pivot {
                kernel: kernel.clone(),
                pattern: pattern.clone(),
                reason: reason.clone(),
            }),
            Event::KernelDone { kernel, reason } => {
                let i = kernel_entry(&mut kernels, kernel);
                kernels[i].state = format!("done: {reason}");
            }
            Event::KernelPaused { kernel, reason } => {
                let i = kernel_entry(&mut kernels, kernel);
                kernels[i].state = format!("paused: {reason}");
            }
            Event::FinalComparison {
                kernel,
                best,
                baseline_evaluation,
                best_evaluation,
                ..
            } => {
                let i = kernel_entry(&mut kernels, kernel);
                if let (Some(a), Some(b)) = (eval_of(baseline_evaluation), eval_of(best_evaluation))
                {
                    note_samples(&a);
                    note_samples(&b);
                    let k = &mut kernels[i];
                    k.best_config = best.clone();
                    k.baseline = timing(&a, seed);
                    k.best = timing(&b, seed);
                    k.speedup = speedup(&a, &b, seed, 0.02);
                    k.registers = b.function.as_ref().map(|f| f.registers as u64);
                    k.energy_uj_per_launch = b
                        .measurement
                        .as_ref()
                        .and_then(|m| m.energy.as_ref())
                        .map(|x| x.uj_per_launch);
                    best_eval.insert(kernel.clone(), b);
                }
            }
            Event::StudyPoint { evaluation, .. } => {
                // Counted with every other measurement: samples, throttling, clocks.
                if let Some(e) = eval_of(evaluation) {
                    note_samples(&e);
                }
            }
            Event::Study {
                kernel,
                config,
                cut_short,
                result,
                ..
            } => {
                if let Some(r) = result.get().cloned() {
                    studies.push(StudyReport {
                        kernel: kernel.clone(),
                        config: config.clone(),
                        cut_short: cut_short.clone(),
                        result: r,
                        gpu_s: 0.0,
                        dollars: 0.0,
                    });
                }
            }
            Event::Charge(c) => {
                gpu_s += c.gpu_s;
                let stage = serde_json::to_value(c.stage)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *by_stage.entry(stage).or_default() += c.gpu_s;
                *by_kernel
                    .entry(c.kernel.clone().unwrap_or_else(|| "run".into()))
                    .or_default() += c.gpu_s;
                if let (Some(k), Some(cfg)) = (&c.kernel, &c.config) {
                    *charges_by_config
                        .entry((k.clone(), cfg.clone()))
                        .or_default() += c.gpu_s;
                }
            }
            Event::RunFinished { reason, .. } => {
                stop = reason.clone();
                finished = true;
                for k in kernels.iter_mut().filter(|k| !k.state.starts_with("done")) {
                    k.state = if k.state.starts_with("paused") {
                        format!("not finished when the run stopped (it was {})", k.state)
                    } else {
                        "not finished when the run stopped".into()
                    };
                }
            }
            _ => {}
        }
    }
    let price = budgets
        .as_ref()
        .map_or(0.0, |b| Ledger::for_device(b, &device).price_per_gpu_hour());
    for st in studies.iter_mut() {
        st.gpu_s = charges_by_config
            .iter()
            .filter(|((k, c), _)| k == &st.kernel && c.starts_with("study x"))
            .map(|(_, s)| s)
            .sum();
        st.dollars = st.gpu_s * price / 3600.0;
    }
    for it in iterations.iter_mut() {
        it.gpu_s = charges_by_config
            .get(&(it.kernel.clone(), it.config.clone()))
            .copied()
            .unwrap_or(0.0);
        it.dollars = it.gpu_s * price / 3600.0;
    }
    let ceilings = machine_rec.as_ref().map(|m| &m.1);
    for k in kernels.iter_mut() {
        if let (Some(e), Some(t)) = (best_eval.get(&k.kernel), &k.best) {
            k.roofline = roofline_text(e, t, ceilings);
        }
    }
    let machine = machine_rec.as_ref().map(|(d, c)| {
        let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut widths: Vec<f64> = all_timings
            .iter()
            .map(|t| (t.ci_hi_us - t.ci_lo_us) / t.median_us)
            .filter(|w| w.is_finite())
            .collect();
        widths.sort_by(f64::total_cmp);
        Machine {
            name: s(d, "name").unwrap_or_default(),
            uuid: s(d, "uuid").unwrap_or_default(),
            arch: s(d, "arch").unwrap_or_default(),
            sms: d.get("sms").and_then(Value::as_u64).unwrap_or(0),
            display_driver: s(d, "system_driver"),
            cuda_driver: d
                .get("driver_version")
                .and_then(Value::as_i64)
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
            nvrtc: s(d, "nvrtc"),
            max_sm_clock_mhz: f(d, "sm_clock_khz").map(|k| k / 1e3),
            dram_datasheet_gbs: match (f(d, "mem_clock_khz"), f(d, "mem_bus_bits")) {
                (Some(m), Some(b)) => Some(2.0 * m * 1e3 * (b / 8.0) / 1e9),
                _ => None,
            },
            dram_measured_gbs: f(c, "dram_gbs"),
            fp32_measured_gflops: f(c, "fp32_gflops"),
            tensor_f16_measured_gflops: f(c, "tensor_f16_gflops"),
            sm_clock_range_mhz: clocks,
            samples,
            throttled_samples: throttled,
            median_noise: (!widths.is_empty()).then(|| widths[widths.len() / 2]),
            seed: Some(seed),
        }
    });
    let timeline = crate::state::RunState::from_records(records);
    let spend = SpendReport {
        wall_s: timeline.elapsed_s(),
        down_s: timeline.down_total_s(),
        resumes: timeline.resumes,
        gpu_s,
        dollars: gpu_s * price / 3600.0,
        price_per_gpu_hour: price,
        wall_limit_s: budgets
            .as_ref()
            .and_then(|b| b.run.wall.map(|d| d.as_secs_f64())),
        gpu_limit_s: budgets
            .as_ref()
            .and_then(|b| b.run.gpu.map(|d| d.as_secs_f64())),
        dollars_limit: budgets.as_ref().and_then(|b| b.run.dollars),
        by_stage,
        by_kernel,
    };
    let lines = lines(&proposals, &iterations, &pivots);
    let patterns = pattern_roi(&iterations);
    let failures = failures(&iterations);
    let predictions = predictions(&proposals, &iterations);
    let mut caveats = caveats(&kernels, &iterations, &studies, machine.as_ref());
    for (k, a) in &overcounts {
        caveats.push(format!(
            "{k}: {a}; its bandwidth and throughput figures are not reported, its times and verdicts are"
        ));
    }
    if !nondeterministic.is_empty() {
        caveats.push(format!(
            "{} configuration(s) passed validation with a nondeterministic note (two runs on the same inputs both within tolerance, differing bitwise, as float atomics do): {}",
            nondeterministic.len(),
            nondeterministic.join("; ")
        ));
    }
    let reproduce = reproduce(run_id, branch.as_deref(), &kernels);
    Report {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        device,
        branch,
        state: if finished {
            "finished".into()
        } else {
            "did not finish".into()
        },
        stop,
        machine,
        spend,
        kernels,
        lines,
        iterations,
        patterns,
        pivots,
        failures,
        predictions,
        studies,
        caveats,
        reproduce,
    }
}

/// The outcome class of a candidate: its verdict when it was measured, else its
/// failure.
fn class(i: &Iteration) -> String {
    match (&i.outcome[..], &i.speedup) {
        ("passed", Some(s)) => match &s.verdict[..] {
            "FAST" => "faster".into(),
            "SLOW" => "slower".into(),
            v => v.to_lowercase(),
        },
        ("passed", None) => "not compared".into(),
        (o, _) => o.replace('_', " "),
    }
}

fn lines(proposals: &[Proposed], iterations: &[Iteration], pivots: &[Pivot]) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let mut commits: Vec<Vec<String>> = Vec::new();
    for i in iterations {
        let same = out
            .last()
            .is_some_and(|l| l.kernel == i.kernel && l.pattern == i.pattern);
        if !same {
            let prediction = proposals
                .iter()
                .rev()
                .find(|p| p.kernel == i.kernel && p.pattern == i.pattern)
                .map(|p| p.text.clone())
                .unwrap_or_default();
            out.push(Line {
                kernel: i.kernel.clone(),
                pattern: i.pattern.clone(),
                prediction,
                candidates: 0,
                outcomes: BTreeMap::new(),
                decision: String::new(),
                gpu_s: 0.0,
                dollars: 0.0,
            });
            commits.push(Vec::new());
        }
        let l = out.last_mut().expect("pushed");
        l.candidates += 1;
        *l.outcomes.entry(class(i)).or_default() += 1;
        l.gpu_s += i.gpu_s;
        l.dollars += i.dollars;
        if i.decision.starts_with("committed") {
            let x = i
                .speedup
                .as_ref()
                .map_or(String::new(), |s| format!(" ({:.3}x)", s.x));
            commits.last_mut().expect("pushed").push(format!(
                "{}{x}",
                i.decision.trim_start_matches("committed ")
            ));
        }
    }
    for (l, c) in out.iter_mut().zip(commits) {
        let pivot = pivots
            .iter()
            .find(|p| p.kernel == l.kernel && p.pattern == l.pattern)
            .map(|p| format!("; dropped: {}", p.reason))
            .unwrap_or_default();
        l.decision = if c.is_empty() {
            format!("nothing kept, all reverted{pivot}")
        } else {
            format!("committed {}{pivot}", c.join(", "))
        };
    }
    out
}

fn pattern_roi(iterations: &[Iteration]) -> Vec<PatternRoi> {
    let mut by: BTreeMap<String, PatternRoi> = BTreeMap::new();
    for it in iterations {
        let p = by.entry(it.pattern.clone()).or_insert_with(|| PatternRoi {
            pattern: it.pattern.clone(),
            candidates: 0,
            fast: 0,
            gpu_s: 0.0,
            dollars: 0.0,
            gain: 1.0,
        });
        p.candidates += 1;
        p.gpu_s += it.gpu_s;
        p.dollars += it.dollars;
        if it.decision.starts_with("committed") {
            p.fast += 1;
            if let Some(s) = &it.speedup {
                p.gain *= s.x;
            }
        }
    }
    by.into_values().collect()
}

fn failures(iterations: &[Iteration]) -> Vec<Failure> {
    let mut by: BTreeMap<String, Failure> = BTreeMap::new();
    for it in iterations {
        let class = match (&it.outcome[..], &it.speedup) {
            ("passed", Some(s)) if s.verdict == "FAST" => continue,
            ("passed", Some(s)) => s.verdict.to_lowercase(),
            ("passed", None) => "not compared".into(),
            (o, _) => o.to_string(),
        };
        let f = by.entry(class.clone()).or_insert_with(|| Failure {
            outcome: class,
            count: 0,
            examples: vec![],
        });
        f.count += 1;
        if f.examples.len() < 3 {
            let what = match &it.speedup {
                Some(s) if it.outcome == "passed" => format!(
                    "{:.3}x [{:.3}, {:.3}] against {}",
                    s.x,
                    s.ci_lo,
                    s.ci_hi,
                    it.against.as_deref().unwrap_or("the best")
                ),
                _ => it.decision.clone(),
            };
            f.examples.push(format!(
                "{} {} ({}): {what}",
                it.kernel, it.config, it.pattern
            ));
        }
    }
    by.into_values().collect()
}

/// The leading `1.20x` of a prediction's text.
fn predicted_x(text: &str) -> Option<f64> {
    text.split('x').next()?.trim().parse().ok()
}

/// A pattern's proposal for a kernel, with what it predicted.
struct Proposed {
    kernel: String,
    pattern: String,
    text: String,
    speedup: Option<f64>,
}

fn predictions(proposals: &[Proposed], iterations: &[Iteration]) -> Vec<PredictionCheck> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for Proposed {
        kernel,
        pattern,
        text,
        speedup,
    } in proposals
    {
        let key = (kernel.clone(), pattern.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let measured = iterations
            .iter()
            .filter(|i| &i.kernel == kernel && &i.pattern == pattern)
            .filter_map(|i| i.speedup.as_ref().map(|s| s.x))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let px = *speedup;
        let note = match (px, measured) {
            (Some(p), Some(m)) if m >= p => format!("held: best {m:.3}x"),
            (Some(p), Some(m)) => format!(
                "wrong by {:.1}%: best {m:.3}x against {p:.2}x predicted",
                100.0 * (p - m) / p
            ),
            (_, None) => "nothing measured to check it against".into(),
            (None, Some(m)) => format!("best {m:.3}x; no figure was predicted"),
        };
        out.push(PredictionCheck {
            kernel: kernel.clone(),
            pattern: pattern.clone(),
            predicted: text.clone(),
            predicted_x: px,
            measured_x: measured,
            note,
        });
    }
    out
}

fn caveats(
    kernels: &[KernelReport],
    iterations: &[Iteration],
    studies: &[StudyReport],
    machine: Option<&Machine>,
) -> Vec<String> {
    let mut out = Vec::new();
    let wide: Vec<String> = iterations
        .iter()
        .filter_map(|i| {
            let t = i.timing.as_ref()?;
            let w = (t.ci_hi_us - t.ci_lo_us) / t.median_us;
            (w > WIDE_INTERVAL).then(|| format!("{} {} ({:.1}%)", i.kernel, i.config, 100.0 * w))
        })
        .collect();
    if !wide.is_empty() {
        out.push(format!(
            "{} measurement(s) have a 95% interval wider than {:.0}% of their median: {}",
            wide.len(),
            100.0 * WIDE_INTERVAL,
            wide.join("; ")
        ));
    }
    if let Some(m) = machine {
        if m.throttled_samples > 0 {
            out.push(format!(
                "{} of {} samples were taken while the GPU throttled and were left out of every statistic (they are in samples.csv, flagged)",
                m.throttled_samples, m.samples
            ));
        }
    } else {
        out.push("the journal has no Machine record (a run from before it was written): the machine section is missing".into());
    }
    for k in kernels {
        if k.roofline
            .as_deref()
            .is_some_and(|r| r.starts_with("ANOMALY"))
        {
            out.push(format!(
                "{}: a fraction of a ceiling above 100% is flagged, not reported",
                k.kernel
            ));
        }
        if let (Some(a), Some(b)) = (&k.baseline, &k.best) {
            if a.method != b.method && k.speedup.is_none() {
                out.push(format!(
                    "{}: baseline ({}) and best ({}) were timed differently; read the gain from an interleaved comparison",
                    k.kernel, a.method, b.method
                ));
            }
        }
        if k.commit.is_some() && k.speedup.is_none() {
            out.push(format!(
                "{}: its best was not compared with the baseline interleaved (the run stopped first); its gain is the product of the committed steps, which has no interval",
                k.kernel
            ));
        }
    }
    let mut methods: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for i in iterations {
        if let Some(t) = &i.timing {
            let m = if t.method.starts_with("batch") {
                "batch"
            } else {
                "cold"
            };
            methods.entry(&i.kernel).or_default().insert(m);
        }
    }
    for k in kernels {
        for t in [&k.baseline, &k.best].into_iter().flatten() {
            let m = if t.method.starts_with("batch") {
                "batch"
            } else {
                "cold"
            };
            methods.entry(&k.kernel).or_default().insert(m);
        }
    }
    for (k, m) in &methods {
        if m.len() > 1 {
            out.push(format!(
                "{k}: timed both cold and in batches (a journal from before methods were pinned per kernel); its times compare only within one verdict, never across the table"
            ));
        }
    }
    for s in studies {
        out.push(format!(
            "{}: the workload-batching study compares throughput per unit of work at different amounts of work per launch; it is not a speedup of one launch, and the kernel cannot change its caller's batch",
            s.kernel
        ));
    }
    out
}

fn reproduce(run_id: &str, branch: Option<&str>, kernels: &[KernelReport]) -> Vec<String> {
    let mut out = vec![format!(
        "git log {}",
        branch.unwrap_or("nightshift/<run-id>")
    )];
    if let Some(b) = branch {
        out.push(format!("git worktree add /tmp/{run_id} {b}"));
    }
    // The best measured interleaved with the baseline again, from the run's branch.
    for k in kernels.iter().filter(|k| k.commit.is_some()) {
        let vs: Vec<String> = k
            .best_config
            .split_whitespace()
            .map(|a| format!("--vs {a}"))
            .collect();
        out.push(format!(
            "nightshift bench /tmp/{run_id}/kernels/{} {}",
            k.kernel,
            vs.join(" ")
        ));
    }
    out.push(format!("nightshift report {run_id} --verify"));
    out
}

/// Checks `report` (as read from report.json) against the journal: the report is
/// rebuilt from the raw samples and every figure compared, and every summary the
/// journal recorded is recomputed from its samples (equal to 12 significant digits).
/// Names the first figure that differs.
pub fn verify(report: &Value, run_id: &str, records: &[Record]) -> Result<usize, ReportError> {
    let seed = seed_of(records);
    let mut checked = 0usize;
    // The journal's own figures against its raw samples.
    for rec in records {
        let mut check_eval = |label: String, v: &Typed<Evaluation>| -> Result<(), ReportError> {
            let Some(e) = eval_of(v) else { return Ok(()) };
            let (Some(m), Some(t)) = (&e.measurement, timing(&e, seed)) else {
                return Ok(());
            };
            if let Some(s) = m.summary {
                for (what, found, expected) in [
                    ("median_us", s.median, t.median_us),
                    ("ci_lo_us", s.ci_lo, t.ci_lo_us),
                    ("ci_hi_us", s.ci_hi, t.ci_hi_us),
                ] {
                    checked += 1;
                    // Journals written before the interpolation of quantiles was made
                    // exact can differ in the last bit; a changed sample moves a
                    // figure by far more.
                    if (found - expected).abs() > 1e-12 * expected.abs() {
                        return Err(ReportError::Differs {
                            figure: format!("journal record {}: {label} {what}", rec.seq),
                            found: format!("{found}"),
                            expected: format!("{expected}"),
                        });
                    }
                }
            }
            Ok(())
        };
        match &rec.event {
            Event::Evaluated {
                kernel,
                config,
                evaluation,
                ..
            } => check_eval(format!("{kernel} {config}"), evaluation)?,
            Event::Verdict {
                kernel,
                config,
                against,
                ..
            } => check_eval(
                format!("{kernel} {config} (its best, re-measured)"),
                against,
            )?,
            Event::FinalComparison {
                kernel,
                baseline_evaluation,
                best_evaluation,
                ..
            } => {
                check_eval(format!("{kernel} final baseline"), baseline_evaluation)?;
                check_eval(format!("{kernel} final best"), best_evaluation)?;
            }
            _ => {}
        }
    }
    checked += verify_charges(records)?;
    let rebuilt = serde_json::to_value(build(run_id, records))
        .map_err(|e| ReportError::Journal(e.to_string()))?;
    diff(report, &rebuilt, "report", &mut checked)?;
    Ok(checked)
}

/// Each evaluation's charges, by stage, against its own timers: the charges a run
/// journals right before an evaluation's record must be what its timers say
/// (`evaluate::cost_of`). Journals that charged after the record (before that was
/// so) have nothing to check. Returns the figures checked.
pub(crate) fn verify_charges(records: &[Record]) -> Result<usize, ReportError> {
    let mut checked = 0;
    for (i, rec) in records.iter().enumerate() {
        let (kernel, label, eval, against) = match &rec.event {
            Event::Evaluated {
                kernel,
                config,
                evaluation,
                ..
            } => {
                let against = match records.get(i + 1).map(|r| &r.event) {
                    Some(Event::Verdict {
                        kernel: k,
                        config: c,
                        against,
                        ..
                    }) if k == kernel && c == config => eval_of(against),
                    _ => None,
                };
                (kernel, config.clone(), evaluation, against)
            }
            Event::StudyPoint {
                kernel,
                config,
                scale,
                evaluation,
                ..
            } => (
                kernel,
                format!("study x{scale}: {config}"),
                evaluation,
                None,
            ),
            Event::FinalComparison {
                kernel,
                best,
                best_evaluation,
                baseline_evaluation,
                ..
            } => (
                kernel,
                format!("final: {best}"),
                best_evaluation,
                eval_of(baseline_evaluation),
            ),
            _ => continue,
        };
        let Some(e) = eval_of(eval) else { continue };
        let mut charged: BTreeMap<String, f64> = BTreeMap::new();
        for r in records[..i].iter().rev() {
            let Event::Charge(c) = &r.event else { break };
            if c.kernel.as_deref() == Some(kernel.as_str()) && c.config.as_deref() == Some(&label) {
                *charged.entry(c.stage.name().to_string()).or_default() += c.gpu_s;
            }
        }
        if charged.is_empty() {
            continue;
        }
        let mut timers: BTreeMap<String, f64> = BTreeMap::new();
        for (stage, secs) in crate::evaluate::cost_of(&e, against.as_ref()) {
            *timers.entry(stage.name().to_string()).or_default() += secs;
        }
        for (stage, want) in &timers {
            let got = charged.get(stage).copied().unwrap_or(0.0);
            checked += 1;
            if (got - want).abs() > 1e-9 * want.abs().max(1e-9) {
                return Err(ReportError::Differs {
                    figure: format!(
                        "journal record {}: {kernel} {label} charged as {stage}",
                        rec.seq
                    ),
                    found: format!("{got} s"),
                    expected: format!("{want} s by the evaluation's own timers"),
                });
            }
        }
        if let Some(extra) = charged.keys().find(|k| !timers.contains_key(*k)) {
            return Err(ReportError::Differs {
                figure: format!(
                    "journal record {}: {kernel} {label} charged as {extra}",
                    rec.seq
                ),
                found: format!("{} s", charged[extra]),
                expected: "no such stage in the evaluation's timers".into(),
            });
        }
    }
    Ok(checked)
}

/// The first path at which `found` and `expected` differ.
fn diff(found: &Value, expected: &Value, path: &str, n: &mut usize) -> Result<(), ReportError> {
    let differs = |f: &Value, e: &Value| ReportError::Differs {
        figure: path.to_string(),
        found: f.to_string(),
        expected: e.to_string(),
    };
    match (found, expected) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let va = a.get(k).unwrap_or(&Value::Null);
                diff(va, vb, &format!("{path}.{k}"), n)?;
            }
            if let Some(k) = a.keys().find(|k| !b.contains_key(*k)) {
                return Err(ReportError::Differs {
                    figure: format!("{path}.{k}"),
                    found: a[k].to_string(),
                    expected: "nothing".into(),
                });
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(ReportError::Differs {
                    figure: format!("{path} (length)"),
                    found: a.len().to_string(),
                    expected: b.len().to_string(),
                });
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), n)?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) => {
            *n += 1;
            if a.as_f64().map(f64::to_bits) == b.as_f64().map(f64::to_bits) {
                Ok(())
            } else {
                Err(differs(found, expected))
            }
        }
        (a, b) if a == b => Ok(()),
        _ => Err(differs(found, expected)),
    }
}

/// The report's plots as (file name, SVG), from the report and the journal; a plot
/// without data is left out.
pub fn plots(r: &Report, records: &[Record]) -> Vec<(String, String)> {
    // Cumulative GPU seconds at each candidate's evaluation.
    let mut cum = 0.0;
    let mut gpu_at = Vec::new();
    for rec in records {
        match &rec.event {
            Event::Charge(c) => cum += c.gpu_s,
            Event::Evaluated { kernel, config, .. } => {
                gpu_at.push((kernel.clone(), config.clone(), cum))
            }
            _ => {}
        }
    }
    // Baseline and best of each kernel, with the cost model's bytes and FLOPs.
    let mut points = Vec::new();
    for k in &r.kernels {
        let model = records.iter().find_map(|rec| match &rec.event {
            Event::Evaluated {
                kernel,
                pattern: None,
                evaluation,
                ..
            } if kernel == &k.kernel => eval_of(evaluation)?.roofline.map(|x| (x.bytes, x.flops)),
            _ => None,
        });
        let Some((bytes, flops)) = model.filter(|(b, f)| *b > 0.0 && *f > 0.0) else {
            continue;
        };
        if let Some(t) = &k.baseline {
            points.push((k.kernel.clone(), false, bytes, flops, t.clone()));
        }
        if let (Some(t), true) = (&k.best, k.best_config != k.baseline_config) {
            points.push((k.kernel.clone(), true, bytes, flops, t.clone()));
        }
    }
    [
        ("progress.svg", plot::progress(r, &gpu_at)),
        ("candidates.svg", plot::candidates(r)),
        ("roofline.svg", plot::roofline(r, &points)),
    ]
    .into_iter()
    .filter_map(|(n, svg)| svg.map(|s| (n.to_string(), s)))
    .collect()
}

/// The kind of record an evaluation came from, for samples.csv.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Baseline,
    Candidate,
    Against,
    FinalBaseline,
    FinalBest,
    Study,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Baseline => "baseline",
            Role::Candidate => "candidate",
            Role::Against => "best_remeasured",
            Role::FinalBaseline => "final_baseline",
            Role::FinalBest => "final_best",
            Role::Study => "study",
        }
    }
}

/// Every measured evaluation of the journal with its record number and role.
pub(crate) fn measured(records: &[Record]) -> Vec<(u64, Role, Evaluation)> {
    let mut out = Vec::new();
    for rec in records {
        let mut push = |role: Role, v: &Typed<Evaluation>| {
            if let Some(e) = eval_of(v).filter(|e| e.measurement.is_some()) {
                out.push((rec.seq, role, e));
            }
        };
        match &rec.event {
            Event::Evaluated {
                pattern,
                evaluation,
                ..
            } => push(
                if pattern.is_some() {
                    Role::Candidate
                } else {
                    Role::Baseline
                },
                evaluation,
            ),
            Event::Verdict { against, .. } => push(Role::Against, against),
            Event::FinalComparison {
                baseline_evaluation,
                best_evaluation,
                ..
            } => {
                push(Role::FinalBaseline, baseline_evaluation);
                push(Role::FinalBest, best_evaluation);
            }
            Event::StudyPoint { evaluation, .. } => push(Role::Study, evaluation),
            _ => {}
        }
    }
    out
}
