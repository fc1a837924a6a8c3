//! The report's plots, drawn with plotters' SVG backend: the best time of each kernel
//! over the GPU time spent, every candidate's speedup with its outcome, and each
//! kernel's position on the roofline of the measured ceilings (and, for sweeps, time
//! over an axis). Every point is a figure of the report (recomputed from the raw
//! samples); a plot without data is not drawn. No font is needed: the SVG carries
//! its text as `<text>` for the viewer to render.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Report, Timing};
use crate::state::RunState;

const SIZE: (u32, u32) = (760, 420);

fn color(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 8] = [
        (31, 119, 180),
        (214, 39, 40),
        (44, 160, 44),
        (148, 103, 189),
        (255, 127, 14),
        (140, 86, 75),
        (227, 119, 194),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// Bounds of the finite (and, on a log axis, positive) values, padded.
fn bounds(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|x| x.is_finite() && (!log || *x > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return None;
    }
    Some(if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-9);
        (
            if lo >= 0.0 {
                (lo - pad).max(0.0)
            } else {
                lo - pad
            },
            hi + pad,
        )
    })
}

/// Renders into an SVG string; None if plotters reports an error.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Option<()>) -> Option<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).ok()?;
        draw(&root)?;
        root.present().ok()?;
    }
    Some(buf)
}

/// Each kernel's best time relative to its baseline (1 = baseline) after each
/// commit, over the run's cumulative GPU seconds (the product of the committed
/// steps' measured speedups).
pub fn progress(r: &Report, gpu_at: &[(String, String, f64)]) -> Option<String> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for k in &r.kernels {
        let mut rel = 1.0;
        let mut pts = vec![];
        let mut started = None;
        for (kernel, config, at) in gpu_at.iter().filter(|g| g.0 == k.kernel) {
            started.get_or_insert(*at);
            let committed = r.iterations.iter().find(|i| {
                &i.kernel == kernel && &i.config == config && i.decision.starts_with("committed")
            });
            if let Some(s) = committed.and_then(|i| i.speedup.as_ref()) {
                if pts.is_empty() {
                    pts.push((started.unwrap_or(*at), 1.0));
                }
                pts.push((*at, rel));
                rel /= s.x;
                pts.push((*at, rel));
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
        if !pts.is_empty() {
            series.push((k.kernel.clone(), pts));
        }
    }
    let (x0, x1) = bounds(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.0))
            .chain([0.0]),
        false,
    )?;
    let (y0, y1) = bounds(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .chain([1.0]),
        false,
    )?;
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                "Best time relative to the baseline, over GPU time spent",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .ok()?;
        c.configure_mesh()
            .x_desc("GPU seconds into the run")
            .y_desc("best / baseline time")
            .draw()
            .ok()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let col = color(i);
            c.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                .ok()?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
            let ends = [pts[0], pts[pts.len() - 1]];
            c.draw_series(ends.into_iter().map(|p| Circle::new(p, 4, col.filled())))
                .ok()?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .ok()
    })
}

/// Every candidate's measured speedup against the best of its time (log scale),
/// coloured by outcome; candidates that failed sit on the bottom edge, hollow.
pub fn candidates(r: &Report) -> Option<String> {
    if r.iterations.is_empty() {
        return None;
    }
    let (y0, y1) = bounds(
        r.iterations
            .iter()
            .filter_map(|i| i.speedup.as_ref().map(|s| s.x))
            .chain([0.9, 1.1]),
        true,
    )?;
    let n = r.iterations.len() as f64;
    let class = |v: &str| match v {
        "FAST" => ("faster (committed)", RGBColor(44, 160, 44)),
        "SLOW" => ("slower", RGBColor(214, 39, 40)),
        "SAME" => ("same", RGBColor(127, 127, 127)),
        _ => ("ambiguous", RGBColor(255, 127, 14)),
    };
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                "Every candidate against the best of its time",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5..n + 0.5, (y0..y1).log_scale())
            .ok()?;
        c.configure_mesh()
            .x_desc("candidate (in order)")
            .y_desc("speedup over the best (log)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .ok()?;
        c.draw_series(LineSeries::new(
            [(0.5, 1.0), (n + 0.5, 1.0)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .ok()?;
        let mut seen: Vec<&str> = Vec::new();
        for (i, it) in r.iterations.iter().enumerate() {
            let x = i as f64 + 1.0;
            let (name, col, y, hollow) = match &it.speedup {
                Some(s) => {
                    let (a, b) = class(&s.verdict);
                    (a, b, s.x, false)
                }
                None => ("failed or not compared", BLACK, y0 * 1.05, true),
            };
            let style = if hollow {
                col.stroke_width(1)
            } else {
                col.filled()
            };
            let s = c
                .draw_series(std::iter::once(Circle::new((x, y), 4, style)))
                .ok()?;
            if !seen.contains(&name) {
                seen.push(name);
                s.label(name)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, style));
            }
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .ok()
    })
}

