//! `nightshift run`: the daemon. Checks every input before any GPU time is spent,
//! finds or starts the run, holds its lock, and hands the loop to the dispatcher.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::{exit, table, RunArgs};
use crate::budget::{Budgets, StopReason};
use crate::dispatch::{
    view::{Seen, View},
    Dispatcher, Evaluator, KernelEntry, RunSummary, Setup, StopFlag,
};
use crate::evaluate::{Options, Session};
use crate::journal::{self, Event, Journal, RunKernel, RunOptions};
use crate::patterns::Library;
use crate::runs::{human_duration, lock_path, new_run_id, running_pid, unfinished_runs};
use crate::spec::KernelSpec;
use crate::state::RunState;
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

/// Applies `--wall-minutes`, `--gpu-hours` and `--dollars`; true when one was given.
fn apply_overrides(b: &mut Budgets, a: &RunArgs) -> Result<bool> {
    let seconds = |what: &str, v: f64, per_unit: f64| -> Result<Duration> {
        let d = (v.is_finite() && v > 0.0)
            .then(|| Duration::try_from_secs_f64(v * per_unit).ok())
            .flatten();
        d.ok_or_else(|| anyhow!("--{what} must be a positive, finite number, not {v}"))
    };
    if let Some(m) = a.wall_minutes {
        b.run.wall = Some(seconds("wall-minutes", m, 60.0)?);
    }
    if let Some(h) = a.gpu_hours {
        b.run.gpu = Some(seconds("gpu-hours", h, 3600.0)?);
    }
    if let Some(d) = a.dollars {
        if !(d.is_finite() && d > 0.0) {
            bail!("--dollars must be a positive, finite number, not {d}");
        }
        b.run.dollars = Some(d);
    }
    Ok(a.wall_minutes.is_some() || a.gpu_hours.is_some() || a.dollars.is_some())
}

/// Defaults of the run's options (`--min-gain` and the rest).
pub const DEFAULT_MAX_TIME_S: f64 = 3.0;
pub const DEFAULT_TARGET_NOISE: f64 = 0.005;
pub const DEFAULT_ENERGY_MS: f64 = 200.0;
pub const DEFAULT_PATTERNS: &str = "patterns";

/// The options the command line gives, each checked; None where a flag is absent.
struct AskedOptions {
    min_gain: Option<f64>,
    max_time_s: Option<f64>,
    target_noise: Option<f64>,
    energy_ms: Option<f64>,
    gpu: Option<usize>,
    patterns: Option<PathBuf>,
}

fn asked_options(a: &RunArgs) -> Result<AskedOptions> {
    let check = |flag: &str, v: Option<f64>, ok: &dyn Fn(f64) -> bool, what: &str| match v {
        Some(x) if !(x.is_finite() && ok(x)) => Err(anyhow!("--{flag} must be {what}, not {x}")),
        _ => Ok(v),
    };
    Ok(AskedOptions {
        min_gain: check(
            "min-gain",
            a.min_gain,
            &|x| (0.0..1.0).contains(&x),
            "a fraction from 0 to below 1 (0.02 = 2%)",
        )?,
        max_time_s: check(
            "max-time",
            a.max_time,
            &|x| x > 0.0 && x <= 3600.0,
            "a number of seconds above 0, at most 3600",
        )?,
        target_noise: check(
            "target-noise",
            a.target_noise,
            &|x| x > 0.0 && x < 1.0,
            "a fraction above 0 and below 1 (0.005 = 0.5%)",
        )?,
        energy_ms: check(
            "energy-ms",
            a.energy_ms,
            &|x| (0.0..=60_000.0).contains(&x),
            "a number of milliseconds from 0 to 60000",
        )?,
        gpu: a.common.gpu,
        patterns: a.patterns.clone(),
    })
}

