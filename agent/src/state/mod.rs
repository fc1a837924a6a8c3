//! One fold of the journal: [`RunState::apply`] reads records one at a time, and
//! what every reader of a run needs comes from it: `status` (live or the morning
//! after), a resume (the run's kernels, options, budgets, charges and what it
//! already evaluated, replayed from [`recorded::Recorded`]), the report (built from a
//! `RunState` alone). No other code folds the journal's records into the same facts.

pub mod recorded;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::budget::{Budgets, Charge, ChargeError, Ledger, Spend, StopReason};
use crate::journal::{final_verdict_name, Event, Record, RunKernel, RunOptions, Typed};

/// A list written as its length.
fn count<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.len() as u64)
}

/// One kernel of a run, as its records tell it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KernelState {
    pub kernel: String,
    pub baseline_us: Option<f64>,
    pub best: Option<String>,
    pub best_us: Option<f64>,
    pub evaluated: usize,
    pub outcomes: BTreeMap<String, usize>,
    /// The commits of its winners, in order (`status --json` gives their number).
    #[serde(serialize_with = "count")]
    pub commits: Vec<String>,
    pub pattern: Option<String>,
    pub pivots: Vec<String>,
    pub done: Option<String>,
    /// Paused after its share of the budget (it resumes once the others had theirs).
    pub paused: bool,
    /// Why it was paused.
    #[serde(skip)]
    pub paused_reason: Option<String>,
    pub final_comparison: Option<String>,
    /// The workload-batching study's conclusion.
    pub study: Option<String>,
    /// The baseline's configuration.
    #[serde(skip)]
    pub baseline: Option<String>,
    /// The final comparison's speedup and interval, when both sides were measured.
    #[serde(skip)]
    pub final_speedup: Option<(f64, f64, f64)>,
    /// The final comparison's verdict (`not_compared` when a side failed).
    #[serde(skip)]
    pub final_verdict: Option<String>,
}

/// A run as its journal tells it, folded one record at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    pub run_id: Option<String>,
    pub device: Option<String>,
    /// As recorded by `RunStarted`, or by the last `Resumed` that changed them.
    pub budgets: Option<Typed<Budgets>>,
    pub git_branch: Option<String>,
    /// The run's kernels: `RunStarted`'s, or the last `Resumed` that changed them
    /// (None: a journal written before kernel lists were recorded).
    pub kernels: Option<Vec<RunKernel>>,
    /// The run's options, likewise.
    pub options: Option<RunOptions>,
    /// Per resume, seconds the daemon was not running before it.
    pub down_s: Vec<f64>,
    /// Every candidate already evaluated, by (kernel, config): a resumed run never
    /// measures these again, whatever their outcome (a hung candidate would cost
    /// another watchdog).
    pub evaluated: BTreeMap<(String, String), EvaluatedCandidate>,
    /// The last commit per kernel: the current best to resume from. (A `Revert`
    /// discards a candidate that was never committed, so it leaves this alone.)
    pub committed: BTreeMap<String, Committed>,
    /// Set when the journal ends with a `RunFinished` (not followed by `Resumed`).
    pub finished: Option<String>,
    /// The seq of the last `RunFinished` record (the end a notification tells of).
    pub finished_seq: Option<u64>,
    pub stop: Option<StopReason>,
    /// The last ledger snapshot recorded.
    pub last_budget: Option<Spend>,
    /// How many times the run was resumed before.
    pub resumes: usize,
    pub first_t_ms: Option<u64>,
    pub last_t_ms: Option<u64>,
    /// The time of the record before the last.
    prev_t_ms: Option<u64>,
    /// The `seq` the next record gets.
    pub next_seq: u64,
    /// Per kernel, in the order the journal first names them.
    pub kernel_states: Vec<KernelState>,
    /// What the journal recorded, typed and in order (every charge included:
    /// replay them with [`RunState::ledger`]).
    pub recorded: recorded::Recorded,
}

/// A candidate the run already evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedCandidate {
    pub pattern: Option<String>,
    pub outcome: String,
    pub median_us: Option<f64>,
    /// The record that says so.
    pub seq: u64,
}

/// A committed winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub config: String,
    pub sha: String,
    pub seq: u64,
}

