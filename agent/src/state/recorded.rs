//! What a journal recorded, typed and in order, as [`super::RunState::apply`] folds
//! it: every evaluation with its verdict and decision, the final comparisons and
//! studies, the proposals and pivots, the charges with the record that holds each,
//! and the decisions already written. The report is built from these and a resume
//! replays them ([`crate::dispatch`]'s replay consumes them, it does not fold them
//! again).

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::budget::Charge;
use crate::evaluate::Evaluation;
use crate::journal::{Event, Record};
use crate::vocab::AbFigures;

/// A recorded value and the `seq` of the record that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub seq: u64,
}

impl<T> At<T> {
    pub fn of(seq: u64, value: T) -> At<T> {
        At { value, seq }
    }
}

/// One `Evaluated` record (a baseline or a candidate), with the verdict and the
/// decision that followed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub seq: u64,
    pub kernel: String,
    pub config: String,
    /// None for a baseline.
    pub pattern: Option<String>,
    /// None when this version cannot read the record (it is measured again).
    pub evaluation: Option<Evaluation>,
    /// A rewritten candidate's rewrites, options and source diff.
    pub rewritten: Option<crate::rewrite::Change>,
    pub verdict: Option<Judged>,
    pub decision: Option<Decision>,
    /// The CUDA ordinal of the GPU that measured it, when recorded.
    pub gpu: Option<usize>,
    /// Measured ahead of its turn on a free GPU (see the journal's `Evaluated`).
    pub ahead: bool,
}

/// An A/B verdict on a candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub seq: u64,
    /// The configuration it was measured against.
    pub baseline: String,
    pub figures: AbFigures,
    /// The current best as re-measured beside the candidate.
    pub against: Option<Evaluation>,
}

/// What became of a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Committed { sha: String, seq: u64 },
    Reverted { reason: String },
}

/// A `Proposal` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    pub kernel: String,
    pub pattern: String,
    /// The prediction in the pattern's words.
    pub text: String,
    /// Its number: as recorded, or (journals written before it was) read from the
    /// words.
    pub speedup: Option<f64>,
}

/// A `Pivot` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Pivoted {
    pub kernel: String,
    pub pattern: String,
    pub reason: String,
}

/// A rewrite candidate whose rewrites did not apply to the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct NotApplied {
    pub kernel: String,
    pub pattern: String,
    pub config: String,
    pub reason: String,
}

/// The kind of record an evaluation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Baseline,
    Candidate,
    Against,
    FinalBaseline,
    FinalBest,
    Study,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Baseline => "baseline",
            Role::Candidate => "candidate",
            Role::Against => "best_remeasured",
            Role::FinalBaseline => "final_baseline",
            Role::FinalBest => "final_best",
            Role::Study => "study",
        }
    }
}

/// A study's measurement at one scale.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyPointAt {
    pub kernel: String,
    pub config: String,
    pub scale: i64,
    pub evaluation: Evaluation,
}

/// Everything the journal recorded, typed, in the order it was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// Every `Evaluated` record, in order.
    pub evaluations: Vec<Evaluated>,
    pub proposals: Vec<Proposed>,
    pub pivots: Vec<Pivoted>,
    /// Per kernel, the tunables no applicable pattern moved (the last word of each).
    pub unmoved: Vec<(String, Vec<String>)>,
    /// Rewrite candidates that did not apply, in order.
    pub not_applicable: Vec<NotApplied>,
    /// Every `FinalComparison` record, in order ([`Recorded::final_of`]: a
    /// kernel's last).
    pub finals: Vec<At<Event>>,
    /// Every `Study` record (a study concluded), in order.
    pub studies: Vec<At<Event>>,
    /// Every readable study point, in order.
    pub study_points: Vec<At<StudyPointAt>>,
    /// The `Machine` record: the device's description and its measured ceilings.
    pub machine: Option<(Value, Value)>,
    /// The bootstrap's seed, from the `Machine` record.
    pub seed: Option<u64>,
    /// Every charge with the record that holds it.
    pub charges: Vec<At<Charge>>,
    /// Every question to a code-writing proposer, with its answer, in order.
    pub answers: Vec<At<crate::journal::ProposerAnswer>>,
    /// Proposals that could not be candidates: (kernel, pattern, candidate, reason),
    /// with the record that holds each (a report pairs it with its question).
    pub invalid: Vec<At<NotApplied>>,
    /// The keys of the notifications already sent.
    pub notified: Vec<String>,
    /// Decisions journaled (as their JSON, see [`decision_key`]): the seq of each
    /// copy, in order.
    pub decisions: HashMap<String, VecDeque<u64>>,
    /// Each record's time, by seq.
    pub t_ms: Vec<u64>,
}

