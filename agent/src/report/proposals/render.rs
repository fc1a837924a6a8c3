//! The Proposals section of `report.md`, and the tables of GPU and proposer money in
//! its budget section.

use std::fmt::Write;

use super::super::cells::table;
use super::super::Report;
use super::{Money, ProposalReport};

fn usd(x: f64) -> String {
    format!("${x:.4}")
}

fn tokens(input: u64, output: u64, estimated: bool) -> String {
    format!(
        "{input} / {output}{}",
        if estimated { " (estimated)" } else { "" }
    )
}

/// A question's outcome in one cell.
fn outcome(p: &ProposalReport) -> String {
    match p.outcome.as_str() {
        "proposer_failed" => format!("proposer failed: {}", p.detail),
        "not_evaluated" => p.detail.clone(),
        o => format!("{o}: {}", p.detail),
    }
}

/// Every question to the proposer, in order, then the first lines of each compile
/// log and the diff of each kept source. Nothing when the run asked none.
pub(in crate::report) fn proposals_section(o: &mut String, r: &Report) {
    if r.proposals.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Proposals\n");
    let _ = writeln!(
        o,
        "Every question to a code-writing proposer, in the order asked: its bill (the proposer's dollars, apart from GPU time), what came of it, and the GPU time its candidate was charged.\n"
    );
    let rows: Vec<Vec<String>> = r
        .proposals
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                (i + 1).to_string(),
                p.kernel.clone(),
                p.pattern.clone(),
                p.attempt.to_string(),
                p.proposer.clone(),
                tokens(p.input_tokens, p.output_tokens, p.estimated),
                usd(p.dollars),
                format!("{:.1} s", p.latency_s),
                outcome(p),
                if p.candidate.is_some() && p.outcome != "proposal_invalid" {
                    format!("{:.1} s, {}", p.gpu_s, usd(p.gpu_dollars))
                } else {
                    "-".into()
                },
                p.decision.clone(),
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "#",
            "kernel",
            "pattern",
            "attempt",
            "proposer",
            "tokens in / out",
            "proposer $",
            "latency",
            "outcome",
            "candidate GPU time, $",
            "kept",
        ],
        &rows,
    ));
    for (i, p) in r.proposals.iter().enumerate() {
        if !p.compile_log.is_empty() {
            let _ = writeln!(
                o,
                "\n### #{} {} {} attempt {}: compile log (first lines)\n\n```text\n{}\n```",
                i + 1,
                p.kernel,
                p.pattern,
                p.attempt,
                p.compile_log.join("\n")
            );
        }
        if p.decision.starts_with("kept") {
            let _ = writeln!(
                o,
                "\n### #{} {} `{}` ({})\n",
                i + 1,
                p.kernel,
                p.candidate.as_deref().unwrap_or("-"),
                p.decision
            );
            if let Some(e) = &p.explanation {
                let _ = writeln!(o, "The proposer: {e}\n");
            }
            if p.diff.is_empty() {
                let _ = writeln!(o, "(no diff recorded)");
            } else {
                let _ = writeln!(
                    o,
                    "Its source diff is under \"Kernel {}\", with the samples its verdict came from.",
                    p.kernel
                );
            }
        }
    }
}

fn money_row(name: &str, m: &Money) -> Vec<String> {
    vec![
        name.to_string(),
        format!("{:.1} s", m.gpu_s),
        usd(m.gpu_dollars),
        usd(m.proposer_dollars),
        usd(m.gpu_dollars + m.proposer_dollars),
        m.questions.to_string(),
        match (m.questions, m.estimated) {
            (0, _) => "-".into(),
            (_, 0) => tokens(m.input_tokens, m.output_tokens, false),
            (q, e) => format!(
                "{} ({e} of {q} estimated)",
                tokens(m.input_tokens, m.output_tokens, false)
            ),
        },
        m.mean_latency_s.map_or("-".into(), |s| format!("{s:.1} s")),
    ]
}

/// GPU and proposer money side by side, by kernel and by pattern.
pub(in crate::report) fn money_tables(o: &mut String, r: &Report) {
    let Some(p) = &r.spend.proposer else {
        return;
    };
    let head = |first: &'static str| {
        [
            first,
            "GPU time",
            "GPU $",
            "proposer $",
            "total $",
            "questions",
            "tokens in / out",
            "mean latency",
        ]
    };
    let _ = writeln!(
        o,
        "GPU and proposer money by kernel (GPU time at ${:.2}/GPU-h; the proposer's bills as charged; `run`: time charged to no kernel):\n",
        r.spend.price_per_gpu_hour
    );
    let rows: Vec<Vec<String>> = p.by_kernel.iter().map(|(k, m)| money_row(k, m)).collect();
    o.push_str(&table(&head("kernel"), &rows));
    let _ = writeln!(
        o,
        "\nBy pattern (`none`: baselines, final comparisons and idle time):\n"
    );
    let rows: Vec<Vec<String>> = p.by_pattern.iter().map(|(k, m)| money_row(k, m)).collect();
    o.push_str(&table(&head("pattern"), &rows));
    o.push('\n');
}