impl RunState {
    /// Folds records in journal order.
    pub fn from_records(records: &[Record]) -> RunState {
        let mut r = RunState::default();
        for rec in records {
            r.apply(rec);
        }
        r
    }

    /// Folds one more record: the one way any part of nightshift learns what a
    /// journal says (status, resume, the live view).
    pub fn apply(&mut self, rec: &Record) {
        self.first_t_ms.get_or_insert(rec.t_ms);
        self.prev_t_ms = self.last_t_ms;
        self.last_t_ms = Some(rec.t_ms);
        self.next_seq = rec.seq + 1;
        match &rec.event {
            Event::RunStarted {
                run_id,
                device,
                budgets,
                git_branch,
                kernels,
                options,
            } => {
                self.run_id = Some(run_id.clone());
                self.device = Some(device.clone());
                self.budgets = Some(budgets.clone());
                self.git_branch.clone_from(git_branch);
                self.kernels = (!kernels.is_empty()).then(|| kernels.clone());
                self.options.clone_from(options);
            }
            Event::Resumed {
                device,
                down_s,
                kernels,
                options,
                budgets,
                ..
            } => {
                self.device = Some(device.clone());
                self.resumes += 1;
                self.finished = None;
                self.finished_seq = None;
                self.stop = None;
                // Journals before `down_s` was recorded: from the last record.
                let gap = self
                    .last_t_ms
                    .zip(self.prev_t_ms)
                    .map_or(0.0, |(now, before)| now.saturating_sub(before) as f64 / 1e3);
                self.down_s
                    .push(down_s.filter(|d| d.is_finite()).unwrap_or(gap));
                if kernels.is_some() {
                    self.kernels.clone_from(kernels);
                }
                if options.is_some() {
                    self.options.clone_from(options);
                }
                if !budgets.is_null() {
                    self.budgets = Some(budgets.clone());
                }
            }
            Event::Evaluated {
                kernel,
                config,
                pattern,
                outcome,
                median_us,
                ..
            } => {
                self.evaluated.insert(
                    (kernel.clone(), config.clone()),
                    EvaluatedCandidate {
                        pattern: pattern.clone(),
                        outcome: outcome.clone(),
                        median_us: *median_us,
                        seq: rec.seq,
                    },
                );
            }
            Event::Commit {
                kernel,
                config,
                sha,
            } => {
                self.committed.insert(
                    kernel.clone(),
                    Committed {
                        config: config.clone(),
                        sha: sha.clone(),
                        seq: rec.seq,
                    },
                );
            }
            Event::Budget { spent, .. } => self.last_budget = Some(*spent),
            Event::RunFinished { reason, stop } => {
                self.finished_seq = Some(rec.seq);
                self.finished = Some(reason.clone());
                self.stop.clone_from(stop);
            }
            Event::Proposal { .. }
            | Event::Verdict { .. }
            | Event::Revert { .. }
            | Event::KernelDone { .. }
            | Event::KernelPaused { .. }
            | Event::Machine { .. }
            | Event::StudyPoint { .. }
            | Event::Study { .. }
            | Event::FinalComparison { .. }
            | Event::Charge(_)
            | Event::NotApplicable { .. }
            | Event::ProposerAnswer(_)
            | Event::ProposalInvalid { .. }
            | Event::Notified(_)
            | Event::Unmoved { .. }
            | Event::Pivot { .. } => {}
        }
        self.kernel_fold(&rec.event);
        self.recorded.apply(rec);
    }

    pub fn was_evaluated(&self, kernel: &str, config: &str) -> bool {
        self.evaluated
            .contains_key(&(kernel.to_string(), config.to_string()))
    }

    /// The ledger as it stood, rebuilt from the recorded charges.
    pub fn ledger(&self, price_per_gpu_hour: f64) -> Result<Ledger, ChargeError> {
        let charges: Vec<Charge> = self
            .recorded
            .charges
            .iter()
            .map(|c| c.value.clone())
            .collect();
        Ledger::from_charges(price_per_gpu_hour, &charges)
    }

    /// Wall seconds from the run's first record to its last, the time the daemon
    /// was down between them included (the night passes all the same).
    pub fn elapsed_s(&self) -> f64 {
        self.first_t_ms
            .zip(self.last_t_ms)
            .map_or(0.0, |(a, b)| b.saturating_sub(a) as f64 / 1e3)
    }

