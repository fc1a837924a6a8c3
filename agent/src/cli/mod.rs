//! Command-line interface: argument parsing and exit codes. Each command lives in its
//! own module and returns an exit code; errors are printed once, here.

mod bench;
mod calibrate;
mod check;
mod doctor;
mod gpus;
mod parse;
mod patterns;
pub mod report;
mod rewrite;
mod space;
use gpus::parse_gpus;
pub use gpus::{start_sessions, GpuSet};
use parse::*;
pub use rewrite::{RewriteArgs, RewriteFlags};
pub mod run;
pub mod status;
pub mod sweep;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::evaluate::{default_cache_dir, Options};

/// Exit codes, one meaning each.
pub mod exit {
    /// Everything asked for ran, and every configuration passed.
    pub const OK: i32 = 0;
    /// It ran, but a configuration was rejected (compile failed, incorrect, hung, ...).
    pub const REJECTED: i32 = 1;
    /// Bad input: a malformed spec, an unknown tunable, a bad flag value.
    pub const USAGE: i32 = 2;
    /// No usable GPU, or the GPU infrastructure failed (a run that stopped on it can
    /// be resumed).
    pub const NO_GPU: i32 = 3;
    /// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "nightshift",
    version,
    about = "An agentic optimization daemon for CUDA kernels: measures, validates and tunes kernels on the real GPU",
    long_about = "nightshift compiles CUDA kernels described by a kernel spec (kernels/<name>/kernel.toml) with NVRTC, \
validates them against a reference with a protocol a cheating kernel cannot pass, and times them with statistics that \
say FAST only when the evidence says so. Every number it prints was measured on the GPU it runs on."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: tune the bundled kernels (or those named) until the budget in
    /// budgets.toml is spent or nothing is left to try. Winners are committed on the
    /// branch nightshift/<run-id>; everything is journaled in reports/<run-id>/.
    #[command(long_about = RUN_ABOUT, after_help = EXIT_RUN)]
    Run(RunArgs),
    /// Where a run stands (running, finished, or stopped part-way and resumable),
    /// read from its journal.
    #[command(after_help = EXIT_READ)]
    Status(StatusArgs),
    /// Write a run's report from its journal: reports/<run-id>/report.html (one
    /// self-contained page to open in a browser), report.md, report.json, samples.csv
    /// and plots/*.svg (a run writes them itself when it stops). With --verify,
    /// recompute every figure of report.json from the journal's raw samples instead,
    /// render report.md, report.html and the plots again and compare them, and fail
    /// naming the first figure or line that differs.
    #[command(after_help = EXIT_REPORT)]
    Report(ReportArgs),
    /// Measure a kernel over a grid of problem sizes (--axis NAME=32..65536:x2, repeatable),
    /// each value of one tunable (--over) at every point, and find where the faster one
    /// changes: sweep.csv, a plot, the crossovers with their uncertainty, and thresholds
    /// as JSON, a Rust const and a C #define. --resume continues an interrupted sweep.
    #[command(after_help = EXIT_GPU)]
    Sweep(SweepArgs),
    /// Measure every configuration of a kernel's space that its restrictions allow,
    /// each compiled, validated and timed alone with bench's protocols: the optimum,
    /// and what each configuration cost to evaluate (space.jsonl, the exhaustive table
    /// bench/search-efficiency judges searches by). --resume continues.
    #[command(after_help = EXIT_GPU)]
    Space(space::SpaceArgs),
    /// The regression gate for CI on a GPU runner: measure each kernel's committed
    /// configuration (tuned.toml, else its baseline) against a baseline file written by
    /// `check --record`, and exit 1 when one is SLOW beyond --threshold. Prints a
    /// Markdown table for a pull-request comment (or --json).
    #[command(after_help = EXIT_CHECK)]
    Check(CheckArgs),
    /// Two runs side by side from their journals: configurations, medians with
    /// intervals, verdicts and cost. Refuses runs on different devices, or a kernel
    /// timed cold in one and batched in the other, unless --force (and then says so).
    #[command(after_help = EXIT_COMPARE)]
    Compare(CompareArgs),
    /// Validate and time one configuration of a kernel (or two, interleaved, with --vs).
    #[command(after_help = EXIT_BENCH)]
    Bench(BenchArgs),
    /// Measure the A/B rule's error rates on this GPU: many comparisons of a kernel
    /// against itself (false FAST and SLOW) and against itself slowed by 2%, 3% and 5%
    /// with a busy-wait (power), through the same protocol a run uses.
    #[command(after_help = EXIT_GPU)]
    Calibrate(CalibrateArgs),
    /// Report driver, CUDA, NVRTC and NVML versions, devices, clocks, throttling, and
    /// the device's measured ceilings. Exits non-zero when no GPU is usable.
    #[command(after_help = EXIT_DOCTOR)]
    Doctor(DoctorArgs),
    /// List the pattern library (patterns/*.toml) and check it: the same validation
    /// `nightshift run` applies at start, so a new pattern can be tried without a GPU.
    #[command(after_help = EXIT_READ)]
    Patterns(PatternsArgs),
    /// Show what rewrites do to a kernel, without a GPU: with --rewrite, the diff of
    /// its source and its NVRTC options after them (as `bench --rewrite` would compile
    /// it); without, every built-in rewrite and whether it applies (or why not).
    #[command(after_help = EXIT_REWRITE)]
    Rewrite(RewriteArgs),
    /// Internal: the GPU worker process, speaking JSON lines on stdin/stdout.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// CUDA device ordinal [default: 0; a resumed run: the run's].
    #[arg(long)]
    pub gpu: Option<usize>,
    /// Where compiled kernels and measured ceilings are cached
    /// [default: $NIGHTSHIFT_CACHE_DIR, $XDG_CACHE_HOME/nightshift or ~/.cache/nightshift].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Measure the device ceilings again instead of using the cached ones.
    #[arg(long)]
    pub remeasure: bool,
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The kernel's directory (holding kernel.toml).
    pub kernel: PathBuf,
    /// Set a tunable of the configuration to bench (default: the spec's baseline).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, i64)>,
    /// Also bench a second configuration, the first with these changes, measured
    /// interleaved with it; prints the speedup and the FAST/SLOW/SAME/AMBIGUOUS verdict.
    #[arg(long = "vs", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub vs: Vec<(String, i64)>,
    /// Minimum speedup for a FAST verdict (0.02 = 2%).
    #[arg(long, value_parser = parse_min_gain, default_value_t = crate::measure::verdict::DEFAULT_MIN_GAIN)]
    pub min_gain: f64,
    /// Seconds without progress before a candidate is declared hung and its worker killed.
    #[arg(long, value_parser = parse_seconds, default_value_t = 30.0)]
    pub watchdog: f64,
    /// Longest time spent sampling one configuration (or pair), seconds.
    #[arg(long, value_parser = parse_seconds, default_value_t = 3.0)]
    pub max_time: f64,
    /// Target relative half-width of the 95% interval of the median.
    #[arg(long, value_parser = parse_noise, default_value_t = 0.005)]
    pub target_noise: f64,
    /// Window of back-to-back launches for the energy reading, ms (0 to skip).
    #[arg(long, value_parser = parse_energy_ms, default_value_t = 500.0)]
    pub energy_ms: f64,
    #[command(flatten)]
    pub rewrites: RewriteFlags,
    /// Validate only; do not time.
    #[arg(long)]
    pub validate_only: bool,
    /// Also time what a user would otherwise call, as the spec's `[external]` names it:
    /// cuBLAS (validated and measured by the same protocols as the kernel) and PyTorch
    /// (timed by kernels/external/torch_baselines.py on the same GPU; `python3` with
    /// torch, or NIGHTSHIFT_PYTHON), and state the kernel's time as a fraction of theirs.
    #[arg(long)]
    pub external: bool,
    /// Check the reference kernel against PyTorch instead of benching: run the reference
    /// at every validation size, write its inputs and outputs under the cache directory,
    /// and have kernels/external/torch_baselines.py recompute them. Exit 1 on any
    /// disagreement.
    #[arg(long)]
    pub check_references: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

const EXIT_RUN: &str = "Exit codes: 0 the run ended (on its budget or with nothing left to try); \
2 bad input (a malformed spec, pattern or budgets file, a bad flag, no git repository, a resume that \
asks for something else than the run was started with); 3 no usable GPU, or the infrastructure failed \
once the run was under way (--resume continues it); 130 stopped by SIGINT or SIGTERM.\n\
Limits: specs, sources, headers, budgets, patterns and baselines are regular files of at most 64 MiB; \
a spec's sources and include directories resolve inside its repository; run ids and kernel names are \
letters, digits, `.`, `_` and `-`; expressions are at most 1000 characters, nested at most 32 deep.";
const EXIT_REWRITE: &str = "Exit codes: 0 done; 2 bad input (a malformed spec, an unknown \
rewrite or parameter, a rewrite that does not apply to the kernel or would leave a source that \
does not parse).";
const EXIT_READ: &str =
    "Exit codes: 0 done; 2 bad input (a missing or malformed journal or file, a bad run id).";
const EXIT_REPORT: &str =
    "Exit codes: 0 written (or, with --verify, every figure equal); 1 --verify found a \
figure that differs (named); 2 bad input (no such run, a malformed journal, a bad run id).";
const EXIT_GPU: &str =
    "Exit codes: 0 done; 2 bad input (a malformed spec, a bad flag, a grid of more than \
--max-points points); 3 no usable GPU.";
const EXIT_CHECK: &str = "Exit codes: 0 no kernel SLOW beyond the threshold; 1 a kernel is SLOW (or no \
longer passes validation); 2 bad input (a malformed spec, tuned.toml or baseline file); 3 no usable GPU.";
const EXIT_COMPARE: &str =
    "Exit codes: 0 compared; 1 the runs cannot be compared (different devices or \
timing methods; --force compares them anyway); 2 bad input.";
const EXIT_BENCH: &str = "Exit codes: 0 every configuration passed; 1 a configuration was rejected \
(compile failed, incorrect, out of bounds, race, hung, ...); 2 bad input (a malformed spec, an unknown \
tunable, a bad flag); 3 no usable GPU.";
const EXIT_DOCTOR: &str = "Exit codes: 0 a usable GPU, its ceilings measured and the validation \
kernels checked; 3 something is missing (said which).";

const RUN_ABOUT: &str = "The daemon. For each kernel: measure the baseline, read its profile, \
pick the cheapest applicable pattern from patterns/ (parallelism first when the GPU is underfilled), \
step the best configuration along the pattern's tunables, validate each candidate and measure it \
interleaved against the current best, commit a FAST one on the branch nightshift/<run-id>, revert the \
rest, and drop a pattern that spent twice its budget without a gain. Stops before a limit of \
budgets.toml would be passed, on SIGINT/SIGTERM (after the candidate in flight), or when no pattern \
has anything left. The user's branch and working tree are never touched (the run has its own \
worktree under .git/nightshift/). Every step is journaled to reports/<run-id>/journal.jsonl; a run \
killed or crashed is continued with --resume (a plain `run` resumes the last unfinished run).";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kernel directories (holding kernel.toml) [default: every kernels/*/].
    pub kernels: Vec<PathBuf>,
    /// The budgets file.
    #[arg(long, default_value = "budgets.toml")]
    pub budgets: PathBuf,
    /// The pattern library [default: patterns; a resumed run: the run's].
    #[arg(long)]
    pub patterns: Option<PathBuf>,
    /// Where runs write their journals and reports.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Continue this run (after kill -9, a crash, a reboot or a signal) without
    /// measuring again what it finished. A resume tunes the run's own kernels with
    /// its own options and the budget it had left; naming other kernels or options,
    /// or a spec changed since the run started, is refused (--force accepts it).
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Start a new run even if an unfinished one is found.
    #[arg(long, conflicts_with = "resume")]
    pub new: bool,
    /// The new run's id [default: the UTC start time, YYYYMMDD-HHMMSS].
    #[arg(long, conflicts_with = "resume")]
    pub run_id: Option<String>,
    /// Override the wall-time limit of budgets.toml, minutes.
    #[arg(long, value_parser = parse_budget)]
    pub wall_minutes: Option<f64>,
    /// Override the GPU-hours limit.
    #[arg(long, value_parser = parse_budget)]
    pub gpu_hours: Option<f64>,
    /// Override the dollars limit.
    #[arg(long, value_parser = parse_budget)]
    pub dollars: Option<f64>,
    /// Tune HEAD even though the kernels have uncommitted changes (which the run
    /// will not see).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Run on several GPUs of one model: `0,1,2,3` or `all` (one worker process
    /// each, with its own watchdog and restarts). The controller's requests are
    /// carried out in its order; the free GPUs measure ahead the candidates queued
    /// behind the one in flight and the baselines of the kernels not started, each
    /// A/B comparison on one GPU. Every GPU's held time is charged. A resume may
    /// name other GPUs of the same model [default: --gpu; a resumed run: the run's].
    #[arg(long, value_name = "LIST", value_parser = parse_gpus, conflicts_with = "gpu")]
    pub gpus: Option<GpuSet>,
    /// Resume a run although it differs from this command: another device model,
    /// other kernels or options, or specs changed since it started (each difference
    /// is journaled).
    #[arg(long)]
    pub force: bool,
    /// Minimum speedup for a FAST verdict (0.02 = 2%) [default: 0.02; a resumed run:
    /// the run's].
    #[arg(long, value_parser = parse_min_gain)]
    pub min_gain: Option<f64>,
    /// Longest time spent sampling one pair of configurations, seconds [default: 3].
    #[arg(long, value_parser = parse_seconds)]
    pub max_time: Option<f64>,
    /// Target relative half-width of the 95% interval of the median [default: 0.005].
    #[arg(long, value_parser = parse_noise)]
    pub target_noise: Option<f64>,
    /// Window of back-to-back launches for the energy reading, ms (0 to skip)
    /// [default: 200].
    #[arg(long, value_parser = parse_energy_ms)]
    pub energy_ms: Option<f64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run [default: the latest under --reports].
    pub run_id: Option<String>,
    /// Where runs write their journals.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    pub run_a: String,
    pub run_b: String,
    /// Where runs write their journals.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Compare measurements that are not comparable (different devices or timing
    /// methods); the output says what differs.
    #[arg(long)]
    pub force: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Kernel directories [default: every kernels/*/ with a kernel.toml].
    pub kernels: Vec<PathBuf>,
    /// Measure and write the baseline file instead of checking against it.
    #[arg(long)]
    pub record: bool,
    /// The baseline file.
    #[arg(long, default_value = "nightshift-baseline.json")]
    pub baseline: PathBuf,
    /// Fail on a slowdown whose whole 95% interval is beyond this (0.05 = 5%).
    #[arg(long, value_parser = parse_threshold, default_value_t = crate::gate::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Re-measure an AMBIGUOUS kernel up to this many more times, then report it as
    /// inconclusive (not as a failure).
    #[arg(long, value_parser = parse_retries, default_value_t = 2)]
    pub retries: usize,
    /// Check against a baseline recorded on another device model (and say so).
    #[arg(long)]
    pub force: bool,
    /// Longest time spent sampling one kernel, seconds.
    #[arg(long, value_parser = parse_seconds, default_value_t = 3.0)]
    pub max_time: f64,
    /// Check the kernels side by side on several GPUs of one model: `0,1` or `all`
    /// (one worker each; every kernel is measured alone on one GPU).
    #[arg(long, value_name = "LIST", value_parser = parse_gpus, conflicts_with = "gpu")]
    pub gpus: Option<GpuSet>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The kernel's directory (holding kernel.toml).
    pub kernel: PathBuf,
    /// An axis of the spec's [problem] and its values: FROM..TO:xFACTOR, FROM..TO:+STEP
    /// or a list (1,2,4); repeat for a grid. The other axes keep the spec's values.
    #[arg(long = "axis", value_name = "NAME=SPEC", required = true)]
    pub axes: Vec<String>,
    /// The tunable whose values are compared at every point (e.g. VARIANT); without
    /// it, one configuration is measured over the grid.
    #[arg(long, value_name = "TUNABLE")]
    pub over: Option<String>,
    #[command(flatten)]
    pub rewrites: RewriteFlags,
    /// Set a tunable of the configuration swept (default: the spec's baseline).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, i64)>,
    /// Where the outputs go [default: sweeps/<kernel>-<axes>[-over-<tunable>]].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the sweep in --out where it stopped (the points in its sweep.jsonl are
    /// not measured again).
    #[arg(long)]
    pub resume: bool,
    /// Minimum speedup for a FAST verdict between two variants at a point.
    #[arg(long, value_parser = parse_min_gain, default_value_t = crate::measure::verdict::DEFAULT_MIN_GAIN)]
    pub min_gain: f64,
    /// Seconds without progress before a candidate is declared hung.
    #[arg(long, value_parser = parse_seconds, default_value_t = 30.0)]
    pub watchdog: f64,
    /// Longest time spent sampling one point (both variants), seconds.
    #[arg(long, value_parser = parse_seconds, default_value_t = 2.0)]
    pub max_time: f64,
    /// Most points the grid may have (the product of the axes' points).
    #[arg(long, default_value_t = crate::sweep::DEFAULT_MAX_POINTS)]
    pub max_points: u64,
    /// Measure the points side by side on several GPUs of one model: `0,1` or
    /// `all` (one worker each; each point, its variants interleaved, on one GPU).
    #[arg(long, value_name = "LIST", value_parser = parse_gpus, conflicts_with = "gpu")]
    pub gpus: Option<GpuSet>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run [default: the latest under --reports].
    pub run_id: Option<String>,
    /// Where runs write their journals.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Check report.json against the journal's raw samples, and report.md,
    /// report.html and the plots against the pages the journal renders (exit 1
    /// naming the first figure or line that differs); writes nothing.
    #[arg(long)]
    pub verify: bool,
    /// Print the report as JSON on stdout (as well as writing the files).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PatternsArgs {
    /// The pattern directory.
    #[arg(long, default_value = "patterns")]
    pub dir: PathBuf,
    /// Print machine-readable JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Comparisons of the kernel against itself.
    #[arg(long, value_parser = parse_count, default_value_t = 200)]
    pub aa: usize,
    /// Comparisons at each known slowdown (2%, 3%, 5%).
    #[arg(long, value_parser = parse_count, default_value_t = 100)]
    pub ab: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    #[arg(long)]
    pub cache_dir: PathBuf,
}

