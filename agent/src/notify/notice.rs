//! What a notification says: the [`Notice`] (the JSON body as serialized), its
//! one-paragraph human text, and the body each webhook format is sent.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::WebhookFormat;

/// An event of a run worth telling someone about. Serialized with its kind in
/// `event` (`run_ended`, `first_gain`, `run_error`): a `json` webhook is sent this,
/// plus the [`Notice::text`] under `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    /// The run stopped (finished, out of budget, interrupted).
    RunEnded {
        run_id: String,
        /// The branch the winners are committed on.
        branch: String,
        /// The GPU, in words.
        device: String,
        /// Why it stopped, e.g. "the GPU budget is spent".
        reason: String,
        /// One per kernel that got faster, in the order to print.
        gains: Vec<Gain>,
        spent: SpendLine,
        /// The report's path, as the reader should open it.
        report: Option<String>,
    },
    /// A kernel's first winner of the run.
    FirstGain {
        run_id: String,
        kernel: String,
        gain: Gain,
    },
    /// The run failed and stopped.
    RunError {
        run_id: String,
        error: String,
        report: Option<String>,
    },
}

/// One kernel's best result against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gain {
    pub kernel: String,
    /// The winning candidate's name.
    pub best: String,
    /// Baseline time over best time, and its confidence interval. Non-finite values
    /// are written as "nan", "inf" and "-inf" ([`crate::nonfinite`]).
    #[serde(with = "crate::nonfinite")]
    pub speedup: f64,
    #[serde(with = "crate::nonfinite")]
    pub lo: f64,
    #[serde(with = "crate::nonfinite")]
    pub hi: f64,
    /// FAST, LIKELY and so on, as the A/B rule says it.
    pub verdict: String,
    /// The commit holding the winner, when it was committed.
    pub commit: Option<String>,
}

/// What the run spent against its limits (None: no limit of that kind).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SpendLine {
    pub gpu_s: f64,
    pub gpu_limit_s: Option<f64>,
    /// Every dollar, the proposer's included.
    pub dollars: f64,
    /// The part of `dollars` the proposer's calls cost.
    pub proposer_dollars: f64,
    pub dollars_limit: Option<f64>,
    pub wall_s: f64,
    pub wall_limit_s: Option<f64>,
}

impl Notice {
    /// The notice's identity, for sending each at most once: `run_ended`,
    /// `first_gain:<kernel>`, `run_error`.
    pub fn key(&self) -> String {
        match self {
            Notice::RunEnded { .. } => "run_ended".to_string(),
            Notice::FirstGain { kernel, .. } => format!("first_gain:{kernel}"),
            Notice::RunError { .. } => "run_error".to_string(),
        }
    }

    /// The message for a person (a Slack body's `text`), one paragraph. No NaN or
    /// infinity is printed: a figure that is not a number is said in words.
    pub fn text(&self) -> String {
        match self {
            Notice::RunEnded {
                run_id,
                branch,
                device,
                reason,
                gains,
                spent,
                report,
            } => {
                let mut s = format!("nightshift run {run_id}");
                if !device.trim().is_empty() {
                    let _ = write!(s, " on {}", device.trim());
                }
                let _ = write!(s, ": stopped: {}.", sentence(reason));
                if gains.is_empty() {
                    s.push_str(" No gains.");
                } else {
                    let list: Vec<String> = gains.iter().map(|g| gain(&g.kernel, g)).collect();
                    let _ = write!(s, " Gains: {}.", list.join("; "));
                    if !branch.trim().is_empty() {
                        let _ = write!(s, " Branch: {}.", branch.trim());
                    }
                }
                let _ = write!(s, " Spent {}.", spend(spent));
                push_report(&mut s, report);
                s
            }
            Notice::FirstGain {
                run_id,
                kernel,
                gain: g,
            } => format!("nightshift run {run_id}: first gain: {}.", gain(kernel, g)),
            Notice::RunError {
                run_id,
                error,
                report,
            } => {
                let mut s = format!("nightshift run {run_id} failed: {}.", sentence(error));
                push_report(&mut s, report);
                s
            }
        }
    }

