//! The rules a chart keeps, checked from its SVG alone (tests): every mark inside
//! the plotting area or its lane, no mark or point label under the legend, the
//! legend inside the picture.

/// An axis-aligned box: x0, y0, x1, y1.
pub(crate) type Rect = (f64, f64, f64, f64);

fn attr(n: &roxmltree::Node, a: &str) -> f64 {
    n.attribute(a)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn rect_of(n: &roxmltree::Node) -> Rect {
    let (x, y) = (attr(n, "x"), attr(n, "y"));
    (x, y, x + attr(n, "width"), y + attr(n, "height"))
}

/// The box a path's coordinates span (every number pair of its `d`).
fn path_box(d: &str) -> Rect {
    let nums: Vec<f64> = d
        .split(|c: char| c.is_ascii_alphabetic() || c.is_whitespace() || c == ',')
        .filter_map(|t| t.parse().ok())
        .collect();
    let mut b = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for p in nums.chunks(2).filter(|p| p.len() == 2) {
        b = (b.0.min(p[0]), b.1.min(p[1]), b.2.max(p[0]), b.3.max(p[1]));
    }
    b
}

fn overlaps(a: Rect, b: Rect) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

fn inside(a: Rect, b: Rect) -> bool {
    const EPS: f64 = 0.01;
    a.0 >= b.0 - EPS && a.2 <= b.2 + EPS && a.1 >= b.1 - EPS && a.3 <= b.3 + EPS
}

/// The box of a mark element (`<circle>` or `<path>` of class `mark`).
fn mark_box(n: &roxmltree::Node) -> Rect {
    if n.tag_name().name() == "circle" {
        let (cx, cy, r) = (attr(n, "cx"), attr(n, "cy"), attr(n, "r"));
        (cx - r, cy - r, cx + r, cy + r)
    } else {
        path_box(n.attribute("d").unwrap_or(""))
    }
}

/// Checks `svg`; Err names the first broken rule.
pub(crate) fn check(svg: &str) -> Result<usize, String> {
    let doc = roxmltree::Document::parse(svg).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    let picture = (0.0, 0.0, attr(&root, "width"), attr(&root, "height"));
    let class = |c: &str| {
        doc.descendants()
            .filter(move |n| n.attribute("class") == Some(c))
            .collect::<Vec<_>>()
    };
    let areas: Vec<Rect> = class("plot-area")
        .iter()
        .chain(class("lane").iter())
        .map(rect_of)
        .collect();
    if areas.is_empty() {
        return Err("no plotting area".into());
    }
    let legend = class("legend-box").first().map(rect_of);
    if let Some(l) = legend {
        if !inside(l, picture) {
            return Err(format!("legend {l:?} outside the picture {picture:?}"));
        }
        if areas.iter().any(|a| overlaps(l, *a)) {
            return Err(format!("legend {l:?} over the plotting area"));
        }
    }
    let in_legend = |n: &roxmltree::Node| {
        n.ancestors()
            .any(|a| a.attribute("class") == Some("legend"))
    };
    let mut marks = 0;
    for m in class("mark").iter().filter(|m| !in_legend(m)) {
        let b = mark_box(m);
        let title = m
            .children()
            .find(|c| c.tag_name().name() == "title")
            .and_then(|t| t.text())
            .unwrap_or("");
        if title.is_empty() {
            return Err(format!("a mark at {b:?} has no title"));
        }
        // The mark's centre lies inside an area (its edge may reach over the frame).
        let c = ((b.0 + b.2) / 2.0, (b.1 + b.3) / 2.0);
        if !areas.iter().any(|a| inside((c.0, c.1, c.0, c.1), *a)) {
            return Err(format!("mark `{title}` at {c:?} outside the axes"));
        }
        if let Some(l) = legend {
            if overlaps(b, l) {
                return Err(format!("mark `{title}` under the legend"));
            }
        }
        marks += 1;
    }
    for t in class("point-label") {
        let (x, y) = (attr(&t, "x"), attr(&t, "y"));
        let w = t.text().unwrap_or("").chars().count() as f64 * 7.2;
        if let Some(l) = legend {
            if overlaps((x, y - 12.0, x + w, y), l) {
                return Err(format!("label {:?} under the legend", t.text()));
            }
        }
    }
    Ok(marks)
}