impl CommonArgs {
    fn options(&self) -> Options {
        let mut o = Options::new(self.cache_dir.clone().unwrap_or_else(default_cache_dir));
        o.gpu = self.gpu.unwrap_or(0);
        o.remeasure_ceilings = self.remeasure;
        o
    }
}

/// Progress on stderr when it is a terminal: one line, overwritten.
pub fn progress_printer() -> Box<dyn FnMut(&str) + Send> {
    if std::io::stderr().is_terminal() {
        Box::new(|s: &str| {
            let mut line: String = s.chars().take(100).collect();
            line.push_str("                    ");
            eprint!("\r  {line}\r");
        })
    } else {
        Box::new(|_| {})
    }
}

/// The exit code of a command that returns its own code, or of its error by class
/// ([`error_class`]), the error printed once here with its causes (after the
/// progress line is cleared).
pub fn exit_code(r: anyhow::Result<i32>) -> i32 {
    r.unwrap_or_else(|e| {
        clear_progress();
        eprintln!("error: {e:#}");
        error_class(&e)
    })
}

/// The exit code of an error, by the first cause that says what broke: the GPU
/// worker, git or a journal write (infrastructure: `exit::NO_GPU`), else bad input
/// (`exit::USAGE`: a spec, a flag, a run id, a journal that cannot be read).
pub fn error_class(e: &anyhow::Error) -> i32 {
    use crate::evaluate::EvalError;
    use crate::journal::JournalError;
    use crate::vcs::VcsError;
    use crate::worker::supervisor::SupervisorError;
    for cause in e.chain() {
        if let Some(j) = cause.downcast_ref::<JournalError>() {
            return match j {
                JournalError::Io { action, .. } if !action.starts_with("read") => exit::NO_GPU,
                _ => exit::USAGE,
            };
        }
        if let Some(v) = cause.downcast_ref::<VcsError>() {
            return match v {
                VcsError::Git { .. } | VcsError::Io { .. } => exit::NO_GPU,
                _ => exit::USAGE,
            };
        }
        if cause.is::<SupervisorError>() || cause.is::<EvalError>() {
            return exit::NO_GPU;
        }
    }
    exit::USAGE
}

