//! `nightshift run`: the daemon. Checks every input before any GPU time is spent,
//! finds or starts the run, holds its lock, and hands the loop to the dispatcher.

mod prepare;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::{exit, RunArgs};
use crate::budget::StopReason;
use crate::dispatch::{
    view::{Seen, View},
    Dispatcher, Evaluator, KernelEntry, RunSummary, Setup, StopFlag,
};
use crate::evaluate::Options;
use crate::journal::{self, Event, Journal, RunOptions};
use crate::runs::{human_duration, lock_path};
use crate::spec::KernelSpec;
use crate::state::RunState;
use crate::table;
use crate::vcs::{self, Workspace};

pub use prepare::{
    kernel_dirs, patterns_hash, DEFAULT_ENERGY_MS, DEFAULT_MAX_TIME_S, DEFAULT_PATTERNS,
    DEFAULT_TARGET_NOISE,
};
use prepare::{prepare, Prepared};

pub fn run(a: &RunArgs, opts: Options) -> i32 {
    super::exit_code(run_inner(a, opts))
}

/// The evaluation options of the run's recorded options.
fn session_options(mut opts: Options, o: &RunOptions, watchdog: Duration) -> Options {
    opts.gpu = o.gpu;
    opts.min_gain = o.min_gain;
    opts.measure.rule.max_time = Duration::from_secs_f64(o.max_time_s.clamp(0.1, 3600.0));
    opts.measure.rule.target_rel = o.target_noise;
    opts.measure.energy_ms = o.energy_ms;
    opts.watchdog = watchdog;
    opts
}