impl AskedOptions {
    /// The options of a new run: what was asked, else the defaults.
    fn for_new_run(&self, patterns_hash: String) -> RunOptions {
        RunOptions {
            min_gain: self
                .min_gain
                .unwrap_or(crate::measure::verdict::DEFAULT_MIN_GAIN),
            max_time_s: self.max_time_s.unwrap_or(DEFAULT_MAX_TIME_S),
            target_noise: self.target_noise.unwrap_or(DEFAULT_TARGET_NOISE),
            energy_ms: self.energy_ms.unwrap_or(DEFAULT_ENERGY_MS),
            gpu: self.gpu.unwrap_or(0),
            patterns: self
                .patterns
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_PATTERNS))
                .to_string_lossy()
                .into_owned(),
            patterns_hash,
        }
    }

    /// Where the options asked differ from the run's: `(what, line for a person)`,
    /// and the options with what was asked put in.
    fn against(&self, run: &RunOptions) -> (Vec<String>, RunOptions) {
        let mut diffs = Vec::new();
        let mut out = run.clone();
        let mut f = |flag: &str, asked: Option<f64>, had: f64, slot: &mut f64| {
            if let Some(x) = asked {
                if x != had {
                    diffs.push(format!("--{flag} {x}: the run measures with {had}"));
                    *slot = x;
                }
            }
        };
        f("min-gain", self.min_gain, run.min_gain, &mut out.min_gain);
        f(
            "max-time",
            self.max_time_s,
            run.max_time_s,
            &mut out.max_time_s,
        );
        f(
            "target-noise",
            self.target_noise,
            run.target_noise,
            &mut out.target_noise,
        );
        f(
            "energy-ms",
            self.energy_ms,
            run.energy_ms,
            &mut out.energy_ms,
        );
        if let Some(g) = self.gpu.filter(|g| *g != run.gpu) {
            diffs.push(format!("--gpu {g}: the run measures on GPU {}", run.gpu));
            out.gpu = g;
        }
        if let Some(p) = &self.patterns {
            let p = p.to_string_lossy();
            if p != run.patterns {
                diffs.push(format!(
                    "--patterns {p}: the run's pattern library is {}",
                    run.patterns
                ));
                out.patterns = p.into_owned();
            }
        }
        (diffs, out)
    }
}

/// The digest of a pattern library's files (what `RunOptions::patterns_hash` holds).
pub fn patterns_hash(dir: &Path) -> String {
    crate::digest::of_files(&[dir], &["toml"])
}

