//! `nightshift sweep <kernel> --axis NAME=SPEC [--over TUNABLE]`: every point of a
//! grid of problem sizes, each variant validated and measured with `bench`'s
//! protocols (two variants interleaved), crossovers with their uncertainty, and the
//! thresholds as JSON, a Rust `const` and a C `#define`. Each point is appended to
//! `sweep.jsonl` as it is measured, so `--resume` continues an interrupted sweep.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{clear_progress, exit, SweepArgs};
use crate::evaluate::{Evaluation, Options, Session};
use crate::measure::TimingMethod;
use crate::spec::{Config, KernelSpec};
use crate::sweep::{self, Axis, Cell, Duel, Point, Thresholds, Winner};
use crate::table;
use crate::vocab::Outcome;

/// The first line of `sweep.jsonl`: what is being swept (a resume must match it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    kernel: String,
    axes: Vec<Axis>,
    over: Option<String>,
    base: String,
    device: String,
    command: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Sweep(Header),
    Point(Point),
}

fn cell(spec: &KernelSpec, variant: i64, e: &Evaluation) -> Cell {
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

fn excluded(variant: i64, why: String) -> Cell {
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

fn duel_of(a: i64, b: i64, r: &crate::vocab::AbResult) -> Duel {
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
fn measure_point(
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
    let label = sweep::label(&s.problem, order);
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

fn default_out(kernel: &str, axes: &[Axis], over: Option<&str>) -> PathBuf {
    let mut name = format!(
        "{kernel}-{}",
        axes.iter()
            .map(|a| a.name.replace('_', ""))
            .collect::<Vec<_>>()
            .join("-")
    );
    if let Some(o) = over {
        name.push_str(&format!("-over-{}", o.to_lowercase()));
    }
    PathBuf::from("sweeps").join(name)
}

fn read_lines(path: &Path) -> Result<(Header, Vec<Point>)> {
    let text = crate::files::read_text(path, crate::files::MAX_JOURNAL_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut header = None;
    let mut points = Vec::new();
    let n = text.lines().count();
    for (i, l) in text.lines().enumerate() {
        match serde_json::from_str::<Line>(l) {
            Ok(Line::Sweep(h)) => header = Some(h),
            Ok(Line::Point(p)) => points.push(p),
            // A line cut short by a crash is the last one: it is measured again.
            Err(_) if i + 1 == n => {}
            Err(e) => bail!("{} line {}: {e}", path.display(), i + 1),
        }
    }
    let header = header.ok_or_else(|| anyhow!("{}: no sweep header", path.display()))?;
    Ok((header, points))
}

pub fn run(a: &SweepArgs, opts: Options) -> i32 {
    super::exit_code(go(a, opts))
}

fn go(a: &SweepArgs, opts: Options) -> Result<i32> {
    let spec = KernelSpec::load(&a.kernel)?;
    let axes: Vec<Axis> = a
        .axes
        .iter()
        .map(|s| sweep::parse_axis(s).map_err(|e| anyhow!("--axis {e}")))
        .collect::<Result<_>>()?;
    let points = sweep::grid_len(&axes);
    if points > a.max_points {
        bail!(
            "the grid has {points} points, more than --max-points {} (each point is a measurement): sweep coarser axes, or raise --max-points",
            a.max_points
        );
    }
    for ax in &axes {
        if !spec.problem.contains_key(&ax.name) {
            bail!(
                "--axis {}: not an axis of {}'s [problem]; its axes are: {}",
                ax.name,
                spec.spec_path.display(),
                spec.problem.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if axes
        .iter()
        .enumerate()
        .any(|(i, x)| axes[..i].iter().any(|y| y.name == x.name))
    {
        bail!("--axis: an axis is given twice");
    }
    let base = spec
        .with_overrides(&spec.baseline(), &a.set)
        .map_err(|e| anyhow!("--set: {e}"))?;
    let configs: Vec<(i64, Config)> = match &a.over {
        None => vec![(0, base.clone())],
        Some(name) => {
            let t = spec
                .tunables
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| {
                    anyhow!(
                        "--over {name}: not a tunable of {}; its tunables are: {}",
                        spec.spec_path.display(),
                        spec.tunables
                            .iter()
                            .map(|t| t.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            t.values
                .iter()
                .map(|v| {
                    let mut c = base.clone();
                    c.0.insert(name.clone(), *v);
                    (*v, c)
                })
                .collect()
        }
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&spec.name, &axes, a.over.as_deref()));
    let journal = out.join("sweep.jsonl");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut done: Vec<Point> = Vec::new();
    let previous = if journal.exists() {
        if !a.resume {
            bail!(
                "{} holds a sweep already: --resume continues it, or choose another --out",
                journal.display()
            );
        }
        let (h, pts) = read_lines(&journal)?;
        if h.kernel != spec.name || h.axes != axes || h.over != a.over || h.base != base.to_string()
        {
            bail!(
                "{} is a different sweep ({} over {:?} from {}); --resume continues only the same one",
                journal.display(),
                h.kernel,
                h.over,
                h.base
            );
        }
        done = pts;
        Some(h)
    } else {
        None
    };
    let order: Vec<String> = axes.iter().map(|x| x.name.clone()).collect();
    let measured: std::collections::BTreeSet<u64> = done
        .iter()
        .filter_map(|p| sweep::grid_index(&axes, &p.at))
        .collect();
    let todo = sweep::grid(&axes)
        .enumerate()
        .filter(move |(i, _)| !measured.contains(&(*i as u64)))
        .map(|(_, at)| at);
    let mut session = match super::start_session(opts) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let device = session.device.name.clone();
    if let Some(h) = &previous {
        if h.device != device {
            session.shutdown();
            bail!(
                "the sweep in {} was measured on {}; this is {device}",
                out.display(),
                h.device
            );
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .with_context(|| format!("opening {}", journal.display()))?;
    let mut append = |line: &Line| -> Result<()> {
        let mut t = serde_json::to_string(line)?;
        t.push('\n');
        file.write_all(t.as_bytes())?;
        file.sync_data()?;
        Ok(())
    };
    if previous.is_none() {
        append(&Line::Sweep(Header {
            kernel: spec.name.clone(),
            axes: axes.clone(),
            over: a.over.clone(),
            base: base.to_string(),
            device: device.clone(),
            command: command.clone(),
        }))?;
    }
    let total = sweep::grid_len(&axes) as usize;
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {total} points measured already",
            done.len()
        );
    }
    for at in todo {
        let p = match measure_point(&mut session, &spec, &configs, at, &order) {
            Ok(p) => p,
            Err(e) => {
                session.shutdown();
                return Err(e);
            }
        };
        append(&Line::Point(p.clone()))?;
        clear_progress();
        eprintln!(
            "[{}/{total}] {}",
            done.len() + 1,
            describe(&p, a.over.as_deref())
        );
        done.push(p);
    }
    session.shutdown();
    // The grid's order, whatever order the points were measured in.
    done.sort_by_key(|p| sweep::grid_index(&axes, &p.at).unwrap_or(u64::MAX));
    let crossovers: Vec<sweep::Crossover> = if a.over.is_some() {
        axes.iter()
            .flat_map(|x| sweep::crossovers(&done, &axes, &x.name))
            .collect()
    } else {
        vec![]
    };
    let t = Thresholds {
        kernel: spec.name.clone(),
        over: a.over.clone(),
        device: device.clone(),
        date: crate::runs::today(),
        command: previous.map_or(command, |h| h.command),
        crossovers,
    };
    std::fs::write(
        out.join("sweep.csv"),
        sweep::csv(&done, &axes, a.over.as_deref()),
    )?;
    std::fs::write(
        out.join("thresholds.json"),
        serde_json::to_string_pretty(&t)?,
    )?;
    std::fs::write(out.join("thresholds.rs"), sweep::rust_consts(&t))?;
    std::fs::write(out.join("thresholds.h"), sweep::c_defines(&t))?;
    if let Some(svg) = plot(&done, &axes, a.over.as_deref(), &spec.name) {
        std::fs::write(out.join("sweep.svg"), svg)?;
    }
    // One configuration over one workload axis: the batching study's figures.
    let batching = match (&a.over, axes.as_slice()) {
        (None, [x]) if spec.workload_axes.contains(&x.name) => sweep::batching(&done, &x.name),
        _ => None,
    };
    if let Some(b) = &batching {
        std::fs::write(out.join("batching.json"), serde_json::to_string_pretty(b)?)?;
    }
    if a.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "points": done, "thresholds": t, "batching": batching, "out": out,
            }))?
        );
    } else {
        print!("{}", render(&done, &axes, a.over.as_deref(), &t, &out));
        if let Some(b) = &batching {
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
            print!(
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
            );
        }
    }
    Ok(exit::OK)
}

fn describe(p: &Point, over: Option<&str>) -> String {
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

fn plot(points: &[Point], axes: &[Axis], over: Option<&str>, kernel: &str) -> Option<String> {
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
            match lines.iter_mut().find(|l| l.0 == name) {
                Some(l) => l.1.push((x, m)),
                None => lines.push((name, vec![(x, m)])),
            }
        }
    }
    crate::report::plot::series(
        &format!("{kernel}: median time per launch over {}", x_axis.name),
        &x_axis.name,
        "µs per launch (median)",
        &lines,
        true,
        true,
    )
}

fn render(
    points: &[Point],
    axes: &[Axis],
    over: Option<&str>,
    t: &Thresholds,
    out: &Path,
) -> String {
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
    let mut o = table::render(&head_ref, &rows);
    // Two axes: the faster variant per region of the grid.
    if let (Some(ov), [ya, xa]) = (over, axes) {
        let mut head = vec![format!("{} \\ {}", ya.name, xa.name)];
        head.extend(xa.values.iter().map(|v| v.to_string()));
        let rows: Vec<Vec<String>> = ya
            .values
            .iter()
            .map(|y| {
                let mut r = vec![y.to_string()];
                for x in &xa.values {
                    let p = points.iter().find(|p| {
                        p.at.contains(&(ya.name.clone(), *y))
                            && p.at.contains(&(xa.name.clone(), *x))
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
        o.push_str(&format!(
            "\nfaster {ov} per region (~: within the noise, by median):\n{}",
            table::render(&head_ref, &rows)
        ));
    }
    if over.is_some() {
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
    }
    o.push_str(&format!(
        "\nwrote {}/sweep.csv, thresholds.json, thresholds.rs, thresholds.h, sweep.svg (measured on {}, {})\n",
        out.display(),
        t.device,
        t.date
    ));
    o
}
