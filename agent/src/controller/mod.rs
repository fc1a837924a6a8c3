//! The agent loop's decisions, sans I/O: `Controller::handle(now, event)` returns the
//! actions to carry out, in order. The dispatcher (async, with the worker, git and the
//! journal) feeds it what happened; the controller never touches a GPU, a file or a
//! clock, so every decision is tested with scripted event sequences.
//!
//! Per kernel: measure the baseline; read its profile; choose the applicable pattern of
//! the cheapest tier (highest priority first within a tier); step the current best
//! configuration along the pattern's roles (a neighbourhood, never a configuration
//! twice); compare each candidate with the current best (A/B); commit a FAST one and
//! continue from it, revert the rest; drop a pattern that has spent `factor` x its
//! budget without a FAST verdict (ROI pivot); move on when no pattern has anything
//! left. Before each candidate the ledger must admit its projected cost.
//!
//! Across patterns, a bandit: within a tier and priority, the pattern whose candidates
//! have bought the most (log speedup of its FAST verdicts per candidate, over every
//! kernel, plus a UCB1 exploration bonus; untried patterns first) goes first.
//! Across kernels, a fair share: each kernel may spend the budget left over the kernels
//! still waiting; past its share it is paused (its line of attack kept) while others
//! wait, and resumed with what is left once every kernel has had its turn.
//! When a kernel has nothing left, a `study` pattern that applies to its profile
//! (workload-batching) is carried out before the kernel is done.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::budget::{Budgets, Charge, Ledger, Stage, StopReason};
use crate::measure::Verdict;
use crate::patterns::{Body, Direction, Library, Pattern};
use crate::profile::Profile;
use crate::spec::{Candidate, KernelSpec};

pub use ahead::{Ahead, Known};
pub use interface::{Action, Answer, CandidateResult, Event};
pub use proposal::proposal_digest;

/// GPU work the controller asked for.
#[derive(Debug, Clone)]
enum Asked {
    /// A kernel's baseline: admitted before the kernel owed a final comparison.
    Baseline(usize),
    /// A candidate of a kernel under a pattern, or the start of its study.
    Work(usize, String),
    /// A point of a kernel's study: admitted on its own projection.
    StudyPoint(usize),
    /// A kernel's final comparison: admitted on its own projection.
    Final(usize),
    /// A question to the proposer for a kernel under a proposal pattern.
    Propose(usize, String),
}

/// The line of attack in progress on a kernel.
#[derive(Debug, Clone)]
struct Attack {
    pattern: String,
    queue: VecDeque<Candidate>,
    /// GPU seconds spent since the attack began or last gained.
    spent_s: f64,
    /// A commit emptied the queue: refill it around the new best.
    gained: bool,
}

#[derive(Debug, Clone)]
struct KernelState {
    spec: KernelSpec,
    /// The current best: a configuration, and the rewrites its kernel carries.
    best: Option<Candidate>,
    profile: Option<Profile>,
    tried: BTreeSet<Candidate>,
    /// Patterns with nothing left to try around the current best.
    exhausted: BTreeSet<String>,
    /// Patterns dropped by the ROI rule for this kernel.
    dropped: BTreeSet<String>,
    attack: Option<Attack>,
    /// The study (if any) was begun.
    studied: bool,
    /// The study in progress.
    study: Option<StudyRun>,
    /// Its final comparison was made (or skipped): none is owed any more.
    compared: bool,
    started: bool,
    paused: bool,
    done: bool,
    /// GPU seconds of its baseline, candidates and study.
    spent_s: f64,
    /// Paused once `spent_s` passes this while other kernels wait.
    share_until_s: f64,
    /// Candidates evaluated since it started or resumed (a resumed kernel makes
    /// progress before it can be paused again).
    since_resume: usize,
    /// Per proposal pattern: questions asked around the current best.
    asks: BTreeMap<String, usize>,
    /// A question was sent and its answer is not taken yet (other kernels run
    /// meanwhile): the most it can cost.
    awaiting: Option<f64>,
    /// Every median measured on it (baseline and candidates that passed), µs: what
    /// the model search after the patterns is fitted to.
    measured: Vec<(Candidate, f64)>,
    /// The model search's prediction for the candidate it asked for last.
    searching: Option<crate::patterns::Prediction>,
    /// GPU seconds the model search spent since its last gain (its ROI).
    search_spent_s: f64,
    /// Pattern candidates in a row that were not FAST: the model search is
    /// interleaved after [`model_search::INTERLEAVE_AFTER`] of them.
    misses: usize,
    /// A pattern's line of attack set aside for one interleaved search candidate,
    /// with the best it was built around.
    stash: Option<(Attack, Option<Candidate>)>,
}