/// A kernel directory relative to the repository root, `/`-separated.
fn relative_dir(dir: &Path, repo_canon: &Path, repo: &Path) -> Result<String> {
    let canon = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    let rel = canon.strip_prefix(repo_canon).map_err(|_| {
        anyhow!(
            "{} is not inside the repository at {}",
            dir.display(),
            repo.display()
        )
    })?;
    Ok(rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}

/// The named (or default) kernel directories as a run records them, each spec
/// loaded and checked.
fn resolve_kernels(named: &[PathBuf], repo: &Path) -> Result<Vec<RunKernel>> {
    let repo_canon = repo.canonicalize().unwrap_or(repo.to_path_buf());
    let mut out = Vec::new();
    for d in kernel_dirs(named)? {
        // Named here so a malformed spec is reported before anything else happens.
        let spec = KernelSpec::load(&d)?;
        if let Some(other) = out.iter().find(|k: &&RunKernel| k.name == spec.name) {
            bail!(
                "two kernels are named `{}`: {} and {} (a run's kernels need distinct names: its journal, branch and report name them)",
                spec.name,
                other.dir,
                d.display()
            );
        }
        out.push(RunKernel {
            name: spec.name.clone(),
            dir: relative_dir(&d, &repo_canon, repo)?,
            hash: spec.content_hash(),
        });
    }
    Ok(out)
}

fn names(ks: &[RunKernel]) -> String {
    ks.iter()
        .map(|k| format!("{} ({})", k.name, k.dir))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a run was given its kernels and options, and what a resume changed.
struct Prepared {
    run_id: String,
    resume: Option<journal::JournalRead>,
    budgets: Budgets,
    /// The budgets flags changed them on a resume.
    budgets_changed: bool,
    library: Library,
    kernels: Vec<RunKernel>,
    options: RunOptions,
    /// On a resume: what `--force` let through, one line each.
    forced: Vec<String>,
    kernels_changed: bool,
    options_changed: bool,
    repo: PathBuf,
}

/// Every check that needs no GPU: specs, patterns, budgets, git, the run to resume
/// and whether this command asks it for what it was started with.
fn prepare(a: &RunArgs) -> Result<Prepared> {
    let asked = asked_options(a)?;
    for id in a.run_id.iter().chain(&a.resume) {
        journal::check_run_id(id)?;
    }
    let reports = &a.reports;
    let mut run_id = a.run_id.clone();
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
    let journal_path = run_id
        .as_ref()
        .map(|id| reports.join(id).join(journal::FILE_NAME))
        .filter(|p| p.is_file());
    let Some(path) = journal_path else {
        if let Some(id) = &a.resume {
            bail!(
                "no run {id} under {}: `nightshift status` lists runs",
                reports.display()
            );
        }
        return prepare_new(a, &asked, run_id.unwrap_or_else(new_run_id));
    };
    let id = run_id.unwrap_or_default();
    if let Some(pid) = running_pid(reports, &id) {
        bail!("run {id} is running now (pid {pid}); `nightshift status {id}` shows it");
    }
    let read = journal::read(&path)?;
    let r = RunState::from_records(&read.records);
    // The run's own budgets, as it was started; flags may raise or lower them.
    let recorded = r
        .budgets
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no RunStarted record", path.display()))?;
    let mut budgets: Budgets = recorded.get().cloned().ok_or_else(|| {
        anyhow!(
            "{}: the recorded budgets are not readable by this version of nightshift",
            path.display()
        )
    })?;
    let budgets_changed = apply_overrides(&mut budgets, a)?;

    let inside = match a.kernels.first() {
        Some(d) => d.clone(),
        None => PathBuf::from("."),
    };
    let repo = vcs::repo_root(&inside).map_err(|e| {
        anyhow!("{e}\nnightshift run keeps its results as commits: run it inside a git repository")
    })?;
    let mut diffs = Vec::new();
    // The kernels: the run's own, unless others are named.
    let kernels = match r.kernels.clone() {
        Some(theirs) => {
            if a.kernels.is_empty() {
                theirs
            } else {
                let named = resolve_kernels(&a.kernels, &repo)?;
                let dirs = |ks: &[RunKernel]| ks.iter().map(|k| k.dir.clone()).collect::<Vec<_>>();
                if dirs(&named) != dirs(&theirs) {
                    diffs.push(format!(
                        "kernels: the run was given {}; this command names {}",
                        names(&theirs),
                        names(&named)
                    ));
                    named
                } else {
                    theirs
                }
            }
        }
        None => {
            eprintln!(
                "run {id} was started before runs recorded their kernels: resuming with {}",
                if a.kernels.is_empty() {
                    "every kernels/*/"
                } else {
                    "the kernels named"
                }
            );
            resolve_kernels(&a.kernels, &repo)?
        }
    };
    let kernels_changed = r.kernels.as_ref() != Some(&kernels);
    // Each spec as it is on disk now, against the run's record of it.
    let recorded: BTreeMap<&str, &RunKernel> = r
        .kernels
        .iter()
        .flatten()
        .map(|k| (k.dir.as_str(), k))
        .collect();
    for k in &kernels {
        let Some(then) = recorded.get(k.dir.as_str()) else {
            continue;
        };
        let now = KernelSpec::load(&repo.join(&k.dir)).map(|s| s.content_hash());
        let what = match now {
            Ok(h) if h == then.hash => continue,
            Ok(h) => format!(
                "its spec or sources changed (hash {} then, {h} now)",
                then.hash
            ),
            Err(e) => format!("it cannot be read now ({e})"),
        };
        diffs.push(format!(
            "{}: {what} since the run started; the run measures the version in its own \
             worktree (branch {}, forked from the commit it started at), not your working tree",
            k.dir,
            vcs::branch_name(&id)
        ));
    }
    // The options: the run's own, unless others are asked for.
    let options = match &r.options {
        Some(theirs) => {
            let (d, mut o) = asked.against(theirs);
            diffs.extend(d);
            let now = patterns_hash(Path::new(&o.patterns));
            if o.patterns == theirs.patterns && now != theirs.patterns_hash {
                diffs.push(format!(
                    "the pattern library {} changed since the run started (hash {} then, {now} now)",
                    o.patterns, theirs.patterns_hash
                ));
            }
            o.patterns_hash = now;
            o
        }
        None => asked.for_new_run(patterns_hash(
            asked
                .patterns
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_PATTERNS)),
        )),
    };
    let options_changed = r.options.as_ref().is_some_and(|o| o != &options);
    if !diffs.is_empty() && !a.force {
        bail!(
            "run {id} was started otherwise than this command asks:\n  - {}\n\
             a resume carries on the run as it was started: `nightshift run --resume {id}` with \
             no kernels or options does; start a new run with --new, or pass --force to resume \
             with these differences (they are journaled)",
            diffs.join("\n  - ")
        );
    }
    let library = Library::load(Path::new(&options.patterns))?;
    Ok(Prepared {
        run_id: id,
        resume: Some(read),
        budgets,
        budgets_changed,
        library,
        kernels,
        options,
        forced: diffs,
        kernels_changed,
        options_changed,
        repo,
    })
}

