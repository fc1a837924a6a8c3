//! What the report concludes from its iterations: the lines of attack, each
//! pattern's return, the failures, the predictions checked, the caveats and how to
//! reproduce the run.

use std::collections::BTreeMap;

use crate::state::recorded::Proposed;

use super::*;

/// The outcome class of a candidate: its verdict when it was measured, else its
/// failure.
pub(super) fn class(i: &Iteration) -> String {
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

pub(super) fn lines(
    proposals: &[Proposed],
    iterations: &[Iteration],
    pivots: &[Pivot],
) -> Vec<Line> {
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
                proposer_dollars: 0.0,
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

pub(super) fn pattern_roi(iterations: &[Iteration]) -> Vec<PatternRoi> {
    let mut by: BTreeMap<String, PatternRoi> = BTreeMap::new();
    for it in iterations {
        let p = by.entry(it.pattern.clone()).or_insert_with(|| PatternRoi {
            pattern: it.pattern.clone(),
            candidates: 0,
            fast: 0,
            gpu_s: 0.0,
            dollars: 0.0,
            gain: 1.0,
            proposer_dollars: 0.0,
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

pub(super) fn failures(iterations: &[Iteration]) -> Vec<Failure> {
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

pub(super) fn predictions(
    proposals: &[Proposed],
    iterations: &[Iteration],
) -> Vec<PredictionCheck> {
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

pub(super) fn caveats(
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

pub(super) fn reproduce(
    run_id: &str,
    branch: Option<&str>,
    kernels: &[KernelReport],
    commits: usize,
) -> Vec<String> {
    let mut out = vec![format!(
        "git log {}",
        branch.unwrap_or("nightshift/<run-id>")
    )];
    if let Some(b) = branch {
        out.push(format!("git worktree add /tmp/{run_id} {b}"));
    }
    // The best measured interleaved with the baseline again, from the run's branch;
    // a rewritten best from the commit the run started at (the rewrites edit the
    // kernel as written), as written against as rewritten at the best configuration.
    let mut base_added = false;
    for k in kernels.iter().filter(|k| k.commit.is_some()) {
        let (config, rewrites) = k
            .best_config
            .split_once(crate::spec::REWRITE_SEPARATOR)
            .unwrap_or((&k.best_config, ""));
        if rewrites.is_empty() {
            let vs: Vec<String> = config
                .split_whitespace()
                .map(|a| format!("--vs {a}"))
                .collect();
            out.push(format!(
                "nightshift bench /tmp/{run_id}/kernels/{} {}",
                k.kernel,
                vs.join(" ")
            ));
            continue;
        }
        if let (Some(b), false) = (branch, base_added) {
            // The run's commits sit on the commit it started from, one after another.
            out.push(format!("git worktree add /tmp/{run_id}-base {b}~{commits}"));
            base_added = true;
        }
        if rewrites.contains(crate::rewrite::PROPOSAL) {
            // A proposer's source exists only on the branch: each side measured apart
            // (its options' rewrites given again; `check` reads them from tuned.toml).
            let mut best: Vec<String> = config
                .split_whitespace()
                .map(|a| format!("--set {a}"))
                .collect();
            best.extend(
                rewrites
                    .split(crate::spec::REWRITE_SEPARATOR)
                    .filter(|r| crate::rewrite::options_only(r))
                    .map(|r| format!("--rewrite {r}")),
            );
            let base: Vec<String> = k
                .baseline_config
                .split_whitespace()
                .map(|a| format!("--set {a}"))
                .collect();
            out.push(format!(
                "nightshift bench /tmp/{run_id}/kernels/{} {}   # the kept proposal, as committed",
                k.kernel,
                best.join(" ")
            ));
            out.push(format!(
                "nightshift bench /tmp/{run_id}-base/kernels/{} {}   # the kernel as written (measured apart: not interleaved)",
                k.kernel,
                base.join(" ")
            ));
            continue;
        }
        let mut args: Vec<String> = config
            .split_whitespace()
            .map(|a| format!("--set {a}"))
            .collect();
        args.extend(
            rewrites
                .split(crate::spec::REWRITE_SEPARATOR)
                .map(|r| format!("--rewrite {r}")),
        );
        out.push(format!(
            "nightshift bench /tmp/{run_id}-base/kernels/{} {}",
            k.kernel,
            args.join(" ")
        ));
    }
    out.push(format!("nightshift report {run_id} --verify"));
    out
}
