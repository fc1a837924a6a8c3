//! Sweeps: a kernel measured over a grid of problem sizes, each variant of one tunable
//! at every point, and the crossovers between variants with their uncertainty.
//!
//! This file is the pure part: axis specs, the grid, point labels that name their
//! axes, the winner at each point, the crossovers along each axis, and the outputs
//! (CSV, thresholds JSON, a Rust `const` and a C `#define`). `run.rs` carries a sweep
//! out over a session (the plan, the points not measured yet, what the grid shows),
//! `measure.rs` measures one point with the `bench` protocol, `file.rs` keeps
//! `sweep.jsonl` (what `--resume` continues) and writes the outputs, and `render.rs`
//! writes it all for a person.

mod file;
mod measure;
mod plan;
mod render;
mod run;
#[cfg(test)]
mod tests;

pub use file::{resumed, Resumed};
pub use plan::{Plan, Swept};
pub use render::describe;
pub use run::{run, Progress};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One swept axis and its values, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub name: String,
    pub values: Vec<i64>,
}

/// Most points one axis may have (a typo like `1..1000000:+1` is refused, not run).
pub const MAX_AXIS_POINTS: usize = 256;

/// Parses `NAME=SPEC`: `32..65536:x2` (geometric), `0..100:+10` (arithmetic) or
/// `1,2,4,8` (a list). Values are positive and increasing.
pub fn parse_axis(s: &str) -> Result<Axis, String> {
    let (name, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=SPEC, e.g. seq_k=32..65536:x2"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{s}`: the axis has no name"));
    }
    let num = |t: &str| -> Result<i64, String> {
        t.trim()
            .parse::<i64>()
            .map_err(|_| format!("`{s}`: `{t}` is not an integer"))
    };
    let values: Vec<i64> = if let Some((range, step)) = spec.split_once(':') {
        let (a, b) = range.split_once("..").ok_or_else(|| {
            format!("`{s}`: a stepped axis is FROM..TO:xFACTOR or FROM..TO:+STEP")
        })?;
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(format!("`{s}`: {a} is above {b}"));
        }
        let mut v = vec![a];
        if let Some(f) = step.strip_prefix('x') {
            let f = num(f)?;
            if f < 2 || a < 1 {
                return Err(format!(
                    "`{s}`: a geometric axis starts at 1 or more and multiplies by 2 or more"
                ));
            }
            while let Some(n) = v.last().and_then(|x| x.checked_mul(f)).filter(|n| *n <= b) {
                v.push(n);
                if v.len() > MAX_AXIS_POINTS {
                    break;
                }
            }
        } else if let Some(d) = step.strip_prefix('+') {
            let d = num(d)?;
            if d < 1 {
                return Err(format!("`{s}`: the step must be 1 or more"));
            }
            while let Some(n) = v.last().and_then(|x| x.checked_add(d)).filter(|n| *n <= b) {
                v.push(n);
                if v.len() > MAX_AXIS_POINTS {
                    break;
                }
            }
        } else {
            return Err(format!("`{s}`: the step is xFACTOR or +STEP, not `{step}`"));
        }
        v
    } else {
        spec.split(',').map(num).collect::<Result<_, _>>()?
    };
    if values.is_empty() {
        return Err(format!("`{s}`: no values"));
    }
    if values.len() > MAX_AXIS_POINTS {
        return Err(format!(
            "`{s}`: more than {MAX_AXIS_POINTS} points; sweep a coarser grid"
        ));
    }
    if values.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("`{s}`: values must increase"));
    }
    Ok(Axis {
        name: name.to_string(),
        values,
    })
}

/// The points a grid has (saturating: a product past u64 is u64::MAX).
pub fn grid_len(axes: &[Axis]) -> u64 {
    axes.iter()
        .fold(1u64, |n, a| n.saturating_mul(a.values.len() as u64))
}

/// The default limit on a sweep's points (`--max-points` raises it).
pub const DEFAULT_MAX_POINTS: u64 = 10_000;

/// Point `i` of the grid, the last axis fastest: (axis, value) pairs in the axes'
/// order. None past the end.
pub fn grid_point(axes: &[Axis], i: u64) -> Option<Vec<(String, i64)>> {
    if i >= grid_len(axes) {
        return None;
    }
    let mut rest = i;
    let mut out = vec![(String::new(), 0); axes.len()];
    for (slot, a) in out.iter_mut().zip(axes).rev() {
        let n = a.values.len() as u64;
        *slot = (a.name.clone(), a.values[(rest % n) as usize]);
        rest /= n;
    }
    Some(out)
}

/// Every point of the grid in order, generated one at a time.
pub fn grid(axes: &[Axis]) -> impl Iterator<Item = Vec<(String, i64)>> + '_ {
    (0..grid_len(axes)).map_while(move |i| grid_point(axes, i))
}

/// The position of point `at` in the grid (None when it is not a point of it).
pub fn grid_index(axes: &[Axis], at: &[(String, i64)]) -> Option<u64> {
    if at.len() != axes.len() {
        return None;
    }
    let mut i = 0u64;
    for (a, (name, v)) in axes.iter().zip(at) {
        if &a.name != name {
            return None;
        }
        let k = a.values.iter().position(|x| x == v)? as u64;
        i = i * a.values.len() as u64 + k;
    }
    Some(i)
}

