//! What a resumed run takes from its journal: every evaluation and verdict (answered
//! from here instead of the GPU), the commits, the decisions already journaled (not
//! written twice), and the idle time already charged.

use std::collections::HashMap;

use crate::budget::{Charge, Stage};
use crate::evaluate::Evaluation;
use crate::journal::{Event, Record};
use crate::measure::Verdict;

use super::AbFigures;

#[derive(Debug, Default)]
pub(super) struct Replay {
    /// By (kernel, config): the evaluation as recorded.
    pub evaluated: HashMap<(String, String), Evaluation>,
    pub verdicts: HashMap<(String, String), AbFigures>,
    /// By kernel: the `FinalComparison` record.
    pub finals: HashMap<String, Event>,
    /// By (kernel, config, scale): a study's measurement as recorded.
    pub study_points: HashMap<(String, String, i64), Evaluation>,
    /// Kernels whose study was concluded (a `Study` record).
    pub studies: HashMap<String, Event>,
    /// By (kernel, config): the commit's id.
    pub commits: HashMap<(String, String), String>,
    /// Decisions already journaled (as their JSON), with how many times.
    seen: HashMap<String, usize>,
    /// Idle time already charged (the controller re-charges candidates itself).
    pub idle: Vec<Charge>,
}

fn key(e: &Event) -> Option<String> {
    match e {
        Event::Proposal { .. }
        | Event::Revert { .. }
        | Event::Pivot { .. }
        | Event::KernelDone { .. }
        | Event::KernelPaused { .. } => serde_json::to_string(e).ok(),
        _ => None,
    }
}

impl Replay {
    pub fn from_records(records: &[Record]) -> Replay {
        let mut r = Replay::default();
        for rec in records {
            match &rec.event {
                Event::Evaluated {
                    kernel,
                    config,
                    evaluation,
                    ..
                } => {
                    // A record this version cannot read is measured again.
                    if let Ok(e) = serde_json::from_value::<Evaluation>(evaluation.clone()) {
                        r.evaluated.insert((kernel.clone(), config.clone()), e);
                    }
                }
                Event::Verdict {
                    kernel,
                    config,
                    verdict,
                    speedup,
                    ci_lo,
                    ci_hi,
                    pairs,
                    min_gain,
                    ..
                } => {
                    if let Ok(v) = serde_json::from_value::<Verdict>(verdict.clone().into()) {
                        r.verdicts.insert(
                            (kernel.clone(), config.clone()),
                            AbFigures {
                                verdict: v,
                                speedup: *speedup,
                                ci_lo: *ci_lo,
                                ci_hi: *ci_hi,
                                pairs: *pairs,
                                min_gain: *min_gain,
                            },
                        );
                    }
                }
                Event::StudyPoint {
                    kernel,
                    config,
                    scale,
                    evaluation,
                    ..
                } => {
                    if let Ok(e) = serde_json::from_value::<Evaluation>(evaluation.clone()) {
                        r.study_points
                            .insert((kernel.clone(), config.clone(), *scale), e);
                    }
                }
                Event::Study { kernel, .. } => {
                    r.studies.insert(kernel.clone(), rec.event.clone());
                }
                Event::FinalComparison { kernel, .. } => {
                    r.finals.insert(kernel.clone(), rec.event.clone());
                }
                Event::Commit {
                    kernel,
                    config,
                    sha,
                } => {
                    r.commits
                        .insert((kernel.clone(), config.clone()), sha.clone());
                }
                Event::Charge(c) if c.stage == Stage::Idle => r.idle.push(c.clone()),
                e => {
                    if let Some(k) = key(e) {
                        *r.seen.entry(k).or_default() += 1;
                    }
                }
            }
        }
        r
    }

    /// True (once per journaled copy) when `e` is a decision the journal holds.
    pub fn already(&mut self, e: &Event) -> bool {
        let Some(k) = key(e) else { return false };
        match self.seen.get_mut(&k) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Wall seconds a run spent before it was resumed: each stretch between its start
/// (or a resume) and its last record. The time it lay dead is not counted.
pub fn wall_offset_s(records: &[Record]) -> f64 {
    let mut total_ms = 0u64;
    let mut start: Option<u64> = None;
    let mut last: Option<u64> = None;
    for rec in records {
        let is_start = matches!(rec.event, Event::RunStarted { .. } | Event::Resumed { .. });
        if is_start {
            if let (Some(s), Some(l)) = (start, last) {
                total_ms += l.saturating_sub(s);
            }
            start = Some(rec.t_ms);
        }
        start.get_or_insert(rec.t_ms);
        last = Some(rec.t_ms);
    }
    if let (Some(s), Some(l)) = (start, last) {
        total_ms += l.saturating_sub(s);
    }
    total_ms as f64 / 1e3
}