/// What a pattern's candidates have bought, over every kernel (the bandit's arms).
#[derive(Debug, Clone, Copy, Default)]
struct Credit {
    tries: usize,
    /// Sum of ln(speedup) of its FAST verdicts.
    reward: f64,
}

/// The UCB1 exploration weight, in units of ln(speedup) per candidate.
const EXPLORATION: f64 = 0.1;

#[derive(Clone)]
pub struct Controller {
    kernels: Vec<KernelState>,
    library: Library,
    budgets: Budgets,
    /// Every charge of the run, as journaled (see [`Controller::charged`]).
    ledger: Ledger,
    /// The GPU work asked for last (for a new admission on [`Event::Resumed`]).
    asked: Option<Asked>,
    current: usize,
    stopped: bool,
    /// Stopping on this limit: the final comparisons owed are made first.
    finishing: Option<StopReason>,
    credit: BTreeMap<String, Credit>,
    /// The run's budget in GPU seconds (the tightest limit; infinite without one).
    total_s: f64,
    /// A code-writing proposer is configured: proposal patterns may be chosen.
    proposer: bool,
}

impl Controller {
    pub fn new(specs: Vec<KernelSpec>, library: Library, budgets: Budgets, ledger: Ledger) -> Self {
        Controller {
            kernels: specs
                .into_iter()
                .map(|spec| KernelState {
                    spec,
                    best: None,
                    profile: None,
                    tried: BTreeSet::new(),
                    exhausted: BTreeSet::new(),
                    dropped: BTreeSet::new(),
                    attack: None,
                    studied: false,
                    study: None,
                    compared: false,
                    started: false,
                    paused: false,
                    done: false,
                    spent_s: 0.0,
                    share_until_s: f64::INFINITY,
                    since_resume: 0,
                    asks: BTreeMap::new(),
                    awaiting: None,
                    measured: Vec::new(),
                    searching: None,
                    search_spent_s: 0.0,
                    misses: 0,
                    stash: None,
                })
                .collect(),
            total_s: Ledger::new(ledger.price_per_gpu_hour())
                .remaining(&budgets, 0.0)
                .seconds,
            library,
            budgets,
            ledger,
            asked: None,
            current: 0,
            stopped: false,
            finishing: None,
            credit: BTreeMap::new(),
            proposer: false,
        }
    }

    /// With a code-writing proposer (`nightshift.toml`): proposal patterns are
    /// chosen like the others; without one they are passed over.
    pub fn with_proposer(mut self, on: bool) -> Self {
        self.proposer = on;
        self
    }

    /// The current best candidate of a kernel.
    pub fn best(&self, kernel: usize) -> Option<&Candidate> {
        self.kernels.get(kernel)?.best.as_ref()
    }

