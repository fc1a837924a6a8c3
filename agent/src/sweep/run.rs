//! A sweep carried out: the plan checked before any GPU time is spent (the grid, the
//! axes, the configurations), then every point not measured yet, each appended to
//! `sweep.jsonl` as it is measured, and the crossovers, thresholds and batching study
//! of the whole grid.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::file::{self, Appender, Header, Line, Resumed};
use super::measure::measure_point;
use super::{crossovers, grid, grid_index, grid_len, Axis, Crossover, Point, Thresholds};
use crate::evaluate::Session;
use crate::spec::{Config, KernelSpec};
use crate::study::StudyResult;

/// What to sweep, checked.
pub struct Plan {
    pub spec: KernelSpec,
    pub axes: Vec<Axis>,
    /// The tunable whose values are compared at every point, if any.
    pub over: Option<String>,
    /// The configuration swept: the spec's baseline with the `--set` changes.
    pub base: Config,
    /// What is measured at each point: `(value of over, configuration)`, or the base
    /// alone as variant 0.
    pub configs: Vec<(i64, Config)>,
    /// Where the outputs go.
    pub out: PathBuf,
}

/// What a sweep says as it goes, for a person to read.
pub enum Progress<'a> {
    /// A resumed sweep: points already measured, of the grid's.
    Resuming { measured: usize, total: usize },
    /// Point `n` of `total` measured.
    Measured {
        n: usize,
        total: usize,
        point: &'a Point,
    },
}

/// A finished sweep: every point in the grid's order, and what they show.
pub struct Swept {
    pub points: Vec<Point>,
    pub thresholds: Thresholds,
    /// One configuration over one workload axis: the batching study's figures.
    pub batching: Option<StudyResult>,
}

impl Plan {
    /// The rewrites of the kernel swept (none: as written).
    pub fn rewrites(&self) -> Vec<String> {
        self.spec
            .rewritten
            .as_ref()
            .map(|r| r.rewrites.clone())
            .unwrap_or_default()
    }

    /// Checks the axes against the spec and `--max-points`, the `--set` changes and
    /// the `--over` tunable; `out` defaults to `file::default_out`.
    pub fn new(
        spec: KernelSpec,
        axes: Vec<Axis>,
        over: Option<String>,
        set: &[(String, i64)],
        out: Option<PathBuf>,
        max_points: u64,
    ) -> Result<Plan> {
        check_axes(&spec, &axes, max_points)?;
        let base = spec
            .with_overrides(&spec.baseline(), set)
            .map_err(|e| anyhow!("--set: {e}"))?;
        let configs = configs(&spec, &base, over.as_deref())?;
        let out = out.unwrap_or_else(|| {
            let plain = file::default_out(&spec.name, &axes, over.as_deref());
            match &spec.rewritten {
                // A rewritten kernel's sweep beside the plain one, not in its place.
                Some(r) => {
                    let d = crate::digest::of_parts(r.rewrites.iter().map(|x| ("", x.as_bytes())));
                    let mut name = plain.file_name().unwrap_or_default().to_os_string();
                    name.push(format!("-rewritten-{}", &d[..8]));
                    plain.with_file_name(name)
                }
                None => plain,
            }
        });
        Ok(Plan {
            spec,
            axes,
            over,
            base,
            configs,
            out,
        })
    }

    /// The sweep's record, `sweep.jsonl` in the output directory.
    pub fn journal(&self) -> PathBuf {
        self.out.join("sweep.jsonl")
    }

    /// The grid's points.
    pub fn total(&self) -> usize {
        grid_len(&self.axes) as usize
    }
}

