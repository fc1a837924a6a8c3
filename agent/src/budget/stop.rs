//! Why a run stops: the limit it reached and what was left, in words a person reads.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the run's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    WallTime,
    GpuHours,
    Dollars,
}

/// What is left of the run's limits, each as seconds of work on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Remaining {
    /// Work that still fits under every limit (0 once one is spent).
    #[serde(with = "crate::nonfinite")]
    pub seconds: f64,
    /// The limit that leaves the least; `None` only when no limit is set.
    pub binding: Option<Limit>,
    /// Each limit's headroom: infinite when the limit is not set, negative when
    /// it has been overrun.
    #[serde(with = "crate::nonfinite")]
    pub wall_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub gpu_s: f64,
    #[serde(with = "crate::nonfinite")]
    pub dollars_s: f64,
}

/// Why the run stops (or why a piece of work was not started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The next step would end past the wall-time limit.
    WallTime {
        #[serde(with = "crate::nonfinite")]
        limit_s: f64,
        #[serde(with = "crate::nonfinite")]
        elapsed_s: f64,
        /// The step's projection plus the watchdog reserve.
        #[serde(with = "crate::nonfinite")]
        needed_s: f64,
    },
    /// The next step would spend GPU time past the GPU-hours limit.
    GpuHours {
        #[serde(with = "crate::nonfinite")]
        limit_s: f64,
        #[serde(with = "crate::nonfinite")]
        spent_s: f64,
        #[serde(with = "crate::nonfinite")]
        needed_s: f64,
    },
    /// The next step would spend money past the dollars limit.
    Dollars {
        #[serde(with = "crate::nonfinite")]
        limit: f64,
        #[serde(with = "crate::nonfinite")]
        spent: f64,
        #[serde(with = "crate::nonfinite")]
        needed: f64,
    },
    /// SIGINT or SIGTERM.
    Signal { signal: String },
    /// Every kernel's every line of attack is done.
    NothingLeft,
}

impl StopReason {
    /// Stopped by a budget limit (wall time, GPU-hours, dollars).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            StopReason::WallTime { .. } | StopReason::GpuHours { .. } | StopReason::Dollars { .. }
        )
    }

    /// One line for a person: which limit, how much of it is used, what was asked.
    pub fn describe(&self) -> String {
        match self {
            StopReason::WallTime {
                limit_s,
                elapsed_s,
                needed_s,
            } => format!(
                "wall-time limit: {} of {} elapsed, and the next step needs about {} \
                 (its projection plus one watchdog in reserve)",
                human_s(*elapsed_s),
                human_s(*limit_s),
                human_s(*needed_s)
            ),
            StopReason::GpuHours {
                limit_s,
                spent_s,
                needed_s,
            } => format!(
                "GPU-time limit: {:.2} of {:.2} GPU-hours spent, and the next step needs \
                 about {} more (its projection plus one watchdog in reserve)",
                spent_s / 3600.0,
                limit_s / 3600.0,
                human_s(*needed_s)
            ),
            StopReason::Dollars {
                limit,
                spent,
                needed,
            } => format!(
                "dollar limit: ${spent:.2} of ${limit:.2} spent, and the next step would \
                 cost about ${needed:.2} more (its projection plus one watchdog in reserve)"
            ),
            StopReason::Signal { signal } => format!("stopped by {signal}"),
            StopReason::NothingLeft => "nothing left to try".to_string(),
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `12.3s`, `4m 05s`, `2h 07m`.
pub(super) fn human_s(s: f64) -> String {
    if !s.is_finite() {
        return format!("{s}s");
    }
    let neg = if s < 0.0 { "-" } else { "" };
    let s = s.abs();
    if s < 60.0 {
        format!("{neg}{s:.1}s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{neg}{}m {:02}s", t / 60, t % 60)
    } else {
        let t = (s / 60.0).round() as u64;
        format!("{neg}{}h {:02}m", t / 60, t % 60)
    }
}
