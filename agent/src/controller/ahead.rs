//! Work a run with several GPUs measures ahead of its turn: what the controller
//! will ask for next if nothing changes (the candidates queued behind the one in
//! flight, against the same best; the baselines of the kernels not started), each
//! admitted on the budget beside everything already in flight.
//!
//! Looking ahead changes nothing in the controller: its decisions are the ones a run
//! on one GPU makes, in the same order, so a resumed run replays them whatever the
//! number of GPUs. A result measured ahead answers the controller's request only
//! when the request is the same work (the same configuration against the same best);
//! otherwise it stays in the journal as measured and unused.

use super::*;
use crate::spec::Config;

/// A piece of GPU work the controller expects to ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Ahead {
    /// A kernel's baseline (a kernel not started yet).
    Baseline { kernel: usize, config: Config },
    /// A queued candidate of the line of attack in flight, against the current best.
    Evaluate {
        kernel: usize,
        pattern: String,
        config: Candidate,
        against: Candidate,
    },
}

impl Ahead {
    pub fn kernel(&self) -> usize {
        match self {
            Ahead::Baseline { kernel, .. } | Ahead::Evaluate { kernel, .. } => *kernel,
        }
    }

    /// The work an action asks for, as it would be looked ahead (None: an action
    /// that is not looked ahead).
    pub fn of(action: &Action) -> Option<Ahead> {
        match action {
            Action::MeasureBaseline { kernel, config } => Some(Ahead::Baseline {
                kernel: *kernel,
                config: config.clone(),
            }),
            Action::Evaluate {
                kernel,
                pattern,
                config,
                against,
                ..
            } => Some(Ahead::Evaluate {
                kernel: *kernel,
                pattern: pattern.clone(),
                config: config.clone(),
                against: against.clone(),
            }),
            _ => None,
        }
    }
}

/// What the dispatcher knows of a piece of work.
#[derive(Debug, Clone)]
pub enum Known {
    /// Measured (and journaled): its result, as the controller would hear it.
    Measured(CandidateResult),
    /// Being measured.
    InFlight,
    /// Neither.
    Not,
}

/// How many of its own steps a line followed ahead takes at most.
const LOOKAHEAD_STEPS: usize = 100;

/// Pieces of a line in flight or measured ahead at once, at the least.
const MIN_DEPTH: usize = 2;

impl Controller {
    /// Up to `free` pieces of work to measure ahead on free GPUs, beside `busy` (the
    /// work in flight, `pending` included when it takes a GPU). First the baselines
    /// of the kernels not started (needed whatever happens); then what the
    /// controller would ask for next if every candidate in flight or not measured
    /// were not FAST: a copy of it is fed the results measured already and, for the
    /// rest, a SLOW at its projected cost, until it asks for something whose result
    /// nothing can stand in for (a baseline not measured, the proposer) or `free`
    /// pieces are found. A guess that proves wrong (a FAST moves the best) costs the
    /// GPU time of work never asked for, never a decision: the controller itself
    /// hears only what was measured, in its own order.
    ///
    /// Each piece is admitted like a candidate, on the projection of everything in
    /// flight plus itself plus the final comparisons owed, with `unreleased_s` (GPU
    /// seconds journaled that the ledger has not been handed yet) spent already.
    pub fn lookahead(
        &self,
        now_s: f64,
        pending: &Action,
        free: usize,
        (busy, unreleased_s): (&[Ahead], f64),
        known: &dyn Fn(&Ahead) -> Known,
    ) -> Vec<Ahead> {
        if self.stopped || self.finishing.is_some() || free == 0 {
            return Vec::new();
        }
        let mut projected = unreleased_s.max(0.0)
            + self.finals_owed_s(None)
            + busy.iter().map(|a| self.projected(a)).sum::<f64>();
        let mut out: Vec<Ahead> = Vec::new();
        let mut admit = |a: Ahead, out: &mut Vec<Ahead>| -> bool {
            if out.contains(&a) {
                return true;
            }
            let p = self.projected(&a);
            let ok = self
                .ledger
                .admit_spending(&self.budgets, projected + p, self.in_flight(), now_s)
                .is_ok();
            if ok {
                projected += p;
                out.push(a);
            }
            ok
        };
        for (i, k) in self.kernels.iter().enumerate() {
            let a = Ahead::Baseline {
                kernel: i,
                config: k.spec.baseline(),
            };
            if out.len() == free {
                return out;
            }
            if !k.started && matches!(known(&a), Known::Not) && !admit(a, &mut out) {
                return out;
            }
        }
        // The controller's own line, then each other kernel's as it would go if its
        // turn came now; one piece from each in turn, so that a FAST on one line
        // (which makes what was measured ahead on it stale) leaves the others' work.
        let mut lines = vec![Line {
            sim: self.sim(),
            queue: VecDeque::from([pending.clone()]),
            pending: true,
            steps: 0,
            ahead: 0,
        }];
        lines.extend(self.other_lines(now_s, known, free));
        // Each line is followed only so deep: the further along a line, the likelier
        // a FAST before it makes the piece stale. Deep enough that every GPU can
        // have work when few lines are left.
        let gpus = free + busy.len();
        let depth = MIN_DEPTH.max(gpus.div_ceil(lines.len().max(1)));
        loop {
            let mut progressed = false;
            for line in lines.iter_mut() {
                if out.len() >= free {
                    return out;
                }
                if let Some(a) = line.next_unknown(now_s, known, &out, depth) {
                    if !admit(a, &mut out) {
                        return out;
                    }
                    progressed = true;
                }
            }
            if !progressed {
                return out;
            }
        }
    }

