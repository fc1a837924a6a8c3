//! `nightshift sweep <kernel> --axis NAME=SPEC [--over TUNABLE]`: every point of a
//! grid of problem sizes, each variant validated and measured with `bench`'s
//! protocols (two variants interleaved), crossovers with their uncertainty, and the
//! thresholds as JSON, a Rust `const` and a C `#define`. Each point is appended to
//! `sweep.jsonl` as it is measured, so `--resume` continues an interrupted sweep.
//! The work is `crate::sweep`'s.

use anyhow::{anyhow, Result};

use super::{clear_progress, exit, SweepArgs};
use crate::evaluate::Options;
use crate::spec::KernelSpec;
use crate::sweep::{self, Axis, Plan, Progress};

pub fn run(a: &SweepArgs, opts: Options) -> i32 {
    super::exit_code(go(a, opts))
}

fn go(a: &SweepArgs, opts: Options) -> Result<i32> {
    let spec = KernelSpec::load(&a.kernel)?;
    let spec = a
        .rewrites
        .apply(spec)
        .map_err(|e| anyhow!("--rewrite: {e}"))?;
    let axes: Vec<Axis> = a
        .axes
        .iter()
        .map(|s| sweep::parse_axis(s).map_err(|e| anyhow!("--axis {e}")))
        .collect::<Result<_>>()?;
    let plan = Plan::new(
        spec,
        axes,
        a.over.clone(),
        &a.set,
        a.out.clone(),
        a.max_points,
    )?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let resumed = sweep::resumed(&plan, a.resume)?;
    let gpus = super::gpus::ordinals(a.gpus.as_ref(), a.common.gpu)?;
    let mut sessions = match super::gpus::start_here(opts, &gpus) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let over = a.over.as_deref();
    let swept = sweep::run(&mut sessions, &plan, resumed, command, &mut |p| match p {
        Progress::Resuming { measured, total } => {
            eprintln!("resuming: {measured} of {total} points measured already")
        }
        Progress::Measured { n, total, point } => {
            clear_progress();
            eprintln!("[{n}/{total}] {}", sweep::describe(point, over));
        }
    });
    sessions.into_iter().for_each(|s| s.shutdown());
    let swept = swept?;
    swept.write(&plan)?;
    if a.common.json {
        println!("{}", swept.json(&plan.out)?);
    } else {
        print!("{}", swept.render(&plan));
    }
    Ok(exit::OK)
}
