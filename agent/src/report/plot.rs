//! The report's plots (drawn by [`super::chart`]): each kernel's best time over the
//! GPU time spent, every candidate's speedup (colour: kernel, shape: verdict), each
//! kernel's place on the roofline of the measured ceilings, the samples behind
//! every kept change and final comparison, and, for sweeps, time over an axis.
//! Every point is a figure of the report (recomputed from the raw samples) and
//! carries a title naming it; a plot without data is not drawn.

use super::chart::{self, Axis, Chart, Key, Line, Mark, Scale, Shape, Unit};
use super::{evidence, Iteration, Report, Timing};
use crate::state::RunState;

/// The colour of each kernel, in the report's order (kernels only iterations name
/// come after).
fn kernel_colors(r: &Report) -> Vec<(String, &'static str)> {
    let mut names: Vec<String> = r.kernels.iter().map(|k| k.kernel.clone()).collect();
    for i in &r.iterations {
        if !names.contains(&i.kernel) {
            names.push(i.kernel.clone());
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, chart::color(i)))
        .collect()
}

fn color_of(colors: &[(String, &'static str)], kernel: &str) -> &'static str {
    colors
        .iter()
        .find(|c| c.0 == kernel)
        .map_or(chart::GREY, |c| c.1)
}

/// `1.237x [1.233, 1.238] FAST`.
fn speedup_text(s: &super::Speedup) -> String {
    format!(
        "{}x [{}, {}] {}",
        chart::number(s.x),
        chart::number(s.ci_lo),
        chart::number(s.ci_hi),
        s.verdict
    )
}

/// Each kernel's best time relative to its baseline (1 = baseline) after each
/// commit, over the run's cumulative GPU seconds (the product of the committed
/// steps' measured speedups).
pub fn progress(r: &Report, gpu_at: &[(String, String, f64)]) -> Option<String> {
    let colors = kernel_colors(r);
    let mut c = Chart::new(
        "Each kernel's best time relative to its baseline, over the GPU time spent",
        Axis::new("GPU time into the run", Unit::Si("s"), Scale::Lin).including([0.0]),
        Axis::new(
            "best time / baseline time (lower is faster)",
            Unit::Plain(""),
            Scale::Lin,
        )
        .including([0.0, 1.0]),
    )
    .note("a step down is a kept change (hover it for its commit and speedup)");
    for k in &r.kernels {
        let col = color_of(&colors, &k.kernel);
        let mut rel = 1.0;
        let mut pts = vec![];
        let mut started = None;
        for (kernel, config, at) in gpu_at.iter().filter(|g| g.0 == k.kernel) {
            started.get_or_insert(*at);
            let committed = r.iterations.iter().find(|i| {
                &i.kernel == kernel && &i.config == config && i.decision.starts_with("committed")
            });
            if let Some((it, s)) = committed.and_then(|i| Some((i, i.speedup.as_ref()?))) {
                if pts.is_empty() {
                    pts.push((started.unwrap_or(*at), 1.0));
                }
                pts.push((*at, rel));
                rel /= s.x;
                pts.push((*at, rel));
                c.marks.push(Mark::new(
                    *at,
                    rel,
                    col,
                    format!(
                        "{}: {} `{}` ({}), {}; best now {} of the baseline's time",
                        k.kernel,
                        it.decision,
                        it.config,
                        it.pattern,
                        speedup_text(s),
                        chart::number(rel)
                    ),
                ));
            }
        }
        if let (Some(s), true) = (started, pts.is_empty()) {
            pts.push((s, 1.0));
        }
        let end = gpu_at
            .iter()
            .filter(|g| g.0 == k.kernel)
            .map(|g| g.2)
            .fold(f64::NAN, f64::max);
        if end.is_finite() {
            pts.push((end, rel));
        }
        if pts.is_empty() {
            continue;
        }
        let first = pts[0];
        c.marks.push(
            Mark::new(
                first.0,
                first.1,
                col,
                format!("{}: baseline `{}`", k.kernel, k.baseline_config),
            )
            .hollow(true),
        );
        c.lines.push(Line::new(pts, col, k.kernel.clone()));
        c.legend.push((k.kernel.clone(), Key::Line(col, false)));
    }
    c.svg()
}

/// How a candidate's verdict is drawn: (shape, legend name).
fn verdict_shape(verdict: &str) -> (Shape, &'static str) {
    match verdict {
        "FAST" => (Shape::Up, "faster (FAST)"),
        "SLOW" => (Shape::Down, "slower (SLOW)"),
        "SAME" => (Shape::Circle, "same (SAME)"),
        _ => (Shape::Diamond, "not proven either way"),
    }
}

fn candidate_title(n: usize, it: &Iteration) -> String {
    let verdict = it
        .speedup
        .as_ref()
        .map_or_else(|| it.outcome.replace('_', " "), speedup_text);
    format!(
        "#{n} {} `{}` ({}): {verdict}; {}",
        it.kernel, it.config, it.pattern, it.decision
    )
}

/// Every candidate's measured speedup against the best of its time (log scale),
/// coloured by kernel, shaped by verdict; candidates without a speedup (failed, or
/// not compared) sit in a lane under the plot.
pub fn candidates(r: &Report) -> Option<String> {
    if r.iterations.is_empty() {
        return None;
    }
    let colors = kernel_colors(r);
    let n = r.iterations.len() as f64;
    let mut c = Chart::new(
        "Every candidate's speedup over the best of its time",
        Axis::new("candidate, in the order measured", Unit::Count, Scale::Lin)
            .including([0.5, n + 0.5]),
        Axis::new("speedup over the best (log)", Unit::Plain("x"), Scale::Log).including([1.0]),
    )
    .note(
        "colour: kernel; shape: verdict; hover a mark for its configuration, pattern and interval",
    );
    c.lines.push(
        Line::new(
            vec![(0.5, 1.0), (n + 0.5, 1.0)],
            chart::GREY,
            "1x: as fast as the best of its time",
        )
        .dashed(),
    );
    let mut lane = Vec::new();
    let mut shapes: Vec<(Shape, &'static str)> = Vec::new();
    for (i, it) in r.iterations.iter().enumerate() {
        let col = color_of(&colors, &it.kernel);
        let title = candidate_title(i + 1, it);
        match &it.speedup {
            Some(s) => {
                let (shape, name) = verdict_shape(&s.verdict);
                if !shapes.iter().any(|x| x.1 == name) {
                    shapes.push((shape, name));
                }
                c.marks
                    .push(Mark::new(i as f64 + 1.0, s.x, col, title).shape(shape));
            }
            None => lane.push(Mark::new(i as f64 + 1.0, 0.0, col, title).shape(Shape::Cross)),
        }
    }
    c.legend = colors
        .iter()
        .filter(|(k, _)| r.iterations.iter().any(|i| &i.kernel == k))
        .map(|(k, col)| (k.clone(), Key::Swatch(col)))
        .collect();
    shapes.sort_by_key(|s| s.1);
    c.legend.extend(
        shapes
            .into_iter()
            .map(|(shape, name)| (name.to_string(), Key::Mark(shape, chart::GREY, true))),
    );
    if !lane.is_empty() {
        c.legend.push((
            "failed or not compared (lane below)".into(),
            Key::Mark(Shape::Cross, chart::GREY, false),
        ));
        c.lane = Some(("failed".into(), lane));
    }
    c.legend.push((
        "1x: as fast as the best".into(),
        Key::Line(chart::GREY, true),
    ));
    c.svg()
}

/// A roofline point: (kernel, is the best, bytes, FLOPs, its configuration, timing).
pub type RoofPoint = (String, bool, f64, f64, String, Timing);

/// Each kernel's baseline (hollow) and best (filled) on the roofline of the measured
/// ceilings, labelled with its kernel.
pub fn roofline(r: &Report, points: &[RoofPoint]) -> Option<String> {
    let m = r.machine.as_ref()?;
    let dram = m.dram_measured_gbs? * 1e9;
    let ceilings: Vec<(&str, f64)> = [
        ("FP32", m.fp32_measured_gflops),
        ("FP16 tensor", m.tensor_f16_measured_gflops),
    ]
    .into_iter()
    .filter_map(|(n, c)| c.filter(|c| *c > 0.0).map(|c| (n, c * 1e9)))
    .collect();
    let peak = ceilings.iter().map(|c| c.1).fold(f64::NAN, f64::max);
    if points.is_empty() || !peak.is_finite() || dram <= 0.0 {
        return None;
    }
    let colors = kernel_colors(r);
    let ai: Vec<f64> = points.iter().map(|p| p.3 / p.2).collect();
    let perf: Vec<f64> = points
        .iter()
        .map(|p| p.3 / (p.5.median_us * 1e-6))
        .collect();
    let low_ridge = ceilings.iter().map(|c| c.1).fold(f64::INFINITY, f64::min) / dram;
    let x_lo = ai.iter().copied().fold(low_ridge, f64::min) / 3.0;
    let x_hi = ai.iter().copied().fold(peak / dram, f64::max) * 4.0;
    let mut c = Chart::new(
        "Each kernel on the roofline of the device's measured ceilings",
        Axis::new(
            "arithmetic intensity (FLOP per byte of DRAM traffic, from the cost model)",
            Unit::Plain(""),
            Scale::Log,
        ),
        Axis::new("achieved (log)", Unit::Si("FLOP/s"), Scale::Log),
    )
    .note("hollow: baseline; filled: best; the ceilings were measured on this device");
    c.lines.push(
        Line::new(
            vec![(x_lo, dram * x_lo), (peak / dram, peak)],
            "#000000",
            format!("DRAM {} (measured)", chart::si(dram, "B/s")),
        )
        .width(1.5),
    );
    c.legend.push((
        format!("DRAM {} (measured)", chart::si(dram, "B/s")),
        Key::Line("#000000", false),
    ));
    for (i, (name, ceil)) in ceilings.iter().enumerate() {
        let label = format!("{name} {} (measured)", chart::si(*ceil, "FLOP/s"));
        let line = Line::new(
            vec![(ceil / dram, *ceil), (x_hi, *ceil)],
            "#000000",
            label.clone(),
        )
        .width(1.5);
        let dashed = i > 0;
        c.lines.push(if dashed { line.dashed() } else { line });
        c.legend.push((label, Key::Line("#000000", dashed)));
    }
    let mut named: Vec<&str> = Vec::new();
    for (i, (k, best, _, _, config, t)) in points.iter().enumerate() {
        let col = color_of(&colors, k);
        let has_best = points.iter().any(|p| &p.0 == k && p.1);
        let mut mark = Mark::new(
            ai[i],
            perf[i],
            col,
            format!(
                "{k} {} `{config}`: {} at {} FLOP/B; median {} [{}, {}]",
                if *best { "best" } else { "baseline" },
                chart::si(perf[i], "FLOP/s"),
                chart::number(ai[i]),
                chart::si(t.median_us * 1e-6, "s"),
                chart::si(t.ci_lo_us * 1e-6, "s"),
                chart::si(t.ci_hi_us * 1e-6, "s"),
            ),
        )
        .hollow(!best)
        .size(5.0);
        if *best || !has_best {
            mark = mark.label(k.clone());
        }
        c.marks.push(mark);
        if !named.contains(&k.as_str()) {
            named.push(k);
            c.legend.push((k.clone(), Key::Swatch(col)));
        }
    }
    c.legend.push((
        "baseline".into(),
        Key::Mark(Shape::Circle, chart::GREY, false),
    ));
    c.legend
        .push(("best".into(), Key::Mark(Shape::Circle, chart::GREY, true)));
    c.svg()
}

/// A line per series over shared axes: for sweeps.
pub(crate) fn series(
    title: &str,
    x: Axis,
    y: Axis,
    lines: &[(String, Vec<(f64, f64)>)],
) -> Option<String> {
    let mut c = Chart::new(title, x, y);
    for (i, (name, pts)) in lines.iter().enumerate() {
        let col = chart::color(i);
        c.lines.push(Line::new(pts.clone(), col, name.clone()));
        for p in pts {
            c.marks.push(
                Mark::new(
                    p.0,
                    p.1,
                    col,
                    format!(
                        "{name}: {} at {} = {}",
                        match &c.y.unit {
                            Unit::Si(u) => chart::si(p.1, u),
                            _ => chart::number(p.1),
                        },
                        c.x.label,
                        chart::number(p.0)
                    ),
                )
                .size(3.0),
            );
        }
        c.legend.push((name.clone(), Key::Line(col, false)));
    }
    c.svg()
}

/// The file name of evidence `i`'s samples and pairs plots.
pub fn evidence_names(i: usize) -> [String; 2] {
    [
        format!("evidence-{}-samples.svg", i + 1),
        format!("evidence-{}-pairs.svg", i + 1),
    ]
}

/// The report's plots as (file name, SVG), from the report and the run's fold; a
/// plot without data is left out.
pub fn plots(r: &Report, state: &RunState) -> Vec<(String, String)> {
    let rec = &state.recorded;
    // Cumulative GPU seconds at each evaluation (the charges recorded before it).
    let mut charges = rec.charges.iter().peekable();
    let mut cum = 0.0;
    let mut gpu_at = Vec::new();
    for ev in &rec.evaluations {
        while let Some(c) = charges.next_if(|c| c.seq < ev.seq) {
            cum += c.value.gpu_s;
        }
        gpu_at.push((ev.kernel.clone(), ev.config.clone(), cum));
    }
    // Baseline and best of each kernel, with the cost model's bytes and FLOPs.
    let mut points = Vec::new();
    for k in &r.kernels {
        let model = rec
            .evaluations
            .iter()
            .filter(|e| e.pattern.is_none() && e.kernel == k.kernel)
            .find_map(|e| {
                e.evaluation
                    .as_ref()?
                    .roofline
                    .as_ref()
                    .map(|x| (x.bytes, x.flops))
            });
        let Some((bytes, flops)) = model.filter(|(b, f)| *b > 0.0 && *f > 0.0) else {
            continue;
        };
        if let Some(t) = &k.baseline {
            let cfg = k.baseline_config.clone();
            points.push((k.kernel.clone(), false, bytes, flops, cfg, t.clone()));
        }
        if let (Some(t), true) = (&k.best, k.best_config != k.baseline_config) {
            let cfg = k.best_config.clone();
            points.push((k.kernel.clone(), true, bytes, flops, cfg, t.clone()));
        }
    }
    let mut out: Vec<(String, Option<String>)> = vec![
        ("progress.svg".into(), progress(r, &gpu_at)),
        ("candidates.svg".into(), candidates(r)),
        ("roofline.svg".into(), roofline(r, &points)),
    ];
    for (i, e) in r.evidence.iter().enumerate() {
        let [s, p] = evidence_names(i);
        out.push((s, evidence::samples_chart(e)));
        out.push((p, evidence::pairs_chart(e)));
    }
    out.into_iter()
        .filter_map(|(n, svg)| svg.map(|s| (n, s)))
        .collect()
}
