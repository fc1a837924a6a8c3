//! `nightshift run`: the daemon. Checks every input before any GPU time is spent,
//! finds or starts the run, holds its lock, and hands the loop to the dispatcher.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::{exit, table, RunArgs};
use crate::budget::{Budgets, StopReason};
use crate::dispatch::{view::View, Dispatcher, KernelEntry, RunSummary, Setup, StopFlag};
use crate::evaluate::{Options, Session};
use crate::journal::{self, Event, Journal, Resume};
use crate::patterns::Library;
use crate::spec::KernelSpec;
use crate::vcs::{self, Workspace};

/// Kernel directories: the ones named, else every `kernels/*/kernel.toml`.
pub fn kernel_dirs(named: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let root = Path::new("kernels");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| {
            format!("no kernels named and cannot read {} (run from the repository root, or name kernel directories)", root.display())
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kernel.toml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("no kernels/*/kernel.toml found; name kernel directories to run on");
    }
    Ok(dirs)
}

/// A run id from the UTC time: `YYYYMMDD-HHMMSS`.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The lock of a run in progress: `reports/<run-id>/lock`, holding the pid.
pub fn lock_path(reports: &Path, run_id: &str) -> PathBuf {
    reports.join(run_id).join("lock")
}

/// The pid of the live process holding the run, if any.
pub fn running_pid(reports: &Path, run_id: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lock_path(reports, run_id))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let alive = String::from_utf8_lossy(&cmdline).contains("nightshift");
    (alive && pid != std::process::id()).then_some(pid)
}

/// Runs with a journal but no `RunFinished`, and no live process: crashed or killed.
pub fn unfinished_runs(reports: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(reports) else {
        return vec![];
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(journal::FILE_NAME).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| running_pid(reports, id).is_none())
        .filter(|id| {
            journal::read(&reports.join(id).join(journal::FILE_NAME))
                .map(|r| Resume::from_records(&r.records).finished.is_none())
                .unwrap_or(false)
        })
        .collect();
    ids.sort();
    ids
}

fn apply_overrides(b: &mut Budgets, a: &RunArgs) -> Result<()> {
    let positive = |what: &str, v: f64| -> Result<f64> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            bail!("--{what} must be a positive number, not {v}")
        }
    };
    if let Some(m) = a.wall_minutes {
        b.run.wall = Some(Duration::from_secs_f64(positive("wall-minutes", m)? * 60.0));
    }
    if let Some(h) = a.gpu_hours {
        b.run.gpu = Some(Duration::from_secs_f64(positive("gpu-hours", h)? * 3600.0));
    }
    if let Some(d) = a.dollars {
        b.run.dollars = Some(positive("dollars", d)?);
    }
    Ok(())
}

struct Prepared {
    run_id: String,
    resume: Option<journal::JournalRead>,
    budgets: Budgets,
    library: Library,
    rel_dirs: Vec<PathBuf>,
    repo: PathBuf,
}