fn run_inner(a: &RunArgs, opts: Options) -> Result<i32> {
    let p = prepare(a)?;
    // nightshift.toml (a proposer, notifications) is checked before the GPU too.
    let settings = crate::settings::Settings::load_optional(&p.repo)?;
    let mut opts = session_options(opts, &p.options, p.budgets.limits.candidate_watchdog);
    opts.launcher = settings.launcher.clone();
    let view = if a.common.json {
        View::quiet()
    } else {
        View::stderr()
    };
    #[cfg(debug_assertions)]
    if std::env::var_os("NIGHTSHIFT_FAKE_GPU").is_some_and(|v| v == "1") {
        let ms = std::env::var("NIGHTSHIFT_FAKE_GPU_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let fakes = ordinals(&p.options)
            .into_iter()
            .map(|g| crate::dispatch::fake::FakeGpu::new(Duration::from_millis(ms)).on(g))
            .collect();
        return carry_out(a, p, &settings, fakes, view);
    }
    // The GPUs last: nothing above spent any of their time.
    let sessions = match super::start_sessions(&opts, &ordinals(&p.options), view.progress()) {
        Ok(s) => s,
        Err(e) => {
            view.clear();
            eprintln!("error: {e}");
            eprintln!("`nightshift doctor` checks the driver, CUDA and the device");
            return Ok(exit::NO_GPU);
        }
    };
    carry_out(a, p, &settings, sessions, view)
}

/// The CUDA ordinals of the run's workers.
fn ordinals(o: &RunOptions) -> Vec<usize> {
    if o.gpus.is_empty() {
        vec![o.gpu]
    } else {
        o.gpus.clone()
    }
}

/// The run itself, on `ev`: the journal opened or started, the worktree, the loop.
fn carry_out<E: Evaluator>(
    a: &RunArgs,
    p: Prepared,
    settings: &crate::settings::Settings,
    evs: Vec<E>,
    view: View,
) -> Result<i32> {
    let device = evs
        .first()
        .map(|e| e.device_name())
        .ok_or_else(|| anyhow!("no GPU to run on"))?;
    let proposer = match settings
        .proposer
        .as_ref()
        .map(crate::propose::Proposer::new)
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            evs.into_iter().for_each(Evaluator::shutdown);
            bail!("the proposer of {}: {e}", crate::settings::FILE_NAME);
        }
    };
    if let Some(r) = &p.resume {
        let recorded = RunState::from_records(&r.records)
            .device
            .unwrap_or_default();
        if recorded != device && !a.force {
            evs.into_iter().for_each(Evaluator::shutdown);
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
    let wt = vcs::worktree_dir(&p.repo, &p.run_id)?;
    let (ws, kernels) = open_worktree(&p, &wt)?;
    let (journal, previous) = open_journal(a, &p, &device, &ws)?;
    view.show(Seen::Started {
        run_id: &p.run_id,
        device: &device,
        kernels: kernels.len(),
        branch: &ws.branch,
        journal: journal.path(),
        resumed: !previous.is_empty(),
    });
    let stop = StopFlag::default();
    let setup = Setup {
        run_id: p.run_id.clone(),
        kernels,
        library: p.library,
        budgets: p.budgets,
        workspace: ws,
        evaluators: evs,
        journal,
        previous,
        stop: stop.clone(),
        view: view.clone(),
        proposer,
        notifier: Some(crate::notify::Notifier::new(&settings.notify)).filter(|n| !n.is_empty()),
        clock: crate::dispatch::Clock::real(),
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
    // The lock is held until the end is notified and the report written: both
    // append to or read the journal.
    let done = finish(a, settings, &p.run_id, &p.repo, &wt, summary, &view);
    let _ = std::fs::remove_file(&lock);
    done
}

/// The run's worktree (git's stale locks cleared, leftovers discarded) and its
/// kernels' specs as they are in it.
fn open_worktree(p: &Prepared, wt: &std::path::Path) -> Result<(Workspace, Vec<KernelEntry>)> {
    let ws = Workspace::open(&p.repo, &p.run_id, wt)?;
    // Under the run's lock: git's own locks left by a kill -9 mid-commit are stale.
    for lock in ws.clear_stale_locks()? {
        eprintln!(
            "removed {} (left by a run killed inside git)",
            lock.display()
        );
    }
    ws.discard()?;
    let mut kernels = Vec::new();
    for k in &p.kernels {
        let rel = PathBuf::from(&k.dir);
        let mut spec = KernelSpec::load(&ws.root.join(&rel)).map_err(|e| {
            anyhow!(
                "{e}\n(the run measures its own worktree, {}, which is the commit it started from)",
                ws.root.display()
            )
        })?;
        // The rewrites the library's patterns declare themselves.
        spec.edits = p.library.edits();
        // A resumed run's branch may carry its committed rewrites of the kernel: the
        // run's rewrites apply to, and are validated against, the kernel as written.
        if let Ok(src) = spec.source_path.strip_prefix(&ws.root) {
            if let Some(text) = ws.read_at_base(src)? {
                spec.source = text;
            }
        }
        kernels.push(KernelEntry { spec, rel_dir: rel });
    }
    Ok((ws, kernels))
}

/// The run's journal: started with its `RunStarted` record, or opened for a resume
/// (a torn last record dropped) with a `Resumed` record saying what changed.
fn open_journal(
    a: &RunArgs,
    p: &Prepared,
    device: &str,
    ws: &Workspace,
) -> Result<(Journal, Vec<journal::Record>)> {
    let reports = &a.reports;
    if p.resume.is_none() {
        let mut j = Journal::create(reports, &p.run_id)?;
        j.append(&Event::RunStarted {
            run_id: p.run_id.clone(),
            device: device.to_string(),
            budgets: p.budgets.clone().into(),
            git_branch: Some(ws.branch.clone()),
            kernels: p.kernels.clone(),
            options: Some(p.options.clone()),
        })?;
        return Ok((j, vec![]));
    }
    let path = reports.join(&p.run_id).join(journal::FILE_NAME);
    let (mut j, read) = Journal::open_append(&path)?;
    let dropped = read.torn.as_ref().map(|t| t.to_string());
    if let Some(d) = &dropped {
        eprintln!("the journal's last record was cut short by the crash and is dropped: {d}");
    }
    let down_s = read.records.last().map(|r| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        now.saturating_sub(r.t_ms) as f64 / 1e3
    });
    if let Some(d) = down_s.filter(|d| *d >= 1.0) {
        eprintln!(
            "run {} was down for {} since its last record; the wall limit counts that time, \
             GPU-hours and dollars do not (your provider may have billed it)",
            p.run_id,
            human_duration(d)
        );
    }
    for f in &p.forced {
        eprintln!("--force: resuming despite: {f}");
    }
    j.append(&Event::Resumed {
        device: device.to_string(),
        dropped,
        down_s,
        forced: p.forced.clone(),
        kernels: p.kernels_changed.then(|| p.kernels.clone()),
        options: p.options_changed.then(|| p.options.clone()),
        budgets: if p.budgets_changed {
            p.budgets.clone().into()
        } else {
            journal::Typed::Unread
        },
    })?;
    Ok((j, read.records))
}

/// After the loop: the report written however the run ended, the worktree removed,
/// the summary printed, and the exit code.
fn finish(
    a: &RunArgs,
    settings: &crate::settings::Settings,
    run_id: &str,
    repo: &std::path::Path,
    wt: &std::path::Path,
    summary: Result<RunSummary>,
    view: &View,
) -> Result<i32> {
    // The webhooks first, once per end of the run (never failing it), so the report
    // written next covers the whole journal, its notices included.
    let notifier = crate::notify::Notifier::new(&settings.notify);
    if !notifier.is_empty() {
        let path = a.reports.join(run_id).join(journal::FILE_NAME);
        let report_path = a
            .reports
            .join(run_id)
            .join("report.md")
            .display()
            .to_string();
        let error = summary.as_ref().err().map(|e| format!("{e:#}"));
        if let Err(e) =
            crate::notify::notify_end(&notifier, &path, error.as_deref(), Some(report_path))
        {
            eprintln!("warning: the end of the run was not notified: {e:#}");
        }
    }
    // The report, however the run ended (its journal is complete either way).
    let report = super::report::write(&a.reports, run_id);
    // A failure once the run is under way (a journal write, git, the worker) is the
    // infrastructure's, not bad input: exit 3, and the run can be resumed.
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            view.clear();
            eprintln!(
                "error: {e:#}\nthe run stopped; `nightshift run --resume {run_id}` continues it"
            );
            return Ok(exit::NO_GPU);
        }
    };
    if let Ok(ws) = Workspace::open(repo, run_id, wt) {
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
            "warning: the report was not written: {e:#}; `nightshift report {run_id}` retries"
        ),
    }
    Ok(match summary.stop_reason {
        Some(StopReason::Signal { .. }) => exit::INTERRUPTED,
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
            std::process::exit(exit::INTERRUPTED);
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
    // On N GPUs the GPUs held N x the wall time.
    let held = s.wall_s * s.gpus.max(1) as f64;
    let busy = if held > 0.0 {
        100.0 * s.gpu_busy_s / held
    } else {
        0.0
    };
    let gpus = if s.gpus > 1 {
        format!(
            " on {} GPUs ({} piece(s) of work measured ahead)",
            s.gpus, s.measured_ahead
        )
    } else {
        String::new()
    };
    out.push_str(&format!(
        "\nspent {:.2} GPU-hours, ${:.2}; this process: {:.0} s wall{gpus}, GPUs validating or measuring {busy:.0}% of it, {} candidate(s) evaluated{}{}\n",
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
