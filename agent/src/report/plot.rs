//! The report's plots, as self-contained SVG: the best time of each kernel over the
//! GPU time spent, every candidate's speedup with its outcome, and each kernel's
//! position on the roofline of the measured ceilings. Every point is a figure of
//! the report (recomputed from the raw samples); a plot without data is not drawn.

use std::fmt::Write;

use super::{Report, Timing};

const W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One axis: linear or log10, from data bounds.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    /// Ticks at whole numbers (an index).
    int: bool,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, log: bool) -> Option<Axis> {
        let v: Vec<f64> = values
            .filter(|x| x.is_finite() && (!log || *x > 0.0))
            .collect();
        let (mut lo, mut hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        if !lo.is_finite() {
            return None;
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-9);
            // A non-negative quantity keeps its axis at zero or above.
            lo = if lo >= 0.0 {
                (lo - pad).max(0.0)
            } else {
                lo - pad
            };
            hi += pad;
        }
        Some(Axis {
            lo,
            hi,
            log,
            int: false,
        })
    }
    fn frac(&self, x: f64) -> f64 {
        if self.log {
            (x.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (x - self.lo) / (self.hi - self.lo)
        }
    }
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else if self.int {
            let step = ((self.hi - self.lo) / 5.0).ceil().max(1.0);
            let mut t = self.lo.ceil();
            let mut v = Vec::new();
            while t <= self.hi {
                v.push(t);
                t += step;
            }
            v
        } else {
            // A round step (1, 2 or 5 x 10^k) giving about five ticks.
            let raw = (self.hi - self.lo) / 5.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0]
                .into_iter()
                .map(|m| m * mag)
                .find(|s| *s >= raw)
                .unwrap_or(10.0 * mag);
            let first = (self.lo / step).ceil();
            (0..)
                .map(|i| (first + i as f64) * step)
                .take_while(|t| *t <= self.hi + step * 1e-9)
                .map(|t| if t.abs() < step * 1e-6 { 0.0 } else { t })
                .collect()
        }
    }
}

fn label(x: f64) -> String {
    let x = if x == 0.0 { 0.0 } else { x };
    let a = x.abs();
    if a >= 1e4 || (a < 1e-2 && a > 0.0) {
        format!("{x:.0e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// A plot under construction.
struct Plot {
    out: String,
    x: Axis,
    y: Axis,
    legend: usize,
}

impl Plot {
    fn new(title: &str, x: Axis, xl: &str, y: Axis, yl: &str) -> Plot {
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n",
            W / 2.0,
            esc(title)
        );
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
        let _ = writeln!(
            out,
            "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
            x1 - x0,
            y0 - y1
        );
        let mut p = Plot {
            out,
            x,
            y,
            legend: 0,
        };
        for t in x.ticks() {
            let px = p.px(t);
            // An index axis counts from 1.
            let text = if x.int {
                format!("{}", t.round() as i64 + 1)
            } else {
                label(t)
            };
            let _ = writeln!(
                p.out,
                "<line x1=\"{px:.1}\" y1=\"{y0}\" x2=\"{px:.1}\" y2=\"{y1}\" stroke=\"#eee\"/><text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{text}</text>",
                y0 + 15.0,
            );
        }
        for t in y.ticks() {
            let py = p.py(t);
            let _ = writeln!(
                p.out,
                "<line x1=\"{x0}\" y1=\"{py:.1}\" x2=\"{x1}\" y2=\"{py:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 - 5.0,
                py + 4.0,
                label(t)
            );
        }
        let _ = writeln!(
            p.out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"15\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 15 {})\">{}</text>",
            (x0 + x1) / 2.0,
            H - 12.0,
            esc(xl),
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            esc(yl)
        );
        p
    }
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.frac(x).clamp(0.0, 1.0) * (W - RIGHT - LEFT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - self.y.frac(y).clamp(0.0, 1.0) * (H - BOTTOM - TOP)
    }
    fn line(&mut self, pts: &[(f64, f64)], color: &str, dash: bool) {
        let d: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y)))
            .collect();
        let _ = writeln!(
            self.out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"{}/>",
            d.join(" "),
            if dash {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            }
        );
    }
    fn point(&mut self, x: f64, y: f64, color: &str, hollow: bool, title: &str) {
        let _ = writeln!(
            self.out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\" stroke=\"{color}\"><title>{}</title></circle>",
            self.px(x),
            self.py(y),
            if hollow { "white" } else { color },
            esc(title)
        );
    }
    fn key(&mut self, text: &str, color: &str) {
        let y = TOP + 10.0 + 16.0 * self.legend as f64;
        let x = W - RIGHT + 12.0;
        let _ = writeln!(
            self.out,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            y - 9.0,
            x + 14.0,
            y,
            esc(text)
        );
        self.legend += 1;
    }
    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
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
        for (kernel, config, at) in gpu_at {
            if kernel != &k.kernel {
                continue;
            }
            started.get_or_insert(*at);
            if let Some(it) = r.iterations.iter().find(|i| {
                &i.kernel == kernel && &i.config == config && i.decision.starts_with("committed")
            }) {
                if let Some(s) = &it.speedup {
                    if pts.is_empty() {
                        pts.push((started.unwrap_or(*at), 1.0));
                    }
                    pts.push((*at, rel));
                    rel /= s.x;
                    pts.push((*at, rel));
                }
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
    let x = Axis::new(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.0))
            .chain([0.0]),
        false,
    )?;
    let y = Axis::new(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .chain([1.0]),
        false,
    )?;
    let mut p = Plot::new(
        "Best time relative to the baseline, over GPU time spent",
        x,
        "GPU seconds into the run",
        y,
        "best / baseline time",
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        p.line(pts, c, false);
        for (x, y) in [pts[0], pts[pts.len() - 1]] {
            p.point(
                x,
                y,
                c,
                false,
                &format!("{name}: {y:.3} of its baseline time"),
            );
        }
        p.key(name, c);
    }
    Some(p.finish())
}