    /// For each kernel waiting its turn (not started with its baseline measured, or
    /// paused), the next ones after the current kernel first, at most `most`: a copy
    /// of the controller that gave it its turn now.
    fn other_lines(&self, now_s: f64, known: &dyn Fn(&Ahead) -> Known, most: usize) -> Vec<Line> {
        let mut lines = Vec::new();
        let n = self.kernels.len();
        for i in (1..=n).map(|d| (self.current + d) % n) {
            let k = &self.kernels[i];
            if lines.len() >= most {
                break;
            }
            if k.done || k.awaiting.is_some() || (k.started && !k.paused) {
                continue;
            }
            let mut sim = self.sim();
            sim.current = i;
            let queue: Vec<Action> = if !k.started {
                let a = Ahead::Baseline {
                    kernel: i,
                    config: k.spec.baseline(),
                };
                let Known::Measured(result) = known(&a) else {
                    continue;
                };
                sim.kernels[i].started = true;
                sim.give_share(i);
                sim.asked = Some(Asked::Baseline(i));
                sim.handle(now_s, Event::Baseline { kernel: i, result })
            } else {
                sim.kernels[i].paused = false;
                sim.give_share(i);
                let mut out = Vec::new();
                sim.next(now_s, i, &mut out);
                out
            };
            lines.push(Line {
                sim,
                queue: queue.into(),
                pending: false,
                steps: 0,
                ahead: 0,
            });
        }
        lines
    }

    /// A copy to follow a line ahead, without the model search: its candidates come
    /// from a fit to what was measured, which guesses would only distort (and its
    /// fits cost the daemon's time at every request).
    fn sim(&self) -> Controller {
        let mut sim = self.clone();
        sim.budgets.search.after_patterns = false;
        sim.budgets.search.interleave = false;
        sim
    }

    /// What a candidate not measured yet is taken to be, looking ahead: passed and
    /// SLOW, at its projected cost (nothing learnt from it, no line extended).
    fn guess(&self, a: &Ahead) -> CandidateResult {
        CandidateResult {
            passed: true,
            outcome: "passed".into(),
            verdict: Some(Verdict::Slow),
            speedup: Some(0.97),
            profile: None,
            cost: vec![(Stage::Measure, self.projected(a))],
        }
    }

    fn projected_of(&self, kernel: usize, pattern: Option<&str>) -> f64 {
        self.ledger
            .project(&self.kernels[kernel].spec.name, pattern, 1)
    }

    /// The projected GPU seconds of a piece of work.
    fn projected(&self, a: &Ahead) -> f64 {
        match a {
            Ahead::Baseline { kernel, .. } => self.projected_of(*kernel, None),
            Ahead::Evaluate {
                kernel, pattern, ..
            } => self.projected_of(*kernel, Some(pattern)),
        }
    }
}

/// One line of work followed ahead: a copy of the controller and what it asked for
/// that is not answered yet.
struct Line {
    sim: Controller,
    queue: VecDeque<Action>,
    /// The head of the queue is the request being carried out.
    pending: bool,
    steps: usize,
    /// Its pieces in flight or handed out so far.
    ahead: usize,
}

impl Line {
    /// Follows the line to the next piece of work neither measured, nor in flight,
    /// nor in `taken`; None when the line ends or needs what cannot be guessed.
    fn next_unknown(
        &mut self,
        now_s: f64,
        known: &dyn Fn(&Ahead) -> Known,
        taken: &[Ahead],
        depth: usize,
    ) -> Option<Ahead> {
        while self.steps < LOOKAHEAD_STEPS && self.ahead < depth {
            self.steps += 1;
            let action = self.queue.pop_front()?;
            let is_pending = std::mem::take(&mut self.pending);
            let mut found = None;
            let event = match &action {
                Action::MeasureBaseline { kernel, config } => {
                    let a = Ahead::Baseline {
                        kernel: *kernel,
                        config: config.clone(),
                    };
                    match known(&a) {
                        Known::Measured(result) => Event::Baseline {
                            kernel: *kernel,
                            result,
                        },
                        // What comes after depends on its profile.
                        _ => {
                            self.queue.clear();
                            return None;
                        }
                    }
                }
                Action::Evaluate {
                    kernel,
                    pattern,
                    config,
                    against,
                    ..
                } => {
                    let a = Ahead::Evaluate {
                        kernel: *kernel,
                        pattern: pattern.clone(),
                        config: config.clone(),
                        against: against.clone(),
                    };
                    let result = match known(&a) {
                        Known::Measured(r) => r,
                        Known::InFlight => {
                            self.ahead += usize::from(!is_pending);
                            self.sim.guess(&a)
                        }
                        Known::Not => {
                            let guess = self.sim.guess(&a);
                            if !is_pending && !taken.contains(&a) {
                                self.ahead += 1;
                                found = Some(a);
                            }
                            guess
                        }
                    };
                    Event::Evaluated {
                        kernel: *kernel,
                        config: config.clone(),
                        result,
                    }
                }
                Action::FinalComparison { kernel, .. } => Event::Compared {
                    kernel: *kernel,
                    cost: vec![(Stage::Measure, self.sim.projected_of(*kernel, None))],
                },
                Action::StudyPoint {
                    kernel,
                    pattern,
                    scale,
                    ..
                } => Event::StudyPoint {
                    kernel: *kernel,
                    scale: *scale,
                    cost: Some(vec![(
                        Stage::Measure,
                        self.sim.projected_of(*kernel, Some(pattern)),
                    )]),
                },
                // The proposer's answers cannot be guessed; a stop ends the line.
                Action::Propose { .. }
                | Action::Send { .. }
                | Action::Await { .. }
                | Action::Stop { .. } => {
                    self.queue.clear();
                    return None;
                }
                _ => continue,
            };
            let next = self.sim.handle(now_s, event);
            self.queue.extend(next);
            if found.is_some() {
                return found;
            }
        }
        None
    }
}