fn prepare_new(a: &RunArgs, asked: &AskedOptions, run_id: String) -> Result<Prepared> {
    let dirs = kernel_dirs(&a.kernels)?;
    let repo = vcs::repo_root(&dirs[0]).map_err(|e| {
        anyhow!("{e}\nnightshift run keeps its results as commits: run it inside a git repository")
    })?;
    let kernels = resolve_kernels(&a.kernels, &repo)?;
    let patterns_dir = asked
        .patterns
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATTERNS));
    let library = Library::load(&patterns_dir)?;
    let options = asked.for_new_run(patterns_hash(&patterns_dir));
    let mut budgets = Budgets::load(&a.budgets)?;
    apply_overrides(&mut budgets, a)?;
    // The run works from HEAD: uncommitted edits to its kernels would be ignored.
    let mut dirty = Vec::new();
    for k in &kernels {
        dirty.extend(vcs::dirty(&repo, &k.dir)?);
    }
    if !dirty.is_empty() && !a.allow_dirty {
        bail!(
            "uncommitted changes in the kernels the run would tune:\n  {}\n\
             the run works on a worktree of HEAD and would not see them: commit or stash them, \
             or pass --allow-dirty to tune HEAD as it is",
            dirty.join("\n  ")
        );
    }
    Ok(Prepared {
        run_id,
        resume: None,
        budgets,
        budgets_changed: false,
        library,
        kernels,
        options,
        forced: vec![],
        kernels_changed: false,
        options_changed: false,
        repo,
    })
}

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
    let opts = session_options(opts, &p.options, p.budgets.limits.candidate_watchdog);
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
        let fake = crate::dispatch::fake::FakeGpu::new(Duration::from_millis(ms));
        return carry_out(a, p, fake, view);
    }
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
    carry_out(a, p, session, view)
}

/// The run itself, on `ev`: the journal opened or started, the worktree, the loop.
fn carry_out<E: Evaluator>(a: &RunArgs, p: Prepared, ev: E, view: View) -> Result<i32> {
    let device = ev.device_name();
    if let Some(r) = &p.resume {
        let recorded = RunState::from_records(&r.records)
            .device
            .unwrap_or_default();
        if recorded != device && !a.force {
            ev.shutdown();
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
    let ws = Workspace::open(&p.repo, &p.run_id, &wt)?;
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
        let spec = KernelSpec::load(&ws.root.join(&rel)).map_err(|e| {
            anyhow!(
                "{e}\n(the run measures its own worktree, {}, which is the commit it started from)",
                ws.root.display()
            )
        })?;
        kernels.push(KernelEntry { spec, rel_dir: rel });
    }
    let (journal, previous) = match &p.resume {
        None => {
            let mut j = Journal::create(reports, &p.run_id)?;
            j.append(&Event::RunStarted {
                run_id: p.run_id.clone(),
                device: device.clone(),
                budgets: p.budgets.clone().into(),
                git_branch: Some(ws.branch.clone()),
                kernels: p.kernels.clone(),
                options: Some(p.options.clone()),
            })?;
            (j, vec![])
        }
        Some(_) => {
            let path = reports.join(&p.run_id).join(journal::FILE_NAME);
            let (mut j, read) = Journal::open_append(&path)?;
            let dropped = read.torn.as_ref().map(|t| t.to_string());
            if let Some(d) = &dropped {
                eprintln!(
                    "the journal's last record was cut short by the crash and is dropped: {d}"
                );
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
                device: device.clone(),
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
            (j, read.records)
        }
    };
    let resumed = !previous.is_empty();
    view.show(Seen::Started {
        run_id: &p.run_id,
        device: &device,
        kernels: kernels.len(),
        branch: &ws.branch,
        journal: journal.path(),
        resumed,
    });
    let stop = StopFlag::default();
    let setup = Setup {
        run_id: p.run_id.clone(),
        kernels,
        library: p.library,
        budgets: p.budgets,
        workspace: ws,
        evaluator: ev,
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
    // A failure once the run is under way (a journal write, git, the worker) is the
    // infrastructure's, not bad input: exit 3, and the run can be resumed.
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            view.clear();
            eprintln!(
                "error: {e:#}\nthe run stopped; `nightshift run --resume {}` continues it",
                p.run_id
            );
            return Ok(exit::NO_GPU);
        }
    };
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
