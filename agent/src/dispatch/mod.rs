//! The agent loop's hands: one async dispatcher (tokio) that carries out what the
//! [`Controller`] decides. It runs candidates on the GPU worker (off the async thread),
//! writes every proposal, evaluation, verdict, charge and decision to the journal
//! before acting on the next one, commits winners on the run's own branch, and turns
//! SIGINT/SIGTERM into a clean stop after the candidate in flight.
//!
//! Resume is a replay: the controller is deterministic, so a resumed run feeds it the
//! same events again, answered from the journal instead of the GPU, until it asks for
//! something the journal does not hold. Finished work is never measured twice and a
//! decision already journaled is not journaled again.
//!
//! The ledger is a fold of the journal's `charge` records: every charge is journaled
//! and then handed to the controller, live or replayed, so a resumed run's ledger is
//! the one a run that never stopped would hold. During the replay the charges and the
//! clock are released record by record (see `replay`), so each decision is made again
//! on what was known when it was first made; when the replay ends, the rest of the
//! charges are released, a `budget` snapshot is journaled, and the controller checks
//! once more that the work it asked for still fits (the daemon may have been down
//! past the wall limit).

mod charges;
mod clock;
mod evaluator;
#[cfg(any(test, debug_assertions))]
pub mod fake;
mod notes;
mod notices;
mod pool;
mod proposals;
mod replay;
mod studies;
mod summary;
pub mod view;
mod work;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::budget::{Budgets, Charge, Spend, Stage, StopReason};
use crate::controller::{Action, CandidateResult, Controller, Event as CEvent};
use crate::evaluate::{compile_all, compile_requests, cost_of, EvalError, Evaluation, Session};
use crate::journal::{Event as JEvent, Journal, Record};
use crate::measure::Verdict;
use crate::patterns::{Library, Prediction};
use crate::profile::Profile;
use crate::spec::{plan, Candidate, Config, KernelSpec};
use crate::state::RunState;
use crate::study;
use crate::tuned;
use crate::vcs::Workspace;
use crate::vocab::{AbFigures, AbResult, MethodChoice, Outcome};

pub use clock::{Clock, StopFlag};
pub use evaluator::Evaluator;
use replay::Replay;
pub use summary::{KernelSummary, RunSummary};
use view::{Seen, Status, View};

/// The device name of a run driven by the test double of debug builds
/// (`fake::FakeGpu`): `nightshift report` refuses such a journal.
pub const FAKE_DEVICE: &str = "fake GPU (test double: no figure of it is a measurement)";

/// A kernel of the run: its spec (loaded from the run's worktree) and its directory
/// relative to the repository root (where `tuned.toml` is committed).
#[derive(Debug, Clone)]
pub struct KernelEntry {
    pub spec: KernelSpec,
    pub rel_dir: PathBuf,
}

/// Everything a run needs, checked before any GPU time is spent.
pub struct Setup<E: Evaluator> {
    pub run_id: String,
    pub kernels: Vec<KernelEntry>,
    pub library: Library,
    pub budgets: Budgets,
    pub workspace: Workspace,
    /// One per GPU of the run (at least one), all of one device model.
    pub evaluators: Vec<E>,
    pub journal: Journal,
    /// The journal's records so far (empty for a new run).
    pub previous: Vec<Record>,
    pub stop: StopFlag,
    pub view: View,
    /// The code-writing proposer of `nightshift.toml`, if one is configured.
    pub proposer: Option<crate::propose::Proposer>,
    /// Where a kernel's first gain is told (`[notify]`), if anywhere.
    pub notifier: Option<crate::notify::Notifier>,
    /// [`Clock::real`] but in tests.
    pub clock: Clock,
}

/// Evidence about the last candidate, for its commit message.
struct Evidence {
    kernel: usize,
    config: Candidate,
    /// What its rewrites made of the kernel (None: the kernel as written).
    rewritten: Option<(KernelSpec, crate::rewrite::Change)>,
    eval: Evaluation,
    ab: Option<AbFigures>,
}

