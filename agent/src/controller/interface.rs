//! What the controller hears ([`Event`]: what came back from carrying out an
//! action) and what it says ([`Action`]): the whole of its conversation with the
//! dispatcher.

use serde::{Deserialize, Serialize};

use crate::budget::{Stage, StopReason};
use crate::measure::Verdict;
use crate::patterns::Prediction;
use crate::profile::Profile;
use crate::spec::{Candidate, Config};

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
        config: Candidate,
        result: CandidateResult,
    },
    /// A point of the study of `kernel` was measured (or answered from the journal);
    /// what it cost, by stage. `None`: the journal concluded the study before this
    /// point (a resumed run follows its record).
    StudyPoint {
        kernel: usize,
        scale: i64,
        cost: Option<Vec<(Stage, f64)>>,
    },
    /// The final comparison of `kernel` (its best against its baseline) was made, or
    /// answered from the journal; what it cost, by stage.
    Compared {
        kernel: usize,
        cost: Vec<(Stage, f64)>,
    },
    /// SIGINT or SIGTERM.
    Interrupted {
        signal: String,
    },
    /// The proposer answered a [`Action::Propose`] (or the journal did, on resume):
    /// the whole new source, or why there is none (the proposer failed). `dollars`
    /// is what the call cost, already charged to the ledger.
    Proposed {
        kernel: usize,
        pattern: String,
        answer: Result<Answer, String>,
        dollars: f64,
        /// Seconds the call took: the GPU was held idle meanwhile.
        wait_s: f64,
    },
    /// The question asked for is written: the most it can cost (`bound`, dollars)
    /// and the longest it can hold the GPU idle (`wait_s`). Answered with nothing
    /// (send it) or a stop: the budget must be able to pay the larger of the bound
    /// and the mean bill so far, and hold the wait beside the candidate's time.
    Priced {
        kernel: usize,
        pattern: String,
        bound: f64,
        wait_s: f64,
    },
    /// A resumed run's replay of its journal ended: the work asked for last was
    /// admitted on the ledger and clock of the moment it was first asked for; it is
    /// admitted again now on everything the run spent (the daemon may have been
    /// down past a limit). Answered with nothing, or with a stop.
    Resumed,
}

/// A proposer's source and what the checks before the GPU found
/// ([`crate::propose::check`]: it parses, keeps the entry and its parameters,
/// includes only allowed headers; `Err` says why not).
#[derive(Debug, Clone)]
pub struct Answer {
    pub source: String,
    pub checked: Result<(), String>,
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
    /// Validate `config` and measure it interleaved with `against` (the current best),
    /// each compiled with its own rewrites.
    Evaluate {
        kernel: usize,
        pattern: String,
        config: Candidate,
        against: Candidate,
        prediction: Option<Prediction>,
    },
    Commit {
        kernel: usize,
        pattern: String,
        config: Candidate,
        speedup: f64,
    },
    Revert {
        kernel: usize,
        pattern: String,
        config: Candidate,
        reason: String,
    },
    /// Write the question to the code-writing proposer for a new source of `kernel`
    /// under the proposal pattern `pattern`, from the current best `against` (its
    /// `attempt`-th question around this best), and price it. Answered with
    /// [`Event::Priced`].
    Propose {
        kernel: usize,
        pattern: String,
        against: Candidate,
        attempt: usize,
    },
    /// The question priced for `kernel` was admitted: send it. Its answer is taken
    /// by [`Action::Await`], at once or (other kernels running meanwhile) when the
    /// kernel's turn comes again.
    Send {
        kernel: usize,
    },
    /// Take the answer to the question sent for `kernel` (waiting for it if need
    /// be). Answered with [`Event::Proposed`].
    Await {
        kernel: usize,
    },
    /// A proposal that cannot be a candidate (it fails the checks before the GPU,
    /// repeats an earlier one, or the proposer failed): recorded and told to the
    /// proposer next time, never an error of the run.
    ProposalInvalid {
        kernel: usize,
        pattern: String,
        /// The proposal's candidate name, when there was a source.
        config: Option<Candidate>,
        reason: String,
    },
    /// A rewrite candidate's rewrites do not apply to the kernel (nothing to change,
    /// or the edit would not parse): recorded, never compiled, no GPU time.
    NotApplicable {
        kernel: usize,
        pattern: String,
        config: Candidate,
        reason: String,
    },
    Pivot {
        kernel: usize,
        pattern: String,
        reason: String,
    },
    /// A study begins: `config` is to be measured with the spec's workload axes
    /// multiplied by each scale (and at the caller's size, x1), one
    /// [`Action::StudyPoint`] at a time, for throughput per unit of work.
    StudyBegin {
        kernel: usize,
        pattern: String,
        config: Candidate,
        axes: Vec<String>,
        scales: Vec<i64>,
        budget_s: f64,
    },
    /// Measure one point of the study. Answered with [`Event::StudyPoint`].
    StudyPoint {
        kernel: usize,
        pattern: String,
        config: Candidate,
        scale: i64,
    },
    /// The study is over: conclude from the points measured (cut short, and why, when
    /// its budget or the run's did not take them all).
    StudyEnd {
        kernel: usize,
        pattern: String,
        config: Candidate,
        cut_short: Option<String>,
    },
    /// The kernel spent its share of the budget while others wait; it resumes later.
    KernelPaused {
        kernel: usize,
        reason: String,
    },
    /// Tunables of a kernel no applicable pattern moves (at its baseline's profile),
    /// each with why: said at the start of the kernel, never silently frozen.
    Unmoved {
        kernel: usize,
        tunables: Vec<String>,
    },
    /// Nothing more for this kernel.
    KernelDone {
        kernel: usize,
        reason: String,
    },
    /// Measure the kernel's best interleaved with its baseline once more, so the
    /// gain of the whole run has one interval. Answered with [`Event::Compared`].
    FinalComparison {
        kernel: usize,
        baseline: Config,
        best: Candidate,
    },
    /// The final comparison of a kernel with a gain does not fit the budget.
    FinalSkipped {
        kernel: usize,
        reason: String,
    },
    Stop {
        reason: StopReason,
    },
}
