//! A sweep for a person: one line per point as it is measured, the table of every
//! point, the faster variant per region of a two-axis grid, the crossovers, the
//! batching study's table, and the plot (`sweep.svg`).

use std::path::Path;

use super::{Axis, Cell, Point, Thresholds, Winner};
use crate::study::StudyResult;
use crate::table;

/// One point on one line: each variant's median (or outcome), and the faster one.
pub fn describe(p: &Point, over: Option<&str>) -> String {
    let name = over.unwrap_or("config");
    let cells: Vec<String> = p
        .cells
        .iter()
        .map(|c| match c.median_us {
            Some(m) => format!("{name}={} {m:.2} µs", c.variant),
            None => format!("{name}={} {}", c.variant, c.outcome),
        })
        .collect();
    let w = match (p.winner(), &p.duel) {
        (Winner::Sure(v), Some(d)) => format!(
            " -> {name}={v} ({} {:.3}x [{:.3}, {:.3}])",
            d.verdict, d.speedup, d.ci_lo, d.ci_hi
        ),
        (Winner::Lean(v), Some(d)) => format!(
            " -> {name}={v} within the noise ({} {:.3}x)",
            d.verdict, d.speedup
        ),
        _ => String::new(),
    };
    format!("{}: {}{w}", p.label, cells.join(", "))
}

/// The median time per launch over the first axis, one line per variant (and per
/// value of the other axes); None when there is nothing to draw.
pub fn plot(points: &[Point], axes: &[Axis], over: Option<&str>, kernel: &str) -> Option<String> {
    let x_axis = &axes[0];
    // One line per variant (and per value of the other axes, when there are some).
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in points {
        let x = p.at.iter().find(|(n, _)| *n == x_axis.name)?.1 as f64;
        let rest: Vec<String> =
            p.at.iter()
                .filter(|(n, _)| *n != x_axis.name)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
        for c in &p.cells {
            let Some(m) = c.median_us else { continue };
            let mut name = match over {
                Some(o) => format!("{o}={}", c.variant),
                None => kernel.to_string(),
            };
            if !rest.is_empty() {
                name = format!("{name} {}", rest.join(" "));
            }
            // Seconds, so the axis writes SI ticks (`12 µs`, `1.5 ms`).
            let m = m * 1e-6;
            match lines.iter_mut().find(|l| l.0 == name) {
                Some(l) => l.1.push((x, m)),
                None => lines.push((name, vec![(x, m)])),
            }
        }
    }
    use crate::report::chart::{Axis, Scale, Unit};
    crate::report::plot::series(
        &format!("{kernel}: median time per launch over {}", x_axis.name),
        Axis::new(
            x_axis.name.clone(),
            Unit::Plain(""),
            // A log axis only where every value can sit on one.
            if lines.iter().flat_map(|l| &l.1).all(|p| p.0 > 0.0) {
                Scale::Log
            } else {
                Scale::Lin
            },
        ),
        Axis::new("time per launch (median, log)", Unit::Si("s"), Scale::Log),
        &lines,
    )
}

/// The sweep's report: every point, the regions of a two-axis grid, the crossovers,
/// and where the outputs went.
pub fn render(
    points: &[Point],
    axes: &[Axis],
    over: Option<&str>,
    t: &Thresholds,
    out: &Path,
) -> String {
    let mut o = points_table(points, axes, over);
    // Two axes: the faster variant per region of the grid.
    if let (Some(ov), [ya, xa]) = (over, axes) {
        o.push_str(&regions(points, ov, ya, xa));
    }
    if over.is_some() {
        o.push_str(&crossovers(t, over));
    }
    o.push_str(&format!(
        "\nwrote {}/sweep.csv, thresholds.json, thresholds.rs, thresholds.h, sweep.svg (measured on {}, {})\n",
        out.display(),
        t.device,
        t.date
    ));
    o
}