pub struct Dispatcher<E: Evaluator> {
    ctl: Controller,
    kernels: Vec<KernelEntry>,
    budgets: Budgets,
    journal: Journal,
    ws: Workspace,
    gpus: pool::Pool<E>,
    /// Where a compile prefetch may put its results (None: no prefetch).
    prefetch_to: Option<(PathBuf, String)>,
    replay: Replay,
    run_id: String,
    device: String,
    stop: StopFlag,
    view: View,
    clock: Clock,
    /// Wall seconds from the run's start to when this process took it over (the
    /// time the daemon was down included: the night passes all the same).
    wall_offset_s: f64,
    /// The run's first record's time, ms since the epoch (None: a new run).
    start_ms: Option<u64>,
    /// Still answering from the journal: the clock and the ledger are the replay's.
    replaying: bool,
    /// The replay ended: the work the controller asked for last must be admitted
    /// again on the whole ledger and the real clock.
    recheck: bool,
    /// The seqs of the records of work measured ahead by this process and not
    /// taken by the controller yet (taken, they count as evaluated, not replayed).
    ahead_seqs: std::collections::HashSet<u64>,
    /// Pieces of work measured ahead by this process.
    measured_ahead: usize,
    last: Option<Evidence>,
    /// The (kernel, pattern, best) of the last proposal journaled.
    proposed: Option<(usize, String, Candidate)>,
    /// The run as its journal tells it: every record written is folded in.
    state: RunState,
    /// Per kernel: the timing method of its baseline, which all its measurements use.
    pins: Vec<MethodChoice>,
    evaluated: usize,
    replayed: usize,
    /// The points of the study in progress, by kernel, as they are measured.
    study_points: BTreeMap<usize, Vec<(i64, Evaluation)>>,
    gpu_busy_s: f64,
    /// Per kernel: warned already that its cost model overcounts.
    warned: Vec<bool>,
    proposer: Option<crate::propose::Proposer>,
    /// Per kernel: its proposals so far, as the next request tells them.
    history: Vec<Vec<proposals::Past>>,
    /// Per kernel: the question written and not answered yet.
    questions: Vec<Option<proposals::Question>>,
    notifier: Option<crate::notify::Notifier>,
    /// Notices being sent in the background, by key.
    sending: Vec<(
        String,
        tokio::task::JoinHandle<Vec<crate::notify::Delivery>>,
    )>,
}

