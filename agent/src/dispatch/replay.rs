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
use crate::journal::Event;
pub(super) use crate::state::recorded::At;
use crate::state::recorded::{decision_key, Decision, Recorded};
use crate::vocab::AbFigures;

/// The journal's recorded work, looked up by what the controller asks for, and how
/// far the resumed run has consumed it.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// By (kernel, config): the evaluation as recorded.
    pub evaluated: HashMap<(String, String), At<Evaluation>>,
    pub verdicts: HashMap<(String, String), At<AbFigures>>,
    /// By (kernel, config): the best its verdict was measured against (a verdict
    /// answers a request against that best only).
    pub against: HashMap<(String, String), String>,
    /// By kernel: the `FinalComparison` record.
    pub finals: HashMap<String, At<Event>>,
    /// By (kernel, config, scale): a study's measurement as recorded.
    pub study_points: HashMap<(String, String, i64), At<Evaluation>>,
    /// Kernels whose study was concluded (a `Study` record).
    pub studies: HashMap<String, At<Event>>,
    /// By kernel: the proposer's answers, in the order they were asked.
    pub answers: HashMap<String, VecDeque<At<crate::journal::ProposerAnswer>>>,
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

impl Replay {
    /// The replay of what the journal's fold recorded (later records of the same
    /// work win, as they did when the run read them).
    pub fn of(rec: &Recorded) -> Replay {
        let mut r = Replay::default();
        for e in &rec.evaluations {
            let key = (e.kernel.clone(), e.config.clone());
            // A record this version cannot read is measured again.
            if let Some(x) = &e.evaluation {
                r.evaluated.insert(key.clone(), At::of(e.seq, x.clone()));
            }
            match &e.verdict {
                Some(j) => {
                    r.verdicts.insert(key.clone(), At::of(j.seq, j.figures));
                    r.against.insert(key.clone(), j.baseline.clone());
                }
                // A later evaluation without a verdict: no earlier verdict is its.
                None => {
                    r.verdicts.remove(&key);
                    r.against.remove(&key);
                }
            }
            if let Some(Decision::Committed { sha, seq }) = &e.decision {
                r.commits.insert(key, At::of(*seq, sha.clone()));
            }
        }
        for p in &rec.study_points {
            let v = &p.value;
            r.study_points.insert(
                (v.kernel.clone(), v.config.clone(), v.scale),
                At::of(p.seq, v.evaluation.clone()),
            );
        }
        for (to, from) in [(&mut r.finals, &rec.finals), (&mut r.studies, &rec.studies)] {
            for f in from {
                if let Event::FinalComparison { kernel, .. } | Event::Study { kernel, .. } =
                    &f.value
                {
                    to.insert(kernel.clone(), f.clone());
                }
            }
        }
        for a in &rec.answers {
            r.answers
                .entry(a.value.kernel.clone())
                .or_default()
                .push_back(a.clone());
        }
        r.seen = rec.decisions.clone();
        r.charges = rec.charges.clone();
        r.t_ms = rec.t_ms.clone();
        r
    }

    /// The seq of the journaled copy of decision `e`, consumed once per copy; None
    /// when the journal does not hold it (any more).
    pub fn already(&mut self, e: &Event) -> Option<u64> {
        self.seen.get_mut(&decision_key(e)?)?.pop_front()
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

    /// A charge journaled at `seq` by this process: released like a recorded one,
    /// when the record it precedes is consumed (at once for the work the controller
    /// asked for; later for work measured ahead of its turn).
    pub fn hold(&mut self, seq: u64, c: Charge) {
        self.charges.push(At::of(seq, c));
    }

    /// GPU seconds journaled and not released to the ledger yet.
    pub fn unreleased_s(&self) -> f64 {
        self.charges[self.released..]
            .iter()
            .map(|c| c.value.gpu_s)
            .filter(|s| s.is_finite() && *s > 0.0)
            .sum()
    }

    /// The charges journaled and not released yet.
    pub fn unreleased(&self) -> impl Iterator<Item = &Charge> {
        self.charges[self.released..].iter().map(|c| &c.value)
    }

    /// The verdict recorded for (kernel, config) against `against`: None when there
    /// is none, or it was measured against another best.
    pub fn verdict(&self, key: &(String, String), against: &str) -> Option<At<AbFigures>> {
        let v = self.verdicts.get(key)?;
        (self.against.get(key).map(String::as_str) == Some(against)).then(|| v.clone())
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
