//! The bench report for a person: the device and its ceilings, one table row per
//! configuration, each one's validation, timing, occupancy and cost, the A/B
//! comparison, and the external baselines as fractions of their speed.

use std::collections::BTreeSet;

use super::Externals;
use crate::evaluate::Evaluation;
use crate::gpu::ceilings::Ceilings;
use crate::gpu::DeviceInfo;
use crate::measure::TimingMethod;
use crate::spec::KernelSpec;
use crate::table;
use crate::vocab::{AbResult, Measurement, Outcome, ValidationCost};

fn pct(f: f64) -> String {
    if f > 1.0 {
        ">100%!".into()
    } else {
        format!("{:.1}%", 100.0 * f)
    }
}

fn sig(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.1}")
    } else if x >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The human-readable bench report.
pub fn render(
    spec: &KernelSpec,
    dev: &DeviceInfo,
    c: &Ceilings,
    evals: &[Evaluation],
    ab: Option<&AbResult>,
) -> String {
    let mut out = heading(spec, dev, c, evals);
    out.push_str(&summary_table(evals, ab));
    out.push('\n');
    for e in evals {
        out.push_str(&details(e));
    }
    if let Some(ab) = ab {
        out.push_str(&comparison(evals, ab));
    }
    out
}

/// The kernel, the device and its measured ceilings.
fn heading(spec: &KernelSpec, dev: &DeviceInfo, c: &Ceilings, evals: &[Evaluation]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} on {} ({}, {} SMs, driver {}.{})  problem: {}\n",
        spec.name,
        dev.name,
        dev.arch,
        dev.sms,
        dev.driver_version / 1000,
        (dev.driver_version % 1000) / 10,
        evals.first().map(|e| e.problem.as_str()).unwrap_or("")
    ));
    if let Some(r) = &spec.rewritten {
        out.push_str(&format!(
            "rewritten: {} (validated against the kernel as written)\n",
            r.rewrites.join(", ")
        ));
    }
    out.push_str(&format!(
        "measured ceilings: DRAM {:.0} GB/s ({}), FP32 {:.1} TFLOP/s, FP16 tensor {:.1} TFLOP/s\n\n",
        c.dram_gbs,
        c.dram_method,
        c.fp32_gflops / 1e3,
        c.tensor_f16_gflops / 1e3
    ));
    out
}

/// One row per configuration; the second carries the comparison's verdict.
fn summary_table(evals: &[Evaluation], ab: Option<&AbResult>) -> String {
    let header = [
        "config",
        "outcome",
        "median us",
        "IQR us",
        "95% CI us",
        "GB/s (% DRAM)",
        "GFLOP/s (% peak)",
        "uJ/launch",
        "regs",
        "spill B",
        "waves",
        "verdict",
    ];
    let rows: Vec<Vec<String>> = evals
        .iter()
        .enumerate()
        .map(|(i, e)| row(i, e, ab))
        .collect();
    table::render(&header, &rows)
}

fn row(i: usize, e: &Evaluation, ab: Option<&AbResult>) -> Vec<String> {
    let s = e.measurement.as_ref().and_then(|m| m.summary);
    let dash = || "-".to_string();
    let verdict = match (i, ab) {
        (1, Some(ab)) => format!(
            "{} {:.3}x [{:.3}, {:.3}]",
            ab.verdict.as_str(),
            ab.speedup,
            ab.ci_lo,
            ab.ci_hi
        ),
        _ => dash(),
    };
    vec![
        label(e),
        e.outcome.name().to_string(),
        s.map(|s| sig(s.median)).unwrap_or_else(dash),
        s.map(|s| sig(s.iqr())).unwrap_or_else(dash),
        s.map(|s| format!("[{}, {}]", sig(s.ci_lo), sig(s.ci_hi)))
            .unwrap_or_else(dash),
        e.roofline
            .as_ref()
            .map(|r| format!("{:.0} ({})", r.gbs, pct(r.dram_fraction)))
            .unwrap_or_else(dash),
        e.roofline
            .as_ref()
            .map(|r| format!("{:.0} ({})", r.gflops, pct(r.compute_fraction)))
            .unwrap_or_else(dash),
        e.measurement
            .as_ref()
            .and_then(|m| m.energy.as_ref())
            .map(|en| format!("{:.1}", en.uj_per_launch))
            .unwrap_or_else(dash),
        e.function
            .map(|f| f.registers.to_string())
            .unwrap_or_else(dash),
        e.function
            .map(|f| f.local_bytes.to_string())
            .unwrap_or_else(dash),
        e.occupancy
            .as_ref()
            .map(|o| format!("{:.2}", o.waves))
            .unwrap_or_else(dash),
        verdict,
    ]
}

