//! What a run says when it ends: each kernel's result and the run's spend, from
//! the run's fold of its journal (the report reads the journal itself).

use super::*;

/// One kernel's result, for the closing summary (the report reads the journal).
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelSummary {
    pub kernel: String,
    pub baseline: Option<String>,
    pub baseline_us: Option<f64>,
    pub best: Option<String>,
    pub best_us: Option<f64>,
    /// The best measured interleaved with the baseline at the end of the kernel.
    pub final_speedup: Option<(f64, f64, f64)>,
    pub final_verdict: Option<String>,
    pub commits: Vec<String>,
    pub outcomes: BTreeMap<String, usize>,
    pub done: Option<String>,
    /// The workload-batching study's conclusion, when one was carried out.
    pub study: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub device: String,
    pub branch: String,
    pub stop: String,
    pub stop_reason: Option<StopReason>,
    pub kernels: Vec<KernelSummary>,
    pub spent: Spend,
    pub dollars: f64,
    /// Candidates evaluated on the GPU in this process (not replayed).
    pub evaluated: usize,
    /// Candidates answered from the journal on resume.
    pub replayed: usize,
    /// Wall seconds of this process's part of the run.
    pub wall_s: f64,
    /// Of that, seconds the GPU spent validating and measuring.
    pub gpu_busy_s: f64,
    /// Past the wall budget, seconds (0 when inside).
    pub overrun_s: f64,
    /// GPUs this process ran on (one worker each).
    pub gpus: usize,
    /// Pieces of work this process measured ahead on free GPUs; those the controller
    /// then asked for are counted in `evaluated` too.
    pub measured_ahead: usize,
}

impl<E: Evaluator> Dispatcher<E> {
    /// Each kernel's result, from the run's fold of its journal.
    pub(super) fn kernel_summaries(&self) -> Vec<KernelSummary> {
        self.kernels
            .iter()
            .map(|k| {
                let name = &k.spec.name;
                let s = self.state.kernel_states.iter().find(|s| &s.kernel == name);
                KernelSummary {
                    kernel: name.clone(),
                    baseline: s.and_then(|s| s.baseline.clone()),
                    baseline_us: s.and_then(|s| s.baseline_us),
                    best: s.and_then(|s| s.best.clone()),
                    best_us: s.and_then(|s| s.best_us),
                    final_speedup: s.and_then(|s| s.final_speedup),
                    final_verdict: s.and_then(|s| s.final_verdict.clone()),
                    commits: s.map(|s| s.commits.clone()).unwrap_or_default(),
                    outcomes: s.map(|s| s.outcomes.clone()).unwrap_or_default(),
                    done: s.and_then(|s| s.done.clone()),
                    study: s.and_then(|s| s.study.clone()),
                }
            })
            .collect()
    }
}
