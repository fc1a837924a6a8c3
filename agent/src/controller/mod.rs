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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::budget::{Budgets, Charge, Ledger, Stage, StopReason};
use crate::measure::Verdict;
use crate::patterns::{Body, Direction, Library, Pattern, Prediction};
use crate::profile::Profile;
use crate::spec::{Config, KernelSpec};

/// What came back from carrying out an action.
#[derive(Debug, Clone)]
pub enum Event {
    Started,
    /// The baseline of `kernel` was validated and measured (or failed to be).
    Baseline {
        kernel: usize,
        result: CandidateResult,
    },
    /// A candidate was validated and compared with the current best.
    Evaluated {
        kernel: usize,
        config: Config,
        result: CandidateResult,
    },
    /// SIGINT or SIGTERM.
    Interrupted {
        signal: String,
    },
}

/// One configuration's result, as the dispatcher reports it.
#[derive(Debug, Clone)]
pub struct CandidateResult {
    /// Passed validation (and measurement).
    pub passed: bool,
    /// The outcome's name (`passed`, `incorrect`, `hung`, ...) or why it failed.
    pub outcome: String,
    /// Against the current best, when both were measured interleaved.
    pub verdict: Option<Verdict>,
    pub speedup: Option<f64>,
    /// The profile of this configuration, when it passed and was measured.
    pub profile: Option<Profile>,
    /// What it cost, by stage (compile, validate, measure).
    pub cost: Vec<(Stage, f64)>,
}

/// What the dispatcher is to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    MeasureBaseline {
        kernel: usize,
        config: Config,
    },
    /// Validate `config` and measure it interleaved with `against` (the current best).
    Evaluate {
        kernel: usize,
        pattern: String,
        config: Config,
        against: Config,
        prediction: Option<Prediction>,
    },
    Commit {
        kernel: usize,
        pattern: String,
        config: Config,
        speedup: f64,
    },
    Revert {
        kernel: usize,
        pattern: String,
        config: Config,
        reason: String,
    },
    Pivot {
        kernel: usize,
        pattern: String,
        reason: String,
    },
    /// Nothing more for this kernel.
    KernelDone {
        kernel: usize,
        reason: String,
    },
    Stop {
        reason: StopReason,
    },
}

/// The line of attack in progress on a kernel.
#[derive(Debug, Clone)]
struct Attack {
    pattern: String,
    queue: VecDeque<Config>,
    /// GPU seconds spent since the attack began or last gained.
    spent_s: f64,
    /// A commit emptied the queue: refill it around the new best.
    gained: bool,
}

#[derive(Debug, Clone)]
struct KernelState {
    spec: KernelSpec,
    best: Option<Config>,
    profile: Option<Profile>,
    tried: BTreeSet<Config>,
    /// Patterns with nothing left to try around the current best.
    exhausted: BTreeSet<String>,
    /// Patterns dropped by the ROI rule for this kernel.
    dropped: BTreeSet<String>,
    attack: Option<Attack>,
}

