//! A sweep carried out: the plan checked before any GPU time is spent (the grid, the
//! axes, the configurations), then every point not measured yet, each appended to
//! `sweep.jsonl` as it is measured, and the crossovers, thresholds and batching study
//! of the whole grid.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::file::{self, Appender, Header, Line, Resumed};
use super::measure::measure_point;
use super::plan::{Plan, Swept};
use super::{crossovers, grid, grid_index, Crossover, Point, Thresholds};
use crate::evaluate::Session;

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

/// Measures the points of the plan's grid that `resumed` does not hold yet on the
/// sessions' GPUs (one point at a time on each; of the model a resumed sweep was
/// measured on), appending each to `sweep.jsonl` as it lands, and derives what the
/// whole grid shows. `command` is the
/// command line, recorded in a new sweep's header and its thresholds.
pub fn run(
    sessions: &mut [Session],
    plan: &Plan,
    resumed: Option<Resumed>,
    command: String,
    on: &mut dyn FnMut(Progress),
) -> Result<Swept> {
    let device = sessions
        .first()
        .map(|s| s.device.name.clone())
        .ok_or_else(|| anyhow!("no GPU session"))?;
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
    measure_rest(sessions, plan, &mut done, &mut file, on)?;
    let command = previous.map_or(command, |h| h.command);
    Ok(finish(plan, done, device, command))
}

/// Measures every point of the grid not in `done`, handed out in the grid's order.
fn measure_rest(
    sessions: &mut [Session],
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
    let todo: Vec<Vec<(String, i64)>> = grid(&plan.axes)
        .enumerate()
        .filter(|(i, _)| !measured.contains(&(*i as u64)))
        .map(|(_, at)| at)
        .collect();
    let work = |s: &mut Session, at: Vec<(String, i64)>| {
        measure_point(s, &plan.spec, &plan.configs, at, &order)
    };
    crate::fanout::fan_out(sessions, todo, &work, &mut |_, p: Point| {
        file.append(&Line::Point(p.clone()))?;
        on(Progress::Measured {
            n: done.len() + 1,
            total,
            point: &p,
        });
        done.push(p);
        Ok(())
    })
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