/// Every check that needs no GPU: specs, patterns, budgets, git, the run to resume.
fn prepare(a: &RunArgs) -> Result<Prepared> {
    let dirs = kernel_dirs(&a.kernels)?;
    let repo = vcs::repo_root(&dirs[0]).map_err(|e| {
        anyhow!("{e}\nnightshift run keeps its results as commits: run it inside a git repository")
    })?;
    let repo_canon = repo.canonicalize().unwrap_or(repo.clone());
    let mut rel_dirs = Vec::new();
    for d in &dirs {
        // Named here so a malformed spec is reported before anything else happens.
        KernelSpec::load(d).map_err(|e| anyhow!("{e}"))?;
        let canon = d
            .canonicalize()
            .with_context(|| format!("{}", d.display()))?;
        let rel = canon.strip_prefix(&repo_canon).map_err(|_| {
            anyhow!(
                "{} is not inside the repository at {}",
                d.display(),
                repo.display()
            )
        })?;
        rel_dirs.push(rel.to_path_buf());
    }
    let library = Library::load(&a.patterns).map_err(|e| anyhow!("{e}"))?;
    let reports = &a.reports;
    let mut run_id = a.run_id.clone();
    let mut resume = None;
    if let Some(id) = &a.resume {
        run_id = Some(id.clone());
    } else if !a.new && run_id.is_none() {
        if let Some(id) = unfinished_runs(reports).pop() {
            eprintln!(
                "resuming run {id}, which stopped without finishing (start a fresh run with --new)"
            );
            run_id = Some(id);
        }
    }
    let budgets;
    match run_id
        .as_ref()
        .map(|id| reports.join(id).join(journal::FILE_NAME))
    {
        Some(path) if path.is_file() => {
            let id = run_id.as_deref().unwrap_or_default();
            if let Some(pid) = running_pid(reports, id) {
                bail!("run {id} is running now (pid {pid}); `nightshift status {id}` shows it");
            }
            let read = journal::read(&path).map_err(|e| anyhow!("{e}"))?;
            let r = Resume::from_records(&read.records);
            // The run's own budgets, as it was started; flags may raise or lower them.
            let recorded = r
                .budgets
                .clone()
                .ok_or_else(|| anyhow!("{}: no RunStarted record", path.display()))?;
            budgets = serde_json::from_value(recorded)
                .with_context(|| format!("{}: the recorded budgets", path.display()))?;
            resume = Some(read);
        }
        _ if a.resume.is_some() => {
            bail!(
                "no run {} under {}: `nightshift status` lists runs",
                a.resume.as_deref().unwrap_or_default(),
                reports.display()
            );
        }
        _ => {
            budgets = Budgets::load(&a.budgets).map_err(|e| anyhow!("{e}"))?;
        }
    }
    let mut budgets = budgets;
    apply_overrides(&mut budgets, a)?;
    let run_id = run_id.unwrap_or_else(new_run_id);
    if resume.is_none() {
        // The run works from HEAD: uncommitted edits to its kernels would be ignored.
        let mut dirty = Vec::new();
        for rel in &rel_dirs {
            dirty.extend(vcs::dirty(&repo, &rel.to_string_lossy()).map_err(|e| anyhow!("{e}"))?);
        }
        if !dirty.is_empty() && !a.allow_dirty {
            bail!(
                "uncommitted changes in the kernels the run would tune:\n  {}\n\
                 the run works on a worktree of HEAD and would not see them: commit or stash them, \
                 or pass --allow-dirty to tune HEAD as it is",
                dirty.join("\n  ")
            );
        }
    }
    Ok(Prepared {
        run_id,
        resume,
        budgets,
        library,
        rel_dirs,
        repo,
    })
}

pub fn run(a: &RunArgs, opts: Options) -> i32 {
    super::exit_code(run_inner(a, opts))
}

fn run_inner(a: &RunArgs, mut opts: Options) -> Result<i32> {
    let p = prepare(a)?;
    opts.watchdog = p.budgets.limits.candidate_watchdog;
    let view = if a.common.json {
        View::quiet()
    } else {
        View::stderr()
    };
    // The GPU last: nothing above spent any of its time.
    let session = match Session::start(opts, view.progress()) {
        Ok(s) => s,
        Err(e) => {
            view.clear();
            eprintln!("error: {e}");
            eprintln!("`nightshift doctor` checks the driver, CUDA and the device");
            return Ok(exit::NO_GPU);
        }
    };
    let device = session.device.name.clone();
    if let Some(r) = &p.resume {
        let recorded = Resume::from_records(&r.records).device.unwrap_or_default();
        if recorded != device && !a.force {
            session.shutdown();
            bail!(
                "run {} was measured on {recorded}, this is {device}: its measurements would not compare; \
                 start a new run (or --force)",
                p.run_id
            );
        }
    }
    let reports = &a.reports;
    std::fs::create_dir_all(reports.join(&p.run_id))
        .with_context(|| format!("creating {}", reports.join(&p.run_id).display()))?;
    let lock = lock_path(reports, &p.run_id);
    std::fs::write(&lock, std::process::id().to_string())
        .with_context(|| format!("writing {}", lock.display()))?;
    let wt = vcs::worktree_dir(&p.repo, &p.run_id).map_err(|e| anyhow!("{e}"))?;
    let ws = Workspace::open(&p.repo, &p.run_id, &wt).map_err(|e| anyhow!("{e}"))?;
    ws.discard().map_err(|e| anyhow!("{e}"))?;
    let mut kernels = Vec::new();
    for rel in &p.rel_dirs {
        let spec = KernelSpec::load(&ws.root.join(rel)).map_err(|e| anyhow!("{e}"))?;
        kernels.push(KernelEntry {
            spec,
            rel_dir: rel.clone(),
        });
    }
    let (journal, previous) = match &p.resume {
        None => {
            let mut j = Journal::create(reports, &p.run_id)?;
            j.append(&Event::RunStarted {
                run_id: p.run_id.clone(),
                device: device.clone(),
                budgets: serde_json::to_value(&p.budgets)?,
                git_branch: Some(ws.branch.clone()),
            })?;
            (j, vec![])
        }
        Some(_) => {
            let path = reports.join(&p.run_id).join(journal::FILE_NAME);
            let (mut j, read) = Journal::open_append(&path).map_err(|e| anyhow!("{e}"))?;
            let dropped = read.torn.as_ref().map(|t| t.to_string());
            if let Some(d) = &dropped {
                eprintln!(
                    "the journal's last record was cut short by the crash and is dropped: {d}"
                );
            }
            j.append(&Event::Resumed {
                device: device.clone(),
                dropped,
            })?;
            (j, read.records)
        }
    };
    let resumed = !previous.is_empty();
    view.line(&format!(
        "run {} on {device}: {} kernel(s), branch {}, journal {}{}",
        p.run_id,
        kernels.len(),
        ws.branch,
        journal.path().display(),
        if resumed { " (resumed)" } else { "" }
    ));
    let stop = StopFlag::default();
    let setup = Setup {
        run_id: p.run_id.clone(),
        kernels,
        library: p.library,
        budgets: p.budgets,
        workspace: ws,
        evaluator: session,
        journal,
        previous,
        stop: stop.clone(),
        view: view.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let run_id = p.run_id.clone();
    let summary = rt.block_on(async move {
        tokio::spawn(watch_signals(stop, run_id));
        Dispatcher::new(setup)?.run().await
    });
    let _ = std::fs::remove_file(&lock);
    // The report, however the run ended (its journal is complete either way).
    let report = super::report::write(&a.reports, &p.run_id);
    let summary = summary?;
    if let Ok(ws) = Workspace::open(&p.repo, &p.run_id, &wt) {
        // The branch keeps the commits; the checkout is not needed any more.
        let _ = ws.remove();
    }
    if a.common.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    match report {
        Ok((_, files)) if !a.common.json => println!(
            "report: {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: the report was not written: {e:#}; `nightshift report {}` retries",
            p.run_id
        ),
    }
    Ok(match summary.stop_reason {
        Some(StopReason::Signal { .. }) => 130,
        _ => exit::OK,
    })
}

async fn watch_signals(stop: StopFlag, run_id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!(
            "cannot watch SIGINT/SIGTERM: a signal will kill the run without a clean stop"
        );
        return;
    };
    let mut count = 0;
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        count += 1;
        if count == 1 {
            stop.request(name);
            eprintln!(
                "\n{name}: stopping after the candidate in flight (send it again to stop at once)"
            );
        } else {
            eprintln!(
                "\n{name} again: stopping now; `nightshift run --resume {run_id}` continues the run"
            );
            std::process::exit(130);
        }
    }
}