/// Each kernel's baseline (hollow) and best (filled) on the roofline of the measured
/// ceilings: (kernel, is best, bytes, FLOPs, timing).
pub fn roofline(r: &Report, points: &[(String, bool, f64, f64, Timing)]) -> Option<String> {
    let m = r.machine.as_ref()?;
    let dram = m.dram_measured_gbs?;
    let ceilings: Vec<(&str, f64)> = [
        ("FP32", m.fp32_measured_gflops),
        ("FP16 tensor", m.tensor_f16_measured_gflops),
    ]
    .into_iter()
    .filter_map(|(n, c)| c.map(|c| (n, c)))
    .collect();
    let peak = ceilings.iter().map(|c| c.1).fold(f64::NAN, f64::max);
    if points.is_empty() || !peak.is_finite() {
        return None;
    }
    let ai: Vec<f64> = points.iter().map(|p| p.3 / p.2).collect();
    let perf: Vec<f64> = points
        .iter()
        .map(|p| p.3 / (p.4.median_us * 1e-6) / 1e9)
        .collect();
    let (x0, x1) = bounds(ai.iter().copied().chain([peak / dram * 4.0]), true)?;
    let (y0, y1) = bounds(perf.iter().copied().chain([peak]), true)?;
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption("Roofline of the measured ceilings", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .ok()?;
        c.configure_mesh()
            .x_desc("arithmetic intensity (FLOP per byte, cost model)")
            .y_desc("GFLOP/s achieved")
            .draw()
            .ok()?;
        // The bandwidth slope from where it enters the plot, then each ceiling.
        let start = x0.max(y0 / dram);
        for (i, (name, ceil)) in ceilings.iter().enumerate() {
            let ridge = ceil / dram;
            let style = BLACK.mix(if i == 0 { 0.8 } else { 0.5 }).stroke_width(1);
            c.draw_series(LineSeries::new(
                [(start, dram * start), (ridge, *ceil), (x1, *ceil)],
                style,
            ))
            .ok()?
            .label(format!("measured {name} and DRAM ceilings"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, (k, best, _, _, _)) in points.iter().enumerate() {
            let first = !names.contains(&k.as_str());
            if first {
                names.push(k);
            }
            let col = color(names.iter().position(|n| n == k).unwrap_or(0));
            let style = if *best {
                col.filled()
            } else {
                col.stroke_width(2)
            };
            let s = c
                .draw_series(std::iter::once(Circle::new((ai[i], perf[i]), 5, style)))
                .ok()?;
            if first {
                s.label(format!("{k} (hollow: baseline, filled: best)"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
            }
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .ok()
    })
}

/// A line per series over shared axes (log where asked): for sweeps.
pub(crate) fn series(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
    log_y: bool,
) -> Option<String> {
    let (x0, x1) = bounds(lines.iter().flat_map(|l| l.1.iter().map(|p| p.0)), log_x)?;
    let (y0, y1) = bounds(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)), log_y)?;
    // The four combinations of scales are four coordinate types in plotters.
    macro_rules! draw {
        ($xr:expr, $yr:expr) => {
            svg(|root| {
                let mut c = ChartBuilder::on(root)
                    .caption(title, ("sans-serif", 18))
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(70)
                    .build_cartesian_2d($xr, $yr)
                    .ok()?;
                c.configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .draw()
                    .ok()?;
                for (i, (name, pts)) in lines.iter().enumerate() {
                    let col = color(i);
                    c.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                        .ok()?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                        });
                    c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, col.filled())))
                        .ok()?;
                }
                c.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::UpperLeft)
                    .draw()
                    .ok()
            })
        };
    }
    match (log_x, log_y) {
        (true, true) => draw!((x0..x1).log_scale(), (y0..y1).log_scale()),
        (true, false) => draw!((x0..x1).log_scale(), y0..y1),
        (false, true) => draw!(x0..x1, (y0..y1).log_scale()),
        (false, false) => draw!(x0..x1, y0..y1),
    }
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
            points.push((k.kernel.clone(), false, bytes, flops, t.clone()));
        }
        if let (Some(t), true) = (&k.best, k.best_config != k.baseline_config) {
            points.push((k.kernel.clone(), true, bytes, flops, t.clone()));
        }
    }
    [
        ("progress.svg", progress(r, &gpu_at)),
        ("candidates.svg", candidates(r)),
        ("roofline.svg", roofline(r, &points)),
    ]
    .into_iter()
    .filter_map(|(n, svg)| svg.map(|s| (n.to_string(), s)))
    .collect()
}
