//! The report built from a run's fold ([`RunState`]): every timing recomputed from
//! the raw samples its records hold.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::budget::{Budgets, Ledger};
use crate::evaluate::Evaluation;
use crate::journal::Event;
use crate::state::recorded::{Decision, Evaluated, Recorded};
use crate::state::{KernelState, RunState};
use crate::vocab::Outcome;

use super::derive::{caveats, failures, lines, pattern_roi, predictions, reproduce};
use super::proposals;
use super::*;

/// The report of run `run_id`, from its journal's fold.
pub fn build(run_id: &str, state: &RunState) -> Report {
    let rec = &state.recorded;
    let seed = rec.seed();
    let device = state.device.clone().unwrap_or_default();
    let budgets: Option<Budgets> = state.budgets.as_ref().and_then(|b| b.get().cloned());
    let price = budgets
        .as_ref()
        .map_or(0.0, |b| Ledger::for_device(b, &device).price_per_gpu_hour());
    let charged = Charged::of(rec);
    let mut iterations = iterations(rec, seed);
    for it in iterations.iter_mut() {
        it.gpu_s = charged
            .by_config
            .get(&(it.kernel.clone(), it.config.clone()))
            .copied()
            .unwrap_or(0.0);
        it.dollars = it.gpu_s * price / 3600.0;
    }
    let studies = studies(rec, &charged, price);
    let ceilings = rec.machine.as_ref().map(|m| &m.1);
    let kernels: Vec<KernelReport> = state
        .kernel_states
        .iter()
        .filter_map(|k| kernel_report(state, k, seed, ceilings))
        .collect();
    let machine = machine(rec, seed);
    let spend = SpendReport {
        wall_s: state.elapsed_s(),
        down_s: state.down_total_s(),
        resumes: state.resumes,
        gpu_s: charged.gpu_s,
        dollars: charged.gpu_s * price / 3600.0,
        price_per_gpu_hour: price,
        wall_limit_s: budgets
            .as_ref()
            .and_then(|b| b.run.wall.map(|d| d.as_secs_f64())),
        gpu_limit_s: budgets
            .as_ref()
            .and_then(|b| b.run.gpu.map(|d| d.as_secs_f64())),
        dollars_limit: budgets.as_ref().and_then(|b| b.run.dollars),
        by_stage: charged.by_stage,
        by_kernel: charged.by_kernel,
        proposer: proposals::spend(rec, price, charged.gpu_s * price / 3600.0),
    };
    let pivots: Vec<Pivot> = rec
        .pivots
        .iter()
        .map(|p| Pivot {
            kernel: p.kernel.clone(),
            pattern: p.pattern.clone(),
            reason: p.reason.clone(),
        })
        .collect();
    let rewrites = rewrites(rec, &iterations);
    let mut caveats = caveats(&kernels, &iterations, &studies, machine.as_ref());
    caveats.extend(evaluation_caveats(rec));
    // The proposer's questions and bills, beside the candidates they became.
    let measured: Vec<(&Evaluated, &Iteration)> = iterated(rec)
        .map(|(ev, _, _)| ev)
        .zip(&iterations)
        .collect();
    let proposals = proposals::proposals(rec, &measured);
    let mut lines = lines(&rec.proposals, &iterations, &pivots);
    proposals::bill_lines(rec, &measured, &mut lines);
    let mut patterns = pattern_roi(&iterations);
    if let Some(p) = &spend.proposer {
        proposals::bill_patterns(&mut patterns, p);
        caveats.extend(proposals::caveats(p));
    }
    Report {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        device,
        branch: state.git_branch.clone(),
        state: if state.finished.is_some() {
            "finished".into()
        } else {
            "did not finish".into()
        },
        stop: state.finished.clone().unwrap_or_else(|| {
            "did not finish: killed or crashed; `nightshift run --resume` continues it".into()
        }),
        machine,
        lines,
        patterns,
        failures: failures(&iterations),
        predictions: predictions(&rec.proposals, &iterations),
        reproduce: reproduce(
            run_id,
            state.git_branch.as_deref(),
            &kernels,
            iterations
                .iter()
                .filter(|i| i.decision.starts_with("committed"))
                .count(),
        ),
        spend,
        kernels,
        iterations,
        pivots,
        studies,
        caveats,
        rewrites,
        proposals,
        evidence: super::evidence::evidence(rec, seed),
        unmoved: rec.unmoved.clone(),
    }
}

