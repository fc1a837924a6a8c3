//! `report.md` and `samples.csv` from a [`Report`] and the journal.

use std::fmt::Write;

use crate::spec::plan::problem_label;
use crate::state::RunState;

use super::cells::{sx, t, table};
use super::*;

fn opt<T: std::fmt::Display>(x: &Option<T>) -> String {
    x.as_ref().map_or("-".into(), |v| v.to_string())
}

/// GPU time and its price, and a proposer's bills beside them when there are any.
fn cost(gpu_s: f64, dollars: f64, proposer: f64) -> String {
    if proposer > 0.0 {
        format!("{gpu_s:.1} s, ${dollars:.3} GPU + ${proposer:.4} proposer")
    } else {
        format!("{gpu_s:.1} s, ${dollars:.3}")
    }
}

fn hours(s: f64) -> String {
    format!("{:.3} GPU-h", s / 3600.0)
}

/// The report as Markdown, readable on its own; `plots` are the SVG files written
/// beside it under `plots/`.
pub fn markdown(r: &Report, plots: &[String]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# nightshift run {} on {}\n", r.run_id, r.device);
    let _ = writeln!(
        o,
        "{}: {}. Branch `{}`. Every timing below was measured on the GPU and is recomputed from the raw samples in `journal.jsonl` (`nightshift report {} --verify` checks it); every sample is in `samples.csv`.\n",
        r.state,
        r.stop,
        r.branch.as_deref().unwrap_or("-"),
        r.run_id
    );
    machine_section(&mut o, r);
    spend_section(&mut o, r);
    kernels_section(&mut o, r);
    let main: Vec<&String> = plots
        .iter()
        .filter(|p| !p.starts_with("evidence-"))
        .collect();
    if !main.is_empty() {
        let _ = writeln!(o, "\n## Plots\n");
        for p in main {
            let _ = writeln!(o, "![{}](plots/{p})\n", p.trim_end_matches(".svg"));
        }
    }
    super::by_kernel::kernel_sections(&mut o, r, plots);
    iterations_section(&mut o, r);
    rewrites_section(&mut o, r);
    super::proposals::proposals_section(&mut o, r);
    patterns_section(&mut o, r);
    predictions_section(&mut o, r);
    closing_section(&mut o, r);
    o
}

/// The device and what the run's samples say about it.
fn machine_section(o: &mut String, r: &Report) {
    let _ = writeln!(o, "## Machine\n");
    match &r.machine {
        Some(m) => {
            let rows = vec![
                vec!["GPU".into(), format!("{} ({}, {} SMs, {})", m.name, m.arch, m.sms, m.uuid)],
                vec![
                    "drivers".into(),
                    format!(
                        "display driver {}, CUDA driver {}, NVRTC {}",
                        opt(&m.display_driver),
                        opt(&m.cuda_driver),
                        opt(&m.nvrtc)
                    ),
                ],
                vec![
                    "SM clock".into(),
                    format!(
                        "peak {} MHz (driver); seen during the run: {}",
                        m.max_sm_clock_mhz.map_or("-".into(), |c| format!("{c:.0}")),
                        m.sm_clock_range_mhz
                            .map_or("not read".into(), |(a, b)| format!("{a}-{b} MHz"))
                    ),
                ],
                vec![
                    "DRAM bandwidth".into(),
                    format!(
                        "measured {} GB/s; from the driver's memory clock and bus width {} GB/s",
                        m.dram_measured_gbs.map_or("-".into(), |x| format!("{x:.1}")),
                        m.dram_datasheet_gbs.map_or("-".into(), |x| format!("{x:.1}"))
                    ),
                ],
                vec![
                    "arithmetic".into(),
                    format!(
                        "measured FP32 {} GFLOP/s, FP16 tensor {} GFLOP/s",
                        m.fp32_measured_gflops.map_or("-".into(), |x| format!("{x:.0}")),
                        m.tensor_f16_measured_gflops
                            .map_or("-".into(), |x| format!("{x:.0}"))
                    ),
                ],
                vec![
                    "samples".into(),
                    format!(
                        "{} taken (candidates, comparisons, final comparisons and studies), {} while throttled (left out of every statistic); median 95%-interval width {}; bootstrap seed {}",
                        m.samples,
                        m.throttled_samples,
                        m.median_noise
                            .map_or("-".into(), |w| format!("{:.2}% of the median", 100.0 * w)),
                        opt(&m.seed)
                    ),
                ],
            ];
            o.push_str(&table(&["", ""], &rows));
        }
        None => o.push_str("No Machine record in the journal.\n"),
    }
}

