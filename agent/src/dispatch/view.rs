//! What a person watching the run sees: on a terminal, one line per event and a
//! status line (kernel, iteration, best speedup so far, spend against budget, what
//! runs now) redrawn in place; elsewhere, the same lines as `tracing` events (JSON).
//! The dispatcher hands the view what happened ([`Seen`], [`Status`]); how it reads
//! is decided here alone.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::measure::Verdict;
use crate::vocab::{AbFigures, Outcome};

/// Something that happened in the run, as the view shows it.
pub enum Seen<'a> {
    /// The run started (or resumed) on a device.
    Started {
        run_id: &'a str,
        device: &'a str,
        kernels: usize,
        branch: &'a str,
        journal: &'a Path,
        resumed: bool,
    },
    /// The cost model of a kernel's spec counts more than the GPU can move.
    CostModel {
        kernel: &'a str,
        anomaly: &'a str,
        spec_path: &'a Path,
    },
    Baseline {
        kernel: &'a str,
        config: &'a str,
        outcome: &'a Outcome,
        median_us: Option<f64>,
    },
    Proposal {
        kernel: &'a str,
        pattern: &'a str,
        candidates: usize,
        against: &'a str,
        prediction: &'a str,
    },
    Candidate {
        kernel: &'a str,
        config: &'a str,
        outcome: &'a Outcome,
        ab: Option<AbFigures>,
    },
    Committed {
        kernel: &'a str,
        sha: &'a str,
        branch: &'a str,
    },
    Final {
        kernel: &'a str,
        best: &'a str,
        verdict: Option<Verdict>,
        speedup: f64,
        ci_lo: f64,
        ci_hi: f64,
    },
    FinalSkipped {
        kernel: &'a str,
        reason: &'a str,
    },
    Pivot {
        kernel: &'a str,
        pattern: &'a str,
        reason: &'a str,
    },
    /// A tunable no applicable pattern moves.
    Unmoved {
        kernel: &'a str,
        tunable: &'a str,
    },
    NotApplicable {
        kernel: &'a str,
        config: &'a str,
        reason: &'a str,
    },
    /// A proposal that cannot be a candidate.
    ProposalInvalid {
        kernel: &'a str,
        pattern: &'a str,
        reason: &'a str,
    },
    /// A code-writing proposer answered (or the journal did).
    Asked {
        kernel: &'a str,
        pattern: &'a str,
        proposer: &'a str,
        outcome: String,
    },
    Paused {
        kernel: &'a str,
        reason: &'a str,
    },
    Done {
        kernel: &'a str,
        reason: &'a str,
    },
    StudyBegin {
        kernel: &'a str,
        pattern: &'a str,
        config: &'a str,
        axes: &'a [String],
        scales: &'a [i64],
    },
    StudyPoint {
        kernel: &'a str,
        scale: i64,
        problem: &'a str,
        outcome: &'a Outcome,
        median_us: Option<f64>,
        /// CTAs per SM, when the profile knows them.
        fill: Option<f64>,
    },
    StudyEnd {
        kernel: &'a str,
        conclusion: &'a str,
        cut_short: Option<&'a str>,
    },
}

/// A candidate's verdict, or why it has none.
fn verdict(outcome: &Outcome, ab: Option<&AbFigures>) -> String {
    match (outcome, ab) {
        (Outcome::Passed, Some(a)) => format!(
            "{} {:.3}x [{:.3}, {:.3}]",
            a.verdict.as_str(),
            a.speedup,
            a.ci_lo,
            a.ci_hi
        ),
        (Outcome::Passed, None) => "passed, not compared".into(),
        (o, _) => o.describe(),
    }
}

fn median(m: Option<f64>) -> String {
    m.map(|m| format!(", median {m:.2} µs")).unwrap_or_default()
}