/// The run's charges, summed.
struct Charged {
    gpu_s: f64,
    by_stage: BTreeMap<String, f64>,
    by_kernel: BTreeMap<String, f64>,
    by_config: BTreeMap<(String, String), f64>,
}

impl Charged {
    fn of(rec: &Recorded) -> Charged {
        let mut c = Charged {
            gpu_s: 0.0,
            by_stage: BTreeMap::new(),
            by_kernel: BTreeMap::new(),
            by_config: BTreeMap::new(),
        };
        for ch in rec.charges.iter().map(|a| &a.value) {
            c.gpu_s += ch.gpu_s;
            *c.by_stage.entry(ch.stage.name().to_string()).or_default() += ch.gpu_s;
            *c.by_kernel
                .entry(ch.kernel.clone().unwrap_or_else(|| "run".into()))
                .or_default() += ch.gpu_s;
            if let (Some(k), Some(cfg)) = (&ch.kernel, &ch.config) {
                *c.by_config.entry((k.clone(), cfg.clone())).or_default() += ch.gpu_s;
            }
        }
        c
    }
}

/// The evaluations that are candidates of a pattern, readable: one iteration each.
fn iterated(rec: &Recorded) -> impl Iterator<Item = (&Evaluated, &String, &Evaluation)> {
    rec.evaluations
        .iter()
        .filter_map(|ev| Some((ev, ev.pattern.as_ref()?, ev.evaluation.as_ref()?)))
}

/// Every candidate the journal holds a readable evaluation of, with its verdict
/// and what became of it.
fn iterations(rec: &Recorded, seed: u64) -> Vec<Iteration> {
    let mut out = Vec::new();
    for (ev, pattern, e) in iterated(rec) {
        let mut it = Iteration {
            kernel: ev.kernel.clone(),
            pattern: pattern.clone(),
            config: ev.config.clone(),
            against: None,
            outcome: e.outcome.name().to_string(),
            timing: timing(e, seed),
            speedup: None,
            decision: if ev.ahead {
                // Measured on a free GPU for a request that never came (the best
                // moved first, or the run stopped): a measurement, not a verdict.
                format!(
                    "measured ahead{}; not asked for (the best moved first, or the run stopped)",
                    ev.gpu.map(|g| format!(" on GPU {g}")).unwrap_or_default()
                )
            } else if e.outcome == Outcome::Passed {
                "not decided when the run stopped".into()
            } else {
                format!("rejected: {}", e.outcome.describe())
            },
            gpu_s: 0.0,
            dollars: 0.0,
        };
        if let Some((j, a)) = ev
            .verdict
            .as_ref()
            .and_then(|j| Some((j, j.against.as_ref()?)))
        {
            it.against = Some(j.baseline.clone());
            it.speedup = speedup(a, e, seed, j.figures.min_gain.unwrap_or(0.02));
        }
        match &ev.decision {
            Some(Decision::Committed { sha, .. }) => {
                it.decision = format!("committed {}", &sha[..sha.len().min(10)]);
            }
            Some(Decision::Reverted { reason }) => it.decision = format!("reverted: {reason}"),
            None => {}
        }
        out.push(it);
    }
    out
}

/// Every concluded study the journal can read, with what its points cost.
fn studies(rec: &Recorded, charged: &Charged, price: f64) -> Vec<StudyReport> {
    let mut out = Vec::new();
    for s in &rec.studies {
        let Event::Study {
            kernel,
            config,
            cut_short,
            result,
            ..
        } = &s.value
        else {
            continue;
        };
        let Some(r) = result.get().cloned() else {
            continue;
        };
        let gpu_s = charged
            .by_config
            .iter()
            .filter(|((k, c), _)| k == kernel && c.starts_with("study x"))
            .map(|(_, s)| s)
            .sum::<f64>();
        out.push(StudyReport {
            kernel: kernel.clone(),
            config: config.clone(),
            cut_short: cut_short.clone(),
            result: r,
            gpu_s,
            dollars: gpu_s * price / 3600.0,
        });
    }
    out
}

/// Registers and energy per launch of the evaluation that stands for a kernel's best.
fn note_best(k: &mut KernelReport, e: &Evaluation) {
    k.registers = e.function.as_ref().map(|f| f.registers as u64);
    k.energy_uj_per_launch = e
        .measurement
        .as_ref()
        .and_then(|m| m.energy.as_ref())
        .map(|x| x.uj_per_launch);
}

