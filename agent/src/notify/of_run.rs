//! The notices of a run, built from its journal's fold ([`RunState`]) and sent at
//! most once each: every notice is journaled (a `notified` record under its key)
//! before it is sent, and a key already in the journal is never sent again. The end
//! of a run is keyed by its `run_finished` record, so a run killed and resumed
//! sends one end message, for the end it reached.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Gain, Notice, Notifier, SpendLine};
use crate::journal::{self, Event, Journal, Notified};
use crate::state::RunState;

/// A kernel's gain as its commit's A/B verdict measured it.
pub fn commit_gain(kernel: &str, best: &str, figures: &crate::vocab::AbFigures, sha: &str) -> Gain {
    Gain {
        kernel: kernel.to_string(),
        best: best.to_string(),
        speedup: figures.speedup,
        lo: figures.ci_lo,
        hi: figures.ci_hi,
        verdict: figures.verdict.as_str().to_string(),
        commit: Some(sha.to_string()),
    }
}

/// Every kernel that got faster: its final comparison with the baseline (NaN
/// where it was not made) and its last commit.
pub fn gains(state: &RunState) -> Vec<Gain> {
    state
        .kernel_states
        .iter()
        .filter(|k| !k.commits.is_empty())
        .map(|k| {
            let (speedup, lo, hi) = k.final_speedup.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            Gain {
                kernel: k.kernel.clone(),
                best: k.best.clone().unwrap_or_default(),
                speedup,
                lo,
                hi,
                verdict: k
                    .final_verdict
                    .clone()
                    .unwrap_or_else(|| "no final comparison".into()),
                commit: k.commits.last().cloned(),
            }
        })
        .collect()
}

/// What the run spent against its limits, from its last ledger snapshot.
pub fn spend_line(state: &RunState) -> SpendLine {
    let spent = state.last_budget.unwrap_or_default();
    let budgets = state.budgets.as_ref().and_then(|b| b.get());
    SpendLine {
        gpu_s: spent.gpu_s,
        gpu_limit_s: budgets.and_then(|b| b.run.gpu).map(|d| d.as_secs_f64()),
        dollars: spent.dollars,
        proposer_dollars: spent.proposer_dollars,
        dollars_limit: budgets.and_then(|b| b.run.dollars),
        wall_s: match (state.first_t_ms, state.last_t_ms) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e3,
            _ => 0.0,
        },
        wall_limit_s: budgets.and_then(|b| b.run.wall).map(|d| d.as_secs_f64()),
    }
}

/// The notice of how the run in `state` ended (`error`: it stopped on one), and its
/// key: the notice's own, at the `run_finished` record it tells of.
pub fn end_notice(
    state: &RunState,
    error: Option<&str>,
    report: Option<String>,
) -> (String, Notice) {
    let run_id = state.run_id.clone().unwrap_or_default();
    let notice = match error {
        Some(e) => Notice::RunError {
            run_id,
            error: e.to_string(),
            report,
        },
        None => Notice::RunEnded {
            run_id,
            branch: state.git_branch.clone().unwrap_or_default(),
            device: state.device.clone().unwrap_or_default(),
            reason: state.finished.clone().unwrap_or_else(|| "stopped".into()),
            gains: gains(state),
            spent: spend_line(state),
            report,
        },
    };
    let at = state.finished_seq.unwrap_or(state.next_seq);
    (format!("{}@{at}", notice.key()), notice)
}

/// Sends the end of the run journaled at `path` to `notifier`'s webhooks, once:
/// the intent is journaled before the POSTs and what became of them after. Returns
/// false when this end was notified already (or there is no webhook).
pub fn notify_end(
    notifier: &Notifier,
    path: &Path,
    error: Option<&str>,
    report: Option<String>,
) -> Result<bool> {
    if notifier.is_empty() {
        return Ok(false);
    }
    let read = journal::read(path).with_context(|| format!("reading {}", path.display()))?;
    let state = RunState::from_records(&read.records);
    let (key, notice) = end_notice(&state, error, report);
    if state.recorded.notified.contains(&key) {
        return Ok(false);
    }
    let (mut j, _) =
        Journal::open_append(path).with_context(|| format!("opening {}", path.display()))?;
    let intent = Notified {
        key: key.clone(),
        deliveries: vec![],
    };
    j.append(&Event::Notified(intent))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let deliveries = rt.block_on(notifier.send_now(&notice));
    j.append(&Event::Notified(Notified { key, deliveries }))?;
    Ok(true)
}