/// Now, in milliseconds since the Unix epoch (the journal's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<E: Evaluator> Dispatcher<E> {
    pub fn new(setup: Setup<E>) -> Result<Self> {
        let first = setup
            .evaluators
            .first()
            .ok_or_else(|| anyhow!("a run needs at least one GPU"))?;
        let device = first.device_name();
        if let Some(other) = setup.evaluators.iter().find(|e| e.device_name() != device) {
            return Err(anyhow!(
                "the GPUs of a run must be of one model (their measurements are compared): {device} and {}",
                other.device_name()
            ));
        }
        let prefetch_to = first.prefetch_target();
        let ledger = crate::budget::Ledger::for_device(&setup.budgets, &device);
        let specs = setup.kernels.iter().map(|k| k.spec.clone()).collect();
        let ctl = Controller::new(specs, setup.library, setup.budgets.clone(), ledger)
            .with_proposer(setup.proposer.is_some());
        let start_ms = setup.previous.first().map(|r| r.t_ms);
        let wall_offset_s = start_ms.map_or(0.0, |s| now_ms().saturating_sub(s) as f64 / 1e3);
        let state = RunState::from_records(&setup.previous);
        let replay = Replay::of(&state.recorded);
        let pins = vec![MethodChoice::Auto; setup.kernels.len()];
        let n_kernels = setup.kernels.len();
        Ok(Dispatcher {
            ctl,
            pins,
            kernels: setup.kernels,
            budgets: setup.budgets,
            journal: setup.journal,
            ws: setup.workspace,
            gpus: pool::Pool::new(setup.evaluators),
            prefetch_to,
            wall_offset_s,
            start_ms,
            replaying: !setup.previous.is_empty(),
            recheck: false,
            replay,
            run_id: setup.run_id,
            device,
            stop: setup.stop,
            view: setup.view,
            clock: setup.clock,
            ahead_seqs: Default::default(),
            measured_ahead: 0,
            last: None,
            proposed: None,
            state,
            evaluated: 0,
            replayed: 0,
            study_points: BTreeMap::new(),
            gpu_busy_s: 0.0,
            warned: vec![false; n_kernels],
            proposer: setup.proposer,
            history: vec![Vec::new(); n_kernels],
            questions: (0..n_kernels).map(|_| None).collect(),
            notifier: setup.notifier,
            sending: Vec::new(),
        })
    }

    /// Wall seconds since the run started: while replaying, as they were when the
    /// record consumed last was written; then the real clock's.
    fn now_s(&self) -> f64 {
        if self.replaying {
            return match (self.replay.clock_ms(), self.start_ms) {
                (Some(t), Some(s)) => t.saturating_sub(s) as f64 / 1e3,
                _ => 0.0,
            };
        }
        self.wall_offset_s + self.clock.elapsed_s()
    }

    /// Journals `event` and folds it into the run's state: the one way a record is
    /// written, so the live summary is the journal's fold like `status`'s.
    fn write(&mut self, event: &JEvent) -> Result<u64> {
        let t_ms = now_ms();
        let seq = self
            .journal
            .append_at(event, t_ms)
            .with_context(|| format!("writing {}", self.journal.path().display()))?;
        self.state.apply(&Record {
            seq,
            t_ms,
            event: event.clone(),
        });
        Ok(seq)
    }

    /// Whether the journal answers `action` (GPU work) without the GPU.
    fn answered(&self, action: &Action) -> bool {
        let key = |k: usize, c: &dyn std::fmt::Display| (self.name(k), c.to_string());
        match action {
            Action::MeasureBaseline { kernel, config } => {
                self.replay.evaluated.contains_key(&key(*kernel, config))
            }
            Action::Evaluate {
                kernel,
                config,
                against,
                ..
            } => {
                // A verdict answers only a request against the best it was
                // measured against.
                let k = key(*kernel, config);
                self.replay.evaluated.get(&k).is_some_and(|e| {
                    e.value.outcome != Outcome::Passed
                        || self.replay.verdict(&k, &against.to_string()).is_some()
                })
            }
            Action::StudyPoint {
                kernel,
                config,
                scale,
                ..
            } => {
                let (name, config) = key(*kernel, config);
                self.replay.studies.contains_key(&name)
                    || self
                        .replay
                        .study_points
                        .contains_key(&(name, config, *scale))
            }
            Action::FinalComparison { kernel, .. } => {
                self.replay.finals.contains_key(&self.name(*kernel))
            }
            Action::Await { kernel } => matches!(
                self.questions.get(*kernel),
                Some(Some(proposals::Question::Answered(_)))
            ),
            _ => true,
        }
    }

    fn name(&self, kernel: usize) -> String {
        self.kernels[kernel].spec.name.clone()
    }

    /// The kernel of candidate `c`: the spec as its rewrites make it, and what they
    /// changed (None without rewrites). The controller proposes only rewrites it
    /// found to apply (the engine is pure), so an error here is a bug, not input.
    fn version(
        &self,
        kernel: usize,
        c: &Candidate,
    ) -> Result<(KernelSpec, Option<crate::rewrite::Change>)> {
        let spec = &self.kernels[kernel].spec;
        crate::rewrite::version(spec, &c.rewrites)
            .with_context(|| format!("rewriting {} for {c}", spec.name))
    }

    /// Appends to the journal, unless a resumed run already journaled this decision.
    fn record(&mut self, event: JEvent) -> Result<()> {
        if let Some(seq) = self.replay.already(&event) {
            return self.consumed(seq);
        }
        self.write(&event)?;
        Ok(())
    }

    /// Starts compiling the candidates queued after this one, so that their compile
    /// overlaps this one's measurement.
    fn prefetch(&self, kernel: usize) {
        let Some((cache, arch)) = self.prefetch_to.clone() else {
            return;
        };
        let name = self.name(kernel);
        let queued: Vec<(KernelSpec, Config)> = self
            .ctl
            .queued(kernel)
            .into_iter()
            .filter(|c| {
                !self
                    .replay
                    .evaluated
                    .contains_key(&(name.clone(), c.to_string()))
            })
            .take(4)
            .filter_map(|c| Some((self.version(kernel, &c).ok()?.0, c.config)))
            .collect();
        if queued.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            let reqs: Vec<_> = queued
                .iter()
                .map(|(spec, c)| compile_requests(spec, c, &arch).0)
                .collect();
            let _ = compile_all(&reqs, &cache);
        });
    }

    /// Says once per kernel that its cost model counts more than the device can move
    /// (a figure above a measured ceiling on a proven output).
    fn warn_cost_model(&mut self, kernel: usize, e: &Evaluation) {
        if self.warned[kernel] {
            return;
        }
        if let Some(a) = e
            .anomalies
            .iter()
            .find(|a| a.starts_with(crate::evaluate::COST_MODEL_OVERCOUNTS))
        {
            self.warned[kernel] = true;
            let spec = &self.kernels[kernel].spec;
            self.view.show(Seen::CostModel {
                kernel: &spec.name,
                anomaly: a,
                spec_path: &spec.spec_path,
            });
        }
    }

    fn status(&mut self, kernel: usize, what: &str) {
        let name = &self.kernels[kernel].spec.name;
        let best = self
            .state
            .kernel_states
            .iter()
            .find(|k| &k.kernel == name)
            .and_then(|s| s.baseline_us.zip(s.best_us))
            .map(|(b, x)| b / x);
        let spent = self.ctl.ledger().spent();
        let limits = &self.budgets.run;
        self.view.status(&Status {
            kernel: name,
            index: kernel + 1,
            kernels: self.kernels.len(),
            iteration: self.evaluated + self.replayed,
            best,
            gpu_s: spent.gpu_s,
            gpu_limit_s: limits.gpu.map(|l| l.as_secs_f64()),
            dollars: spent.dollars,
            dollars_limit: limits.dollars,
            what,
        });
    }

    /// Runs the loop until the controller stops; journals how it ended.
    pub async fn run(mut self) -> Result<RunSummary> {
        if let Some((device, ceilings, measure)) = self.gpus.any().and_then(|e| e.machine()) {
            self.write(&JEvent::Machine {
                device,
                ceilings,
                measure,
                nightshift: env!("CARGO_PKG_VERSION").to_string(),
            })?;
        }
        // (A limit stops the controller only after the final comparisons it kept room
        // for: they are actions like any other.)
        let ended = self.drive().await;
        // The work measured ahead still in flight lands and is journaled: the GPUs
        // spent it.
        let drained = self.drain().await;
        let ended = match (ended, drained) {
            (Ok(_), Err(e)) => Err(e),
            (ended, _) => ended,
        };
        // The notices still on their way: what became of them is journaled.
        let _ = self.sent(true).await;
        let (reason, stop) = match &ended {
            Ok(stop) => (stop.describe(), Some(stop.clone())),
            Err(e) => (format!("stopped by an error: {e:#}"), None),
        };
        // A run that stopped inside its replay: its ledger still gets every charge.
        self.go_live()?;
        let _ = self.charge_idle(None);
        self.release_all()?;
        let spent = self.ctl.ledger().spent();
        self.snapshot()?;
        self.write(&JEvent::RunFinished {
            reason: reason.clone(),
            stop: stop.clone(),
        })?;
        self.view.clear();
        for ev in self.gpus.take_all() {
            ev.shutdown();
        }
        ended?;
        let wall_limit = self.budgets.run.wall.map(|d| d.as_secs_f64());
        Ok(RunSummary {
            run_id: self.run_id.clone(),
            device: self.device.clone(),
            branch: self.ws.branch.clone(),
            stop: reason,
            stop_reason: stop,
            kernels: self.kernel_summaries(),
            spent,
            dollars: spent.dollars,
            evaluated: self.evaluated,
            replayed: self.replayed,
            wall_s: self.clock.elapsed_s(),
            gpu_busy_s: self.gpu_busy_s,
            overrun_s: wall_limit.map_or(0.0, |l| (self.now_s() - l).max(0.0)),
            gpus: self.gpus.size(),
            measured_ahead: self.measured_ahead,
        })
    }

    async fn drive(&mut self) -> Result<StopReason> {
        let mut pending: VecDeque<Action> = self.ctl.handle(self.now_s(), CEvent::Started).into();
        while let Some(action) = pending.pop_front() {
            self.sent(false).await?;
            let gpu_work = matches!(
                action,
                Action::MeasureBaseline { .. }
                    | Action::Evaluate { .. }
                    | Action::StudyPoint { .. }
                    | Action::FinalComparison { .. }
                    | Action::Await { .. }
            );
            if gpu_work {
                if let Some(signal) = self.stop.get() {
                    pending = self
                        .ctl
                        .handle(self.now_s(), CEvent::Interrupted { signal })
                        .into();
                    continue;
                }
                if !self.answered(&action) {
                    self.go_live()?;
                }
                if !self.replaying && std::mem::take(&mut self.recheck) {
                    // Asked for on the replay's ledger and clock: admitted again on
                    // the whole ledger and the real clock, or the run stops here.
                    let now = self.now_s();
                    let stop = self.ctl.handle(now, CEvent::Resumed);
                    if !stop.is_empty() {
                        pending = stop.into();
                        continue;
                    }
                }
                // With several GPUs: the free ones measure ahead, and a request
                // already in flight ahead is waited for.
                self.look_ahead(&action);
                self.wait_for(&action).await?;
            }
            match action {
                Action::MeasureBaseline { kernel, config } => {
                    let result = self.baseline(kernel, &config).await?;
                    let now = self.now_s();
                    pending.extend(self.ctl.handle(now, CEvent::Baseline { kernel, result }));
                }
                Action::Evaluate {
                    kernel,
                    pattern,
                    config,
                    against,
                    prediction,
                } => {
                    self.propose(kernel, &pattern, &config, &against, prediction.as_ref())?;
                    let result = self.candidate(kernel, &pattern, &config, &against).await?;
                    self.learned(kernel, &config, false);
                    let now = self.now_s();
                    pending.extend(self.ctl.handle(
                        now,
                        CEvent::Evaluated {
                            kernel,
                            config,
                            result,
                        },
                    ));
                }
                Action::Commit {
                    kernel,
                    pattern,
                    config,
                    ..
                } => {
                    self.commit(kernel, &pattern, &config)?;
                    self.learned(kernel, &config, true);
                    self.first_gain(kernel, &config)?;
                }
                Action::Propose {
                    kernel,
                    pattern,
                    against,
                    attempt,
                } => {
                    let next = self.write_question(kernel, &pattern, &against, attempt)?;
                    pending.extend(next);
                }
                Action::Send { kernel } => self.send_question(kernel),
                Action::Await { kernel } => {
                    let next = self.await_answer(kernel).await?;
                    pending.extend(next);
                }
                Action::ProposalInvalid {
                    kernel,
                    pattern,
                    config,
                    reason,
                } => self.proposal_invalid(kernel, pattern, config, reason)?,
                Action::Revert {
                    kernel,
                    config,
                    reason,
                    ..
                } => {
                    // Nothing of a rejected candidate is in the worktree; make sure.
                    self.ws.discard()?;
                    self.record(JEvent::Revert {
                        kernel: self.name(kernel),
                        config: config.to_string(),
                        reason,
                    })?
                }
                Action::NotApplicable {
                    kernel,
                    pattern,
                    config,
                    reason,
                } => self.not_applicable(kernel, pattern, &config, reason)?,
                Action::Pivot {
                    kernel,
                    pattern,
                    reason,
                } => self.pivot(kernel, pattern, reason)?,
                Action::Unmoved { kernel, tunables } => self.unmoved(kernel, tunables)?,
                Action::StudyBegin {
                    kernel,
                    pattern,
                    config,
                    scales,
                    ..
                } => self.study_begin(kernel, &pattern, &config, &scales),
                Action::StudyPoint {
                    kernel,
                    pattern,
                    config,
                    scale,
                } => {
                    let cost = self.study_point(kernel, &pattern, &config, scale).await?;
                    let now = self.now_s();
                    pending.extend(self.ctl.handle(
                        now,
                        CEvent::StudyPoint {
                            kernel,
                            scale,
                            cost,
                        },
                    ));
                }
                Action::StudyEnd {
                    kernel,
                    pattern,
                    config,
                    cut_short,
                } => self.study_end(kernel, &pattern, &config, cut_short)?,
                Action::KernelPaused { kernel, reason } => {
                    self.view.show(Seen::Paused {
                        kernel: &self.kernels[kernel].spec.name,
                        reason: &reason,
                    });
                    self.record(JEvent::KernelPaused {
                        kernel: self.name(kernel),
                        reason,
                    })?;
                    self.snapshot()?;
                }
                Action::KernelDone { kernel, reason } => {
                    self.view.show(Seen::Done {
                        kernel: &self.kernels[kernel].spec.name,
                        reason: &reason,
                    });
                    self.record(JEvent::KernelDone {
                        kernel: self.name(kernel),
                        reason,
                    })?;
                    self.snapshot()?;
                }
                Action::FinalComparison {
                    kernel,
                    baseline,
                    best,
                } => {
                    let cost = self.final_comparison(kernel, &baseline, &best).await?;
                    let now = self.now_s();
                    pending.extend(self.ctl.handle(now, CEvent::Compared { kernel, cost }));
                }
                Action::FinalSkipped { kernel, reason } => self.view.show(Seen::FinalSkipped {
                    kernel: &self.kernels[kernel].spec.name,
                    reason: &reason,
                }),
                Action::Stop { reason } => return Ok(reason),
            }
        }
        Ok(StopReason::NothingLeft)
    }
}