/// A configuration's label: its tunables, and `(rewritten)` for the kernel as
/// rewritten.
fn label(e: &Evaluation) -> String {
    if e.rewrites.is_empty() {
        e.config.to_string()
    } else {
        format!("{} (rewritten)", e.config)
    }
}

/// One configuration's details: why it was rejected, what validated it, how it was
/// timed, its occupancy, anomalies, and what it cost.
fn details(e: &Evaluation) -> String {
    let mut out = format!("{}:\n", label(e));
    if e.outcome != Outcome::Passed {
        out.push_str(&format!("  REJECTED: {}\n", e.outcome.describe()));
        if let Outcome::CompileFailed { log } = &e.outcome {
            for l in log.lines().take(20) {
                out.push_str(&format!("    | {l}\n"));
            }
        }
    }
    out.push_str(&checks(e));
    for s in &e.skipped_sizes {
        out.push_str(&format!("  not validated at {}: {}\n", s.size, s.reason));
    }
    if let Some(m) = &e.measurement {
        out.push_str(&timing(m));
    }
    if let Some(o) = &e.occupancy {
        out.push_str(&format!(
            "  occupancy: {} CTAs on {} SMs, {} active blocks/SM, {:.2} waves, theoretical occupancy {:.0}%\n",
            o.ctas,
            o.sms,
            o.active_blocks_per_sm,
            o.waves,
            100.0 * o.theoretical
        ));
    }
    for a in &e.anomalies {
        out.push_str(&format!("  ANOMALY: {a}\n"));
    }
    if let Some(n) = &e.nondeterministic {
        out.push_str(&format!(
            "  note: nondeterministic: two runs on the same inputs both passed and differ bitwise in `{}` at [{}] ({}, trial {}); `deterministic = \"bitwise\"` in the spec rejects that\n",
            n.arg, n.index, n.size, n.trial
        ));
    }
    if let Some(v) = &e.validation {
        out.push_str(&validation_cost(v));
    }
    out.push_str(&cost(e));
    out
}

/// The comparisons that validated a configuration, and the worst of their errors.
fn checks(e: &Evaluation) -> String {
    if e.checks.is_empty() {
        return String::new();
    }
    let sizes: BTreeSet<&str> = e.checks.iter().map(|c| c.size.as_str()).collect();
    let max_rel = e.checks.iter().map(|c| c.stats.max_rel).fold(0.0, f64::max);
    let max_abs = e.checks.iter().map(|c| c.stats.max_abs).fold(0.0, f64::max);
    let l2 = e.checks.iter().map(|c| c.stats.rel_l2).fold(0.0, f64::max);
    format!(
        "  validation: {} comparisons at {} sizes ({}), worst: max abs {:.2e}, max rel {:.2e}, rel L2 {:.2e}\n",
        e.checks.len(),
        sizes.len(),
        sizes.iter().cloned().collect::<Vec<_>>().join("; "),
        max_abs,
        max_rel,
        l2
    )
}

/// How a measurement was taken: the method, the samples, the clocks, throttling,
/// energy and utilization.
fn timing(m: &Measurement) -> String {
    let method = match m.method {
        TimingMethod::Cold => {
            "cold (L2 flushed before each launch, events around one launch)".to_string()
        }
        TimingMethod::Batch {
            launches,
            buffer_sets,
        } => {
            format!("batch ({launches} launches per sample over {buffer_sets} argument copies, so the L2 cannot hold the data)")
        }
    };
    let mut out = format!("  timing: {method}\n");
    let n = m.summary.map(|s| s.n).unwrap_or(0);
    out.push_str(&format!(
        "  samples: {n} kept, {} discarded as throttled, stopped: {:?}, SM clock {}\n",
        m.discarded_throttled,
        m.stop,
        m.sm_clock_mhz
            .map(|(lo, hi)| format!("{lo}-{hi} MHz"))
            .unwrap_or_else(|| "unknown (no NVML)".into())
    ));
    if !m.throttle_reasons.is_empty() {
        out.push_str(&format!(
            "  throttling seen: {}\n",
            m.throttle_reasons.join(", ")
        ));
    }
    if let Some(en) = &m.energy {
        out.push_str(&format!(
            "  energy: {:.1} uJ per launch, {:.0} W average over {} back-to-back launches ({:.0} ms, NVML energy counter)\n",
            en.uj_per_launch, en.avg_power_w, en.launches, en.window_ms
        ));
    }
    if let Some(u) = m.utilization_gpu_pct {
        out.push_str(&format!(
            "  NVML utilization after the energy window: {u}%\n"
        ));
    }
    out
}

