//! `nightshift bench`: validate and time one configuration, or two interleaved.

use serde::Serialize;

use super::{clear_progress, exit, progress_printer, BenchArgs};
use crate::evaluate::external::{self, TorchTiming};
use crate::evaluate::{EvalError, Evaluation, Options, Session};
use crate::gpu::ceilings::Ceilings;
use crate::gpu::DeviceInfo;
use crate::measure::TimingMethod;
use crate::spec::KernelSpec;
use crate::table;
use crate::vocab::{AbResult, Outcome};

#[derive(Serialize)]
struct BenchJson<'a> {
    nightshift: &'static str,
    device: &'a DeviceInfo,
    ceilings: &'a Ceilings,
    evaluations: Vec<&'a Evaluation>,
    ab: Option<&'a AbResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external: Option<&'a Externals>,
    worker_restarts: u32,
}

/// What a user would otherwise call, measured on the same GPU (`--external`).
#[derive(Serialize, Default)]
pub struct Externals {
    /// The spec's cuBLAS equivalent, through the kernel's own protocols.
    pub cublas: Option<Evaluation>,
    pub cublas_error: Option<String>,
    /// PyTorch, as timed by the script.
    pub torch: Option<TorchTiming>,
    pub torch_error: Option<String>,
}

pub fn run(args: &BenchArgs, opts: Options) -> i32 {
    let gpu = opts.gpu;
    let cache_dir = opts.cache_dir.clone();
    let spec = match KernelSpec::load(&args.kernel) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let a = match spec.with_overrides(&spec.baseline(), &args.set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --set: {e}");
            return exit::USAGE;
        }
    };
    let b = if args.vs.is_empty() {
        None
    } else {
        match spec.with_overrides(&a, &args.vs) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: --vs: {e}");
                return exit::USAGE;
            }
        }
    };
    for c in std::iter::once(&a).chain(b.as_ref()) {
        let bad = spec.violated(&spec.problem, c);
        if !bad.is_empty() {
            eprintln!(
                "error: {c} violates the restriction(s) {} of {}",
                bad.join(", "),
                spec.spec_path.display()
            );
            return exit::USAGE;
        }
    }
    let mut session = match super::start_session(opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if args.check_references {
        let code = check_references(&spec, &mut session, &cache_dir, gpu, args.common.json);
        session.shutdown();
        return code;
    }
    let result = match &b {
        None => session
            .evaluate(&spec, &a, !args.validate_only)
            .map(|e| (vec![e], None)),
        Some(b) => session
            .compare(&spec, &a, b)
            .map(|(x, y, ab)| (vec![x, y], ab)),
    };
    let (evals, ab) = match result {
        Ok(x) => x,
        Err(e @ EvalError::Worker(_)) | Err(e @ EvalError::Infra(_)) => {
            clear_progress();
            eprintln!("error: {e}");
            return exit::NO_GPU;
        }
    };
    let externals = (args.external && !args.validate_only).then(|| {
        let mut x = Externals::default();
        match session.evaluate_cublas(&spec) {
            None => {}
            Some(Ok(e)) => x.cublas = Some(e),
            Some(Err(e)) => x.cublas_error = Some(e.to_string()),
        }
        if spec.external.torch.is_some() {
            progress_printer()("timing the PyTorch equivalent");
        }
        match external::time_torch(&spec, gpu) {
            None => {}
            Some(Ok(t)) => x.torch = Some(t),
            Some(Err(e)) => x.torch_error = Some(e),
        }
        x
    });
    clear_progress();
    if args.common.json {
        let j = BenchJson {
            nightshift: env!("CARGO_PKG_VERSION"),
            device: &session.device,
            ceilings: &session.ceilings,
            evaluations: evals.iter().collect(),
            ab: ab.as_ref(),
            external: externals.as_ref(),
            worker_restarts: session.restarts(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&j).expect("serializable")
        );
    } else {
        print!(
            "{}",
            render(
                &spec,
                &session.device,
                &session.ceilings,
                &evals,
                ab.as_ref()
            )
        );
        if let Some(x) = &externals {
            print!("{}", render_externals(&spec, &evals, x));
        }
    }
    session.shutdown();
    if evals.iter().all(|e| e.outcome == Outcome::Passed) {
        exit::OK
    } else {
        exit::REJECTED
    }
}

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
    out.push_str(&format!(
        "measured ceilings: DRAM {:.0} GB/s ({}), FP32 {:.1} TFLOP/s, FP16 tensor {:.1} TFLOP/s\n\n",
        c.dram_gbs,
        c.dram_method,
        c.fp32_gflops / 1e3,
        c.tensor_f16_gflops / 1e3
    ));
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
    let mut rows = Vec::new();
    for (i, e) in evals.iter().enumerate() {
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
        rows.push(vec![
            e.config.to_string(),
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
        ]);
    }
    out.push_str(&table::render(&header, &rows));
    out.push('\n');
    for e in evals {
        out.push_str(&format!("{}:\n", e.config));
        if e.outcome != Outcome::Passed {
            out.push_str(&format!("  REJECTED: {}\n", e.outcome.describe()));
            if let Outcome::CompileFailed { log } = &e.outcome {
                for l in log.lines().take(20) {
                    out.push_str(&format!("    | {l}\n"));
                }
            }
        }
        if !e.checks.is_empty() {
            let sizes: std::collections::BTreeSet<&str> =
                e.checks.iter().map(|c| c.size.as_str()).collect();
            let max_rel = e.checks.iter().map(|c| c.stats.max_rel).fold(0.0, f64::max);
            let max_abs = e.checks.iter().map(|c| c.stats.max_abs).fold(0.0, f64::max);
            let l2 = e.checks.iter().map(|c| c.stats.rel_l2).fold(0.0, f64::max);
            out.push_str(&format!(
                "  validation: {} comparisons at {} sizes ({}), worst: max abs {:.2e}, max rel {:.2e}, rel L2 {:.2e}\n",
                e.checks.len(),
                sizes.len(),
                sizes.iter().cloned().collect::<Vec<_>>().join("; "),
                max_abs,
                max_rel,
                l2
            ));
        }
        for s in &e.skipped_sizes {
            out.push_str(&format!("  not validated at {}: {}\n", s.size, s.reason));
        }
        if let Some(m) = &e.measurement {
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
            out.push_str(&format!("  timing: {method}\n"));
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
            out.push_str(&if v.validated_earlier {
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
            });
        }
        out.push_str(&format!(
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
        ));
    }
    if let Some(ab) = ab {
        out.push_str(&format!(
            "\n{} vs {}: speedup {:.3}x, 95% CI [{:.3}, {:.3}] over {} interleaved pairs -> {} (min gain {:.0}%)\n",
            evals[1].config,
            evals[0].config,
            ab.speedup,
            ab.ci_lo,
            ab.ci_hi,
            ab.pairs,
            ab.verdict.as_str(),
            100.0 * ab.min_gain
        ));
    }
    out
}

