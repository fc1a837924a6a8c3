//! What a run asked a code-writing proposer and what came of each question, and what
//! the proposer cost beside the GPU: from the journal's answers, its
//! `proposal_invalid` records, the candidates' evaluations and the charges. The
//! proposer's dollars are kept apart from the GPU's everywhere, never summed into a
//! figure that says GPU.

mod render;
#[cfg(test)]
mod tests;

pub(super) use render::{money_tables, proposals_section};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::budget::Stage;
use crate::journal::ProposerAnswer;
use crate::rewrite::PROPOSAL;
use crate::spec::REWRITE_SEPARATOR;
use crate::state::recorded::{At, Decision, Evaluated, Recorded};
use crate::vocab::Outcome;

use super::{Iteration, Line, PatternRoi, Speedup};

/// Lines of a compile log a question's report keeps.
const LOG_LINES: usize = 8;

/// A question to a code-writing proposer and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalReport {
    pub kernel: String,
    pub pattern: String,
    /// Its number around the best it was written from (1 first).
    pub attempt: usize,
    /// The best it was written from.
    pub against: String,
    /// `openai <model>` or `command <program>`.
    pub proposer: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The endpoint reported no token counts: they were estimated from the text.
    pub estimated: bool,
    /// Its bill, as its answer records it.
    pub dollars: f64,
    pub latency_s: f64,
    /// The candidate it became (None: there was no source to make one of).
    pub candidate: Option<String>,
    /// `proposer_failed`, `proposal_invalid`, its candidate's outcome
    /// (`compile_failed`, `incorrect`, `passed`, ...), or `not_evaluated`.
    pub outcome: String,
    /// The proposer's error, the reason it could not be a candidate, the candidate's
    /// first failure as its outcome describes it, or its verdict against the best.
    pub detail: String,
    /// The first lines of its compile log (compile failures only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compile_log: Vec<String>,
    pub speedup: Option<Speedup>,
    /// `kept <sha>`, `not kept`, `not decided when the run stopped`, or `-` (no
    /// candidate).
    pub decision: String,
    /// GPU time its candidate was charged, and its price.
    pub gpu_s: f64,
    pub gpu_dollars: f64,
    /// The first line of the proposer's explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Its source's diff against the kernel as written (kept ones only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// GPU and proposer money side by side, for one kernel or one pattern.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Money {
    pub gpu_s: f64,
    /// `gpu_s` at the device's price, as the ledger prices it.
    pub gpu_dollars: f64,
    /// The `dollars` of its charges: a proposer's bills.
    pub proposer_dollars: f64,
    /// Questions answered.
    pub questions: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of the questions, those whose tokens were estimated.
    pub estimated: usize,
    /// Over its questions (None: none asked).
    pub mean_latency_s: Option<f64>,
}

/// What a code-writing proposer cost the run beside the GPU (present when the run
/// asked one or was charged for one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposerSpend {
    /// The proposer's bills: the `dollars` of every charge.
    pub dollars: f64,
    /// GPU dollars (`spend.dollars`) plus the proposer's: what the dollar budget
    /// counts.
    pub total_dollars: f64,
    pub questions: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub estimated: usize,
    /// Proposer charges with no answer journaled right after them: the run stopped
    /// between a bill and its answer (a resume asked again).
    pub unanswered: usize,
    /// `run` for charges of no kernel.
    pub by_kernel: BTreeMap<String, Money>,
    /// `none` for charges of no pattern (baselines, final comparisons, idle time).
    pub by_pattern: BTreeMap<String, Money>,
}

/// The proposal a candidate's last rewrite names, if it is one.
pub(super) fn digest_of(config: &str) -> Option<&str> {
    config
        .rsplit(REWRITE_SEPARATOR)
        .next()?
        .strip_prefix(PROPOSAL)
}

/// The index in `measured` of the candidate a question became: the first evaluation
/// after the answer of a candidate naming its source.
fn candidate_of(a: &At<ProposerAnswer>, measured: &[(&Evaluated, &Iteration)]) -> Option<usize> {
    let d = a.value.digest.as_deref()?;
    measured.iter().position(|(ev, _)| {
        ev.seq > a.seq && ev.kernel == a.value.kernel && digest_of(&ev.config) == Some(d)
    })
}