    /// Seconds the daemon was down between records, over every resume.
    pub fn down_total_s(&self) -> f64 {
        self.down_s.iter().fold(0.0, |a, b| a + b)
    }
}

impl RunState {
    fn kernel(&mut self, name: &str) -> &mut KernelState {
        if let Some(i) = self.kernel_states.iter().position(|k| k.kernel == name) {
            return &mut self.kernel_states[i];
        }
        self.kernel_states.push(KernelState {
            kernel: name.to_string(),
            ..Default::default()
        });
        self.kernel_states.last_mut().expect("just pushed")
    }

    /// The per-kernel part of [`RunState::apply`] (after the run-wide part, so a
    /// commit finds its evaluation's median).
    fn kernel_fold(&mut self, event: &Event) {
        match event {
            Event::Evaluated {
                kernel,
                config,
                pattern,
                outcome,
                median_us,
                ..
            } => {
                let k = self.kernel(kernel);
                k.evaluated += 1;
                k.paused = false;
                k.paused_reason = None;
                *k.outcomes.entry(outcome.clone()).or_default() += 1;
                if pattern.is_none() {
                    k.baseline = Some(config.clone());
                }
                if pattern.is_none() && outcome == "passed" {
                    k.baseline_us = *median_us;
                    k.best = Some(config.clone());
                    k.best_us = *median_us;
                }
            }
            Event::Proposal {
                kernel, pattern, ..
            } => {
                let k = self.kernel(kernel);
                k.pattern = Some(pattern.clone());
                k.paused = false;
                k.paused_reason = None;
            }
            Event::Commit {
                kernel,
                config,
                sha,
            } => {
                let m = self
                    .evaluated
                    .get(&(kernel.clone(), config.clone()))
                    .and_then(|e| e.median_us);
                let k = self.kernel(kernel);
                k.commits.push(sha.clone());
                k.best = Some(config.clone());
                k.best_us = m.or(k.best_us);
            }
            Event::Pivot {
                kernel,
                pattern,
                reason,
            } => self
                .kernel(kernel)
                .pivots
                .push(format!("{pattern}: {reason}")),
            Event::KernelDone { kernel, reason } => {
                let k = self.kernel(kernel);
                k.done = Some(reason.clone());
                k.pattern = None;
                k.paused = false;
                k.paused_reason = None;
            }
            Event::KernelPaused { kernel, reason } => {
                let k = self.kernel(kernel);
                k.paused = true;
                k.paused_reason = Some(reason.clone());
            }
            Event::Study { kernel, result, .. } => {
                self.kernel(kernel).study = result.get().map(|r| r.conclusion.clone())
            }
            Event::FinalComparison {
                kernel,
                verdict,
                speedup,
                ci_lo,
                ci_hi,
                ..
            } => {
                let k = self.kernel(kernel);
                k.final_comparison = Some(format!(
                    "{} {speedup:.3}x [{ci_lo:.3}, {ci_hi:.3}]",
                    final_verdict_name(*verdict)
                ));
                k.final_verdict = Some(final_verdict_name(*verdict).to_string());
                k.final_speedup = speedup.is_finite().then_some((*speedup, *ci_lo, *ci_hi));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernels_commits_are_kept_and_written_as_their_number() {
        let rec = |seq, event| Record {
            seq,
            t_ms: 1_000 + seq,
            event,
        };
        let commit = |config: &str, sha: &str| Event::Commit {
            kernel: "softmax".into(),
            config: config.into(),
            sha: sha.into(),
        };
        let r = RunState::from_records(&[
            rec(0, commit("VEC=2", "aaa")),
            rec(1, commit("VEC=4", "bbb")),
        ]);
        let k = &r.kernel_states[0];
        assert_eq!(k.commits, vec!["aaa".to_string(), "bbb".to_string()]);
        assert_eq!(k.best.as_deref(), Some("VEC=4"));
        let json = serde_json::to_value(k).unwrap();
        assert_eq!(json["commits"], 2, "{json}");
        assert!(json.get("baseline").is_none(), "{json}");
    }
}
