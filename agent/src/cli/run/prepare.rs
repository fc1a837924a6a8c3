//! What `nightshift run` checks before any GPU time is spent: the kernels, the
//! patterns, the budgets, git, and on a resume what this command asks against what
//! the run was started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::budget::Budgets;
use crate::journal::{self, RunKernel, RunOptions};
use crate::patterns::Library;
use crate::runs::{new_run_id, running_pid, unfinished_runs};
use crate::spec::KernelSpec;
use crate::state::RunState;
use crate::vcs;

use super::super::RunArgs;

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
    /// `--gpus`, resolved to ordinals.
    gpus: Option<Vec<usize>>,
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
        gpus: a.gpus.as_ref().map(|g| g.resolve()).transpose()?,
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
            gpu: self
                .gpus
                .as_ref()
                .and_then(|g| g.first().copied())
                .or(self.gpu)
                .unwrap_or(0),
            gpus: self.gpus.clone().unwrap_or_default(),
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
        // Other GPUs of the same model (checked when the workers start) measure
        // alike: a resume may take more or fewer of them without --force.
        if let Some(g) = &self.gpus {
            out.gpu = g.first().copied().unwrap_or(out.gpu);
            out.gpus = g.clone();
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
pub(super) struct Prepared {
    pub(super) run_id: String,
    pub(super) resume: Option<journal::JournalRead>,
    pub(super) budgets: Budgets,
    /// The budgets flags changed them on a resume.
    pub(super) budgets_changed: bool,
    pub(super) library: Library,
    pub(super) kernels: Vec<RunKernel>,
    pub(super) options: RunOptions,
    /// On a resume: what `--force` let through, one line each.
    pub(super) forced: Vec<String>,
    pub(super) kernels_changed: bool,
    pub(super) options_changed: bool,
    pub(super) repo: PathBuf,
}

/// Every check that needs no GPU: specs, patterns, budgets, git, the run to resume
/// and whether this command asks it for what it was started with.
pub(super) fn prepare(a: &RunArgs) -> Result<Prepared> {
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
    let kernels = resume_kernels(a, &r, &repo, &id, &mut diffs)?;
    let kernels_changed = r.kernels.as_ref() != Some(&kernels);
    diffs.extend(spec_drift(&r, &kernels, &repo, &id));
    let options = resume_options(&asked, &r, &mut diffs);
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

/// The kernels a resume runs: the run's own, unless others are named (a difference
/// is noted in `diffs`).
fn resume_kernels(
    a: &RunArgs,
    r: &RunState,
    repo: &Path,
    id: &str,
    diffs: &mut Vec<String>,
) -> Result<Vec<RunKernel>> {
    Ok(match r.kernels.clone() {
        Some(theirs) => {
            if a.kernels.is_empty() {
                theirs
            } else {
                let named = resolve_kernels(&a.kernels, repo)?;
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
            resolve_kernels(&a.kernels, repo)?
        }
    })
}

/// Each spec as it is on disk now, against the run's record of it: one line per
/// kernel that changed since the run started.
fn spec_drift(r: &RunState, kernels: &[RunKernel], repo: &Path, id: &str) -> Vec<String> {
    let recorded: BTreeMap<&str, &RunKernel> = r
        .kernels
        .iter()
        .flatten()
        .map(|k| (k.dir.as_str(), k))
        .collect();
    let mut diffs = Vec::new();
    for k in kernels {
        let Some(then) = recorded.get(k.dir.as_str()) else {
            continue;
        };
        let now = KernelSpec::load(&repo.join(&k.dir)).map(|s| as_started(s, repo, id));
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
            vcs::branch_name(id)
        ));
    }
    diffs
}

/// The hash of `spec` as the run started it: where the working tree holds the run's
/// own rewrite of the kernel (the user took the run's commits), the source it was
/// rewritten from counts, not the rewrite.
fn as_started(mut spec: KernelSpec, repo: &Path, id: &str) -> String {
    let Ok(rel) = spec.source_path.strip_prefix(repo) else {
        return spec.content_hash();
    };
    if let Ok((Some(base), run)) = vcs::run_versions(repo, id, rel) {
        if run.contains(&spec.source) {
            spec.source = base;
        }
    }
    spec.content_hash()
}

/// The options a resume runs with: the run's own, unless others are asked for (each
/// difference, and a pattern library changed on disk, noted in `diffs`).
fn resume_options(asked: &AskedOptions, r: &RunState, diffs: &mut Vec<String>) -> RunOptions {
    match &r.options {
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
    }
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