/// The budget and what was spent, by stage and by kernel.
fn spend_section(o: &mut String, r: &Report) {
    let s = &r.spend;
    let _ = writeln!(o, "\n## Budget and spend\n");
    let lim = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("none".into(), f);
    let rows = vec![
        vec![
            "wall time".into(),
            format!("{:.0} s", s.wall_s),
            lim(s.wall_limit_s, &|l| format!("{l:.0} s")),
        ],
        vec![
            "GPU time".into(),
            hours(s.gpu_s),
            lim(s.gpu_limit_s, &|l| hours(l)),
        ],
        vec![
            "dollars".into(),
            match &s.proposer {
                None => format!("${:.2} at ${:.2}/GPU-h", s.dollars, s.price_per_gpu_hour),
                Some(p) => format!(
                    "${:.4} GPU (at ${:.2}/GPU-h) + ${:.4} proposer = ${:.4}",
                    s.dollars, s.price_per_gpu_hour, p.dollars, p.total_dollars
                ),
            },
            lim(s.dollars_limit, &|l| format!("${l:.2}")),
        ],
    ];
    o.push_str(&table(&["", "spent", "budget"], &rows));
    if s.resumes > 0 {
        let _ = writeln!(
            o,
            "\nResumed {} time(s); the daemon was down for {} in all between a stop and a resume. \
             The wall time above and its limit count that time; GPU time and dollars do not, \
             but your provider may have billed it.",
            s.resumes,
            crate::runs::human_duration(s.down_s)
        );
    }
    let billed = |k: &str| -> String {
        let m = s.proposer.as_ref().and_then(|p| p.by_kernel.get(k));
        match m.filter(|m| m.proposer_dollars > 0.0) {
            Some(m) => format!(" GPU + ${:.4} proposer", m.proposer_dollars),
            None => String::new(),
        }
    };
    let stages: Vec<String> = s
        .by_stage
        .iter()
        .map(|(k, v)| match &s.proposer {
            Some(p) if k == "proposer" => {
                format!(
                    "{k} {v:.1} s (its bills, ${:.4}, are in dollars)",
                    p.dollars
                )
            }
            _ => format!("{k} {v:.1} s"),
        })
        .collect();
    let kernels: Vec<String> = s
        .by_kernel
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {v:.1} s (${:.3}{})",
                v * s.price_per_gpu_hour / 3600.0,
                billed(k)
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "\nGPU time by stage: {}. By kernel (candidates, final comparisons, studies and idle time): {}. Why it stopped: {}.\n",
        stages.join(", "),
        kernels.join(", "),
        r.stop
    );
    super::proposals::money_tables(o, r);
}

/// One row per kernel: baseline, best, the interleaved comparison.
fn kernels_section(o: &mut String, r: &Report) {
    let _ = writeln!(o, "## Kernels\n");
    let rows: Vec<Vec<String>> = r
        .kernels
        .iter()
        .map(|k| {
            vec![
                k.kernel.clone(),
                t(&k.baseline),
                t(&k.best),
                sx(&k.speedup),
                k.roofline.clone().unwrap_or_else(|| "-".into()),
                k.energy_uj_per_launch
                    .map_or("-".into(), |e| format!("{e:.1}")),
                opt(&k.registers),
                format!(
                    "`{}`{}",
                    k.best_config,
                    k.commit
                        .as_ref()
                        .map(|c| format!(" ({})", &c[..c.len().min(10)]))
                        .unwrap_or_default()
                ),
                k.state.clone(),
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "kernel",
            "baseline µs [95% CI]",
            "best µs [95% CI]",
            "best vs baseline, interleaved",
            "roofline (best)",
            "µJ/launch",
            "registers",
            "best configuration",
            "state",
        ],
        &rows,
    ));
}

