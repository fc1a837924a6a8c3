//! The regression gate behind `nightshift check`: a recorded baseline file (each
//! kernel's committed configuration, measured, with its raw samples), and the A/B
//! rule applied to a new measurement against it. SLOW beyond the threshold fails;
//! AMBIGUOUS is re-measured up to a cap and then reported as such, never as a failure.
//!
//! The recorded and the new samples were not taken interleaved (they come from two
//! processes, possibly days apart), so the gate's interval is the bootstrap interval
//! of the ratio of two independent sets, and the threshold (5% by default) is wider
//! than the tuning loop's 2%.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::measure::stats::bootstrap_ratio_ci;
use crate::measure::stats::Summary;
use crate::measure::Verdict;

pub const FILE_VERSION: u32 = 1;
pub const DEFAULT_THRESHOLD: f64 = 0.05;

/// One kernel's recorded measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub kernel: String,
    pub config: String,
    pub problem: String,
    /// `cold` or `batch`: a check measures with the same method.
    pub method: String,
    pub median_us: f64,
    pub ci_lo_us: f64,
    pub ci_hi_us: f64,
    /// The samples that count (not throttled), µs per launch.
    pub samples: Vec<f64>,
}

/// `nightshift check --record` writes this; `nightshift check` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineFile {
    pub version: u32,
    pub device: String,
    pub date: String,
    pub command: String,
    pub seed: u64,
    pub kernels: Vec<Recorded>,
}

impl BaselineFile {
    pub fn load(path: &Path) -> Result<BaselineFile, String> {
        let text = crate::files::read_text(path, crate::files::MAX_INPUT_BYTES).map_err(|e| {
            format!(
                "cannot read the baseline file {}: {e} (write one with `nightshift check --record`)",
                path.display()
            )
        })?;
        let b: BaselineFile = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a nightshift baseline file: {e}", path.display()))?;
        if b.version != FILE_VERSION {
            return Err(format!(
                "{} is version {}; this nightshift reads version {FILE_VERSION} (record it again)",
                path.display(),
                b.version
            ));
        }
        Ok(b)
    }

    /// Refuses a different device model unless forced.
    pub fn check_device(&self, device: &str, force: bool) -> Result<(), String> {
        if self.device == device || force {
            Ok(())
        } else {
            Err(format!(
                "the baseline was recorded on {}, this is {device}: times on different devices are not comparable (--force compares them anyway, and says so)",
                self.device
            ))
        }
    }
}

/// What the gate decided for one kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub kernel: String,
    pub config: String,
    pub recorded_us: f64,
    pub now_us: f64,
    /// Recorded over now: below 1 is slower now.
    pub speedup: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub verdict: Verdict,
    /// How many measurements it took (AMBIGUOUS ones are repeated).
    pub attempts: usize,
    /// `passed`, or why the configuration did not pass validation now.
    pub outcome: String,
    pub fails: bool,
}

/// A configuration that no longer passes validation fails the gate whatever its speed.
pub fn rejected(r: &Recorded, outcome: String) -> Decision {
    Decision {
        kernel: r.kernel.clone(),
        config: r.config.clone(),
        recorded_us: r.median_us,
        now_us: f64::NAN,
        speedup: f64::NAN,
        ci_lo: f64::NAN,
        ci_hi: f64::NAN,
        verdict: Verdict::Ambiguous,
        attempts: 1,
        outcome,
        fails: true,
    }
}

/// The A/B rule against the recorded samples: FAST, SLOW, SAME or AMBIGUOUS at the
/// threshold; SLOW fails the gate.
pub fn judge(r: &Recorded, now: &[f64], threshold: f64, seed: u64, attempts: usize) -> Decision {
    let m = Summary::of(now, seed).map_or(f64::NAN, |s| s.median);
    let (lo, hi) = if now.is_empty() || r.samples.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        bootstrap_ratio_ci(&r.samples, now, seed)
    };
    let verdict = Verdict::from_interval(lo, hi, threshold);
    Decision {
        kernel: r.kernel.clone(),
        config: r.config.clone(),
        recorded_us: r.median_us,
        now_us: m,
        speedup: r.median_us / m,
        ci_lo: lo,
        ci_hi: hi,
        verdict,
        attempts,
        outcome: "passed".into(),
        fails: verdict == Verdict::Slow,
    }
}

/// The exit code of a check: 1 when any kernel is SLOW beyond the threshold.
pub fn exit_code(d: &[Decision]) -> i32 {
    if d.iter().any(|x| x.fails) {
        1
    } else {
        0
    }
}