fn check_axes(spec: &KernelSpec, axes: &[Axis], max_points: u64) -> Result<()> {
    let points = grid_len(axes);
    if points > max_points {
        bail!(
            "the grid has {points} points, more than --max-points {} (each point is a measurement): sweep coarser axes, or raise --max-points",
            max_points
        );
    }
    for ax in axes {
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
    Ok(())
}

/// The configurations measured at each point: `base` with each value of the tunable
/// `over`, or `base` alone.
fn configs(spec: &KernelSpec, base: &Config, over: Option<&str>) -> Result<Vec<(i64, Config)>> {
    let Some(name) = over else {
        return Ok(vec![(0, base.clone())]);
    };
    let t = spec
        .tunables
        .iter()
        .find(|t| t.name == name)
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
    Ok(t.values
        .iter()
        .map(|v| {
            let mut c = base.clone();
            c.0.insert(name.to_string(), *v);
            (*v, c)
        })
        .collect())
}

/// Measures the points of the plan's grid that `resumed` does not hold yet on the
/// session's GPU (which must be the one a resumed sweep was measured on), appending
/// each to `sweep.jsonl`, and derives what the whole grid shows. `command` is the
/// command line, recorded in a new sweep's header and its thresholds.
pub fn run(
    session: &mut Session,
    plan: &Plan,
    resumed: Option<Resumed>,
    command: String,
    on: &mut dyn FnMut(Progress),
) -> Result<Swept> {
    let device = session.device.name.clone();
    let (previous, mut done) = match resumed {
        Some(r) => (Some(r.header), r.points),
        None => (None, Vec::new()),
    };
    if let Some(h) = &previous {
        if h.device != device {
            bail!(
                "the sweep in {} was measured on {}; this is {device}",
                plan.out.display(),
                h.device
            );
        }
    }
    let header = previous.is_none().then(|| Header {
        kernel: plan.spec.name.clone(),
        axes: plan.axes.clone(),
        over: plan.over.clone(),
        base: plan.base.to_string(),
        device: device.clone(),
        command: command.clone(),
        rewrites: plan.rewrites(),
    });
    let mut file = Appender::open(plan, header)?;
    let total = plan.total();
    if !done.is_empty() {
        on(Progress::Resuming {
            measured: done.len(),
            total,
        });
    }
    measure_rest(session, plan, &mut done, &mut file, on)?;
    let command = previous.map_or(command, |h| h.command);
    Ok(finish(plan, done, device, command))
}

/// Measures every point of the grid not in `done`, in the grid's order.
fn measure_rest(
    session: &mut Session,
    plan: &Plan,
    done: &mut Vec<Point>,
    file: &mut Appender,
    on: &mut dyn FnMut(Progress),
) -> Result<()> {
    let order: Vec<String> = plan.axes.iter().map(|x| x.name.clone()).collect();
    let measured: BTreeSet<u64> = done
        .iter()
        .filter_map(|p| grid_index(&plan.axes, &p.at))
        .collect();
    let total = plan.total();
    let todo = grid(&plan.axes)
        .enumerate()
        .filter(|(i, _)| !measured.contains(&(*i as u64)))
        .map(|(_, at)| at);
    for at in todo {
        let p = measure_point(session, &plan.spec, &plan.configs, at, &order)?;
        file.append(&Line::Point(p.clone()))?;
        on(Progress::Measured {
            n: done.len() + 1,
            total,
            point: &p,
        });
        done.push(p);
    }
    Ok(())
}

/// The grid's points in its order, the crossovers between variants, the thresholds
/// (dated today) and, for one configuration over one workload axis, the batching study.
fn finish(plan: &Plan, mut done: Vec<Point>, device: String, command: String) -> Swept {
    let axes = &plan.axes;
    // The grid's order, whatever order the points were measured in.
    done.sort_by_key(|p| grid_index(axes, &p.at).unwrap_or(u64::MAX));
    let crossovers: Vec<Crossover> = if plan.over.is_some() {
        axes.iter()
            .flat_map(|x| crossovers(&done, axes, &x.name))
            .collect()
    } else {
        vec![]
    };
    let thresholds = Thresholds {
        kernel: plan.spec.name.clone(),
        over: plan.over.clone(),
        device,
        date: crate::runs::today(),
        command,
        crossovers,
    };
    let batching = match (&plan.over, axes.as_slice()) {
        (None, [x]) if plan.spec.workload_axes.contains(&x.name) => super::batching(&done, &x.name),
        _ => None,
    };
    Swept {
        points: done,
        thresholds,
        batching,
    }
}

impl Swept {
    /// Writes the outputs into the plan's output directory (`file::write_outputs`).
    pub fn write(&self, plan: &Plan) -> Result<()> {
        file::write_outputs(plan, self)
    }

    /// `sweep --json`: the points, the thresholds, the batching study and where the
    /// outputs are, pretty-printed.
    pub fn json(&self, out: &Path) -> Result<String> {
        Ok(serde_json::to_string_pretty(&serde_json::json!({
            "points": self.points, "thresholds": self.thresholds, "batching": self.batching, "out": out,
        }))?)
    }

    /// The report for a person (`render.rs`).
    pub fn render(&self, plan: &Plan) -> String {
        let mut o = super::render::render(
            &self.points,
            &plan.axes,
            plan.over.as_deref(),
            &self.thresholds,
            &plan.out,
        );
        if let Some(b) = &self.batching {
            o.push_str(&super::render::batching(b));
        }
        o
    }
}