/// Starts the GPU session of a command, or says why not: the command then exits with
/// `exit::NO_GPU`.
pub fn start_session(mut opts: Options) -> Result<crate::evaluate::Session, i32> {
    // nightshift.toml here may say how the worker is started (`[worker] launcher`).
    match crate::settings::Settings::load_optional(std::path::Path::new(".")) {
        Ok(s) => opts.launcher = s.launcher,
        Err(e) => {
            clear_progress();
            eprintln!("error: {e}");
            return Err(exit::USAGE);
        }
    }
    crate::evaluate::Session::start(opts, progress_printer()).map_err(|e| {
        clear_progress();
        eprintln!("error: {e}");
        exit::NO_GPU
    })
}

pub fn clear_progress() {
    if std::io::stderr().is_terminal() {
        eprint!("\r{:120}\r", "");
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker(a) => crate::worker::server::run(a.gpu, a.cache_dir),
        Command::Bench(a) => {
            let mut o = a.common.options();
            o.min_gain = a.min_gain;
            o.watchdog = Duration::from_secs_f64(a.watchdog.max(1.0));
            o.measure.rule.max_time = Duration::from_secs_f64(a.max_time.max(0.1));
            o.measure.rule.target_rel = a.target_noise;
            o.measure.energy_ms = a.energy_ms;
            bench::run(&a, o)
        }
        Command::Doctor(a) => doctor::run(&a.common, a.common.options()),
        Command::Calibrate(a) => calibrate::run(&a, a.common.options()),
        Command::Patterns(a) => patterns::run(&a),
        Command::Rewrite(a) => rewrite::run(&a),
        // The run's options are settled against the run it resumes, if any.
        Command::Run(a) => run::run(&a, a.common.options()),
        Command::Status(a) => status::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Compare(a) => report::compare(&a),
        Command::Check(a) => {
            let mut o = a.common.options();
            o.measure.rule.max_time = Duration::from_secs_f64(a.max_time.max(0.1));
            o.measure.energy_ms = 0.0;
            if !(a.threshold > 0.0 && a.threshold < 1.0) {
                eprintln!("error: --threshold must be between 0 and 1 (0.05 = 5%)");
                return exit::USAGE;
            }
            check::run(&a, o)
        }
        Command::Space(a) => space::run(&a),
        Command::Sweep(a) => {
            let mut o = a.common.options();
            o.min_gain = a.min_gain;
            o.watchdog = Duration::from_secs_f64(a.watchdog.max(1.0));
            o.measure.rule.max_time = Duration::from_secs_f64(a.max_time.max(0.1));
            // Energy is not part of a sweep's figures.
            o.measure.energy_ms = 0.0;
            sweep::run(&a, o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_exit_by_class_and_keep_their_causes() {
        use crate::journal::JournalError;
        use crate::vcs::VcsError;
        use crate::worker::supervisor::SupervisorError;
        let io = || std::io::Error::other("disk full");
        let git = anyhow::Error::new(VcsError::Git {
            action: "commit".into(),
            source: git2::Error::from_str("index locked"),
        })
        .context("committing gemm BLOCK=128");
        assert_eq!(error_class(&git), exit::NO_GPU);
        // The cause is printed once, after the message that wraps it.
        let shown = format!("{git:#}");
        assert_eq!(shown, "committing gemm BLOCK=128: commit: index locked");
        let worker = anyhow::Error::new(SupervisorError::Handshake("no device".into()));
        assert_eq!(error_class(&worker), exit::NO_GPU);
        let unreadable = anyhow::Error::new(JournalError::Io {
            action: "read journal",
            path: "reports/r1/journal.jsonl".into(),
            source: io(),
        });
        assert_eq!(error_class(&unreadable), exit::USAGE);
        assert_eq!(
            format!("{unreadable:#}"),
            "read journal reports/r1/journal.jsonl: disk full"
        );
        let bad_repo = anyhow::Error::new(VcsError::BadRunId("a b".into()));
        assert_eq!(error_class(&bad_repo), exit::USAGE);
        assert_eq!(
            error_class(&anyhow::anyhow!("--set: no such tunable")),
            exit::USAGE
        );
    }
}
