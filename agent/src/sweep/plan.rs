//! What a sweep is to measure, checked before any GPU time is spent: the grid, the
//! axes, the configurations and where the outputs go.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use super::{grid_len, Axis, Point, Thresholds};
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
    /// the `--over` tunable; `out` defaults to [`default_out`].
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
            let plain = default_out(&spec.name, &axes, over.as_deref());
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

/// The output directory when none is given: `sweeps/<kernel>-<axes>[-over-<tunable>]`.
pub fn default_out(kernel: &str, axes: &[Axis], over: Option<&str>) -> PathBuf {
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