impl Seen<'_> {
    /// The line a person reads.
    pub fn line(&self) -> String {
        match self {
            Seen::Started {
                run_id,
                device,
                kernels,
                branch,
                journal,
                resumed,
            } => format!(
                "run {run_id} on {device}: {kernels} kernel(s), branch {branch}, journal {}{}",
                journal.display(),
                if *resumed { " (resumed)" } else { "" }
            ),
            Seen::CostModel {
                kernel,
                anomaly,
                spec_path,
            } => format!(
                "{kernel:<10} warning: {anomaly} (fix [cost] in {}; every later figure of this kernel is affected)",
                spec_path.display()
            ),
            Seen::Baseline {
                kernel,
                config,
                outcome,
                median_us,
            } => format!(
                "{kernel:<10} baseline {config}: {}{}",
                outcome.describe(),
                median(*median_us)
            ),
            Seen::Proposal {
                kernel,
                pattern,
                candidates,
                against,
                prediction,
            } => format!(
                "{kernel:<10} {pattern}: {candidates} candidate(s) around {against}; predicts {prediction}"
            ),
            Seen::Candidate {
                kernel,
                config,
                outcome,
                ab,
            } => format!("{kernel:<10}   {config}: {}", verdict(outcome, ab.as_ref())),
            Seen::Committed {
                kernel,
                sha,
                branch,
            } => format!(
                "{kernel:<10}   committed {} on {branch}",
                &sha[..sha.len().min(10)]
            ),
            Seen::Final {
                kernel,
                best,
                verdict,
                speedup,
                ci_lo,
                ci_hi,
            } => format!(
                "{kernel:<10}   best {best} against the baseline, interleaved: {} {speedup:.3}x [{ci_lo:.3}, {ci_hi:.3}]",
                crate::journal::final_verdict_name(*verdict)
            ),
            Seen::FinalSkipped { kernel, reason } => {
                format!("{kernel:<10}   no final comparison with the baseline: {reason}")
            }
            Seen::Pivot {
                kernel,
                pattern,
                reason,
            } => format!("{kernel:<10} pivot away from {pattern}: {reason}"),
            Seen::Unmoved { kernel, tunable } => {
                format!("{kernel:<10} no pattern moves {tunable}")
            }
            Seen::NotApplicable {
                kernel,
                config,
                reason,
            } => format!("{kernel:<10}   not applicable: {config}: {reason}"),
            Seen::ProposalInvalid {
                kernel,
                pattern,
                reason,
            } => format!("{kernel:<10}   {pattern}: proposal_invalid: {reason}"),
            Seen::Asked {
                kernel,
                pattern,
                proposer,
                outcome,
            } => format!("{kernel:<10} {pattern}: asked {proposer}: {outcome}"),
            Seen::Paused { kernel, reason } => format!("{kernel:<10} paused: {reason}"),
            Seen::Done { kernel, reason } => format!("{kernel:<10} done: {reason}"),
            Seen::StudyBegin {
                kernel,
                pattern,
                config,
                axes,
                scales,
            } => format!(
                "{kernel:<10} {pattern}: {config} at {} x{}",
                axes.join(", "),
                std::iter::once(1)
                    .chain(scales.iter().copied())
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", x")
            ),
            Seen::StudyPoint {
                kernel,
                scale,
                problem,
                outcome,
                median_us,
                fill,
            } => format!(
                "{kernel:<10}   x{scale} ({problem}): {}{}{}",
                outcome.describe(),
                median(*median_us),
                fill.map(|f| format!(", {f:.1} CTAs per SM"))
                    .unwrap_or_default()
            ),
            Seen::StudyEnd {
                kernel,
                conclusion,
                cut_short,
            } => format!(
                "{kernel:<10}   {conclusion}{}",
                cut_short
                    .map(|c| format!(" (cut short: {c})"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The status line: where the run is and what it spent.
pub struct Status<'a> {
    pub kernel: &'a str,
    /// 1-based, of `kernels`.
    pub index: usize,
    pub kernels: usize,
    pub iteration: usize,
    /// The best speedup so far over the baseline, when both were measured.
    pub best: Option<f64>,
    pub gpu_s: f64,
    pub gpu_limit_s: Option<f64>,
    pub dollars: f64,
    pub dollars_limit: Option<f64>,
    /// What runs now.
    pub what: &'a str,
}

impl Status<'_> {
    pub fn line(&self) -> String {
        let best = self
            .best
            .map_or("best -".to_string(), |x| format!("best {x:.2}x"));
        let gpu = match self.gpu_limit_s {
            Some(l) => format!("GPU {:.2}/{:.2} h", self.gpu_s / 3600.0, l / 3600.0),
            None => format!("GPU {:.2} h", self.gpu_s / 3600.0),
        };
        let money = match self.dollars_limit {
            Some(l) => format!("${:.2}/${l:.2}", self.dollars),
            None => format!("${:.2}", self.dollars),
        };
        format!(
            "{} {}/{} · iter {} · {best} · {gpu} · {money} · {}",
            self.kernel, self.index, self.kernels, self.iteration, self.what
        )
    }
}

#[derive(Clone)]
pub struct View {
    tty: bool,
    /// The status line without the worker's progress.
    prefix: Arc<Mutex<String>>,
}

impl View {
    /// A terminal view when stderr is one.
    pub fn stderr() -> View {
        View {
            tty: std::io::stderr().is_terminal(),
            prefix: Arc::default(),
        }
    }

    /// No status line; lines go to `tracing` only (tests, `--json`).
    pub fn quiet() -> View {
        View {
            tty: false,
            prefix: Arc::default(),
        }
    }

    fn draw(&self, detail: &str) {
        if !self.tty {
            return;
        }
        let prefix = self
            .prefix
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut line = if detail.is_empty() {
            prefix
        } else {
            format!("{prefix} · {detail}")
        };
        let width = 140;
        if line.chars().count() > width {
            line = line.chars().take(width - 1).collect::<String>() + "…";
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Redraws the status line.
    pub fn status(&self, s: &Status) {
        *self.prefix.lock().unwrap_or_else(|p| p.into_inner()) = s.line();
        self.draw("");
    }

    /// One event of the run, kept in the scrollback above the status line.
    pub fn show(&self, seen: Seen) {
        self.line(&seen.line());
    }

    fn line(&self, s: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "\r\x1b[2K{s}");
            drop(err);
            self.draw("");
        } else {
            tracing::info!("{s}");
        }
    }

    pub fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }

    /// The worker's progress (compiling, validating, measuring), after the status.
    pub fn progress(&self) -> Box<dyn FnMut(&str) + Send> {
        let v = self.clone();
        Box::new(move |s: &str| v.draw(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_lines_with_their_figures() {
        let ab = AbFigures {
            verdict: Verdict::Fast,
            speedup: 1.2345,
            ci_lo: 1.2,
            ci_hi: 1.25,
            pairs: Some(40),
            min_gain: Some(0.02),
        };
        let seen = Seen::Candidate {
            kernel: "softmax",
            config: "VEC=4",
            outcome: &Outcome::Passed,
            ab: Some(ab),
        };
        assert_eq!(
            seen.line(),
            "softmax      VEC=4: FAST 1.234x [1.200, 1.250]"
        );
        let not_compared = Seen::Candidate {
            kernel: "softmax",
            config: "VEC=8",
            outcome: &Outcome::Passed,
            ab: None,
        };
        assert!(not_compared.line().ends_with("VEC=8: passed, not compared"));
        let status = Status {
            kernel: "gemm",
            index: 2,
            kernels: 3,
            iteration: 7,
            best: Some(1.5),
            gpu_s: 1800.0,
            gpu_limit_s: Some(3600.0),
            dollars: 1.25,
            dollars_limit: None,
            what: "measuring",
        };
        assert_eq!(
            status.line(),
            "gemm 2/3 · iter 7 · best 1.50x · GPU 0.50/1.00 h · $1.25 · measuring"
        );
    }
}