/// A label that names its axes: `rows4096_seqk1024` (axis names lowercased, without
/// underscores, in the problem's order).
pub fn label(problem: &BTreeMap<String, i64>, order: &[String]) -> String {
    let mut keys: Vec<&String> = order.iter().filter(|k| problem.contains_key(*k)).collect();
    for k in problem.keys() {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .map(|k| {
            format!(
                "{}{}",
                k.to_lowercase().replace(['_', '-'], ""),
                problem[*k]
            )
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// One variant measured at one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The value of the swept-over tunable (or 0 when there is none).
    pub variant: i64,
    /// `passed`, the failure, or `excluded` (a restriction rules it out here).
    pub outcome: String,
    pub median_us: Option<f64>,
    pub ci_lo_us: Option<f64>,
    pub ci_hi_us: Option<f64>,
    /// Throughput in the cost model's unit at this point (GB/s or GFLOP/s).
    pub throughput: Option<f64>,
    pub unit: Option<String>,
    pub method: Option<String>,
    /// CTAs launched per SM (SM fill) at this point.
    #[serde(default)]
    pub ctas_per_sm: Option<f64>,
}

/// Over one workload axis (batch, heads) with one configuration: throughput per unit
/// of work against the first point, SM fill, and the knee where more work per launch
/// stops paying (the loop's workload-batching study, over the sweep's points). None
/// unless every value is a multiple of the first.
pub fn batching(points: &[Point], axis: &str) -> Option<crate::study::StudyResult> {
    use crate::study::{finish, StudyRow};
    let first = points.first()?.at.iter().find(|(n, _)| n == axis)?.1;
    let mut rows = Vec::new();
    for p in points {
        let v = p.at.iter().find(|(n, _)| n == axis)?.1;
        if first <= 0 || v % first != 0 {
            return None;
        }
        let c = p.cells.first()?;
        let units = (v / first) as f64;
        rows.push(StudyRow {
            scale: v / first,
            problem: p.label.clone(),
            outcome: c.outcome.clone(),
            units,
            median_us: c.median_us,
            ci_lo_us: c.ci_lo_us,
            ci_hi_us: c.ci_hi_us,
            us_per_unit: c.median_us.map(|m| m / units),
            throughput_x: None,
            ctas: None,
            ctas_per_sm: c.ctas_per_sm,
            waves: None,
        });
    }
    Some(finish(rows, axis, "the first point"))
}

/// Between the two fastest variants at a point, measured interleaved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Duel {
    pub a: i64,
    pub b: i64,
    /// b over a.
    pub speedup: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub verdict: String,
}

/// Everything measured at one point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub label: String,
    /// The swept axes' values at this point.
    pub at: Vec<(String, i64)>,
    pub cells: Vec<Cell>,
    pub duel: Option<Duel>,
}

/// Who is faster at a point, and how sure the measurement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Winner {
    /// This variant, decisively (FAST against the other, or intervals apart).
    Sure(i64),
    /// This variant by its median, but within the noise (SAME or AMBIGUOUS).
    Lean(i64),
    /// Nothing measured here.
    None,
}

impl Winner {
    pub fn variant(self) -> Option<i64> {
        match self {
            Winner::Sure(v) | Winner::Lean(v) => Some(v),
            Winner::None => None,
        }
    }
}

impl Point {
    /// The faster variant here: from the interleaved duel when there is one, else
    /// from the medians and their intervals.
    pub fn winner(&self) -> Winner {
        if let Some(d) = &self.duel {
            let b_wins = d.speedup >= 1.0;
            let v = if b_wins { d.b } else { d.a };
            return match d.verdict.as_str() {
                "FAST" | "SLOW" => Winner::Sure(v),
                _ => Winner::Lean(v),
            };
        }
        let mut ok: Vec<&Cell> = self
            .cells
            .iter()
            .filter(|c| c.median_us.is_some())
            .collect();
        ok.sort_by(|a, b| a.median_us.partial_cmp(&b.median_us).expect("finite"));
        match ok.as_slice() {
            [] => Winner::None,
            [only] => Winner::Sure(only.variant),
            [first, second, ..] => {
                let apart = match (first.ci_hi_us, second.ci_lo_us) {
                    (Some(h), Some(l)) => h < l,
                    _ => false,
                };
                if apart {
                    Winner::Sure(first.variant)
                } else {
                    Winner::Lean(first.variant)
                }
            }
        }
    }
}

/// Where the faster variant changes along one axis, the other axes held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossover {
    pub axis: String,
    /// The other axes' values along this line.
    pub held: Vec<(String, i64)>,
    /// The last value at which `below` wins, and the first at which `above` does: the
    /// crossover lies between them.
    pub from: i64,
    pub to: i64,
    pub below: i64,
    pub above: i64,
    /// `sure` when both ends are decisive and adjacent; otherwise why not.
    pub confidence: String,
}

