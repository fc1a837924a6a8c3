//! A sweep's files in its output directory: `sweep.jsonl` (a header saying what is
//! swept, then each point as it is measured, synced, so that `--resume` continues an
//! interrupted sweep), and the outputs written from the points when it is done.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::plan::{Plan, Swept};
use super::{c_defines, csv, render, rust_consts, Axis, Point};

/// The first line of `sweep.jsonl`: what is being swept (a resume must match it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Header {
    pub kernel: String,
    pub axes: Vec<Axis>,
    pub over: Option<String>,
    pub base: String,
    pub device: String,
    pub command: String,
    /// The rewrites of the kernel swept (none: as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Line {
    Sweep(Header),
    Point(Point),
}

/// A sweep found in the output directory, to be continued.
pub struct Resumed {
    pub(super) header: Header,
    pub(super) points: Vec<Point>,
}

fn read_lines(path: &Path) -> Result<(Header, Vec<Point>)> {
    let mut header = None;
    let mut points = Vec::new();
    for l in crate::files::read_records::<Line>(path)? {
        match l {
            Line::Sweep(h) => header = Some(h),
            Line::Point(p) => points.push(p),
        }
    }
    let header = header.ok_or_else(|| anyhow!("{}: no sweep header", path.display()))?;
    Ok((header, points))
}

/// The sweep already in the plan's output directory, when `resume` asks to continue
/// it; none when there is none. One there without `resume`, or another sweep than
/// the plan's, is refused.
pub fn resumed(plan: &Plan, resume: bool) -> Result<Option<Resumed>> {
    let journal = plan.journal();
    if !journal.exists() {
        return Ok(None);
    }
    if !resume {
        bail!(
            "{} holds a sweep already: --resume continues it, or choose another --out",
            journal.display()
        );
    }
    let (h, pts) = read_lines(&journal)?;
    if h.kernel != plan.spec.name
        || h.axes != plan.axes
        || h.over != plan.over
        || h.base != plan.base.to_string()
        || h.rewrites != plan.rewrites()
    {
        bail!(
            "{} is a different sweep ({} over {:?} from {}{}); --resume continues only the same one",
            journal.display(),
            h.kernel,
            h.over,
            h.base,
            if h.rewrites.is_empty() {
                String::new()
            } else {
                format!(", rewritten: {}", h.rewrites.join(", "))
            }
        );
    }
    Ok(Some(Resumed {
        header: h,
        points: pts,
    }))
}

/// `sweep.jsonl`, open for appending.
pub(super) struct Appender(std::fs::File);

impl Appender {
    /// Creates the output directory and opens its `sweep.jsonl`, writing `header`
    /// first when the sweep is a new one.
    pub fn open(plan: &Plan, header: Option<Header>) -> Result<Appender> {
        let out = &plan.out;
        let journal = plan.journal();
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal)
            .with_context(|| format!("opening {}", journal.display()))?;
        let mut a = Appender(file);
        if let Some(h) = header {
            a.append(&Line::Sweep(h))?;
        }
        Ok(a)
    }

    /// Appends one line and syncs it to the disk.
    pub fn append(&mut self, line: &Line) -> Result<()> {
        let mut t = serde_json::to_string(line)?;
        t.push('\n');
        self.0.write_all(t.as_bytes())?;
        self.0.sync_data()?;
        Ok(())
    }
}

/// Writes a finished sweep's outputs into the plan's output directory: `sweep.csv`,
/// `thresholds.json`, `.rs` and `.h`, `sweep.svg` (when there is a plot) and
/// `batching.json` (when the sweep is a batching study).
pub fn write_outputs(plan: &Plan, s: &Swept) -> Result<()> {
    let out = &plan.out;
    let over = plan.over.as_deref();
    std::fs::write(out.join("sweep.csv"), csv(&s.points, &plan.axes, over))?;
    std::fs::write(
        out.join("thresholds.json"),
        serde_json::to_string_pretty(&s.thresholds)?,
    )?;
    std::fs::write(out.join("thresholds.rs"), rust_consts(&s.thresholds))?;
    std::fs::write(out.join("thresholds.h"), c_defines(&s.thresholds))?;
    if let Some(svg) = render::plot(&s.points, &plan.axes, over, &plan.spec.name) {
        std::fs::write(out.join("sweep.svg"), svg)?;
    }
    if let Some(b) = &s.batching {
        std::fs::write(out.join("batching.json"), serde_json::to_string_pretty(b)?)?;
    }
    Ok(())
}
