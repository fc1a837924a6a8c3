//! Drawing primitives of the charts: data-to-pixel maps, mark shapes and glyphs as
//! SVG, and where a point's label goes so that it covers no mark and no other label.

use std::fmt::Write;

use super::*;

/// Maps data to pixels along one axis.
#[derive(Debug, Clone, Copy)]
pub(super) struct Map {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) scale: Scale,
    pub(super) p0: f64,
    pub(super) p1: f64,
}

impl Map {
    pub(super) fn t(&self, v: f64) -> f64 {
        let f = match self.scale {
            Scale::Lin => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        };
        self.p0 + f * (self.p1 - self.p0)
    }
}

pub(super) fn shape_path(shape: Shape, cx: f64, cy: f64, r: f64) -> String {
    let p = |pts: &[(f64, f64)]| {
        let mut d = String::new();
        for (i, (x, y)) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.2} {:.2} ",
                if i == 0 { "M" } else { "L" },
                cx + x * r,
                cy + y * r
            );
        }
        d.push('Z');
        d
    };
    match shape {
        Shape::Circle => String::new(),
        Shape::Up => p(&[(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)]),
        Shape::Down => p(&[(0.0, 1.0), (1.0, -0.8), (-1.0, -0.8)]),
        Shape::Diamond => p(&[(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)]),
        Shape::Cross => format!(
            "M{:.2} {:.2} L{:.2} {:.2} M{:.2} {:.2} L{:.2} {:.2}",
            cx - r,
            cy - r,
            cx + r,
            cy + r,
            cx - r,
            cy + r,
            cx + r,
            cy - r
        ),
    }
}

/// How a mark looks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Glyph<'a> {
    pub(super) shape: Shape,
    pub(super) color: &'a str,
    pub(super) filled: bool,
    pub(super) r: f64,
}

impl Mark {
    pub(super) fn glyph(&self) -> Glyph<'static> {
        Glyph {
            shape: self.shape,
            color: self.color,
            filled: self.filled,
            r: self.size,
        }
    }
}

/// One mark as SVG, `class="mark"`, with its title.
pub(super) fn mark_svg(o: &mut String, g: Glyph, cx: f64, cy: f64, title: &str) {
    let Glyph {
        shape,
        color,
        filled,
        r,
    } = g;
    let (fill, stroke_w) = match (shape, filled) {
        (Shape::Cross, _) => ("none".to_string(), 2.0),
        (_, true) => (color.to_string(), 1.0),
        (_, false) => ("white".to_string(), 2.0),
    };
    let title = if title.is_empty() {
        String::new()
    } else {
        format!("<title>{}</title>", esc(title))
    };
    if shape == Shape::Circle {
        let _ = writeln!(
            o,
            r#"<circle class="mark" cx="{cx:.2}" cy="{cy:.2}" r="{r:.2}" fill="{fill}" stroke="{color}" stroke-width="{stroke_w}">{title}</circle>"#
        );
    } else {
        let _ = writeln!(
            o,
            r#"<path class="mark" d="{}" fill="{fill}" stroke="{color}" stroke-width="{stroke_w}">{title}</path>"#,
            shape_path(shape, cx, cy, r)
        );
    }
}

/// An axis-aligned box: x0, y0, x1, y1.
pub(super) type Rect = (f64, f64, f64, f64);

pub(super) fn overlaps(a: Rect, b: Rect) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Where a label `w` wide goes beside the mark at (cx, cy): the first of eight spots
/// around it that stays in `area` and covers nothing `taken`; the first spot that
/// stays in the area when every one covers something. Returns the text's baseline
/// start.
pub(super) fn label_spot(
    w: f64,
    cx: f64,
    cy: f64,
    r: f64,
    area: Rect,
    taken: &[Rect],
) -> (f64, f64) {
    let gap = r + 3.0;
    let spots = [
        (cx + gap, cy - gap),
        (cx + gap, cy + gap + FONT),
        (cx - gap - w, cy - gap),
        (cx - gap - w, cy + gap + FONT),
        (cx + gap, cy + FONT / 2.0 - 1.0),
        (cx - gap - w, cy + FONT / 2.0 - 1.0),
        (cx - w / 2.0, cy - gap - 2.0),
        (cx - w / 2.0, cy + gap + FONT + 2.0),
    ];
    let boxed = |(x, y): (f64, f64)| (x, y - FONT, x + w, y);
    let inside = |b: Rect| b.0 >= area.0 && b.2 <= area.2 && b.1 >= area.1 && b.3 <= area.3;
    spots
        .iter()
        .copied()
        .find(|s| inside(boxed(*s)) && !taken.iter().any(|t| overlaps(boxed(*s), *t)))
        .or_else(|| spots.iter().copied().find(|s| inside(boxed(*s))))
        .unwrap_or(spots[0])
}

pub(super) fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}