/// The key of a decision the dispatcher journals (a proposal, a revert, a pivot, a
/// kernel done or paused): a resumed run that makes it again finds it here and does
/// not write it twice. None for records that are not such decisions.
pub fn decision_key(e: &Event) -> Option<String> {
    match e {
        // The same proposal whether its journal recorded the typed prediction or
        // only its words (journals written before it was recorded).
        Event::Proposal { .. } => {
            let mut e = e.clone();
            if let Event::Proposal { predicted, .. } = &mut e {
                *predicted = None;
            }
            serde_json::to_string(&e).ok()
        }
        Event::Revert { .. }
        | Event::NotApplicable { .. }
        | Event::ProposalInvalid { .. }
        | Event::Pivot { .. }
        | Event::Unmoved { .. }
        | Event::KernelDone { .. }
        | Event::KernelPaused { .. } => serde_json::to_string(e).ok(),
        _ => None,
    }
}

/// The number in a prediction's words, which start with it (`1.3x ...`).
pub fn predicted_x(text: &str) -> Option<f64> {
    text.split('x').next()?.trim().parse().ok()
}

/// A `Verdict` record's figures and evidence.
fn judged(seq: u64, e: &Event) -> Option<Judged> {
    let Event::Verdict {
        baseline,
        verdict,
        speedup,
        ci_lo,
        ci_hi,
        pairs,
        min_gain,
        against,
        ..
    } = e
    else {
        return None;
    };
    Some(Judged {
        seq,
        baseline: baseline.clone(),
        figures: AbFigures {
            verdict: *verdict,
            speedup: *speedup,
            ci_lo: *ci_lo,
            ci_hi: *ci_hi,
            pairs: *pairs,
            min_gain: *min_gain,
        },
        against: against.get().cloned(),
    })
}

fn event_kernel(e: &Event) -> Option<&str> {
    match e {
        Event::FinalComparison { kernel, .. } | Event::Study { kernel, .. } => Some(kernel),
        _ => None,
    }
}

impl Recorded {
    /// The last evaluation of (kernel, config).
    fn last_mut(&mut self, kernel: &str, config: &str) -> Option<&mut Evaluated> {
        self.evaluations
            .iter_mut()
            .rev()
            .find(|e| e.kernel == kernel && e.config == config)
    }