/// The external baselines section: each one's median and the kernel's speed as a
/// fraction of it (its time over ours), from measurements on this GPU.
pub fn render_externals(spec: &KernelSpec, evals: &[Evaluation], x: &Externals) -> String {
    let mut out = String::from("\nexternal baselines (same GPU, same problem):\n");
    let ours = evals.first().and_then(|e| e.median_us().map(|m| (e, m)));
    let versus = |theirs: f64| match ours {
        Some((e, m)) => format!(
            "; {} runs at {:.1}% of its speed ({:.3}x)",
            e.config,
            100.0 * theirs / m,
            theirs / m
        ),
        None => String::new(),
    };
    if let Some(c) = &x.cublas {
        let what = c.external.as_deref().unwrap_or("cuBLAS");
        match c.median_us() {
            Some(m) if c.outcome == Outcome::Passed => {
                let s = c.measurement.as_ref().and_then(|m| m.summary);
                out.push_str(&format!(
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
                    versus(m)
                ));
                for a in &c.anomalies {
                    out.push_str(&format!("    ANOMALY: {a}\n"));
                }
            }
            _ => out.push_str(&format!(
                "  {what}: not measured: {}\n",
                c.outcome.describe()
            )),
        }
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
            versus(t.median_us)
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

/// `bench --check-references`: the reference against PyTorch on the same inputs.
fn check_references(
    spec: &KernelSpec,
    session: &mut Session,
    cache_dir: &std::path::Path,
    gpu: usize,
    json: bool,
) -> i32 {
    let Some(name) = spec.external.torch.clone() else {
        clear_progress();
        eprintln!(
            "error: {} names no PyTorch equivalent ([external] torch)",
            spec.spec_path.display()
        );
        return exit::USAGE;
    };
    let dir = cache_dir.join("reference-check").join(&spec.name);
    let _ = std::fs::remove_dir_all(&dir);
    let dirs = match session.dump_reference(spec, &name, &dir) {
        Ok(d) => d,
        Err(e) => {
            clear_progress();
            eprintln!("error: {e}");
            return exit::NO_GPU;
        }
    };
    clear_progress();
    let mut all_passed = true;
    let mut answers = Vec::new();
    for d in &dirs {
        progress_printer()(&format!("PyTorch checks {}", d.display()));
        let r = external::torch_check(spec, d, gpu);
        clear_progress();
        match &r {
            Ok(v) => {
                let passed = v["passed"].as_bool() == Some(true);
                all_passed &= passed;
                if !json {
                    let outs: Vec<String> = v["outputs"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|o| {
                                    format!(
                                        "{}: max abs {}, max rel {}, {} bad of {}",
                                        o["arg"].as_str().unwrap_or("?"),
                                        o["max_abs"],
                                        o["max_rel"],
                                        o["bad"],
                                        o["elements"]
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    println!(
                        "{} {}: {} ({})",
                        spec.name,
                        d.file_name().unwrap_or_default().to_string_lossy(),
                        if passed {
                            "agrees with PyTorch"
                        } else {
                            "DISAGREES with PyTorch"
                        },
                        outs.join("; ")
                    );
                }
            }
            Err(e) => {
                all_passed = false;
                if !json {
                    println!("{} {}: check failed: {e}", spec.name, d.display());
                }
            }
        }
        answers.push(serde_json::json!({
            "dir": d,
            "answer": r.as_ref().ok(),
            "error": r.as_ref().err(),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "kernel": spec.name,
                "checks": answers,
                "passed": all_passed,
            }))
            .expect("serializable")
        );
    }
    if all_passed {
        exit::OK
    } else {
        exit::REJECTED
    }
}
