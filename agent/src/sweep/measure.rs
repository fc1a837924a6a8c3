//! One point of a sweep on the GPU: each variant the spec's restrictions allow there,
//! validated and measured with `bench`'s protocols (two variants interleaved; of
//! more, the two fastest compared interleaved afterwards), as the cells and the duel
//! of a [`Point`].

use anyhow::Result;

use super::{label, Cell, Duel, Point};
use crate::evaluate::{Evaluation, Session};
use crate::measure::TimingMethod;
use crate::spec::{Config, KernelSpec};
use crate::vocab::{AbResult, Outcome};

/// The cell of variant `variant` from its evaluation.
pub fn cell(spec: &KernelSpec, variant: i64, e: &Evaluation) -> Cell {
    let sum = e
        .measurement
        .as_ref()
        .and_then(|m| m.summary)
        .filter(|_| e.outcome == Outcome::Passed);
    let (throughput, unit) = match &e.roofline {
        Some(r) if sum.is_some() && r.bound == "memory" => (Some(r.gbs), Some("GB/s".into())),
        Some(r) if sum.is_some() => (Some(r.gflops), Some("GFLOP/s".into())),
        _ => (None, None),
    };
    let _ = spec;
    let ctas_per_sm = e
        .occupancy
        .as_ref()
        .filter(|o| o.sms > 0)
        .map(|o| o.ctas as f64 / o.sms as f64);
    Cell {
        ctas_per_sm,
        variant,
        outcome: e.outcome.name().to_string(),
        median_us: sum.map(|s| s.median),
        ci_lo_us: sum.map(|s| s.ci_lo),
        ci_hi_us: sum.map(|s| s.ci_hi),
        throughput,
        unit,
        method: e.measurement.as_ref().map(|m| match m.method {
            TimingMethod::Cold => "cold".to_string(),
            TimingMethod::Batch { launches, .. } => format!("batch{launches}"),
        }),
    }
}

/// The cell of a variant a restriction rules out at this point.
pub fn excluded(variant: i64, why: String) -> Cell {
    Cell {
        ctas_per_sm: None,
        variant,
        outcome: format!("excluded: {why}"),
        median_us: None,
        ci_lo_us: None,
        ci_hi_us: None,
        throughput: None,
        unit: None,
        method: None,
    }
}

/// The duel of variants `a` and `b` from their interleaved comparison.
pub fn duel_of(a: i64, b: i64, r: &AbResult) -> Duel {
    Duel {
        a,
        b,
        speedup: r.speedup,
        ci_lo: r.ci_lo,
        ci_hi: r.ci_hi,
        verdict: r.verdict.as_str().to_string(),
    }
}

/// Measures one point: each allowed variant; the two fastest interleaved.
pub fn measure_point(
    session: &mut Session,
    spec: &KernelSpec,
    configs: &[(i64, Config)],
    at: Vec<(String, i64)>,
    order: &[String],
) -> Result<Point> {
    let mut s = spec.clone();
    for (n, v) in &at {
        s.problem.insert(n.clone(), *v);
    }
    // The point itself is validated (it is the measured size); the spec's other
    // validation sizes do not change with the sweep.
    s.validation.sizes.clear();
    let label = label(&s.problem, order);
    let mut cells = Vec::new();
    let mut allowed = Vec::new();
    for (v, c) in configs {
        let bad = s.violated(&s.problem, c);
        if bad.is_empty() {
            allowed.push((*v, c.clone()));
        } else {
            cells.push(excluded(*v, bad.join(", ")));
        }
    }
    let mut duel = None;
    match allowed.as_slice() {
        [] => {}
        [(v, c)] => {
            let e = session.evaluate(&s, c, true)?;
            cells.push(cell(&s, *v, &e));
        }
        [(va, a), (vb, b)] => {
            let (ea, eb, ab) = session.compare_with(&s, a, b, true)?;
            cells.push(cell(&s, *va, &ea));
            cells.push(cell(&s, *vb, &eb));
            duel = ab.map(|r| duel_of(*va, *vb, &r));
        }
        many => {
            let mut timed = Vec::new();
            for (v, c) in many {
                let e = session.evaluate(&s, c, true)?;
                let x = cell(&s, *v, &e);
                if let Some(m) = x.median_us {
                    timed.push((m, *v, c.clone()));
                }
                cells.push(x);
            }
            timed.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let [(_, va, a), (_, vb, b), ..] = timed.as_slice() {
                let (_, _, ab) = session.compare(&s, a, b)?;
                duel = ab.map(|r| duel_of(*va, *vb, &r));
            }
        }
    }
    cells.sort_by_key(|c| c.variant);
    Ok(Point {
        label,
        at,
        cells,
        duel,
    })
}