/// The closing summary, for a terminal.
pub fn render(s: &RunSummary) -> String {
    let mut out = format!("\nrun {} on {}: {}\n", s.run_id, s.device, s.stop);
    let rows: Vec<Vec<String>> = s
        .kernels
        .iter()
        .map(|k| {
            let tried: usize = k.outcomes.values().sum();
            let failed: Vec<String> = k
                .outcomes
                .iter()
                .filter(|(o, _)| o.as_str() != "passed")
                .map(|(o, n)| format!("{n} {o}"))
                .collect();
            vec![
                k.kernel.clone(),
                k.baseline_us.map_or("-".into(), |t| format!("{t:.2}")),
                k.best_us.map_or("-".into(), |t| format!("{t:.2}")),
                match (k.final_speedup, &k.final_verdict) {
                    (Some((x, lo, hi)), Some(v)) => format!("{x:.3}x [{lo:.3}, {hi:.3}] {v}"),
                    (None, Some(v)) => v.clone(),
                    _ if k.commits.is_empty() => "no gain".into(),
                    _ => "not compared".into(),
                },
                k.commits.len().to_string(),
                format!(
                    "{tried}{}",
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", failed.join(", "))
                    }
                ),
                k.best.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "kernel",
            "baseline µs",
            "best µs",
            "best vs baseline (95% CI)",
            "commits",
            "evaluated",
            "best configuration",
        ],
        &rows,
    ));
    for k in &s.kernels {
        if let Some(c) = &k.study {
            out.push_str(&format!("{} workload batching: {c}\n", k.kernel));
        }
    }
    let busy = if s.wall_s > 0.0 {
        100.0 * s.gpu_busy_s / s.wall_s
    } else {
        0.0
    };
    out.push_str(&format!(
        "\nspent {:.2} GPU-hours, ${:.2}; this process: {:.0} s wall, GPU validating or measuring {busy:.0}% of it, {} candidate(s) evaluated{}{}\n",
        s.spent.gpu_s / 3600.0,
        s.dollars,
        s.wall_s,
        s.evaluated,
        if s.replayed > 0 {
            format!(", {} answered from the journal", s.replayed)
        } else {
            String::new()
        },
        if s.overrun_s > 0.0 {
            format!("; {:.0} s past the wall budget", s.overrun_s)
        } else {
            String::new()
        }
    ));
    out.push_str(&format!(
        "commits are on branch {} (`git log {}`); the journal is reports/{}/journal.jsonl\n",
        s.branch, s.branch, s.run_id
    ));
    out
}