/// The lines of attack and every candidate.
fn iterations_section(o: &mut String, r: &Report) {
    let _ = writeln!(o, "\n## Iterations\n");
    o.push_str("One row per line of attack: a pattern's candidates on a kernel, in order.\n\n");
    let rows: Vec<Vec<String>> = r
        .lines
        .iter()
        .map(|l| {
            vec![
                l.kernel.clone(),
                l.pattern.clone(),
                l.prediction.clone(),
                l.candidates.to_string(),
                l.outcomes
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                l.decision.clone(),
                cost(l.gpu_s, l.dollars, l.proposer_dollars),
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "kernel",
            "pattern",
            "prediction",
            "candidates",
            "outcomes",
            "decision",
            "cost",
        ],
        &rows,
    ));

    let _ = writeln!(o, "\n## Candidates\n");
    let rows: Vec<Vec<String>> = r
        .iterations
        .iter()
        .map(|i| {
            vec![
                i.kernel.clone(),
                i.pattern.clone(),
                format!("`{}`", i.config),
                i.outcome.clone(),
                t(&i.timing),
                sx(&i.speedup),
                i.decision.clone(),
                format!("{:.1} s, ${:.3}", i.gpu_s, i.dollars),
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "kernel",
            "pattern",
            "configuration",
            "outcome",
            "µs [95% CI]",
            "against the best",
            "decision",
            "cost",
        ],
        &rows,
    ));
}

/// Every rewrite candidate and its fate, then the source diff of each kept one.
fn rewrites_section(o: &mut String, r: &Report) {
    if r.rewrites.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Source rewrites\n");
    let rows: Vec<Vec<String>> = r
        .rewrites
        .iter()
        .map(|w| {
            vec![
                w.kernel.clone(),
                w.pattern.clone(),
                format!("`{}`", w.config),
                sx(&w.speedup),
                w.decision.clone(),
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "kernel",
            "pattern",
            "candidate",
            "against the best",
            "decision",
        ],
        &rows,
    ));
    for w in r.rewrites.iter().filter(|w| w.decision.starts_with("kept")) {
        let _ = writeln!(o, "\n### {} `{}` ({})\n", w.kernel, w.config, w.decision);
        if !w.options.is_empty() {
            let _ = writeln!(o, "NVRTC options: `{}`\n", w.options.join(" "));
        }
        if w.diff.is_empty() {
            let _ = writeln!(o, "(compiler options only: the source is as written)");
        } else {
            let _ = writeln!(
                o,
                "Its source diff is under \"Kernel {}\", with the samples its verdict came from.",
                w.kernel
            );
        }
    }
}

/// What each pattern bought, the pivots, and what did not work.
fn patterns_section(o: &mut String, r: &Report) {
    let _ = writeln!(o, "\n## Pattern ROI\n");
    // The proposer's bills get a column of their own when the run had any.
    let billed = r.spend.proposer.is_some();
    let rows: Vec<Vec<String>> = r
        .patterns
        .iter()
        .map(|p| {
            let mut row = vec![
                p.pattern.clone(),
                p.candidates.to_string(),
                p.fast.to_string(),
                format!("{:.1} s", p.gpu_s),
                format!("${:.3}", p.dollars),
            ];
            if billed {
                row.push(format!("${:.4}", p.proposer_dollars));
            }
            row.push(format!("{:.3}x", p.gain));
            row
        })
        .collect();
    let head: &[&str] = if billed {
        &[
            "pattern",
            "candidates",
            "committed",
            "GPU time",
            "GPU cost",
            "proposer cost",
            "gain bought",
        ]
    } else {
        &[
            "pattern",
            "candidates",
            "committed",
            "GPU time",
            "cost",
            "gain bought",
        ]
    };
    o.push_str(&table(head, &rows));
    if !r.pivots.is_empty() {
        let _ = writeln!(o, "\nPivots:\n");
        for p in &r.pivots {
            let _ = writeln!(o, "- {}: dropped {}: {}", p.kernel, p.pattern, p.reason);
        }
    }

    let _ = writeln!(o, "\n## What did not work\n");
    if r.failures.is_empty() {
        o.push_str("Every candidate measured was committed.\n");
    }
    for f in &r.failures {
        let _ = writeln!(
            o,
            "- **{}** ({}): {}",
            f.outcome,
            f.count,
            f.examples.join("; ")
        );
    }
}