/// What moved a kernel's best, in journal order: its baseline, each commit, each
/// final comparison.
enum Step<'a> {
    Baseline(&'a Evaluated, &'a Evaluation),
    Commit(&'a Evaluated, &'a str),
    Final(&'a Event),
}

fn steps<'a>(rec: &'a Recorded, kernel: &str) -> Vec<(u64, Step<'a>)> {
    let mut steps = Vec::new();
    for ev in rec.evaluations.iter().filter(|e| e.kernel == kernel) {
        match (&ev.pattern, &ev.evaluation, &ev.decision) {
            (None, Some(e), _) => steps.push((ev.seq, Step::Baseline(ev, e))),
            (Some(_), _, Some(Decision::Committed { sha, seq })) => {
                steps.push((*seq, Step::Commit(ev, sha)))
            }
            _ => {}
        }
    }
    for f in &rec.finals {
        if matches!(&f.value, Event::FinalComparison { kernel: k, .. } if k == kernel) {
            steps.push((f.seq, Step::Final(&f.value)));
        }
    }
    steps.sort_by_key(|(seq, _)| *seq);
    steps
}

/// A kernel's row: baseline, best (the last step that moved it), its speedup
/// (from the final comparison) and where it stands. None for a kernel the journal
/// names without evaluating, committing or deciding anything about it.
fn kernel_report(
    state: &RunState,
    ks: &KernelState,
    seed: u64,
    ceilings: Option<&Value>,
) -> Option<KernelReport> {
    let rec = &state.recorded;
    let mut k = KernelReport {
        kernel: ks.kernel.clone(),
        baseline_config: String::new(),
        baseline: None,
        best_config: String::new(),
        best: None,
        speedup: None,
        roofline: None,
        energy_uj_per_launch: None,
        registers: None,
        commit: None,
        state: kernel_state(state, ks),
    };
    let steps = steps(rec, &ks.kernel);
    if steps.is_empty() && ks.done.is_none() && ks.paused_reason.is_none() {
        return None;
    }
    let mut best_eval: Option<&Evaluation> = None;
    for (_, step) in steps {
        match step {
            Step::Baseline(ev, e) => {
                k.baseline_config = ev.config.clone();
                k.best_config = ev.config.clone();
                k.baseline = timing(e, seed);
                k.best = k.baseline.clone();
                note_best(&mut k, e);
                best_eval = Some(e);
            }
            Step::Commit(ev, sha) => {
                k.best_config = ev.config.clone();
                k.commit = Some(sha.to_string());
                if let Some(e) = &ev.evaluation {
                    if let Some(t) = timing(e, seed) {
                        k.best = Some(t);
                    }
                    note_best(&mut k, e);
                    best_eval = Some(e);
                }
            }
            Step::Final(Event::FinalComparison {
                best,
                baseline_evaluation,
                best_evaluation,
                ..
            }) => {
                if let (Some(a), Some(b)) = (baseline_evaluation.get(), best_evaluation.get()) {
                    k.best_config = best.clone();
                    k.baseline = timing(a, seed);
                    k.best = timing(b, seed);
                    k.speedup = speedup(a, b, seed, 0.02);
                    note_best(&mut k, b);
                    best_eval = Some(b);
                }
            }
            Step::Final(_) => {}
        }
    }
    if let (Some(e), Some(t)) = (best_eval, &k.best) {
        k.roofline = roofline_text(e, t, ceilings);
    }
    Some(k)
}

/// Where a kernel stands: done, paused, in progress, or not finished when the run
/// stopped.
fn kernel_state(state: &RunState, k: &KernelState) -> String {
    if let Some(r) = &k.done {
        return format!("done: {r}");
    }
    let paused = k.paused_reason.as_ref().map(|r| format!("paused: {r}"));
    match (state.finished.is_some(), paused) {
        (true, Some(p)) => format!("not finished when the run stopped (it was {p})"),
        (true, None) => "not finished when the run stopped".into(),
        (false, Some(p)) => p,
        (false, None) => "in progress".into(),
    }
}