/// The crossovers along `axis`, for each combination of the other axes. Points
/// within the noise (`Lean`) between two decisive winners widen the interval rather
/// than count as crossings.
pub fn crossovers(points: &[Point], axes: &[Axis], axis: &str) -> Vec<Crossover> {
    let others: Vec<&Axis> = axes.iter().filter(|a| a.name != axis).collect();
    let held_axes: Vec<Axis> = others.iter().map(|a| (*a).clone()).collect();
    let held_grid = grid(&held_axes);
    let mut out = Vec::new();
    for held in held_grid {
        let mut line: Vec<(i64, Winner)> = points
            .iter()
            .filter(|p| held.iter().all(|h| p.at.contains(h)))
            .filter_map(|p| {
                let v = p.at.iter().find(|(n, _)| n == axis)?.1;
                Some((v, p.winner()))
            })
            .collect();
        line.sort_by_key(|x| x.0);
        // The last decisive winner, where it was seen, and the points since.
        let mut last: Option<(i64, i64)> = None;
        let mut between = 0usize;
        for (v, w) in &line {
            match w {
                Winner::Sure(x) => {
                    if let Some((lv, lx)) = last.filter(|(_, lx)| lx != x) {
                        out.push(Crossover {
                            axis: axis.to_string(),
                            held: held.clone(),
                            from: lv,
                            to: *v,
                            below: lx,
                            above: *x,
                            confidence: if between == 0 {
                                "sure: decisive at both ends, no point between".into()
                            } else {
                                format!(
                                    "{between} point(s) between are within the noise: the crossover is somewhere in the interval"
                                )
                            },
                        });
                    }
                    last = Some((*v, *x));
                    between = 0;
                }
                Winner::Lean(_) => between += 1,
                Winner::None => {}
            }
        }
    }
    out
}

/// The thresholds file: the device, date and command, and each crossover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub kernel: String,
    pub over: Option<String>,
    pub device: String,
    pub date: String,
    pub command: String,
    pub crossovers: Vec<Crossover>,
}

fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A constant per crossover: the largest axis value at which the lower variant
/// still wins (use it up to and including that value).
fn constants(t: &Thresholds) -> Vec<(String, i64, String)> {
    t.crossovers
        .iter()
        .map(|c| {
            let over = t.over.as_deref().unwrap_or("VARIANT");
            let mut name = format!(
                "{}_{}_{}_MAX_{}{}",
                ident(&t.kernel),
                ident(over),
                c.below,
                ident(&c.axis),
                c.held
                    .iter()
                    .map(|(n, v)| format!("_{}{v}", ident(n)))
                    .collect::<String>()
            );
            name = name.replace("__", "_");
            let why = format!(
                "{over} = {} up to {} = {}, {over} = {} from {} ({}; the crossover lies in ({}, {}])",
                c.below, c.axis, c.from, c.above, c.to, c.confidence, c.from, c.to
            );
            (name, c.from, why)
        })
        .collect()
}

fn header(t: &Thresholds, comment: &str) -> String {
    format!(
        "{comment} Measured by nightshift on {} on {}.\n{comment} Command: {}\n",
        t.device, t.date, t.command
    )
}

/// Ready-to-paste Rust constants.
pub fn rust_consts(t: &Thresholds) -> String {
    let mut o = header(t, "//");
    for (name, v, why) in constants(t) {
        o.push_str(&format!("/// {why}\npub const {name}: i64 = {v};\n"));
    }
    o
}

/// Ready-to-paste C defines.
pub fn c_defines(t: &Thresholds) -> String {
    let mut o = header(t, "//");
    for (name, v, why) in constants(t) {
        o.push_str(&format!("/* {why} */\n#define {name} {v}\n"));
    }
    o
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `sweep.csv`: one row per (point, variant).
pub fn csv(points: &[Point], axes: &[Axis], over: Option<&str>) -> String {
    let mut o = String::from("label");
    for a in axes {
        o.push_str(&format!(",{}", csv_field(&a.name)));
    }
    o.push_str(&format!(
        ",{},outcome,median_us,ci_lo_us,ci_hi_us,throughput,unit,method,winner\n",
        over.unwrap_or("variant")
    ));
    let f = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for p in points {
        let w = p.winner();
        for c in &p.cells {
            o.push_str(&csv_field(&p.label));
            for a in axes {
                let v = p.at.iter().find(|(n, _)| *n == a.name).map(|x| x.1);
                o.push_str(&format!(",{}", v.map_or(String::new(), |v| v.to_string())));
            }
            let win = match w {
                Winner::Sure(v) if v == c.variant => "yes",
                Winner::Lean(v) if v == c.variant => "within noise",
                _ => "",
            };
            o.push_str(&format!(
                ",{},{},{},{},{},{},{},{},{win}\n",
                c.variant,
                csv_field(&c.outcome),
                f(c.median_us),
                f(c.ci_lo_us),
                f(c.ci_hi_us),
                f(c.throughput),
                c.unit.clone().unwrap_or_default(),
                c.method.clone().unwrap_or_default(),
            ));
        }
    }
    o
}
