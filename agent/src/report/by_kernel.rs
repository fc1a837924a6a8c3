//! One section per kernel: its baseline and best, every kept change with its commit,
//! the samples its verdict came from and its source diff, the final comparison with
//! its samples, and every candidate tried on it.

use std::fmt::Write;

use super::cells::{sx, t, table};
use super::plot::evidence_names;
use super::*;

/// The source diff of a kept candidate: a rewrite's or a proposal's (empty: the
/// kernel as written, or compiler options only).
fn kept_diff<'a>(r: &'a Report, kernel: &str, config: &str) -> Option<&'a str> {
    r.rewrites
        .iter()
        .find(|w| w.kernel == kernel && w.config == config && w.decision.starts_with("kept"))
        .map(|w| w.diff.as_str())
        .or_else(|| {
            r.proposals
                .iter()
                .find(|p| {
                    p.kernel == kernel
                        && p.candidate.as_deref() == Some(config)
                        && p.decision.starts_with("kept")
                })
                .map(|p| p.diff.as_str())
        })
}

fn arm_text(a: &Arm) -> String {
    format!(
        "`{}`: median {} over {} samples{}",
        a.config,
        chart::si(a.median_us * 1e-6, "s"),
        a.samples_us.len() - a.throttled.len(),
        if a.throttled.is_empty() {
            String::new()
        } else {
            format!(" ({} throttled ones left out)", a.throttled.len())
        }
    )
}

/// The samples of evidence `i` and what they say.
fn evidence_block(o: &mut String, i: usize, e: &Evidence, plots: &[String]) {
    let (ra, rb) = if e.what == "final comparison" {
        ("the baseline", "the best")
    } else {
        ("the best of its time", "the candidate")
    };
    let _ = writeln!(
        o,
        "Measured interleaved: {ra} {} against {rb} {}.\n",
        arm_text(&e.a),
        arm_text(&e.b)
    );
    for name in evidence_names(i) {
        if plots.contains(&name) {
            let _ = writeln!(o, "![{}](plots/{name})\n", name.trim_end_matches(".svg"));
        }
    }
}

/// A kept change: its commit and verdict, the samples behind it, its source diff.
fn kept_block(o: &mut String, r: &Report, it: &Iteration, plots: &[String]) {
    let sha = it.decision.trim_start_matches("committed ");
    let _ = writeln!(
        o,
        "\n### {}: kept {sha} (pattern `{}`): {}\n",
        it.kernel,
        it.pattern,
        sx(&it.speedup)
    );
    let _ = writeln!(o, "Configuration `{}`.\n", it.config);
    let what = format!("kept {sha}");
    match r
        .evidence
        .iter()
        .enumerate()
        .find(|(_, e)| e.kernel == it.kernel && e.b.config == it.config && e.what == what)
    {
        Some((i, e)) => evidence_block(o, i, e, plots),
        None => {
            let _ = writeln!(o, "(no interleaved samples recorded for its verdict)\n");
        }
    }
    match kept_diff(r, &it.kernel, &it.config) {
        Some(d) if !d.is_empty() => {
            let _ = writeln!(o, "Its source diff against the kernel as written:\n");
            let _ = writeln!(o, "```diff\n{d}```\n");
        }
        Some(_) => {
            let _ = writeln!(o, "Compiler options only: the source is as written.\n");
        }
        None => {}
    }
}

/// `## Kernel <name>` for every kernel of the report.
pub(super) fn kernel_sections(o: &mut String, r: &Report, plots: &[String]) {
    for k in &r.kernels {
        let _ = writeln!(o, "\n## Kernel {}\n", k.kernel);
        let _ = writeln!(o, "{}.\n", k.state);
        if let Some((_, tunables)) = r.unmoved.iter().find(|(n, _)| *n == k.kernel) {
            let _ = writeln!(o, "Tunables no applicable pattern moves:\n");
            for t in tunables {
                let _ = writeln!(o, "- {t}");
            }
            let _ = writeln!(o);
        }
        let rows = vec![
            vec![
                "baseline".into(),
                format!("`{}`", k.baseline_config),
                t(&k.baseline),
            ],
            vec![
                "best".into(),
                format!(
                    "`{}`{}",
                    k.best_config,
                    k.commit
                        .as_ref()
                        .map(|c| format!(" (commit {})", &c[..c.len().min(10)]))
                        .unwrap_or_default()
                ),
                t(&k.best),
            ],
        ];
        o.push_str(&table(&["", "configuration", "µs [95% CI]"], &rows));
        match &k.speedup {
            Some(_) => {
                let _ = writeln!(
                    o,
                    "\nBest against baseline, measured interleaved at the end: {}.",
                    sx(&k.speedup)
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "\nBest against baseline: not measured interleaved (no final comparison: nothing was kept, or the run stopped before it)."
                );
            }
        }
        for it in r
            .iterations
            .iter()
            .filter(|it| it.kernel == k.kernel && it.decision.starts_with("committed"))
        {
            kept_block(o, r, it, plots);
        }
        for (i, e) in r.evidence.iter().enumerate() {
            if e.kernel == k.kernel && e.what == "final comparison" {
                let _ = writeln!(
                    o,
                    "\n### {}: final comparison: {}\n",
                    e.kernel,
                    sx(&Some(e.speedup.clone()))
                );
                evidence_block(o, i, e, plots);
            }
        }
        let rows: Vec<Vec<String>> = r
            .iterations
            .iter()
            .enumerate()
            .filter(|(_, it)| it.kernel == k.kernel)
            .map(|(n, it)| {
                vec![
                    (n + 1).to_string(),
                    it.pattern.clone(),
                    format!("`{}`", it.config),
                    derive::class(it),
                    t(&it.timing),
                    sx(&it.speedup),
                    it.decision.clone(),
                ]
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(o, "\n### {}: every candidate\n", k.kernel);
        o.push_str(&table(
            &[
                "#",
                "pattern",
                "configuration",
                "outcome",
                "µs [95% CI]",
                "against the best of its time",
                "decision",
            ],
            &rows,
        ));
    }
}