pub struct Controller {
    kernels: Vec<KernelState>,
    library: Library,
    budgets: Budgets,
    pub ledger: Ledger,
    current: usize,
    stopped: bool,
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
                })
                .collect(),
            library,
            budgets,
            ledger,
            current: 0,
            stopped: false,
        }
    }

    /// The current best configuration of a kernel.
    pub fn best(&self, kernel: usize) -> Option<&Config> {
        self.kernels.get(kernel)?.best.as_ref()
    }

    /// The candidates queued after the one being evaluated in the current line of
    /// attack on `kernel` (what a compile prefetch may start on).
    pub fn queued(&self, kernel: usize) -> Vec<Config> {
        self.kernels
            .get(kernel)
            .and_then(|k| k.attack.as_ref())
            .map(|a| a.queue.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The spec of a kernel.
    pub fn spec(&self, kernel: usize) -> Option<&KernelSpec> {
        self.kernels.get(kernel).map(|k| &k.spec)
    }

    pub fn stopped(&self) -> bool {
        self.stopped
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
                self.start_kernel(now_s, &mut out);
            }
            Event::Interrupted { signal } => {
                self.stopped = true;
                out.push(Action::Stop {
                    reason: StopReason::Signal { signal },
                });
            }
            Event::Baseline { kernel, result } => {
                self.charge(kernel, None, &result);
                let k = &mut self.kernels[kernel];
                let base = k.spec.baseline();
                k.tried.insert(base.clone());
                if result.passed {
                    k.best = Some(base);
                    k.profile = result.profile;
                    self.next(now_s, kernel, &mut out);
                } else {
                    out.push(Action::KernelDone {
                        kernel,
                        reason: format!("the baseline did not pass: {}", result.outcome),
                    });
                    self.next_kernel(now_s, &mut out);
                }
            }
            Event::Evaluated {
                kernel,
                config,
                result,
            } => {
                let pattern = self.kernels[kernel]
                    .attack
                    .as_ref()
                    .map(|a| a.pattern.clone())
                    .unwrap_or_default();
                self.charge(kernel, Some(&pattern), &result);
                let spent: f64 = result.cost.iter().map(|(_, s)| s).sum();
                let k = &mut self.kernels[kernel];
                k.tried.insert(config.clone());
                if let Some(a) = k.attack.as_mut() {
                    a.spent_s += spent;
                }
                let fast = result.passed && result.verdict == Some(Verdict::Fast);
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
                self.roi_check(kernel, &mut out);
                self.next(now_s, kernel, &mut out);
            }
        }
        out
    }

    fn charge(&mut self, kernel: usize, pattern: Option<&str>, r: &CandidateResult) {
        let name = self.kernels[kernel].spec.name.clone();
        for (stage, s) in &r.cost {
            // Costs are measured durations; a malformed one is not charged.
            let _ = self.ledger.charge(&Charge {
                kernel: Some(name.clone()),
                pattern: pattern.map(str::to_string),
                config: None,
                stage: *stage,
                gpu_s: *s,
                wall_s: *s,
            });
        }
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

    fn start_kernel(&mut self, now_s: f64, out: &mut Vec<Action>) {
        if self.current >= self.kernels.len() {
            self.stopped = true;
            out.push(Action::Stop {
                reason: StopReason::NothingLeft,
            });
            return;
        }
        let name = self.kernels[self.current].spec.name.clone();
        if self.refused(now_s, &name, None, out) {
            return;
        }
        out.push(Action::MeasureBaseline {
            kernel: self.current,
            config: self.kernels[self.current].spec.baseline(),
        });
    }

    fn next_kernel(&mut self, now_s: f64, out: &mut Vec<Action>) {
        self.current += 1;
        self.start_kernel(now_s, out);
    }

    /// True (and a Stop pushed) when the budget cannot take one more candidate.
    fn refused(
        &mut self,
        now_s: f64,
        kernel: &str,
        pattern: Option<&str>,
        out: &mut Vec<Action>,
    ) -> bool {
        let projected = self.ledger.project(kernel, pattern, 1);
        match self.ledger.admit(&self.budgets, projected, now_s) {
            Ok(()) => false,
            Err(reason) => {
                self.stopped = true;
                out.push(Action::Stop { reason });
                true
            }
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
                    k.exhausted.insert(a.pattern.clone());
                    k.attack = None;
                }
            }
            if let Some((pattern, config)) = picked {
                let name = self.kernels[kernel].spec.name.clone();
                if self.refused(now_s, &name, Some(&pattern), out) {
                    return;
                }
                let against = self.kernels[kernel].best.clone().unwrap_or_default();
                let prediction = self.pattern(&pattern).and_then(|p| p.predict.clone());
                out.push(Action::Evaluate {
                    kernel,
                    pattern,
                    config,
                    against,
                    prediction,
                });
                return;
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
                    out.push(Action::KernelDone {
                        kernel,
                        reason: "no applicable pattern has anything left to try".into(),
                    });
                    self.next_kernel(now_s, out);
                    return;
                }
            }
        }
    }

    fn pattern(&self, name: &str) -> Option<&Pattern> {
        self.library.patterns.iter().find(|p| p.name == name)
    }

    /// The first applicable moves pattern (tier order, then priority) that is neither
    /// dropped nor exhausted and has an untried neighbour; patterns found empty are
    /// marked exhausted on the way.
    fn choose(&mut self, kernel: usize) -> Option<(String, Vec<Config>)> {
        let signals = self.kernels[kernel]
            .profile
            .as_ref()
            .map(|p| p.signals.clone())
            .unwrap_or_default();
        let names: Vec<String> = self
            .library
            .applicable(&signals)
            .into_iter()
            .filter(|p| matches!(p.body, Body::Moves(_)))
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            let k = &self.kernels[kernel];
            if k.dropped.contains(&name) || k.exhausted.contains(&name) {
                continue;
            }
            let queue = self.candidates(kernel, &name);
            if queue.is_empty() {
                self.kernels[kernel].exhausted.insert(name);
                continue;
            }
            return Some((name, queue));
        }
        None
    }

    /// Queues, first, the next step beyond `config` along the one tunable in which it
    /// differs from the current best, in the same direction.
    fn extend_line(&mut self, kernel: usize, config: &Config) {
        let k = &mut self.kernels[kernel];
        let (Some(best), Some(attack)) = (&k.best, k.attack.as_mut()) else {
            return;
        };
        let moved: Vec<&String> = config
            .0
            .iter()
            .filter(|(n, v)| best.0.get(*n) != Some(v))
            .map(|(n, _)| n)
            .collect();
        let [name] = moved.as_slice() else { return };
        let Some(t) = k.spec.tunables.iter().find(|t| &t.name == *name) else {
            return;
        };
        let pos = |c: &Config| {
            c.0.get(*name)
                .and_then(|v| t.values.iter().position(|x| x == v))
        };
        let (Some(from), Some(to)) = (pos(best), pos(config)) else {
            return;
        };
        let next = to as i64 + (to as i64 - from as i64).signum();
        if next < 0 || next as usize >= t.values.len() {
            return;
        }
        let mut c = config.clone();
        c.0.insert(t.name.clone(), t.values[next as usize]);
        if !k.tried.contains(&c)
            && !attack.queue.contains(&c)
            && k.spec.violated(&k.spec.problem, &c).is_empty()
        {
            attack.queue.push_front(c);
        }
    }

    /// Untried, allowed neighbours of the current best along the pattern's moves.
    fn candidates(&self, kernel: usize, pattern: &str) -> Vec<Config> {
        let k = &self.kernels[kernel];
        let (Some(best), Some(Body::Moves(moves))) =
            (&k.best, self.pattern(pattern).map(|p| &p.body))
        else {
            return vec![];
        };
        let mut out: Vec<Config> = Vec::new();
        for m in moves {
            for t in k.spec.tunables.iter().filter(|t| t.role == m.role) {
                let Some(i) = best
                    .0
                    .get(&t.name)
                    .and_then(|v| t.values.iter().position(|x| x == v))
                else {
                    continue;
                };
                let steps: &[i64] = match m.direction {
                    Direction::Up => &[1],
                    Direction::Down => &[-1],
                    Direction::Any => &[1, -1],
                };
                for s in steps {
                    let j = i as i64 + s;
                    if j < 0 || j as usize >= t.values.len() {
                        continue;
                    }
                    let mut c = best.clone();
                    c.0.insert(t.name.clone(), t.values[j as usize]);
                    if !k.tried.contains(&c)
                        && !out.contains(&c)
                        && k.spec.violated(&k.spec.problem, &c).is_empty()
                    {
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    /// Per kernel: the patterns dropped by the ROI rule (for the report).
    pub fn dropped(&self) -> BTreeMap<String, Vec<String>> {
        self.kernels
            .iter()
            .map(|k| (k.spec.name.clone(), k.dropped.iter().cloned().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
