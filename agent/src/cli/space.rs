//! `nightshift space <kernel dir>`: every configuration of the kernel's space that
//! its restrictions allow, validated and timed alone with `bench`'s protocols, each
//! appended to `space.jsonl` as it is measured (`--resume` continues). The work is
//! `crate::space`'s.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{clear_progress, exit, CommonArgs};
use crate::evaluate::Options;
use crate::spec::KernelSpec;

#[derive(Args, Debug)]
pub struct SpaceArgs {
    /// The kernel's directory (holding kernel.toml).
    pub kernel: PathBuf,
    /// Where space.jsonl goes [default: spaces/<kernel>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the measurement in --out where it stopped (the configurations in its
    /// space.jsonl are not measured again).
    #[arg(long)]
    pub resume: bool,
    /// Refuse a space with more configurations than this (each costs a compile, a
    /// validation and a measurement).
    #[arg(long, default_value_t = 2000)]
    pub max_configs: usize,
    /// Seconds without progress before a configuration is declared hung.
    #[arg(long, value_parser = super::parse_seconds, default_value_t = 30.0)]
    pub watchdog: f64,
    /// Longest time spent sampling one configuration, seconds.
    #[arg(long, value_parser = super::parse_seconds, default_value_t = 3.0)]
    pub max_time: f64,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(a: &SpaceArgs) -> i32 {
    let mut o = a.common.options();
    o.watchdog = Duration::from_secs_f64(a.watchdog.max(1.0));
    o.measure.rule.max_time = Duration::from_secs_f64(a.max_time.max(0.1));
    // Energy is not part of the table: a search pays for time only.
    o.measure.energy_ms = 0.0;
    super::exit_code(go(a, o))
}

fn go(a: &SpaceArgs, opts: Options) -> Result<i32> {
    let spec = KernelSpec::load(&a.kernel)?;
    let n = crate::space::configurations(&spec).len();
    if n > a.max_configs {
        bail!(
            "{}'s space has {n} configurations, more than --max-configs {}",
            spec.name,
            a.max_configs
        );
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("spaces").join(&spec.name));
    let done = crate::space::resumed(&out, &spec, a.resume)?;
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {n} configurations measured already",
            done.len()
        );
    }
    let mut session = match super::start_session(opts) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let rows = crate::space::measure(&mut session, &spec, &out, done, command, &mut |p| {
        clear_progress();
        let r = p.row;
        match r.median_us {
            Some(m) => eprintln!("[{}/{}] {}: {m:.2} µs", p.n, p.total, r.config),
            None => eprintln!(
                "[{}/{}] {}: {}",
                p.n,
                p.total,
                r.config,
                r.reason.as_deref().unwrap_or(&r.outcome)
            ),
        }
    });
    session.shutdown();
    let rows = rows?;
    let summary = crate::space::summarize(&spec, &rows);
    if a.common.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
        println!(
            "every configuration: {}",
            crate::space::journal(&out).display()
        );
    }
    Ok(exit::OK)
}