/// A Markdown table for a pull-request comment.
pub fn markdown(d: &[Decision], b: &BaselineFile, device: &str, threshold: f64) -> String {
    let mut o = format!(
        "### nightshift check on {device}\n\nAgainst the baseline recorded on {} ({}); a kernel fails when it is SLOW by more than {:.0}% (95% interval).\n\n",
        b.device,
        b.date,
        threshold * 100.0
    );
    if b.device != device {
        o.push_str(&format!(
            "**Compared across devices ({} recorded, {device} now), as forced: the times are not comparable.**\n\n",
            b.device
        ));
    }
    o.push_str("| kernel | configuration | recorded µs | now µs | recorded / now (95% CI) | verdict | |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for x in d {
        if x.outcome != "passed" {
            o.push_str(&format!(
                "| {} | `{}` | {:.2} | - | - | {} | fails |\n",
                x.kernel, x.config, x.recorded_us, x.outcome
            ));
            continue;
        }
        let mark = match (x.fails, x.verdict) {
            (true, _) => "fails".to_string(),
            (false, Verdict::Ambiguous) => {
                format!("inconclusive after {} measurement(s)", x.attempts)
            }
            _ => "passes".to_string(),
        };
        o.push_str(&format!(
            "| {} | `{}` | {:.2} | {:.2} | {:.3}x [{:.3}, {:.3}] | {} | {mark} |\n",
            x.kernel,
            x.config,
            x.recorded_us,
            x.now_us,
            x.speedup,
            x.ci_lo,
            x.ci_hi,
            x.verdict.as_str()
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(median: f64) -> Recorded {
        // Made-up samples for the decision logic: ±0.5% around the median.
        let samples: Vec<f64> = (0..30)
            .map(|i| median * (1.0 + 0.005 * ((i % 5) as f64 - 2.0) / 2.0))
            .collect();
        Recorded {
            kernel: "softmax".into(),
            config: "BLOCK=128 VARIANT=0 VEC=1".into(),
            problem: "rows=4096 seq_k=1024".into(),
            method: "cold".into(),
            median_us: Summary::of(&samples, 1).unwrap().median,
            ci_lo_us: median,
            ci_hi_us: median,
            samples,
        }
    }

    fn now(median: f64, spread: f64) -> Vec<f64> {
        (0..30)
            .map(|i| median * (1.0 + spread * ((i % 5) as f64 - 2.0) / 2.0))
            .collect()
    }

    #[test]
    fn the_gate_fails_only_on_slow_beyond_the_threshold() {
        let r = recorded(100.0);
        let t = DEFAULT_THRESHOLD;
        let cases = [
            (now(100.0, 0.005), Verdict::Same, 0),
            (now(80.0, 0.005), Verdict::Fast, 0),
            (now(115.0, 0.005), Verdict::Slow, 1),
            // 3% slower: within the 5% band, not a failure.
            (now(103.0, 0.005), Verdict::Same, 0),
            // Straddling the band edge: inconclusive, not a failure.
            (now(105.0, 0.08), Verdict::Ambiguous, 0),
        ];
        for (samples, want, code) in cases {
            let d = judge(&r, &samples, t, 7, 1);
            assert_eq!(d.verdict, want, "{d:?}");
            assert_eq!(exit_code(std::slice::from_ref(&d)), code, "{d:?}");
        }
    }

    #[test]
    fn the_baseline_file_round_trips_and_refuses_another_device() {
        let b = BaselineFile {
            version: FILE_VERSION,
            device: "NVIDIA H100 80GB HBM3".into(),
            date: "2026-11-21".into(),
            command: "nightshift check --record".into(),
            seed: 7,
            kernels: vec![recorded(16.6)],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.json");
        std::fs::write(&p, serde_json::to_string_pretty(&b).unwrap()).unwrap();
        assert_eq!(BaselineFile::load(&p).unwrap(), b);
        let e = b.check_device("NVIDIA H200", false).unwrap_err();
        assert!(e.contains("not comparable") && e.contains("--force"), "{e}");
        assert!(b.check_device("NVIDIA H200", true).is_ok());
        assert!(b.check_device("NVIDIA H100 80GB HBM3", false).is_ok());
        let md = markdown(
            &[judge(&b.kernels[0], &now(20.0, 0.005), 0.05, 7, 1)],
            &b,
            "NVIDIA H200",
            0.05,
        );
        assert!(md.contains("Compared across devices"), "{md}");
        assert!(md.contains("| softmax |") && md.contains("fails"), "{md}");
        // A configuration that no longer validates fails, whatever its speed.
        let d = rejected(&b.kernels[0], "incorrect at rows=4096".into());
        assert!(d.fails);
        assert_eq!(exit_code(std::slice::from_ref(&d)), 1);
        assert!(markdown(&[d], &b, &b.device, 0.05).contains("incorrect at rows=4096"));
        // A file of another version, or not a baseline at all, is refused clearly.
        std::fs::write(&p, "{}").unwrap();
        assert!(BaselineFile::load(&p)
            .unwrap_err()
            .contains("not a nightshift baseline"));
        let e = BaselineFile::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(e.contains("--record"), "{e}");
    }
}