/// Every question in the order asked, with what came of it. `measured` pairs each
/// candidate's record with its row of the report's iterations.
pub(super) fn proposals(
    rec: &Recorded,
    measured: &[(&Evaluated, &Iteration)],
) -> Vec<ProposalReport> {
    let mut out = Vec::new();
    for (i, at) in rec.answers.iter().enumerate() {
        let a = &at.value;
        // Its `proposal_invalid` record, if any, comes before the kernel's next question.
        let next = rec.answers[i + 1..]
            .iter()
            .find(|b| b.value.kernel == a.kernel)
            .map_or(u64::MAX, |b| b.seq);
        let invalid = rec.invalid.iter().find(|n| {
            n.seq > at.seq
                && n.seq < next
                && n.value.kernel == a.kernel
                && n.value.pattern == a.pattern
        });
        let mut r = ProposalReport {
            kernel: a.kernel.clone(),
            pattern: a.pattern.clone(),
            attempt: a.attempt,
            against: a.against.clone(),
            proposer: a.proposer.clone(),
            input_tokens: a.usage.input_tokens,
            output_tokens: a.usage.output_tokens,
            estimated: a.usage.estimated,
            dollars: a.usage.dollars,
            latency_s: a.usage.latency_s,
            candidate: None,
            outcome: String::new(),
            detail: String::new(),
            compile_log: vec![],
            speedup: None,
            decision: "-".into(),
            gpu_s: 0.0,
            gpu_dollars: 0.0,
            explanation: a
                .explanation
                .as_deref()
                .and_then(|t| t.lines().find(|l| !l.trim().is_empty()))
                .map(|l| crate::propose::truncate(l.trim(), 200)),
            diff: String::new(),
        };
        if let Some(e) = &a.error {
            r.outcome = "proposer_failed".into();
            r.detail = e.clone();
        } else if let Some(n) = invalid {
            r.outcome = "proposal_invalid".into();
            r.detail = n.value.reason.clone();
            r.candidate = (!n.value.config.is_empty()).then(|| n.value.config.clone());
        } else if let Some(j) = candidate_of(at, measured) {
            let (ev, it) = measured[j];
            evaluated(&mut r, ev, it);
        } else if let Some(c) = &a.check {
            r.outcome = "proposal_invalid".into();
            r.detail = c.clone();
        } else {
            r.outcome = "not_evaluated".into();
            r.detail = "not evaluated when the run stopped".into();
        }
        out.push(r);
    }
    out
}

/// A question whose answer became a candidate: what its evaluation says.
fn evaluated(r: &mut ProposalReport, ev: &Evaluated, it: &Iteration) {
    r.candidate = Some(ev.config.clone());
    r.gpu_s = it.gpu_s;
    r.gpu_dollars = it.dollars;
    r.speedup = it.speedup.clone();
    r.outcome = it.outcome.clone();
    r.detail = match ev.evaluation.as_ref().map(|e| &e.outcome) {
        Some(Outcome::Passed) | None => match &it.speedup {
            Some(s) => format!(
                "{} {:.3}x [{:.3}, {:.3}] against `{}`",
                s.verdict,
                s.x,
                s.ci_lo,
                s.ci_hi,
                it.against.as_deref().unwrap_or("the best")
            ),
            None => "not compared with the best".into(),
        },
        Some(Outcome::CompileFailed { log }) => {
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            r.compile_log = lines
                .iter()
                .take(LOG_LINES)
                .map(|l| l.to_string())
                .collect();
            lines
                .iter()
                .find(|l| l.contains("error"))
                .or(lines.first())
                .map_or("the compiler printed nothing".into(), |l| l.to_string())
        }
        Some(o) => o.describe(),
    };
    r.decision = match &ev.decision {
        Some(Decision::Committed { sha, .. }) => {
            r.diff = ev
                .rewritten
                .as_ref()
                .map(|c| c.diff.clone())
                .unwrap_or_default();
            format!("kept {}", &sha[..sha.len().min(10)])
        }
        Some(Decision::Reverted { .. }) => "not kept".into(),
        None if it.outcome == "passed" => "not decided when the run stopped".into(),
        None => "not kept".into(),
    };
}

/// Whether a charge is a proposer's bill.
fn billed(c: &crate::budget::Charge) -> bool {
    c.stage == Stage::Proposer || c.dollars > 0.0
}