/// One row per point: its axes' values, each variant's median and interval (or its
/// outcome), and the faster variant.
fn points_table(points: &[Point], axes: &[Axis], over: Option<&str>) -> String {
    let name = over.unwrap_or("config");
    let variants: Vec<i64> = points
        .first()
        .map(|p| p.cells.iter().map(|c| c.variant).collect())
        .unwrap_or_default();
    let mut head: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
    for v in &variants {
        head.push(match over {
            Some(_) => format!("{name}={v} µs"),
            None => "µs [95% CI]".into(),
        });
    }
    if over.is_some() {
        head.push("faster".into());
    }
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            let mut r: Vec<String> = p.at.iter().map(|(_, v)| v.to_string()).collect();
            for v in &variants {
                let c = p.cells.iter().find(|c| c.variant == *v);
                r.push(match c {
                    Some(Cell {
                        median_us: Some(m),
                        ci_lo_us: Some(l),
                        ci_hi_us: Some(h),
                        ..
                    }) => format!("{m:.2} [{l:.2}, {h:.2}]"),
                    Some(c) => c.outcome.clone(),
                    None => "-".into(),
                });
            }
            if over.is_none() {
                return r;
            }
            r.push(match (p.winner(), &p.duel) {
                (Winner::Sure(v), Some(d)) => {
                    format!("{name}={v} ({} {:.3}x)", d.verdict, d.speedup)
                }
                (Winner::Sure(v), None) => format!("{name}={v}"),
                (Winner::Lean(v), _) => format!("{name}={v}, within the noise"),
                (Winner::None, _) => "-".into(),
            });
            r
        })
        .collect();
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    table::render(&head_ref, &rows)
}

/// A two-axis grid's faster variant at each point (`~`: within the noise, by median).
fn regions(points: &[Point], ov: &str, ya: &Axis, xa: &Axis) -> String {
    let mut head = vec![format!("{} \\ {}", ya.name, xa.name)];
    head.extend(xa.values.iter().map(|v| v.to_string()));
    let rows: Vec<Vec<String>> = ya
        .values
        .iter()
        .map(|y| {
            let mut r = vec![y.to_string()];
            for x in &xa.values {
                let p = points.iter().find(|p| {
                    p.at.contains(&(ya.name.clone(), *y)) && p.at.contains(&(xa.name.clone(), *x))
                });
                r.push(match p.map(|p| p.winner()) {
                    Some(Winner::Sure(v)) => format!("{v}"),
                    Some(Winner::Lean(v)) => format!("{v}~"),
                    _ => "-".into(),
                });
            }
            r
        })
        .collect();
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    format!(
        "\nfaster {ov} per region (~: within the noise, by median):\n{}",
        table::render(&head_ref, &rows)
    )
}

/// Each crossover with the interval it lies in and how sure it is, or that there is none.
fn crossovers(t: &Thresholds, over: Option<&str>) -> String {
    let name = over.unwrap_or("config");
    let mut o = String::new();
    if t.crossovers.is_empty() {
        o.push_str(
            "\nno crossover: one variant is faster (or within the noise) everywhere swept\n",
        );
    }
    for c in &t.crossovers {
        let held = if c.held.is_empty() {
            String::new()
        } else {
            format!(
                " at {}",
                c.held
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        o.push_str(&format!(
            "\ncrossover along {}{held}: {name}={} up to {}, {name}={} from {} ({})",
            c.axis, c.below, c.from, c.above, c.to, c.confidence
        ));
    }
    o.push('\n');
    o
}

/// The batching study's table: throughput per unit of work against the first point,
/// and its conclusion.
pub fn batching(b: &StudyResult) -> String {
    let rows: Vec<Vec<String>> = b
        .rows
        .iter()
        .map(|r| {
            vec![
                r.problem.clone(),
                format!("x{}", r.scale),
                r.us_per_unit.map_or("-".into(), |x| format!("{x:.2}")),
                r.throughput_x
                    .map_or("-".into(), |(x, l, h)| format!("{x:.2}x [{l:.2}, {h:.2}]")),
                r.ctas_per_sm.map_or("-".into(), |c| format!("{c:.1}")),
            ]
        })
        .collect();
    format!(
        "\nthroughput per unit of work (one unit: the first point's work):\n{}{}\n",
        table::render(
            &[
                "point",
                "work",
                "µs per unit",
                "throughput per unit vs the first",
                "CTAs per SM"
            ],
            &rows
        ),
        b.conclusion
    )
}