    /// The candidates queued after the one being evaluated in the current line of
    /// attack on `kernel` (what a compile prefetch may start on).
    pub fn queued(&self, kernel: usize) -> Vec<Candidate> {
        self.kernels
            .get(kernel)
            .and_then(|k| k.attack.as_ref())
            .map(|a| a.queue.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The measured profile of a kernel's current best.
    pub fn profile(&self, kernel: usize) -> Option<&Profile> {
        self.kernels.get(kernel)?.profile.as_ref()
    }

    /// The library's pattern named `name`.
    pub fn pattern_of(&self, name: &str) -> Option<&Pattern> {
        self.pattern(name)
    }

    /// The spec of a kernel.
    pub fn spec(&self, kernel: usize) -> Option<&KernelSpec> {
        self.kernels.get(kernel).map(|k| &k.spec)
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The run's ledger: every charge handed to [`Controller::charged`].
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// GPU time was spent and journaled: the ledger, which every admission reads,
    /// holds exactly the journal's charges (a resumed run hands it the recorded
    /// ones), so it is the same whether the run stopped on the way or not. A charge
    /// that is not a finite, non-negative time is refused.
    pub fn charged(&mut self, c: &Charge) -> Result<(), crate::budget::ChargeError> {
        self.ledger.charge(c)
    }

    /// Decides what to do next. `now_s` is the wall time since the run started.
    pub fn handle(&mut self, now_s: f64, event: Event) -> Vec<Action> {
        if self.stopped {
            return vec![];
        }
        let mut out = Vec::new();
        match event {
            Event::Started => {
                self.current = 0;
                self.advance(now_s, &mut out);
            }
            Event::StudyPoint { kernel, cost, .. } => {
                match cost {
                    Some(cost) => {
                        let counted = self.count(kernel, &cost);
                        if let Some(s) = self.kernels[kernel].study.as_mut() {
                            s.spent_s += counted;
                        }
                    }
                    None => {
                        if let Some(s) = self.kernels[kernel].study.as_mut() {
                            s.todo.clear();
                        }
                    }
                }
                self.study_next(now_s, kernel, &mut out);
            }
            Event::Compared { kernel, cost } => {
                self.count(kernel, &cost);
                self.kernels[kernel].compared = true;
                match self.finishing.clone() {
                    Some(reason) => self.finish(now_s, reason, &mut out),
                    None => self.advance(now_s, &mut out),
                }
            }
            Event::Interrupted { signal } => {
                self.stopped = true;
                out.push(Action::Stop {
                    reason: StopReason::Signal { signal },
                });
            }
            Event::Resumed => self.resumed(now_s, &mut out),
            Event::Baseline { kernel, result } => {
                self.count(kernel, &result.cost);
                let k = &mut self.kernels[kernel];
                let base = Candidate::from(k.spec.baseline());
                k.tried.insert(base.clone());
                if result.passed {
                    k.best = Some(base.clone());
                    k.profile = result.profile;
                    let profile = self.kernels[kernel].profile.clone();
                    self.measured(kernel, &base, profile.as_ref());
                    let tunables = self.unmoved(kernel);
                    if !tunables.is_empty() {
                        out.push(Action::Unmoved { kernel, tunables });
                    }
                    self.next(now_s, kernel, &mut out);
                } else {
                    self.kernels[kernel].done = true;
                    out.push(Action::KernelDone {
                        kernel,
                        reason: format!("the baseline did not pass: {}", result.outcome),
                    });
                    self.advance(now_s, &mut out);
                }
            }
            Event::Evaluated {
                kernel,
                config,
                result,
            } => self.evaluated(now_s, kernel, config, result, &mut out),
            Event::Proposed {
                kernel,
                pattern,
                answer,
                dollars,
                wait_s,
            } => self.proposed(now_s, kernel, &pattern, answer, (dollars, wait_s), &mut out),
            Event::Priced {
                kernel,
                pattern,
                bound,
                wait_s,
            } => self.priced(now_s, kernel, &pattern, (bound, wait_s), &mut out),
        }
        out
    }

    /// A resumed run's replay ended: the work asked for last is admitted again, by
    /// the rule that admitted it, on everything the run spent.
    fn resumed(&mut self, now_s: f64, out: &mut Vec<Action>) {
        match self.asked.clone() {
            // Each admitted again by the rule that admitted it.
            Some(Asked::Baseline(kernel)) => {
                let name = self.kernels[kernel].spec.name.clone();
                self.refused_except(now_s, &name, None, Some(kernel), out);
            }
            Some(Asked::Work(kernel, pattern)) => {
                let name = self.kernels[kernel].spec.name.clone();
                self.refused(now_s, &name, Some(&pattern), out);
            }
            Some(Asked::Propose(kernel, pattern)) => {
                let name = self.kernels[kernel].spec.name.clone();
                let dollars = self.ledger.proposer_mean();
                self.refused_spending(now_s, &name, Some(&pattern), (dollars, 0.0), out);
            }
            Some(Asked::StudyPoint(kernel)) => {
                if let Err(reason) = self.study_admit(now_s, kernel) {
                    self.study_end(now_s, kernel, Some(reason), out);
                }
            }
            Some(Asked::Final(kernel)) => {
                let name = self.kernels[kernel].spec.name.clone();
                let projected = self.ledger.project(&name, None, 1);
                if let Err(reason) = self.ledger.admit(&self.budgets, projected, now_s) {
                    out.push(Action::FinalSkipped {
                        kernel,
                        reason: reason.describe(),
                    });
                    match self.finishing.clone() {
                        Some(r) => self.finish(now_s, r, out),
                        None => self.advance(now_s, out),
                    }
                }
            }
            None => {}
        }
    }

    /// A candidate was validated and compared: commit a FAST one and continue from
    /// it, revert the rest (one step further when it was level), then the ROI rule
    /// and the next candidate.
    fn evaluated(
        &mut self,
        now_s: f64,
        kernel: usize,
        config: Candidate,
        result: CandidateResult,
        out: &mut Vec<Action>,
    ) {
        let pattern = self.kernels[kernel]
            .attack
            .as_ref()
            .map(|a| a.pattern.clone())
            .unwrap_or_default();
        self.count(kernel, &result.cost);
        if result.passed {
            self.measured(kernel, &config, result.profile.as_ref());
        }
        let spent: f64 = result.cost.iter().map(|(_, s)| s).sum();
        let fast = result.passed && result.verdict == Some(Verdict::Fast);
        let credit = self.credit.entry(pattern.clone()).or_default();
        credit.tries += 1;
        if fast {
            credit.reward += result.speedup.filter(|s| *s > 0.0).map_or(0.0, f64::ln);
        }
        let k = &mut self.kernels[kernel];
        k.since_resume += 1;
        k.tried.insert(config.clone());
        if fast {
            k.misses = 0;
        } else if pattern != SEARCH {
            k.misses += 1;
        }
        if let Some(a) = k.attack.as_mut() {
            a.spent_s += spent;
        }
        if fast {
            out.push(Action::Commit {
                kernel,
                pattern: pattern.clone(),
                config: config.clone(),
                speedup: result.speedup.unwrap_or(f64::NAN),
            });
            k.best = Some(config);
            if result.profile.is_some() {
                k.profile = result.profile;
            }
            // A new best has a new neighbourhood: every pattern may try again.
            k.exhausted.clear();
            k.asks.clear();
            if let Some(a) = k.attack.as_mut() {
                // ROI counts what a line of attack spent since its last gain.
                a.gained = true;
                a.spent_s = 0.0;
                a.queue.clear();
            }
        } else {
            let reason = if !result.passed {
                result.outcome.clone()
            } else {
                match (result.verdict, result.speedup) {
                    (Some(v), Some(s)) => format!("{} ({s:.3}x)", v.as_str()),
                    (Some(v), None) => v.as_str().to_string(),
                    _ => "not compared".into(),
                }
            };
            // Not worse, not proven better: one step further the same way
            // (a wider vector, a larger block) may clear the bar.
            let level = result.passed
                && matches!(result.verdict, Some(Verdict::Same | Verdict::Ambiguous))
                && result.speedup.is_some_and(|s| s >= 1.0);
            if level {
                self.extend_line(kernel, &config);
            }
            out.push(Action::Revert {
                kernel,
                pattern: pattern.clone(),
                config,
                reason,
            });
        }
        self.roi_check(kernel, out);
        self.next(now_s, kernel, out);
    }

    /// Counts a piece of work's cost against its kernel's share of the budget. (The
    /// ledger hears of the same time through [`Controller::charged`], from the
    /// journal's charges.)
    /// Returns the seconds counted (finite and positive ones only).
    fn count(&mut self, kernel: usize, cost: &[(Stage, f64)]) -> f64 {
        let counted: f64 = cost
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| s.is_finite() && *s > 0.0)
            .sum();
        self.kernels[kernel].spent_s += counted;
        counted
    }

    /// Drops the current pattern when it has spent `factor` x its budget without FAST.
    fn roi_check(&mut self, kernel: usize, out: &mut Vec<Action>) {
        let factor = self.library.pivot_factor();
        let default_budget_s = self.budgets.limits.pattern.as_secs_f64();
        let k = &mut self.kernels[kernel];
        let Some(a) = &k.attack else { return };
        let budget_s = self
            .library
            .patterns
            .iter()
            .find(|p| p.name == a.pattern)
            .and_then(|p| p.budget_minutes)
            .map(|m| m * 60.0)
            .unwrap_or(default_budget_s);
        if a.spent_s > factor * budget_s {
            out.push(Action::Pivot {
                kernel,
                pattern: a.pattern.clone(),
                reason: format!(
                    "spent {:.0} s, more than {factor} x its {:.0} s budget, without a FAST verdict",
                    a.spent_s, budget_s
                ),
            });
            k.dropped.insert(a.pattern.clone());
            k.attack = None;
        }
    }

    /// The next candidate of `kernel`, or the next pattern, or the next kernel.
    fn next(&mut self, now_s: f64, kernel: usize, out: &mut Vec<Action>) {
        loop {
            // After a commit, the same line of attack continues from the new best.
            let refill = match &self.kernels[kernel].attack {
                Some(a) if a.queue.is_empty() && a.gained => Some(a.pattern.clone()),
                _ => None,
            };
            if let Some(pattern) = refill {
                let fresh = self.candidates(kernel, &pattern);
                if let Some(a) = self.kernels[kernel].attack.as_mut() {
                    a.gained = false;
                    a.queue = fresh.into();
                }
            }
            // A proposal pattern's queue is filled by the proposer: ask when it is
            // empty and questions are left.
            if let Some((pattern, attempt)) = self.ask_due(kernel) {
                self.ask(now_s, kernel, pattern, attempt, out);
                return;
            }
            if self.resume_stash(kernel) || self.interleave(kernel) {
                continue;
            }
            let k = &mut self.kernels[kernel];
            let mut picked = None;
            if let Some(a) = k.attack.as_mut() {
                while let Some(c) = a.queue.pop_front() {
                    if !k.tried.contains(&c) {
                        picked = Some((a.pattern.clone(), c));
                        break;
                    }
                }
                if picked.is_none() {
                    if a.pattern == SEARCH {
                        k.search_spent_s = if a.gained { 0.0 } else { a.spent_s };
                    }
                    // An interleaved search candidate ends: the stashed pattern
                    // resumes (the search itself is not exhausted).
                    if a.pattern != SEARCH || k.stash.is_none() {
                        k.exhausted.insert(a.pattern.clone());
                    }
                    k.attack = None;
                }
            }
            if let Some((pattern, config)) = picked {
                if let Err(reason) = self.applies(kernel, &config) {
                    self.kernels[kernel].tried.insert(config.clone());
                    out.push(Action::NotApplicable {
                        kernel,
                        pattern,
                        config,
                        reason,
                    });
                    continue;
                }
                if self.over_share(kernel) {
                    if let Some(a) = self.kernels[kernel].attack.as_mut() {
                        a.queue.push_front(config);
                    }
                    self.pause(now_s, kernel, out);
                    return;
                }
                let name = self.kernels[kernel].spec.name.clone();
                if self.refused(now_s, &name, Some(&pattern), out) {
                    return;
                }
                let against = self.kernels[kernel].best.clone().unwrap_or_default();
                let prediction = match self.pattern(&pattern) {
                    Some(p) => p.predict.clone(),
                    None => self.kernels[kernel].searching.clone(),
                };
                self.asked = Some(Asked::Work(kernel, pattern.clone()));
                out.push(Action::Evaluate {
                    kernel,
                    pattern,
                    config,
                    against,
                    prediction,
                });
                return;
            }
            if self.resume_stash(kernel) {
                continue;
            }
            match self.choose(kernel) {
                Some((pattern, queue)) => {
                    self.kernels[kernel].attack = Some(Attack {
                        pattern,
                        queue: queue.into(),
                        spent_s: 0.0,
                        gained: false,
                    });
                }
                None => {
                    if let Some((c, prediction)) = self.search_next(kernel) {
                        self.search_with(kernel, c, prediction);
                        continue;
                    }
                    if let Some(study) = self.study(kernel) {
                        let name = self.kernels[kernel].spec.name.clone();
                        if self.refused(now_s, &name, Some(&study.pattern), out) {
                            return;
                        }
                        let k = &mut self.kernels[kernel];
                        k.studied = true;
                        out.push(Action::StudyBegin {
                            kernel,
                            pattern: study.pattern.clone(),
                            config: study.config.clone(),
                            axes: k.spec.workload_axes.clone(),
                            scales: study.todo.iter().skip(1).copied().collect(),
                            budget_s: study.budget_s,
                        });
                        k.study = Some(study);
                        self.study_next(now_s, kernel, out);
                        return;
                    }
                    self.done(now_s, kernel, out);
                    return;
                }
            }
        }
    }

    /// Whether a candidate's rewrites apply to the kernel's source (the rewrite
    /// engine is pure: source in, source out). The current best's own rewrites are
    /// known to apply; a chain that changed is tried, and why it does not apply is
    /// the answer.
    fn applies(&self, kernel: usize, c: &Candidate) -> Result<(), String> {
        let k = &self.kernels[kernel];
        if c.rewrites.is_empty() || k.best.as_ref().is_some_and(|b| b.rewrites == c.rewrites) {
            return Ok(());
        }
        crate::rewrite::rewritten(k.spec.clone(), &c.rewrites, &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn pattern(&self, name: &str) -> Option<&Pattern> {
        self.library.patterns.iter().find(|p| p.name == name)
    }

    fn signals(&self, kernel: usize) -> crate::spec::expr::Signals {
        self.kernels[kernel]
            .profile
            .as_ref()
            .map(|p| p.signals.clone())
            .unwrap_or_default()
    }

    /// Per kernel: the patterns dropped by the ROI rule (for the report).
    pub fn dropped(&self) -> BTreeMap<String, Vec<String>> {
        self.kernels
            .iter()
            .map(|k| (k.spec.name.clone(), k.dropped.iter().cloned().collect()))
            .collect()
    }
}

mod admission;
mod ahead;
mod interface;
mod model_search;
mod proposal;
mod search;
mod study;
mod turns;

pub use model_search::SEARCH;

use study::StudyRun;

#[cfg(test)]
mod proposal_tests;
#[cfg(test)]
mod rewrite_tests;
#[cfg(test)]
mod search_tests;
#[cfg(test)]
mod tests;