/// What the proposer cost, by kernel and by pattern beside the GPU; None when the
/// run neither asked a proposer nor was charged for one.
pub(super) fn spend(rec: &Recorded, price: f64, gpu_dollars: f64) -> Option<ProposerSpend> {
    if rec.answers.is_empty() && !rec.charges.iter().any(|c| billed(&c.value)) {
        return None;
    }
    let mut by_kernel: BTreeMap<String, Money> = BTreeMap::new();
    let mut by_pattern: BTreeMap<String, Money> = BTreeMap::new();
    let mut unanswered = 0;
    for at in &rec.charges {
        let c = &at.value;
        let k = c.kernel.clone().unwrap_or_else(|| "run".into());
        let p = c.pattern.clone().unwrap_or_else(|| "none".into());
        for m in [
            by_kernel.entry(k).or_default(),
            by_pattern.entry(p).or_default(),
        ] {
            m.gpu_s += c.gpu_s;
            m.proposer_dollars += c.dollars;
        }
        if billed(c) && !rec.answers.iter().any(|a| a.seq == at.seq + 1) {
            unanswered += 1;
        }
    }
    // Latencies are summed here and made a mean below.
    for a in rec.answers.iter().map(|a| &a.value) {
        for m in [
            by_kernel.entry(a.kernel.clone()).or_default(),
            by_pattern.entry(a.pattern.clone()).or_default(),
        ] {
            m.questions += 1;
            m.input_tokens += a.usage.input_tokens;
            m.output_tokens += a.usage.output_tokens;
            m.estimated += a.usage.estimated as usize;
            *m.mean_latency_s.get_or_insert(0.0) += a.usage.latency_s;
        }
    }
    for m in by_kernel.values_mut().chain(by_pattern.values_mut()) {
        m.gpu_dollars = m.gpu_s * price / 3600.0;
        m.mean_latency_s = m.mean_latency_s.map(|s| s / m.questions as f64);
    }
    let dollars: f64 = rec.charges.iter().map(|c| c.value.dollars).sum();
    let answers = || rec.answers.iter().map(|a| &a.value.usage);
    Some(ProposerSpend {
        dollars,
        total_dollars: gpu_dollars + dollars,
        questions: rec.answers.len(),
        input_tokens: answers().map(|u| u.input_tokens).sum(),
        output_tokens: answers().map(|u| u.output_tokens).sum(),
        estimated: answers().filter(|u| u.estimated).count(),
        unanswered,
        by_kernel,
        by_pattern,
    })
}

/// Each proposer bill added to the line of attack it paid for: its question's
/// candidate's line, else the line of its kernel and pattern that went on after it,
/// else the last before it. A bill of a kernel and pattern with no candidate
/// measured has no line; the money tables count it.
pub(super) fn bill_lines(
    rec: &Recorded,
    measured: &[(&Evaluated, &Iteration)],
    lines: &mut [Line],
) {
    // The line of each iteration, as `derive::lines` groups them.
    let mut line_of = Vec::with_capacity(measured.len());
    for (i, (_, it)) in measured.iter().enumerate() {
        let same = i > 0 && {
            let prev = measured[i - 1].1;
            prev.kernel == it.kernel && prev.pattern == it.pattern
        };
        let n = line_of.last().copied().unwrap_or(0);
        line_of.push(if i == 0 || same { n } else { n + 1 });
    }
    for at in rec.charges.iter().filter(|c| billed(&c.value)) {
        let c = &at.value;
        let (Some(k), Some(p)) = (&c.kernel, &c.pattern) else {
            continue;
        };
        let ours =
            |(ev, _): &&(&Evaluated, &Iteration)| &ev.kernel == k && ev.pattern.as_ref() == Some(p);
        let question = rec
            .answers
            .iter()
            .find(|a| a.seq == at.seq + 1)
            .and_then(|a| candidate_of(a, measured));
        let j = question
            .or_else(|| measured.iter().position(|m| m.0.seq > at.seq && ours(&m)))
            .or_else(|| measured.iter().rposition(|m| ours(&m)));
        if let Some(l) = j.and_then(|j| lines.get_mut(line_of[j])) {
            l.proposer_dollars += c.dollars;
        }
    }
}

/// Each pattern's bills beside its GPU cost; a pattern whose questions bought no
/// candidate gets a row of its own.
pub(super) fn bill_patterns(roi: &mut Vec<PatternRoi>, spend: &ProposerSpend) {
    for (p, m) in spend
        .by_pattern
        .iter()
        .filter(|(p, m)| *p != "none" && (m.proposer_dollars > 0.0 || m.questions > 0))
    {
        match roi.iter_mut().find(|r| &r.pattern == p) {
            Some(r) => r.proposer_dollars = m.proposer_dollars,
            None => roi.push(PatternRoi {
                pattern: p.clone(),
                candidates: 0,
                fast: 0,
                gpu_s: 0.0,
                dollars: 0.0,
                gain: 1.0,
                proposer_dollars: m.proposer_dollars,
            }),
        }
    }
    roi.sort_by(|a, b| a.pattern.cmp(&b.pattern));
}

/// What the journal says about the proposer's figures that a reader must know.
pub(super) fn caveats(spend: &ProposerSpend) -> Vec<String> {
    let mut out = Vec::new();
    if spend.unanswered > 0 {
        out.push(format!(
            "{} proposer bill(s) have no answer journaled after them: the run stopped between a bill and its answer (a resume asks again); they are in the proposer's totals, not in Proposals",
            spend.unanswered
        ));
    }
    if spend.estimated > 0 {
        out.push(format!(
            "{} question(s) were answered without token counts: their tokens were estimated from the text (a byte in four) and their dollars priced from the estimates",
            spend.estimated
        ));
    }
    out
}
