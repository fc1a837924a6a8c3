//! `nightshift check`: the regression gate. `--record` measures each kernel's
//! committed configuration (its `tuned.toml`, else the spec's baseline) and writes a
//! baseline file; without it, the same configurations are measured with the recorded
//! timing method and judged against the file with the A/B rule (exit 1 on SLOW beyond
//! the threshold). Prints a Markdown table for a pull-request comment, or --json.
//! The work is `crate::check`'s.

use anyhow::Result;

use super::{clear_progress, exit, CheckArgs};
use crate::check::{self, Checked, Rules};
use crate::evaluate::Options;
use crate::gate;

pub fn run(a: &CheckArgs, opts: Options) -> i32 {
    super::exit_code(go(a, opts))
}

fn go(a: &CheckArgs, mut opts: Options) -> Result<i32> {
    let baseline = (!a.record).then_some(a.baseline.as_path());
    let plan = check::plan(&a.kernels, baseline, &mut |note| eprintln!("{note}"))?;
    // The recorded bootstrap seed, so a check recomputes intervals as the record did.
    if let Some(b) = &plan.baseline {
        opts.measure.seed = b.seed;
    }
    let gpus = super::gpus::ordinals(a.gpus.as_ref(), a.common.gpu)?;
    let mut sessions = match super::gpus::start_here(opts, &gpus) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let rules = Rules {
        threshold: a.threshold,
        retries: a.retries,
        force: a.force,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = check::run(&mut sessions, &plan, command, &rules);
    sessions.into_iter().for_each(|s| s.shutdown());
    let checked = result?;
    clear_progress();
    match checked {
        Checked::Recorded(b) => {
            check::write_baseline(&b, &a.baseline)?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                print!("{}", check::render_recorded(&b, &a.baseline));
            }
            Ok(exit::OK)
        }
        Checked::Judged { device, decisions } => {
            if a.common.json {
                let j = check::json(&device, &a.baseline, a.threshold, &decisions)?;
                println!("{j}");
            } else {
                let b = plan.baseline.as_ref().expect("a check has its baseline");
                print!("{}", gate::markdown(&decisions, b, &device, a.threshold));
            }
            Ok(gate::exit_code(&decisions))
        }
    }
}
