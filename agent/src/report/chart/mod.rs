//! The report's charts, drawn as SVG by hand so that every rule a reader relies on
//! holds by construction: the legend sits in its own column right of the plotting
//! area (never on a mark), both axes span every point drawn, ticks are SI-formatted
//! with their unit (`100 TFLOP/s`, `4.4 TB/s`, `12 µs`), and every mark carries a
//! `<title>` naming what it is (a browser shows it on hover). Marks the axes cannot
//! place (a failed candidate has no speedup) go in a labelled lane under the plot.
//!
//! Elements are tagged with classes (`plot-area`, `lane`, `legend-box`, `mark`,
//! `point-label`) so tests can check the geometry from the SVG alone.

mod draw;
mod ticks;

use std::fmt::Write;

use draw::*;
pub(crate) use ticks::{number, si};

/// The palette: one colour per kernel or series, in order (colour-blind-safe
/// Tableau 10).
pub(crate) const PALETTE: [&str; 10] = [
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
    "#9c755f", "#bab0ac",
];

pub(crate) fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub(crate) const GREY: &str = "#555555";

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    Lin,
    Log,
}

/// How an axis writes its ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unit {
    /// SI prefixes on this unit: `si(1.5e14, "FLOP/s")` = `150 TFLOP/s`.
    Si(&'static str),
    /// Plain numbers followed by this suffix (`1.5x`, `3 s`); empty for none.
    Plain(&'static str),
    /// Whole numbers (candidates, pairs): ticks at integers only.
    Count,
    /// Named categories at 0, 1, 2, ...
    Categories(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    pub label: String,
    pub unit: Unit,
    pub scale: Scale,
    /// Values the axis must include besides the marks (e.g. 1 on a speedup axis).
    pub include: Vec<f64>,
}

impl Axis {
    pub fn new(label: impl Into<String>, unit: Unit, scale: Scale) -> Axis {
        Axis {
            label: label.into(),
            unit,
            scale,
            include: vec![],
        }
    }

    pub fn including(mut self, v: impl IntoIterator<Item = f64>) -> Axis {
        self.include.extend(v);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    Circle,
    Up,
    Down,
    Diamond,
    Cross,
}

/// A point: where, how it looks, what it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    pub x: f64,
    pub y: f64,
    pub shape: Shape,
    pub color: &'static str,
    pub filled: bool,
    pub size: f64,
    /// What a browser shows on hover.
    pub title: String,
    /// Written beside the mark.
    pub label: Option<String>,
}

impl Mark {
    pub fn new(x: f64, y: f64, color: &'static str, title: impl Into<String>) -> Mark {
        Mark {
            x,
            y,
            shape: Shape::Circle,
            color,
            filled: true,
            size: 4.5,
            title: title.into(),
            label: None,
        }
    }

    pub fn shape(mut self, s: Shape) -> Mark {
        self.shape = s;
        self
    }

    pub fn hollow(mut self, hollow: bool) -> Mark {
        self.filled = !hollow;
        self
    }

    pub fn size(mut self, s: f64) -> Mark {
        self.size = s;
        self
    }

    pub fn label(mut self, l: impl Into<String>) -> Mark {
        self.label = Some(l.into());
        self
    }
}

/// A polyline (a series, a ceiling, a median).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub width: f64,
    pub dashed: bool,
    pub title: String,
}

impl Line {
    pub fn new(points: Vec<(f64, f64)>, color: &'static str, title: impl Into<String>) -> Line {
        Line {
            points,
            color,
            width: 2.0,
            dashed: false,
            title: title.into(),
        }
    }

    pub fn dashed(mut self) -> Line {
        self.dashed = true;
        self.width = 1.2;
        self
    }

    pub fn width(mut self, w: f64) -> Line {
        self.width = w;
        self
    }
}

/// What a legend entry shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    Mark(Shape, &'static str, bool),
    Line(&'static str, bool),
    /// A colour swatch (a kernel whose marks vary in shape).
    Swatch(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    pub title: String,
    /// A line under the title: what to read off the chart.
    pub note: String,
    pub x: Axis,
    pub y: Axis,
    pub lines: Vec<Line>,
    pub marks: Vec<Mark>,
    /// Marks without a y value, at their x, in a lane under the plot: (its name,
    /// marks; their `y` is ignored).
    pub lane: Option<(String, Vec<Mark>)>,
    pub legend: Vec<(String, Key)>,
}

impl Chart {
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Chart {
        Chart {
            title: title.into(),
            note: String::new(),
            x,
            y,
            lines: vec![],
            marks: vec![],
            lane: None,
            legend: vec![],
        }
    }

    pub fn note(mut self, n: impl Into<String>) -> Chart {
        self.note = n.into();
        self
    }
}

/// XML text and attribute escaping.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

const PLOT_W: f64 = 560.0;
const PLOT_H: f64 = 300.0;
/// The least room left of the plot: tick labels and the axis label.
const LEFT: f64 = 70.0;
const TOP_TITLE: f64 = 28.0;
const NOTE_H: f64 = 18.0;
const BOTTOM: f64 = 52.0;
const LANE_H: f64 = 26.0;
const LANE_GAP: f64 = 30.0;
const FONT: f64 = 12.0;
/// A conservative width of one character of the 12 px sans-serif text, so a legend
/// column is wide enough for its longest entry.
const CHAR_W: f64 = 7.2;
const LEGEND_PAD: f64 = 8.0;
const LEGEND_ROW: f64 = 18.0;

/// The range an axis spans: every finite value (positive on a log axis), padded.
fn span(values: impl Iterator<Item = f64>, scale: Scale) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (scale == Scale::Lin || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    Some(match scale {
        Scale::Log => {
            let (l, h) = (lo.log10(), hi.log10());
            let pad = ((h - l) * 0.06).max(0.02);
            (10f64.powf(l - pad), 10f64.powf(h + pad))
        }
        Scale::Lin => {
            let pad = ((hi - lo) * 0.06)
                .max(hi.abs().max(lo.abs()) * 0.02)
                .max(1e-12);
            let lo2 = if lo >= 0.0 && lo - pad < 0.0 {
                0.0
            } else {
                lo - pad
            };
            (lo2, hi + pad)
        }
    })
}

impl Chart {
    /// The SVG, or None when no mark or line has a point the axes can place.
    pub fn svg(&self) -> Option<String> {
        // A value a log axis cannot place (zero or negative) is left out, and said.
        let fits = |v: f64, scale: Scale| v.is_finite() && (scale == Scale::Lin || v > 0.0);
        let ok = |x: f64, y: f64| fits(x, self.x.scale) && fits(y, self.y.scale);
        let left_out = self.marks.iter().filter(|m| !ok(m.x, m.y)).count()
            + self
                .lane
                .iter()
                .flat_map(|l| l.1.iter())
                .filter(|m| !fits(m.x, self.x.scale))
                .count();
        let note = if left_out > 0 {
            let what = format!(
                "{left_out} point(s) at or below zero (or not finite) are not drawn on the log axis"
            );
            if self.note.is_empty() {
                what
            } else {
                format!("{}; {what}", self.note)
            }
        } else {
            self.note.clone()
        };
        let xs = self
            .marks
            .iter()
            .map(|m| m.x)
            .chain(self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)))
            .chain(self.lane.iter().flat_map(|l| l.1.iter().map(|m| m.x)));
        let ys = self
            .marks
            .iter()
            .map(|m| m.y)
            .chain(self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
        let data_x: Vec<f64> = xs.collect();
        let data_y: Vec<f64> = ys.collect();
        if data_x.is_empty() {
            return None;
        }
        let (x0, x1) = match &self.x.unit {
            Unit::Categories(c) => (-0.5, c.len() as f64 - 0.5),
            _ => span(
                data_x.iter().copied().chain(self.x.include.iter().copied()),
                self.x.scale,
            )?,
        };
        let (y0, y1) = span(
            data_y.iter().copied().chain(self.y.include.iter().copied()),
            self.y.scale,
        )
        .or_else(|| self.lane.as_ref().map(|_| (0.0, 1.0)))?;
        // Room on the left for the widest tick label and the axis label.
        let widest = ticks::ticks(&self.y.unit, y0, y1, self.y.scale)
            .iter()
            .map(|t| text_w(&t.1))
            .fold(0.0, f64::max);
        let left = (widest + 40.0)
            .max(LEFT)
            .max(self.lane.as_ref().map_or(0.0, |l| text_w(&l.0) + 40.0));
        let legend_w = self
            .legend
            .iter()
            .map(|(l, _)| text_w(l))
            .fold(0.0, f64::max)
            + if self.legend.is_empty() {
                0.0
            } else {
                36.0 + 2.0 * LEGEND_PAD
            };
        let top = TOP_TITLE + if note.is_empty() { 0.0 } else { NOTE_H } + 12.0;
        let lane_h = if self.lane.is_some() {
            LANE_GAP + LANE_H
        } else {
            0.0
        };
        let legend_h = self.legend.len() as f64 * LEGEND_ROW + 2.0 * LEGEND_PAD;
        let width = (left + PLOT_W + 24.0 + legend_w + 12.0)
            .max(text_w(&self.title) * 1.2 + 24.0)
            .max(text_w(&note) + 24.0);
        let height = (top + PLOT_H + lane_h + BOTTOM).max(top + legend_h + 12.0);
        let mx = Map {
            lo: x0,
            hi: x1,
            scale: self.x.scale,
            p0: left,
            p1: left + PLOT_W,
        };
        let my = Map {
            lo: y0,
            hi: y1,
            scale: self.y.scale,
            p0: top + PLOT_H,
            p1: top,
        };
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{FONT}" role="img"><title>{}</title>"#,
            esc(&self.title)
        );
        let _ = writeln!(
            o,
            r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#
        );
        let _ = writeln!(
            o,
            r#"<text class="chart-title" x="{left}" y="20" font-size="15" font-weight="bold">{}</text>"#,
            esc(&self.title)
        );
        if !note.is_empty() {
            let _ = writeln!(
                o,
                r##"<text class="chart-note" x="{left}" y="{}" fill="#444">{}</text>"##,
                20.0 + NOTE_H,
                esc(&note)
            );
        }
        let _ = writeln!(
            o,
            r##"<rect class="plot-area" x="{left}" y="{top}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#999"/>"##
        );
        self.axes(&mut o, &mx, &my, top, lane_h);
        // Lines, then marks over them; everything clipped to the plotting area is
        // unnecessary: the axes span every point.
        for l in &self.lines {
            let pts: Vec<String> = l
                .points
                .iter()
                .filter(|p| ok(p.0, p.1))
                .map(|p| format!("{:.2},{:.2}", mx.t(p.0), my.t(p.1)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let dash = if l.dashed {
                r#" stroke-dasharray="5 4""#
            } else {
                ""
            };
            let _ = writeln!(
                o,
                r#"<polyline class="series" points="{}" fill="none" stroke="{}" stroke-width="{}"{dash}><title>{}</title></polyline>"#,
                pts.join(" "),
                l.color,
                l.width,
                esc(&l.title)
            );
        }
        let placed: Vec<(&Mark, f64, f64)> = self
            .marks
            .iter()
            .filter(|m| ok(m.x, m.y))
            .map(|m| (m, mx.t(m.x), my.t(m.y)))
            .collect();
        for (m, cx, cy) in &placed {
            mark_svg(&mut o, m.glyph(), *cx, *cy, &m.title);
        }
        // Labels over every mark, each where it covers no mark and no other label.
        let area = (left, top, left + PLOT_W, top + PLOT_H);
        let mut taken: Vec<Rect> = placed
            .iter()
            .map(|(m, cx, cy)| (cx - m.size, cy - m.size, cx + m.size, cy + m.size))
            .collect();
        for (m, cx, cy) in &placed {
            let Some(l) = &m.label else { continue };
            let (lx, ly) = label_spot(text_w(l), *cx, *cy, m.size, area, &taken);
            taken.push((lx, ly - FONT, lx + text_w(l), ly));
            let _ = writeln!(
                o,
                r#"<text class="point-label" x="{lx:.2}" y="{ly:.2}" fill="{}">{}</text>"#,
                m.color,
                esc(l)
            );
        }
        if let Some((name, marks)) = &self.lane {
            let ly = top + PLOT_H + LANE_GAP;
            let _ = writeln!(
                o,
                r##"<rect class="lane" x="{left}" y="{ly}" width="{PLOT_W}" height="{LANE_H}" fill="#f4f4f4" stroke="#bbb"/>"##
            );
            let _ = writeln!(
                o,
                r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                left - 6.0,
                ly + LANE_H / 2.0 + 4.0,
                esc(name)
            );
            for m in marks.iter().filter(|m| fits(m.x, self.x.scale)) {
                mark_svg(&mut o, m.glyph(), mx.t(m.x), ly + LANE_H / 2.0, &m.title);
            }
        }
        self.legend_svg(&mut o, left + PLOT_W + 24.0, top, legend_w, legend_h);
        o.push_str("</svg>\n");
        Some(o)
    }

    fn axes(&self, o: &mut String, mx: &Map, my: &Map, top: f64, lane_h: f64) {
        let left = mx.p0;
        let base = top + PLOT_H;
        let x_ticks = ticks::ticks(&self.x.unit, mx.lo, mx.hi, mx.scale);
        for (v, label) in &x_ticks {
            let x = mx.t(*v);
            let _ = writeln!(
                o,
                r##"<line class="grid" x1="{x:.2}" y1="{top}" x2="{x:.2}" y2="{base}" stroke="#e6e6e6"/><line x1="{x:.2}" y1="{base}" x2="{x:.2}" y2="{}" stroke="#666"/><text class="tick" x="{x:.2}" y="{}" text-anchor="middle">{}</text>"##,
                base + 5.0,
                base + 18.0,
                esc(label)
            );
        }
        for (v, label) in ticks::ticks(&self.y.unit, my.lo, my.hi, my.scale) {
            let y = my.t(v);
            let _ = writeln!(
                o,
                r##"<line class="grid" x1="{left}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="#e6e6e6"/><line x1="{}" y1="{y:.2}" x2="{left}" y2="{y:.2}" stroke="#666"/><text class="tick" x="{}" y="{:.2}" text-anchor="end">{}</text>"##,
                left + PLOT_W,
                left - 5.0,
                left - 8.0,
                y + 4.0,
                esc(&label)
            );
        }
        let _ = writeln!(
            o,
            r#"<text class="axis-label" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + PLOT_W / 2.0,
            base + lane_h + 40.0,
            esc(&self.x.label)
        );
        let cy = top + PLOT_H / 2.0;
        let _ = writeln!(
            o,
            r#"<text class="axis-label" x="16" y="{cy}" text-anchor="middle" transform="rotate(-90 16 {cy})">{}</text>"#,
            esc(&self.y.label)
        );
    }

    fn legend_svg(&self, o: &mut String, x: f64, y: f64, w: f64, h: f64) {
        if self.legend.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            r##"<g class="legend"><rect class="legend-box" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="white" stroke="#999"/>"##
        );
        for (i, (label, key)) in self.legend.iter().enumerate() {
            let cy = y + LEGEND_PAD + LEGEND_ROW * (i as f64 + 0.5);
            let kx = x + LEGEND_PAD + 12.0;
            match key {
                Key::Mark(shape, color, filled) => {
                    let g = Glyph {
                        shape: *shape,
                        color,
                        filled: *filled,
                        r: 4.5,
                    };
                    mark_svg(o, g, kx, cy, "")
                }
                Key::Line(color, dashed) => {
                    let dash = if *dashed {
                        r#" stroke-dasharray="5 4""#
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        o,
                        r#"<line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="{color}" stroke-width="2"{dash}/>"#,
                        kx - 10.0,
                        kx + 10.0
                    );
                }
                Key::Swatch(color) => {
                    let _ = writeln!(
                        o,
                        r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{color}"/>"#,
                        kx - 6.0,
                        cy - 6.0
                    );
                }
            }
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                kx + 18.0,
                cy + 4.0,
                esc(label)
            );
        }
        o.push_str("</g>\n");
    }
}

#[cfg(test)]
pub(crate) mod geometry;
#[cfg(test)]
mod tests;