/// The device, its measured ceilings, and what every sample of the run says about
/// the clocks and the noise.
fn machine(rec: &Recorded, seed: u64) -> Option<Machine> {
    let (d, c) = rec.machine.as_ref()?;
    let mut samples = 0usize;
    let mut throttled = 0usize;
    let mut clocks: Option<(u32, u32)> = None;
    for (_, _, e) in rec.measured() {
        for s in e.measurement.iter().flat_map(|m| &m.samples) {
            samples += 1;
            throttled += s.throttled as usize;
            if let Some(c) = s.sm_clock_mhz {
                clocks = Some(clocks.map_or((c, c), |(a, b)| (a.min(c), b.max(c))));
            }
        }
    }
    let mut widths: Vec<f64> = rec
        .evaluations
        .iter()
        .filter_map(|ev| timing(ev.evaluation.as_ref()?, seed))
        .map(|t| (t.ci_hi_us - t.ci_lo_us) / t.median_us)
        .filter(|w| w.is_finite())
        .collect();
    widths.sort_by(f64::total_cmp);
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Machine {
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
    })
}

/// Caveats the evaluations carry: a cost model that overcounts (per kernel, the
/// first), configurations that passed with a nondeterministic note.
fn evaluation_caveats(rec: &Recorded) -> Vec<String> {
    let mut overcounts: BTreeMap<String, String> = BTreeMap::new();
    let mut nondeterministic = Vec::new();
    for ev in &rec.evaluations {
        let Some(e) = &ev.evaluation else { continue };
        if let Some(n) = &e.nondeterministic {
            nondeterministic.push(format!("{} {} (`{}`)", ev.kernel, ev.config, n.arg));
        }
        if let Some(a) = e
            .anomalies
            .iter()
            .find(|a| a.starts_with(crate::evaluate::COST_MODEL_OVERCOUNTS))
        {
            overcounts
                .entry(ev.kernel.clone())
                .or_insert_with(|| a.clone());
        }
    }
    let mut out: Vec<String> = overcounts
        .iter()
        .map(|(k, a)| format!(
            "{k}: {a}; its bandwidth and throughput figures are not reported, its times and verdicts are"
        ))
        .collect();
    if !nondeterministic.is_empty() {
        out.push(format!(
            "{} configuration(s) passed validation with a nondeterministic note (two runs on the same inputs both within tolerance, differing bitwise, as float atomics do): {}",
            nondeterministic.len(),
            nondeterministic.join("; ")
        ));
    }
    out
}

/// The rewrites part of a candidate's display (empty for a configuration alone).
fn rewrites_of(config: &str) -> &str {
    config
        .split_once(crate::spec::REWRITE_SEPARATOR)
        .map_or("", |(_, r)| r)
}

/// Every rewrite candidate (one whose rewrites differ from those of the best it was
/// measured against; knob moves of a rewritten kernel are iterations like any other),
/// with the diff of the kept ones, then those that did not apply. A proposer's
/// sources are not among them: each is reported with its question.
fn rewrites(rec: &Recorded, iterations: &[Iteration]) -> Vec<RewriteReport> {
    let mut out = Vec::new();
    for ev in &rec.evaluations {
        let (Some(pattern), Some(change)) = (&ev.pattern, &ev.rewritten) else {
            continue;
        };
        // A proposer's source is reported with its question, under Proposals.
        if proposals::digest_of(&ev.config).is_some() {
            continue;
        }
        let Some(it) = iterations
            .iter()
            .rev()
            .find(|i| i.kernel == ev.kernel && i.config == ev.config)
        else {
            continue;
        };
        if it
            .against
            .as_deref()
            .is_some_and(|a| rewrites_of(a) == rewrites_of(&ev.config))
        {
            continue;
        }
        let kept = matches!(ev.decision, Some(Decision::Committed { .. }));
        out.push(RewriteReport {
            kernel: ev.kernel.clone(),
            pattern: pattern.clone(),
            config: ev.config.clone(),
            decision: match it.decision.strip_prefix("committed ") {
                Some(sha) => format!("kept {sha}"),
                None => it
                    .decision
                    .replacen("reverted: ", "rejected: ", 1)
                    .to_string(),
            },
            speedup: it.speedup.clone(),
            options: change.options.clone(),
            diff: if kept {
                change.diff.clone()
            } else {
                String::new()
            },
        });
    }
    out.extend(rec.not_applicable.iter().map(|n| RewriteReport {
        kernel: n.kernel.clone(),
        pattern: n.pattern.clone(),
        config: n.config.clone(),
        decision: format!("not applicable: {}", n.reason),
        speedup: None,
        options: vec![],
        diff: String::new(),
    }));
    out
}