/// Every candidate's measured speedup against the best of its time (log scale),
/// coloured by outcome; candidates that failed sit on the bottom edge, hollow.
pub fn candidates(r: &Report) -> Option<String> {
    let measured: Vec<f64> = r
        .iterations
        .iter()
        .filter_map(|i| i.speedup.as_ref().map(|s| s.x))
        .collect();
    let y = Axis::new(measured.iter().copied().chain([1.0]), true)?;
    let n = r.iterations.len().max(1) as f64;
    let x = Axis {
        lo: -0.5,
        hi: n - 0.5,
        log: false,
        int: true,
    };
    let mut p = Plot::new(
        "Every candidate against the best of its time",
        x,
        "candidate (in order)",
        y,
        "speedup over the best (log)",
    );
    p.line(&[(x.lo, 1.0), (x.hi, 1.0)], "#999", true);
    let class = |v: &str| match v {
        "FAST" => ("faster (committed)", "#2ca02c"),
        "SLOW" => ("slower", "#d62728"),
        "SAME" => ("same", "#7f7f7f"),
        _ => ("ambiguous", "#ff7f0e"),
    };
    let mut seen: Vec<&str> = Vec::new();
    for (n, i) in r.iterations.iter().enumerate() {
        let (name, color, y_at, hollow) = match &i.speedup {
            Some(s) => {
                let (a, b) = class(&s.verdict);
                (a, b, s.x, false)
            }
            None => ("failed or not compared", "#000000", y.lo, true),
        };
        p.point(
            n as f64,
            y_at,
            color,
            hollow,
            &format!("{} {} ({}): {}", i.kernel, i.config, i.pattern, i.decision),
        );
        if !seen.contains(&name) {
            seen.push(name);
            p.key(name, color);
        }
    }
    Some(p.finish())
}

/// Each kernel's baseline and best on the roofline of the measured ceilings.
pub fn roofline(r: &Report, points: &[(String, bool, f64, f64, Timing)]) -> Option<String> {
    let m = r.machine.as_ref()?;
    let dram = m.dram_measured_gbs?;
    let peak = m
        .tensor_f16_measured_gflops
        .into_iter()
        .chain(m.fp32_measured_gflops)
        .fold(f64::NAN, f64::max);
    if points.is_empty() || !peak.is_finite() {
        return None;
    }
    let ai: Vec<f64> = points.iter().map(|p| p.3 / p.2).collect();
    let x = Axis::new(ai.iter().copied().chain([0.01, peak / dram * 10.0]), true)?;
    let perf: Vec<f64> = points
        .iter()
        .map(|p| p.3 / (p.4.median_us * 1e-6) / 1e9)
        .collect();
    let y = Axis::new(perf.iter().copied().chain([peak]), true)?;
    let mut p = Plot::new(
        "Roofline of the measured ceilings",
        x,
        "arithmetic intensity (FLOP per byte, cost model)",
        y,
        "GFLOP/s achieved",
    );
    let ridges: Vec<(f64, f64)> = [m.fp32_measured_gflops, m.tensor_f16_measured_gflops]
        .into_iter()
        .flatten()
        .map(|c| (c, c / dram))
        .collect();
    // The bandwidth slope starts where it enters the plot (clamping its first point
    // to the frame would bend it).
    let x0 = x.lo.max(y.lo / dram);
    for (c, ridge) in &ridges {
        p.line(&[(x0, dram * x0), (*ridge, *c), (x.hi, *c)], "#444", false);
    }
    p.key("measured ceilings", "#444");
    let mut names: Vec<&str> = Vec::new();
    for (i, (k, best, _, _, _)) in points.iter().enumerate() {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
        let c = COLORS[names.iter().position(|n| n == k).unwrap_or(0) % COLORS.len()];
        p.point(
            ai[i],
            perf[i],
            c,
            !*best,
            &format!("{k} {}", if *best { "best" } else { "baseline" }),
        );
    }
    for (i, n) in names.iter().enumerate() {
        p.key(n, COLORS[i % COLORS.len()]);
    }
    p.key("hollow = baseline", "white");
    p.key("filled = best", "#444");
    Some(p.finish())
}

/// A line per series over shared axes (log10 where asked): for sweeps.
pub(crate) fn series(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
    log_y: bool,
) -> Option<String> {
    let x = Axis::new(lines.iter().flat_map(|l| l.1.iter().map(|p| p.0)), log_x)?;
    let y = Axis::new(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)), log_y)?;
    let mut p = Plot::new(title, x, x_label, y, y_label);
    for (i, (name, pts)) in lines.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        if pts.len() > 1 {
            p.line(pts, c, false);
        }
        for (a, b) in pts {
            p.point(*a, *b, c, false, &format!("{name}: {b:.3} at {a}"));
        }
        p.key(name, c);
    }
    Some(p.finish())
}
