//! One candidate end to end, on the parent's side: plan every size, compile candidate
//! and reference in parallel (cached), hand the job to the worker, turn a hang or a
//! dead worker into an outcome, and judge the measurement against the device's
//! measured ceilings (roofline fractions; a figure above them is an anomaly of the cost
//! model, `implausible` only below the shortest possible launch).

mod evaluation;
pub mod external;
mod judge;
mod prepare;
mod session;

use std::path::PathBuf;
use std::time::Duration;

use crate::measure::verdict::DEFAULT_MIN_GAIN;
use crate::worker::protocol::MeasureOpts;
use crate::worker::supervisor::SupervisorError;

pub use evaluation::{cost_of, CompileInfo, Evaluation, SkippedSize, StageTimes};
pub use judge::{judge, Roofline, COST_MODEL_OVERCOUNTS, MIN_LAUNCH_US};
pub use prepare::{compile_all, compile_requests, cuda_include_dir, headers_digest, plan_sizes};
pub use session::Session;

/// How evaluations are run.
#[derive(Debug, Clone)]
pub struct Options {
    pub gpu: usize,
    pub cache_dir: PathBuf,
    /// Longest silence from the worker before a candidate is declared hung.
    pub watchdog: Duration,
    pub measure: MeasureOpts,
    pub min_gain: f64,
    pub seed: u64,
    /// Fractions of a ceiling up to 1 + margin are flagged anomalies; above, implausible.
    pub plausibility_margin: f64,
    pub remeasure_ceilings: bool,
    /// The `nightshift` executable that runs the worker (default: this executable).
    pub worker_exe: Option<PathBuf>,
    /// The command the worker is started through (`nightshift.toml` `[worker]
    /// launcher`; empty: directly). A restart goes through it again.
    pub launcher: Vec<String>,
}

impl Options {
    pub fn new(cache_dir: PathBuf) -> Self {
        Options {
            gpu: 0,
            cache_dir,
            watchdog: Duration::from_secs(30),
            measure: MeasureOpts::default(),
            min_gain: DEFAULT_MIN_GAIN,
            seed: 0x6E5E_ED00,
            plausibility_margin: 0.03,
            remeasure_ceilings: false,
            worker_exe: None,
            launcher: vec![],
        }
    }
}

/// The default cache directory: `$NIGHTSHIFT_CACHE_DIR`, else `$XDG_CACHE_HOME/nightshift`,
/// else `~/.cache/nightshift`, else `.nightshift-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NIGHTSHIFT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("nightshift");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/nightshift");
    }
    PathBuf::from(".nightshift-cache")
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Worker(#[from] SupervisorError),
    #[error("the GPU worker failed: {0}")]
    Infra(String),
}
