//! `nightshift status [run-id]`: where a run stands, read from its journal alone
//! (running, finished or stopped part-way), so it works on a live run from another
//! terminal and on a finished one the morning after.

use anyhow::{bail, Result};
use serde::Serialize;

use super::{exit, StatusArgs};
use crate::budget::{Budgets, Ledger, Spend};
use crate::journal::{self, Record};
use crate::runs::{running_pid, unfinished_runs};
use crate::state::RunState;
use crate::table;

/// A kernel's status: its fold of the journal.
pub use crate::state::KernelState as KernelStatus;

#[derive(Debug, Serialize)]
pub struct RunStatus {
    pub run_id: String,
    pub device: String,
    pub branch: Option<String>,
    /// `running`, `finished` or `stopped` (crashed or killed: resumable).
    pub state: String,
    pub detail: String,
    /// From the first record to the last, the time the daemon was down included.
    pub wall_s: f64,
    pub resumes: usize,
    /// Seconds the daemon was down before its resumes (not charged as GPU time).
    pub down_s: f64,
    pub spent: Spend,
    pub budgets: Option<Budgets>,
    pub kernels: Vec<KernelStatus>,
    pub records: usize,
}

/// Reads a run's status from its records; `pid` is the live process holding it.
pub fn status_of(run_id: &str, records: &[Record], pid: Option<u32>) -> Result<RunStatus> {
    let r = RunState::from_records(records);
    let budgets: Option<Budgets> = r.budgets.as_ref().and_then(|b| b.get().cloned());
    let device = r.device.clone().unwrap_or_default();
    let price = budgets
        .as_ref()
        .map_or(0.0, |b| Ledger::for_device(b, &device).price_per_gpu_hour());
    let spent = r.ledger(price)?.spent();
    let kernels = r.kernel_states.clone();
    let (state, detail) = match (pid, &r.finished) {
        (Some(pid), _) => ("running".to_string(), format!("pid {pid}")),
        (None, Some(reason)) => ("finished".to_string(), reason.clone()),
        (None, None) if r.run_id.is_some() => (
            "stopped".to_string(),
            format!(
                "stopped without finishing (crashed or killed); `nightshift run --resume {run_id}` continues it"
            ),
        ),
        (None, None) => (
            "stopped".to_string(),
            "stopped before it recorded its start: there is nothing to resume; start a new run".to_string(),
        ),
    };
    Ok(RunStatus {
        run_id: run_id.to_string(),
        device,
        branch: r.git_branch.clone(),
        state,
        detail,
        wall_s: r.elapsed_s(),
        resumes: r.resumes,
        down_s: r.down_total_s(),
        spent,
        budgets,
        kernels,
        records: records.len(),
    })
}

pub fn render(s: &RunStatus) -> String {
    let limit = |spent: f64, l: Option<f64>, unit: &str| match l {
        Some(l) => format!("{spent:.2} of {l:.2} {unit}"),
        None => format!("{spent:.2} {unit}"),
    };
    let (wall_l, gpu_l, usd_l) = s.budgets.as_ref().map_or((None, None, None), |b| {
        (
            b.run.wall.map(|d| d.as_secs_f64() / 3600.0),
            b.run.gpu.map(|d| d.as_secs_f64() / 3600.0),
            b.run.dollars,
        )
    });
    let mut out = format!(
        "run {} on {}: {} ({})\n  wall {}, GPU {}, {}{}\n  branch {}\n\n",
        s.run_id,
        s.device,
        s.state,
        s.detail,
        limit(s.wall_s / 3600.0, wall_l, "h"),
        limit(s.spent.gpu_s / 3600.0, gpu_l, "h"),
        limit(s.spent.dollars, usd_l, "$"),
        if s.resumes > 0 {
            format!(
                "\n  resumed {} time(s), down for {} in all: the wall limit counts it, \
                 GPU-hours and dollars do not (your provider may have billed that time)",
                s.resumes,
                crate::runs::human_duration(s.down_s)
            )
        } else {
            String::new()
        },
        s.branch.as_deref().unwrap_or("-"),
    );
    let rows: Vec<Vec<String>> = s
        .kernels
        .iter()
        .map(|k| {
            vec![
                k.kernel.clone(),
                k.baseline_us.map_or("-".into(), |t| format!("{t:.2}")),
                k.best_us.map_or("-".into(), |t| format!("{t:.2}")),
                k.evaluated.to_string(),
                k.commits.len().to_string(),
                k.final_comparison
                    .clone()
                    .or_else(|| k.done.as_ref().map(|_| "done".into()))
                    .or_else(|| k.paused.then(|| "paused (its share spent)".into()))
                    .or_else(|| k.pattern.as_ref().map(|p| format!("working: {p}")))
                    .unwrap_or_default(),
                k.best.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "kernel",
            "baseline µs",
            "best µs",
            "evaluated",
            "commits",
            "state",
            "best configuration",
        ],
        &rows,
    ));
    for k in &s.kernels {
        for p in &k.pivots {
            out.push_str(&format!("  {} pivoted: {p}\n", k.kernel));
        }
        if let Some(c) = &k.study {
            out.push_str(&format!("  {} workload batching: {c}\n", k.kernel));
        }
    }
    out
}

pub fn run(a: &StatusArgs) -> i32 {
    let go = || -> Result<RunStatus> {
        let id = match &a.run_id {
            Some(id) => id.clone(),
            None => crate::runs::latest_run(&a.reports)?,
        };
        journal::check_run_id(&id)?;
        let path = a.reports.join(&id).join(journal::FILE_NAME);
        if !path.is_file() {
            bail!("no run {id}: {} does not exist", path.display());
        }
        let read = journal::read(&path)?;
        if let Some(t) = &read.torn {
            eprintln!("warning: {}: {t}; it is ignored", path.display());
        }
        status_of(&id, &read.records, running_pid(&a.reports, &id))
    };
    match go() {
        Ok(s) => {
            if a.json {
                match serde_json::to_string_pretty(&s) {
                    Ok(t) => println!("{t}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::USAGE;
                    }
                }
            } else {
                print!("{}", render(&s));
                let others = unfinished_runs(&a.reports);
                let others: Vec<&String> = others.iter().filter(|o| **o != s.run_id).collect();
                if !others.is_empty() {
                    println!(
                        "\nother runs stopped without finishing: {}",
                        others
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}
