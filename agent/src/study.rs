//! The workload-batching study: the kernel's best configuration measured at the
//! caller's problem and with the spec's workload axes (batch, heads, queries)
//! multiplied by each scale. The kernel cannot change its caller's batch, so the
//! result is advice: time per unit of work (one unit: the workload axes' product at
//! the caller's size), how full the GPU is (CTAs per SM), and the knee where more work
//! per launch stops paying. It is never a speedup of one launch: a launch at 8x the
//! work does 8x the work.

use serde::{Deserialize, Serialize};

use crate::evaluate::Evaluation;
use crate::spec::KernelSpec;
use crate::vocab::Outcome;

/// Below this gain in throughput per unit of work (lower end of its interval), one
/// more step of scale is said to stop paying.
pub const KNEE_GAIN: f64 = 1.05;

/// The spec with its workload axes multiplied by `scale`; its validation sizes are
/// dropped, since the scaled problem itself is validated (it is the measured size) and
/// the configuration passed the others already.
pub fn scaled(spec: &KernelSpec, scale: i64) -> KernelSpec {
    let mut s = spec.clone();
    for axis in &spec.workload_axes {
        if let Some(v) = s.problem.get_mut(axis) {
            *v = v.saturating_mul(scale);
        }
    }
    s.validation.sizes.clear();
    s
}

/// Units of work of a problem: the product of the workload axes, relative to the
/// caller's problem (1 at scale 1).
fn units(spec: &KernelSpec, scale: i64) -> f64 {
    (scale as f64).powi(spec.workload_axes.len() as i32)
}

/// One scale's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRow {
    pub scale: i64,
    pub problem: String,
    pub outcome: String,
    /// Units of work in one launch (1 at the caller's problem).
    pub units: f64,
    pub median_us: Option<f64>,
    pub ci_lo_us: Option<f64>,
    pub ci_hi_us: Option<f64>,
    /// Median time per unit of work, µs.
    pub us_per_unit: Option<f64>,
    /// Throughput per unit of work over the caller's size, with a conservative
    /// interval from the two medians' 95% intervals.
    pub throughput_x: Option<(f64, f64, f64)>,
    pub ctas: Option<u64>,
    pub ctas_per_sm: Option<f64>,
    pub waves: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyResult {
    pub rows: Vec<StudyRow>,
    /// The scale after which one more step gains less than `KNEE_GAIN` per unit of
    /// work (lower end of the interval); None when every step paid, or too few
    /// scales were measured.
    pub knee: Option<i64>,
    pub conclusion: String,
}

/// Summarises the measurements (scale, evaluation), the first at scale 1.
pub fn summarize(spec: &KernelSpec, points: &[(i64, Evaluation)]) -> StudyResult {
    let mut rows: Vec<StudyRow> = Vec::new();
    for (scale, e) in points {
        // A point that failed has no figures.
        let sum = e
            .measurement
            .as_ref()
            .and_then(|m| m.summary)
            .filter(|_| e.outcome == Outcome::Passed);
        let u = units(spec, *scale);
        let occ = e.occupancy.as_ref();
        rows.push(StudyRow {
            scale: *scale,
            problem: e.problem.clone(),
            outcome: e.outcome.name().to_string(),
            units: u,
            median_us: sum.map(|s| s.median),
            ci_lo_us: sum.map(|s| s.ci_lo),
            ci_hi_us: sum.map(|s| s.ci_hi),
            us_per_unit: sum.map(|s| s.median / u),
            throughput_x: None,
            ctas: occ.map(|o| o.ctas),
            ctas_per_sm: occ
                .filter(|o| o.sms > 0)
                .map(|o| o.ctas as f64 / o.sms as f64),
            waves: occ.map(|o| o.waves).filter(|w| w.is_finite()),
        });
    }
    finish(rows, &spec.workload_axes.join(", "), "the caller's size")
}

/// Throughput per unit of work of each row against the first, the knee, and the
/// conclusion in words; `axes` names what was scaled. Shared by the loop's study and
/// `nightshift sweep` over a workload axis.
pub fn finish(mut rows: Vec<StudyRow>, axes: &str, base: &str) -> StudyResult {
    // Throughput per unit of work, relative to `base`: time per unit at base over
    // time per unit here; the interval pairs each end of one median's interval with
    // the opposite end of the other's.
    let ratio = |base: &StudyRow, r: &StudyRow| -> Option<(f64, f64, f64)> {
        let (m0, l0, h0) = (base.median_us?, base.ci_lo_us?, base.ci_hi_us?);
        let (m, l, h) = (r.median_us?, r.ci_lo_us?, r.ci_hi_us?);
        let k = r.units / base.units;
        (m > 0.0 && l > 0.0).then(|| (k * m0 / m, k * l0 / h, k * h0 / l))
    };
    let first = rows.first().cloned();
    if let Some(base) = &first {
        for r in rows.iter_mut() {
            r.throughput_x = ratio(base, r);
        }
    }
    let mut knee = None;
    for w in rows.windows(2) {
        match ratio(&w[0], &w[1]) {
            Some((_, lo, _)) if lo < KNEE_GAIN => {
                knee = Some(w[0].scale);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    let conclusion = conclude(axes, base, &rows, knee);
    StudyResult {
        rows,
        knee,
        conclusion,
    }
}

fn conclude(axes: &str, base_name: &str, rows: &[StudyRow], knee: Option<i64>) -> String {
    let Some(base) = rows.first().filter(|r| r.median_us.is_some()) else {
        return format!("not measured at {base_name}; nothing to compare");
    };
    let best = rows
        .iter()
        .filter_map(|r| r.throughput_x.map(|t| (r, t)))
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0));
    let Some((top, (x, lo, hi))) = best.filter(|(r, _)| r.scale != base.scale) else {
        return format!("no larger workload was measured (axes {axes})");
    };
    let fill = |r: &StudyRow| {
        r.ctas_per_sm
            .map(|c| format!("{c:.1} CTAs per SM"))
            .unwrap_or_else(|| "CTAs per SM unknown".into())
    };
    let mut s = format!(
        "with {axes} x{} per launch, throughput per unit of work is {x:.2}x [{lo:.2}, {hi:.2}] that at {base_name} ({} against {}); this is throughput per unit of work, not a speedup of one launch",
        top.scale,
        fill(top),
        fill(base)
    );
    match knee {
        Some(k) => s.push_str(&format!(
            "; past x{k} more work per launch gains less than {:.0}% per unit",
            (KNEE_GAIN - 1.0) * 100.0
        )),
        None if rows.len() > 2 => s.push_str("; no knee up to the largest scale measured"),
        None => {}
    }
    s
}