/// Predictions against measurements, and the workload studies.
fn predictions_section(o: &mut String, r: &Report) {
    let _ = writeln!(o, "\n## Predictions against measurements\n");
    let rows: Vec<Vec<String>> = r
        .predictions
        .iter()
        .map(|p| {
            vec![
                p.kernel.clone(),
                p.pattern.clone(),
                p.predicted.clone(),
                p.note.clone(),
            ]
        })
        .collect();
    o.push_str(&table(
        &["kernel", "pattern", "predicted", "measured"],
        &rows,
    ));

    if !r.studies.is_empty() {
        let _ = writeln!(o, "\n## Workload batching (throughput per unit of work)\n");
        for s in &r.studies {
            let _ = writeln!(
                o,
                "{} `{}` ({:.1} GPU-s, ${:.3}){}:\n",
                s.kernel,
                s.config,
                s.gpu_s,
                s.dollars,
                s.cut_short
                    .as_ref()
                    .map(|c| format!(" (cut short: {c})"))
                    .unwrap_or_default()
            );
            let rows: Vec<Vec<String>> = s
                .result
                .rows
                .iter()
                .map(|x| {
                    vec![
                        format!("x{}", x.scale),
                        x.problem.clone(),
                        x.outcome.clone(),
                        x.median_us.map_or("-".into(), |m| format!("{m:.2}")),
                        x.us_per_unit.map_or("-".into(), |m| format!("{m:.2}")),
                        x.throughput_x
                            .map_or("-".into(), |(a, b, c)| format!("{a:.2}x [{b:.2}, {c:.2}]")),
                        x.ctas_per_sm.map_or("-".into(), |c| format!("{c:.1}")),
                    ]
                })
                .collect();
            o.push_str(&table(
                &[
                    "scale",
                    "problem",
                    "outcome",
                    "µs per launch",
                    "µs per unit of work",
                    "throughput per unit vs x1",
                    "CTAs per SM",
                ],
                &rows,
            ));
            let _ = writeln!(o, "\n{}\n", s.result.conclusion);
        }
    }
}

/// The caveats and how to reproduce the run.
fn closing_section(o: &mut String, r: &Report) {
    let _ = writeln!(o, "\n## Caveats\n");
    if r.caveats.is_empty() {
        o.push_str("None found in the data.\n");
    }
    for c in &r.caveats {
        let _ = writeln!(o, "- {c}");
    }
    let _ = writeln!(o, "\n## How to reproduce\n\n```");
    for c in &r.reproduce {
        let _ = writeln!(o, "{c}");
    }
    o.push_str("```\n");
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every raw sample of the journal, one row each, labelled.
pub fn samples_csv(state: &RunState) -> String {
    let mut o =
        String::from("record,role,kernel,config,problem,method,sample,us,sm_clock_mhz,throttled\n");
    for (seq, role, e) in state.recorded.measured() {
        let Some(m) = &e.measurement else { continue };
        let method = match m.method {
            TimingMethod::Cold => "cold".to_string(),
            TimingMethod::Batch { launches, .. } => format!("batch{launches}"),
        };
        let problem = if e.problem.is_empty() {
            problem_label(&Default::default())
        } else {
            e.problem.clone()
        };
        for (i, s) in m.samples.iter().enumerate() {
            let _ = writeln!(
                o,
                "{seq},{},{},{},{},{method},{i},{},{},{}",
                role.name(),
                csv_field(&e.kernel),
                csv_field(&e.config.to_string()),
                csv_field(&problem),
                s.us,
                s.sm_clock_mhz.map_or(String::new(), |c| c.to_string()),
                s.throttled
            );
        }
    }
    o
}