/// What validating a configuration cost, stage by stage.
fn validation_cost(v: &ValidationCost) -> String {
    if v.validated_earlier {
        "  validation: passed earlier in this worker, not repeated\n".to_string()
    } else {
        format!(
            "  validation: generate {:.1} ms, reference {:.1} ms ({} computed, {} reused{}), candidate {:.1} ms, compare {:.1} ms\n",
            v.generate_ms,
            v.reference_ms,
            v.references_computed,
            v.references_reused,
            if v.kept_on.is_empty() {
                String::new()
            } else {
                format!(" from {} memory", v.kept_on.join(" and "))
            },
            v.candidate_ms,
            v.compare_ms
        )
    }
}

/// What a configuration cost, by stage.
fn cost(e: &Evaluation) -> String {
    format!(
        "  cost: compile {:.0} ms{}, validate {:.0} ms, measure {:.0} ms, total {:.0} ms\n",
        e.times.compile_ms,
        if e.compile.as_ref().is_some_and(|c| c.cached) {
            " (cached)"
        } else {
            ""
        },
        e.times.validate_ms,
        e.times.measure_ms,
        e.times.total_ms
    )
}

/// The second configuration against the first: the speedup, its interval, the verdict.
fn comparison(evals: &[Evaluation], ab: &AbResult) -> String {
    format!(
        "\n{} vs {}: speedup {:.3}x, 95% CI [{:.3}, {:.3}] over {} interleaved pairs -> {} (min gain {:.0}%)\n",
        label(&evals[1]),
        label(&evals[0]),
        ab.speedup,
        ab.ci_lo,
        ab.ci_hi,
        ab.pairs,
        ab.verdict.as_str(),
        100.0 * ab.min_gain
    )
}

/// The external baselines section: each one's median and the kernel's speed as a
/// fraction of it (its time over ours), from measurements on this GPU.
pub fn render_externals(spec: &KernelSpec, evals: &[Evaluation], x: &Externals) -> String {
    let mut out = String::from("\nexternal baselines (same GPU, same problem):\n");
    let ours = evals.first().and_then(|e| e.median_us().map(|m| (e, m)));
    if let Some(c) = &x.cublas {
        out.push_str(&cublas(c, ours));
    } else if let Some(e) = &x.cublas_error {
        out.push_str(&format!("  cuBLAS: failed: {e}\n"));
    } else if spec.external.cublas.is_none() {
        out.push_str("  cuBLAS: the spec names no cuBLAS equivalent\n");
    }
    if let Some(t) = &x.torch {
        out.push_str(&format!(
            "  PyTorch {} ({}, torch {}, {} timing, {} samples): median {} us{}\n",
            t.op,
            t.device,
            t.torch,
            t.method,
            t.samples_us.len(),
            sig(t.median_us),
            versus(ours, t.median_us)
        ));
        for n in &t.notes {
            out.push_str(&format!("    note: {n}\n"));
        }
    } else if let Some(e) = &x.torch_error {
        out.push_str(&format!("  PyTorch: not measured: {e}\n"));
    } else {
        out.push_str("  PyTorch: the spec names no PyTorch equivalent\n");
    }
    out
}

/// Our configuration's speed as a fraction of an external one's (its time over ours).
fn versus(ours: Option<(&Evaluation, f64)>, theirs: f64) -> String {
    match ours {
        Some((e, m)) => format!(
            "; {} runs at {:.1}% of its speed ({:.3}x)",
            e.config,
            100.0 * theirs / m,
            theirs / m
        ),
        None => String::new(),
    }
}

/// The cuBLAS equivalent's line: its median and throughput, or why it was not measured.
fn cublas(c: &Evaluation, ours: Option<(&Evaluation, f64)>) -> String {
    let what = c.external.as_deref().unwrap_or("cuBLAS");
    match c.median_us() {
        Some(m) if c.outcome == Outcome::Passed => {
            let s = c.measurement.as_ref().and_then(|m| m.summary);
            let mut out = format!(
                "  {what}: median {} us [{}, {}], {}{}\n",
                sig(m),
                s.map(|s| sig(s.ci_lo)).unwrap_or_default(),
                s.map(|s| sig(s.ci_hi)).unwrap_or_default(),
                c.roofline
                    .as_ref()
                    .map(|r| format!(
                        "{:.0} GFLOP/s ({} of peak), {:.0} GB/s",
                        r.gflops,
                        pct(r.compute_fraction),
                        r.gbs
                    ))
                    .unwrap_or_default(),
                versus(ours, m)
            );
            for a in &c.anomalies {
                out.push_str(&format!("    ANOMALY: {a}\n"));
            }
            out
        }
        _ => format!("  {what}: not measured: {}\n", c.outcome.describe()),
    }
}