    pub(super) fn apply(&mut self, rec: &Record) {
        let seq = rec.seq;
        self.t_ms.push(rec.t_ms);
        if let Some(k) = decision_key(&rec.event) {
            self.decisions.entry(k).or_default().push_back(seq);
        }
        match &rec.event {
            Event::Machine { measure, .. } if self.seed.is_none() => {
                self.seed = measure.get("seed").and_then(Value::as_u64);
            }
            _ => {}
        }
        match &rec.event {
            Event::Machine {
                device, ceilings, ..
            } => self.machine = Some((device.clone(), ceilings.clone())),
            Event::Proposal {
                kernel,
                pattern,
                prediction,
                predicted,
                ..
            } => self.proposals.push(Proposed {
                kernel: kernel.clone(),
                pattern: pattern.clone(),
                text: prediction.clone(),
                speedup: predicted
                    .as_ref()
                    .map(|p| p.speedup)
                    .or_else(|| predicted_x(prediction)),
            }),
            Event::Evaluated {
                kernel,
                config,
                pattern,
                evaluation,
                rewritten,
                gpu,
                ahead,
                ..
            } => self.evaluations.push(Evaluated {
                seq,
                kernel: kernel.clone(),
                config: config.clone(),
                pattern: pattern.clone(),
                evaluation: evaluation.get().cloned(),
                rewritten: rewritten.clone(),
                verdict: None,
                decision: None,
                gpu: *gpu,
                ahead: *ahead,
            }),
            Event::Verdict { kernel, config, .. } => {
                let judged = judged(seq, &rec.event);
                if let (Some(e), Some(j)) = (self.last_mut(kernel, config), judged) {
                    e.verdict = Some(j);
                }
            }
            Event::Commit {
                kernel,
                config,
                sha,
            } => {
                if let Some(e) = self.last_mut(kernel, config) {
                    e.decision = Some(Decision::Committed {
                        sha: sha.clone(),
                        seq,
                    });
                }
            }
            Event::Revert {
                kernel,
                config,
                reason,
            } => {
                if let Some(e) = self.last_mut(kernel, config) {
                    e.decision = Some(Decision::Reverted {
                        reason: reason.clone(),
                    });
                }
            }
            Event::NotApplicable {
                kernel,
                pattern,
                config,
                reason,
            } => self.not_applicable.push(NotApplied {
                kernel: kernel.clone(),
                pattern: pattern.clone(),
                config: config.clone(),
                reason: reason.clone(),
            }),
            Event::ProposerAnswer(a) => self.answers.push(At::of(seq, a.clone())),
            Event::ProposalInvalid {
                kernel,
                pattern,
                config,
                reason,
            } => self.invalid.push(At::of(
                seq,
                NotApplied {
                    kernel: kernel.clone(),
                    pattern: pattern.clone(),
                    config: config.clone().unwrap_or_default(),
                    reason: reason.clone(),
                },
            )),
            Event::Notified(n) => self.notified.push(n.key.clone()),
            Event::Unmoved { kernel, tunables } => {
                self.unmoved.retain(|(k, _)| k != kernel);
                self.unmoved.push((kernel.clone(), tunables.clone()));
            }
            Event::Pivot {
                kernel,
                pattern,
                reason,
            } => self.pivots.push(Pivoted {
                kernel: kernel.clone(),
                pattern: pattern.clone(),
                reason: reason.clone(),
            }),
            Event::FinalComparison { .. } => self.finals.push(At::of(seq, rec.event.clone())),
            Event::StudyPoint {
                kernel,
                config,
                scale,
                evaluation,
                ..
            } => {
                if let Some(e) = evaluation.get() {
                    self.study_points.push(At::of(
                        seq,
                        StudyPointAt {
                            kernel: kernel.clone(),
                            config: config.clone(),
                            scale: *scale,
                            evaluation: e.clone(),
                        },
                    ));
                }
            }
            Event::Study { .. } => self.studies.push(At::of(seq, rec.event.clone())),
            Event::Charge(c) => self.charges.push(At::of(seq, c.clone())),
            _ => {}
        }
    }

    /// A kernel's last final comparison.
    pub fn final_of(&self, kernel: &str) -> Option<&At<Event>> {
        self.finals
            .iter()
            .rev()
            .find(|f| event_kernel(&f.value) == Some(kernel))
    }

    /// A kernel's last study conclusion.
    pub fn study_of(&self, kernel: &str) -> Option<&At<Event>> {
        self.studies
            .iter()
            .rev()
            .find(|f| event_kernel(&f.value) == Some(kernel))
    }

    /// The seed the run's bootstrap used, else the default.
    pub fn seed(&self) -> u64 {
        self.seed
            .unwrap_or_else(|| crate::worker::protocol::MeasureOpts::default().seed)
    }

    /// Every measured evaluation with its record number and role, in journal order.
    pub fn measured(&self) -> Vec<(u64, Role, &Evaluation)> {
        let mut out: Vec<(u64, Role, &Evaluation)> = Vec::new();
        let measured = |e: &&Evaluation| e.measurement.is_some();
        for e in &self.evaluations {
            let role = if e.pattern.is_some() {
                Role::Candidate
            } else {
                Role::Baseline
            };
            out.extend(
                e.evaluation
                    .as_ref()
                    .filter(measured)
                    .map(|x| (e.seq, role, x)),
            );
            if let Some(j) = &e.verdict {
                out.extend(
                    j.against
                        .as_ref()
                        .filter(measured)
                        .map(|x| (j.seq, Role::Against, x)),
                );
            }
        }
        for f in &self.finals {
            if let Event::FinalComparison {
                baseline_evaluation,
                best_evaluation,
                ..
            } = &f.value
            {
                for (role, v) in [
                    (Role::FinalBaseline, baseline_evaluation),
                    (Role::FinalBest, best_evaluation),
                ] {
                    out.extend(v.get().filter(measured).map(|x| (f.seq, role, x)));
                }
            }
        }
        for p in &self.study_points {
            if p.value.evaluation.measurement.is_some() {
                out.push((p.seq, Role::Study, &p.value.evaluation));
            }
        }
        // Stable: a final's baseline stays before its best.
        out.sort_by_key(|(seq, _, _)| *seq);
        out
    }
}
