//! What a resumed run takes from its journal: every evaluation and verdict (answered
//! from here instead of the GPU), the commits, the decisions already journaled (not
//! written twice), and every charge, handed back to the ledger in step with the
//! replay.
//!
//! The ledger is a fold of the journal's `charge` records and nothing else. While the
//! controller is fed the recorded events again, it must see the ledger and the clock
//! as they were when it made each decision the first time, or it would decide
//! differently; so each record the replay consumes releases the charges journaled up
//! to it, and sets the replay's clock to its time. When the replay ends (the first
//! piece of work the journal does not hold), every remaining charge is released at
//! once: the resumed ledger then equals the sum of every charge so far.

use std::collections::{HashMap, VecDeque};

use crate::budget::Charge;
use crate::evaluate::Evaluation;
use crate::journal::{Event, Record};

use crate::vocab::AbFigures;

/// A recorded value and the `seq` of the record that holds it.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub value: T,
    pub seq: u64,
}

impl<T> At<T> {
    fn of(seq: u64, value: T) -> At<T> {
        At { value, seq }
    }
}

#[derive(Debug, Default)]
pub(super) struct Replay {
    /// By (kernel, config): the evaluation as recorded.
    pub evaluated: HashMap<(String, String), At<Evaluation>>,
    pub verdicts: HashMap<(String, String), At<AbFigures>>,
    /// By kernel: the `FinalComparison` record.
    pub finals: HashMap<String, At<Event>>,
    /// By (kernel, config, scale): a study's measurement as recorded.
    pub study_points: HashMap<(String, String, i64), At<Evaluation>>,
    /// Kernels whose study was concluded (a `Study` record).
    pub studies: HashMap<String, At<Event>>,
    /// By (kernel, config): the commit's id.
    pub commits: HashMap<(String, String), At<String>>,
    /// Decisions already journaled (as their JSON): the seq of each copy, in order.
    seen: HashMap<String, VecDeque<u64>>,
    /// Every charge of the journal, in order, with its seq; `released` of them have
    /// been handed to the ledger.
    charges: Vec<At<Charge>>,
    released: usize,
    /// Each record's time, by seq.
    t_ms: Vec<u64>,
    /// The time of the latest record consumed.
    clock_ms: Option<u64>,
}

fn key(e: &Event) -> Option<String> {
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
            let seq = rec.seq;
            r.t_ms.push(rec.t_ms);
            match &rec.event {
                Event::Evaluated {
                    kernel,
                    config,
                    evaluation,
                    ..
                } => {
                    // A record this version cannot read is measured again.
                    if let Some(e) = evaluation.get() {
                        r.evaluated
                            .insert((kernel.clone(), config.clone()), At::of(seq, e.clone()));
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
                    let v = *verdict;
                    r.verdicts.insert(
                        (kernel.clone(), config.clone()),
                        At::of(
                            seq,
                            AbFigures {
                                verdict: v,
                                speedup: *speedup,
                                ci_lo: *ci_lo,
                                ci_hi: *ci_hi,
                                pairs: *pairs,
                                min_gain: *min_gain,
                            },
                        ),
                    );
                }
                Event::StudyPoint {
                    kernel,
                    config,
                    scale,
                    evaluation,
                    ..
                } => {
                    if let Some(e) = evaluation.get() {
                        r.study_points.insert(
                            (kernel.clone(), config.clone(), *scale),
                            At::of(seq, e.clone()),
                        );
                    }
                }
                Event::Study { kernel, .. } => {
                    r.studies
                        .insert(kernel.clone(), At::of(seq, rec.event.clone()));
                }
                Event::FinalComparison { kernel, .. } => {
                    r.finals
                        .insert(kernel.clone(), At::of(seq, rec.event.clone()));
                }
                Event::Commit {
                    kernel,
                    config,
                    sha,
                } => {
                    r.commits
                        .insert((kernel.clone(), config.clone()), At::of(seq, sha.clone()));
                }
                Event::Charge(c) => r.charges.push(At::of(seq, c.clone())),
                e => {
                    if let Some(k) = key(e) {
                        r.seen.entry(k).or_default().push_back(seq);
                    }
                }
            }
        }
        r
    }

    /// The seq of the journaled copy of decision `e`, consumed once per copy; None
    /// when the journal does not hold it (any more).
    pub fn already(&mut self, e: &Event) -> Option<u64> {
        self.seen.get_mut(&key(e)?)?.pop_front()
    }

    /// The replay has reached record `seq`: the charges journaled up to it, which
    /// the ledger held when the run first got there, and the replay's clock moves to
    /// its time.
    pub fn consume(&mut self, seq: u64) -> Vec<Charge> {
        if let Some(t) = self.t_ms.get(seq as usize) {
            self.clock_ms = Some(self.clock_ms.map_or(*t, |c| c.max(*t)));
        }
        let upto = self.charges[self.released..]
            .iter()
            .take_while(|c| c.seq <= seq)
            .count();
        self.take(upto)
    }

    /// Every charge not released yet: the replay is over.
    pub fn rest(&mut self) -> Vec<Charge> {
        self.take(self.charges.len() - self.released)
    }

    fn take(&mut self, n: usize) -> Vec<Charge> {
        let out = self.charges[self.released..self.released + n]
            .iter()
            .map(|c| c.value.clone())
            .collect();
        self.released += n;
        out
    }

    /// The time of the latest record consumed, in ms since the epoch.
    pub fn clock_ms(&self) -> Option<u64> {
        self.clock_ms
    }
}