    /// The body a webhook of `format` is sent: `{"text": ...}` for Slack; for JSON
    /// the notice as serialized with the `text` added.
    pub fn body(&self, format: WebhookFormat) -> Value {
        let text = self.text();
        match format {
            WebhookFormat::Slack => serde_json::json!({ "text": text }),
            WebhookFormat::Json => {
                // Serializing these types cannot fail (string keys, no maps of
                // other keys); should it ever, the text alone still says it all.
                let mut v = serde_json::to_value(self)
                    .unwrap_or_else(|_| serde_json::json!({ "event": self.key() }));
                if let Some(map) = v.as_object_mut() {
                    map.insert("text".into(), Value::String(text));
                }
                v
            }
        }
    }
}

/// `text` trimmed, without its final full stop (one is added after it).
fn sentence(text: &str) -> &str {
    let t = text.trim();
    t.strip_suffix('.').unwrap_or(t)
}

fn push_report(s: &mut String, report: &Option<String>) {
    if let Some(r) = report.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        let _ = write!(s, " Report: {r}");
    }
}

/// `gemm 1.23x [1.21, 1.25] FAST via tile-128 (commit abc1234)`.
fn gain(kernel: &str, g: &Gain) -> String {
    let mut s = kernel.to_string();
    match finite(g.speedup) {
        Some(x) => {
            let _ = write!(s, " {x:.2}x");
            match (finite(g.lo), finite(g.hi)) {
                (Some(lo), Some(hi)) => {
                    let _ = write!(s, " [{lo:.2}, {hi:.2}]");
                }
                _ => s.push_str(" (no interval)"),
            }
        }
        None => s.push_str(" (speedup not measured)"),
    }
    if !g.verdict.trim().is_empty() {
        let _ = write!(s, " {}", g.verdict.trim());
    }
    if !g.best.trim().is_empty() {
        let _ = write!(s, " via {}", g.best.trim());
    }
    if let Some(c) = g.commit.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        let _ = write!(s, " (commit {})", short_commit(c));
    }
    s
}

/// A full hexadecimal commit id cut to 7 digits, like `git log --oneline`.
fn short_commit(c: &str) -> &str {
    if c.len() > 12 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
        &c[..7]
    } else {
        c
    }
}

/// `12.3 GPU-min of 60 ($1.20 of $5.00, proposer $0.30) in 2.5 h of 8 h`.
fn spend(s: &SpendLine) -> String {
    let mut out = format!(
        "{} GPU-min",
        finite(s.gpu_s).map_or("?".into(), |g| format!("{:.1}", g / 60.0))
    );
    if let Some(l) = s.gpu_limit_s.and_then(finite) {
        let _ = write!(out, " of {}", short_number(l / 60.0));
    }
    let mut money = dollars(s.dollars);
    if let Some(l) = s.dollars_limit.and_then(finite) {
        let _ = write!(money, " of {}", dollars(l));
    }
    if s.proposer_dollars != 0.0 {
        let _ = write!(money, ", proposer {}", dollars(s.proposer_dollars));
    }
    let _ = write!(out, " ({money})");
    if let Some(w) = finite(s.wall_s) {
        let _ = write!(out, " in {}", wall(w));
        if let Some(l) = s.wall_limit_s.and_then(finite) {
            let _ = write!(out, " of {}", wall(l));
        }
    }
    out
}

fn dollars(x: f64) -> String {
    finite(x).map_or("$?".into(), |x| format!("${x:.2}"))
}

/// Wall time in minutes under two hours, else in hours.
fn wall(s: f64) -> String {
    if s < 7200.0 {
        format!("{} min", short_number(s / 60.0))
    } else {
        format!("{} h", short_number(s / 3600.0))
    }
}

/// A figure with at most one decimal and no `.0`: 60, 7.5.
fn short_number(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
