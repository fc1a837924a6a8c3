//! One candidate end to end, on the parent's side: plan every size, compile candidate
//! and reference in parallel (cached), hand the job to the worker, turn a hang or a
//! dead worker into an outcome, and judge the measurement against the device's
//! measured ceilings (roofline fractions; a figure above them is an anomaly of the cost
//! model, `implausible` only below the shortest possible launch).

pub mod external;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::budget::Stage;
use crate::gpu::ceilings::{self, Ceilings};
use crate::gpu::nvrtc::{self, CompileRequest, Compiled};
use crate::gpu::{DeviceInfo, FunctionInfo};
use crate::measure::verdict::DEFAULT_MIN_GAIN;
use crate::spec::plan::{self, problem_label};
use crate::spec::{ComputeKind, Config, KernelSpec, Reference};
use crate::vocab::*;
use crate::worker::protocol::*;
use crate::worker::supervisor::{Reply, Supervisor, SupervisorError, WorkerCommand};

/// How evaluations are run.
#[derive(Debug, Clone)]
pub struct Options {
    pub gpu: usize,
    pub cache_dir: PathBuf,
    /// Longest silence from the worker before a candidate is declared hung.
    pub watchdog: Duration,
    pub measure: MeasureOpts,
    pub min_gain: f64,
    pub seed: u64,
    /// Fractions of a ceiling up to 1 + margin are flagged anomalies; above, implausible.
    pub plausibility_margin: f64,
    pub remeasure_ceilings: bool,
    /// The `nightshift` executable that runs the worker (default: this executable).
    pub worker_exe: Option<PathBuf>,
}

impl Options {
    pub fn new(cache_dir: PathBuf) -> Self {
        Options {
            gpu: 0,
            cache_dir,
            watchdog: Duration::from_secs(30),
            measure: MeasureOpts::default(),
            min_gain: DEFAULT_MIN_GAIN,
            seed: 0x6E5E_ED00,
            plausibility_margin: 0.03,
            remeasure_ceilings: false,
            worker_exe: None,
        }
    }
}

/// The default cache directory: `$NIGHTSHIFT_CACHE_DIR`, else `$XDG_CACHE_HOME/nightshift`,
/// else `~/.cache/nightshift`, else `.nightshift-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NIGHTSHIFT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("nightshift");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/nightshift");
    }
    PathBuf::from(".nightshift-cache")
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Worker(#[from] SupervisorError),
    #[error("the GPU worker failed: {0}")]
    Infra(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileInfo {
    pub ms: f64,
    pub cached: bool,
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedSize {
    pub size: String,
    pub reason: String,
}

/// Achieved throughput against the measured ceilings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    pub bytes: f64,
    pub flops: f64,
    pub gbs: f64,
    pub dram_fraction: f64,
    pub gflops: f64,
    pub compute: ComputeKind,
    pub compute_fraction: f64,
    /// `memory` or `compute`: the larger fraction.
    pub bound: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub compile_ms: f64,
    pub validate_ms: f64,
    pub measure_ms: f64,
    pub total_ms: f64,
}

/// Everything known about one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub kernel: String,
    pub config: Config,
    /// Set when an external baseline (e.g. cuBLAS) ran instead of the kernel: what ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    pub problem: String,
    pub outcome: Outcome,
    pub compile: Option<CompileInfo>,
    pub function: Option<FunctionInfo>,
    pub checks: Vec<Check>,
    pub skipped_sizes: Vec<SkippedSize>,
    pub measurement: Option<Measurement>,
    pub occupancy: Option<Occupancy>,
    pub roofline: Option<Roofline>,
    /// Figures that need a second look (e.g. at the ceiling within noise).
    pub anomalies: Vec<String>,
    pub times: StageTimes,
    /// Where validation's time went (generate, reference, candidate, compare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationCost>,
    /// Two runs on the same inputs both passed and differ bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nondeterministic: Option<Nondeterminism>,
}

impl Evaluation {
    fn new(spec: &KernelSpec, config: &Config, outcome: Outcome) -> Self {
        Evaluation {
            kernel: spec.name.clone(),
            config: config.clone(),
            external: None,
            problem: problem_label(&spec.problem),
            outcome,
            compile: None,
            function: None,
            checks: vec![],
            skipped_sizes: vec![],
            measurement: None,
            occupancy: None,
            roofline: None,
            anomalies: vec![],
            times: StageTimes::default(),
            validation: None,
            nondeterministic: None,
        }
    }

    pub fn median_us(&self) -> Option<f64> {
        self.measurement.as_ref()?.summary.map(|s| s.median)
    }

    /// The samples that count (not taken while throttled), µs per launch.
    pub fn kept_samples(&self) -> Vec<f64> {
        self.measurement
            .as_ref()
            .map(|m| {
                m.samples
                    .iter()
                    .filter(|s| !s.throttled)
                    .map(|s| s.us)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Plans the job's sizes: the default problem first, then the validation sizes the
/// configuration's restrictions allow (the others are recorded as skipped).
pub fn plan_sizes(
    spec: &KernelSpec,
    config: &Config,
) -> Result<(Vec<plan::SizePlan>, Vec<SkippedSize>), Box<Outcome>> {
    let bad = spec.violated(&spec.problem, config);
    if !bad.is_empty() {
        return Err(Box::new(Outcome::Unlaunchable {
            reason: format!(
                "{config} violates {} at the default problem",
                bad.join(", ")
            ),
        }));
    }
    let mut sizes = vec![plan::plan(spec, config, &spec.problem)
        .map_err(|reason| Box::new(Outcome::Unlaunchable { reason }))?];
    let mut skipped = Vec::new();
    for p in &spec.validation.sizes {
        let bad = spec.violated(p, config);
        if !bad.is_empty() {
            skipped.push(SkippedSize {
                size: problem_label(p),
                reason: format!("restriction {} excludes it", bad.join(", ")),
            });
            continue;
        }
        sizes.push(plan::plan(spec, config, p).map_err(|m| {
            Box::new(Outcome::Unlaunchable {
                reason: format!("at {}: {m}", problem_label(p)),
            })
        })?);
    }
    Ok((sizes, skipped))
}

/// The CUDA toolkit's headers (for `mma.h` and friends), when installed:
/// `$CUDA_HOME/include`, `$CUDA_PATH/include`, or `/usr/local/cuda/include`.
pub fn cuda_include_dir() -> Option<PathBuf> {
    let candidates = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(|p| PathBuf::from(p).join("include")))
        .chain(std::iter::once(PathBuf::from("/usr/local/cuda/include")));
    candidates
        .into_iter()
        .find(|p| p.join("cuda_runtime.h").exists())
}

/// A short digest of every header (`.h`, `.cuh`, `.hpp`) in `dirs`, names and contents.
pub fn headers_digest(dirs: &[&Path]) -> String {
    crate::digest::of_files(dirs, &["h", "cuh", "hpp"])
}

/// The compile requests for the candidate and its reference.
pub fn compile_requests(
    spec: &KernelSpec,
    config: &Config,
    arch: &str,
) -> (CompileRequest, CompileRequest, String) {
    let mut common = spec.compile_options.clone();
    common.push(format!("-I{}", spec.dir.display()));
    for d in &spec.include_dirs {
        common.push(format!("-I{}", d.display()));
    }
    // Headers are not part of the source text: their digest goes into the options,
    // so editing a header invalidates the compile cache.
    let dirs: Vec<&Path> = std::iter::once(spec.dir.as_path())
        .chain(spec.include_dirs.iter().map(PathBuf::as_path))
        .collect();
    common.push(format!(
        "-DNIGHTSHIFT_HEADERS_DIGEST={}",
        headers_digest(&dirs)
    ));
    if let Some(inc) = cuda_include_dir() {
        common.push(format!("-I{}", inc.display()));
    }
    let file = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "kernel.cu".into())
    };
    let with = |defs: Vec<String>| {
        let mut o = common.clone();
        o.extend(defs);
        o
    };
    let cand = CompileRequest {
        name: file(&spec.source_path),
        source: spec.source.clone(),
        options: with(config.defines()),
        arch: arch.into(),
    };
    let (reference, entry) = match &spec.reference {
        Reference::Kernel {
            source_path,
            source,
            entry,
            ..
        } => (
            CompileRequest {
                name: file(source_path),
                source: source.clone(),
                options: with(spec.baseline().defines()),
                arch: arch.into(),
            },
            entry.clone(),
        ),
        Reference::Baseline => (
            CompileRequest {
                name: file(&spec.source_path),
                source: spec.source.clone(),
                options: with(spec.baseline().defines()),
                arch: arch.into(),
            },
            spec.entry.clone(),
        ),
    };
    (cand, reference, entry)
}

/// Compiles all requests at once, one CPU thread each.
pub fn compile_all(reqs: &[CompileRequest], cache: &Path) -> Vec<Result<Compiled, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|r| s.spawn(move || nvrtc::compile(r, cache)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the compiler thread panicked".into()))
            })
            .collect()
    })
}

/// Achieved throughput and plausibility of a measured configuration.
/// The start of the anomaly a figure above a measured ceiling gets: the run warns
/// once per kernel when it sees it.
pub const COST_MODEL_OVERCOUNTS: &str = "the cost model overcounts";

/// No launch completes in less (µs): a shorter median is implausible whatever the
/// cost model says.
pub const MIN_LAUNCH_US: f64 = 0.25;

pub fn judge(
    e: &mut Evaluation,
    bytes: f64,
    flops: f64,
    compute: ComputeKind,
    ceilings: &Ceilings,
    margin: f64,
) {
    let Some(median_us) = e.median_us() else {
        return;
    };
    let secs = median_us * 1e-6;
    let gbs = bytes / secs / 1e9;
    let gflops = flops / secs / 1e9;
    let compute_ceiling = match compute {
        ComputeKind::Fp32 => ceilings.fp32_gflops,
        ComputeKind::TensorF16 => ceilings.tensor_f16_gflops,
    };
    let r = Roofline {
        bytes,
        flops,
        gbs,
        dram_fraction: gbs / ceilings.dram_gbs,
        gflops,
        compute,
        compute_fraction: gflops / compute_ceiling,
        bound: if gbs / ceilings.dram_gbs >= gflops / compute_ceiling {
            "memory".into()
        } else {
            "compute".into()
        },
    };
    if median_us < MIN_LAUNCH_US {
        // No cost model explains a launch shorter than the GPU can run one.
        e.outcome = Outcome::Implausible {
            what: format!(
                "time per launch (µs), under the {MIN_LAUNCH_US} µs a launch takes at least"
            ),
            achieved: median_us,
            ceiling: MIN_LAUNCH_US,
        };
    }
    for (what, counted, achieved, ceiling, frac) in [
        (
            "DRAM bandwidth (GB/s)",
            "bytes",
            gbs,
            ceilings.dram_gbs,
            r.dram_fraction,
        ),
        (
            "arithmetic throughput (GFLOP/s)",
            "FLOPs",
            gflops,
            compute_ceiling,
            r.compute_fraction,
        ),
    ] {
        if frac > 1.0 + margin {
            // The output was checked after timing and is right, so the time is real:
            // the figure is what is wrong. The candidate stays in the race on its
            // time; the figure is never shown as a fraction.
            e.anomalies.push(format!(
                "{COST_MODEL_OVERCOUNTS}: {what} would be {achieved:.1}, above the measured ceiling {ceiling:.1}; the spec's [cost] counts at least {:.0}% more {counted} than the device can move or do in this time (likely cache reuse: data read twice is served by L2 the second time); the output was checked after timing and is right, so the time stands and the figure is not reported",
                100.0 * (frac - 1.0)
            ));
        } else if frac > 1.0 {
            e.anomalies.push(format!(
                "{what} {achieved:.1} is {:.1}% of the measured ceiling {ceiling:.1}, within the {:.0}% noise margin; the ceiling may be underestimated",
                100.0 * frac,
                100.0 * margin
            ));
        }
    }
    e.roofline = Some(r);
}

/// A worker, the device it runs on, and the device's measured ceilings.
pub struct Session {
    sup: Supervisor,
    pub device: DeviceInfo,
    pub ceilings: Ceilings,
    pub opts: Options,
    progress: Box<dyn FnMut(&str) + Send>,
}

impl Session {
    /// Starts the worker on `opts.gpu` and loads (or measures) the device's ceilings.
    pub fn start(
        opts: Options,
        mut progress: Box<dyn FnMut(&str) + Send>,
    ) -> Result<Session, EvalError> {
        let args = vec![
            "worker".into(),
            "--gpu".into(),
            opts.gpu.to_string(),
            "--cache-dir".into(),
            opts.cache_dir.display().to_string(),
        ];
        let cmd = match &opts.worker_exe {
            Some(p) => WorkerCommand {
                program: p.clone(),
                args,
            },
            None => WorkerCommand::this_exe(args)
                .map_err(|e| EvalError::Infra(format!("cannot find this executable: {e}")))?,
        };
        // Ceilings and start-up get a longer leash than a candidate.
        let mut sup = Supervisor::new(cmd, opts.watchdog.max(Duration::from_secs(60)));
        progress("starting the GPU worker");
        let device = sup.ensure_started()?.clone();
        let path = opts.cache_dir.join("ceilings").join(format!(
            "{}-v{}.json",
            device.uuid,
            ceilings::METHODS_VERSION
        ));
        let cached: Option<Ceilings> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let ceilings = match cached {
            Some(c) if !opts.remeasure_ceilings && c.driver_version == device.driver_version => c,
            _ => {
                progress("measuring device ceilings (once per device)");
                match sup.call(&Request::Ceilings, &mut |s| progress(s))? {
                    Reply::Done(Response::Ceilings { ceilings }) => {
                        let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
                        if let Ok(t) = serde_json::to_string_pretty(&ceilings) {
                            let _ = std::fs::write(&path, t);
                        }
                        *ceilings
                    }
                    Reply::Done(Response::Error { message }) => {
                        return Err(EvalError::Infra(message))
                    }
                    other => {
                        return Err(EvalError::Infra(format!("measuring ceilings: {other:?}")))
                    }
                }
            }
        };
        sup.watchdog = opts.watchdog;
        Ok(Session {
            sup,
            device,
            ceilings,
            opts,
            progress,
        })
    }

    pub fn restarts(&self) -> u32 {
        self.sup.restarts
    }

    /// Compiles and builds the worker job of one configuration, or the outcome that
    /// ends it early.
    fn prepare(
        &mut self,
        spec: &KernelSpec,
        config: &Config,
        measure: bool,
    ) -> Result<(EvalJob, Evaluation), Box<Evaluation>> {
        let start = Instant::now();
        let mut e = Evaluation::new(spec, config, Outcome::Passed);
        let (sizes, skipped) = match plan_sizes(spec, config) {
            Ok(x) => x,
            Err(o) => {
                e.outcome = *o;
                return Err(Box::new(e));
            }
        };
        e.skipped_sizes = skipped;
        (self.progress)(&format!("compiling {config}"));
        let (cand, reference, ref_entry) = compile_requests(spec, config, &self.device.arch);
        let mut results = compile_all(&[cand, reference], &self.opts.cache_dir).into_iter();
        let (c, r) = (
            results.next().expect("two results"),
            results.next().expect("two results"),
        );
        e.times.compile_ms = start.elapsed().as_secs_f64() * 1e3;
        let cubin = match c {
            Ok(Compiled::Ok {
                cubin,
                log,
                cached,
                ms,
            }) => {
                e.compile = Some(CompileInfo { ms, cached, log });
                cubin
            }
            Ok(Compiled::Failed { log, cached, ms }) => {
                e.compile = Some(CompileInfo {
                    ms,
                    cached,
                    log: log.clone(),
                });
                e.outcome = Outcome::CompileFailed { log };
                return Err(Box::new(e));
            }
            Err(m) => {
                e.outcome = Outcome::CompileFailed { log: m };
                return Err(Box::new(e));
            }
        };
        let ref_cubin = match r {
            Ok(Compiled::Ok { cubin, .. }) => cubin,
            Ok(Compiled::Failed { log, .. }) => {
                e.outcome = Outcome::Crashed {
                    stage: "compile reference".into(),
                    error: format!("the reference does not compile:\n{log}"),
                };
                return Err(Box::new(e));
            }
            Err(m) => {
                e.outcome = Outcome::Crashed {
                    stage: "compile reference".into(),
                    error: m,
                };
                return Err(Box::new(e));
            }
        };
        let v = &spec.validation;
        let job = EvalJob {
            label: config.to_string(),
            via: Via::Kernel,
            kernel: KernelImage {
                cubin,
                entry: spec.entry.clone(),
            },
            reference: KernelImage {
                cubin: ref_cubin,
                entry: ref_entry,
            },
            sizes,
            validation: ValidationOpts {
                trials: v.trials,
                seed: self.opts.seed,
                deterministic: v.deterministic,
                bitwise: v.bitwise,
                tolerances: v.tolerances.iter().map(|(d, t)| (*d, *t)).collect(),
                large_atol: v.large_atol,
            },
            measure: measure.then(|| self.opts.measure.clone()),
        };
        Ok((job, e))
    }

    fn absorb(&self, e: &mut Evaluation, r: WorkerReport, job: &EvalJob, spec: &KernelSpec) {
        e.outcome = r.outcome;
        e.function = r.function;
        e.checks = r.checks;
        e.measurement = r.measurement;
        e.occupancy = r.occupancy;
        e.times.validate_ms = r.validate_ms;
        e.times.measure_ms = r.measure_ms;
        e.validation = r.validation;
        e.nondeterministic = r.nondeterministic;
        if e.outcome == Outcome::Passed {
            let p = &job.sizes[0];
            judge(
                e,
                p.bytes,
                p.flops,
                spec.cost.compute,
                &self.ceilings,
                self.opts.plausibility_margin,
            );
        }
    }

    fn lost(reply: Reply) -> Result<Outcome, EvalError> {
        match reply {
            Reply::Hung { stage, waited } => Ok(Outcome::Hung {
                stage,
                after_s: waited.as_secs_f64(),
            }),
            Reply::Died { stage, status } => Ok(Outcome::Crashed {
                stage,
                error: format!("the worker died ({status})"),
            }),
            Reply::Done(Response::Error { message }) => Err(EvalError::Infra(message)),
            Reply::Done(other) => Err(EvalError::Infra(format!("unexpected answer {other:?}"))),
        }
    }

    /// Compiles, validates and (when `measure`) measures one configuration.
    pub fn evaluate(
        &mut self,
        spec: &KernelSpec,
        config: &Config,
        measure: bool,
    ) -> Result<Evaluation, EvalError> {
        self.evaluate_via(spec, config, measure, Via::Kernel)
    }

    /// Validates and measures the spec's cuBLAS equivalent (`[external] cublas`) with
    /// the same protocols and inputs as a kernel; None when the spec names none.
    pub fn evaluate_cublas(&mut self, spec: &KernelSpec) -> Option<Result<Evaluation, EvalError>> {
        spec.external.cublas.as_ref()?;
        Some(self.evaluate_via(spec, &spec.baseline(), true, Via::Cublas))
    }

    fn evaluate_via(
        &mut self,
        spec: &KernelSpec,
        config: &Config,
        measure: bool,
        via: Via,
    ) -> Result<Evaluation, EvalError> {
        let start = Instant::now();
        let (mut job, mut e) = match self.prepare(spec, config, measure) {
            Ok(x) => x,
            Err(e) => return Ok(*e),
        };
        if via == Via::Cublas {
            let what = spec
                .external
                .cublas
                .as_ref()
                .map(|c| c.op.describe())
                .unwrap_or("cuBLAS");
            job.via = via;
            job.label = what.to_string();
            e.external = Some(what.to_string());
            // The kernel's compile and register figures are not cuBLAS's.
            e.compile = None;
            e.times.compile_ms = 0.0;
        }
        let progress = &mut self.progress;
        let reply = self.sup.call(
            &Request::Evaluate {
                job: Box::new(job.clone()),
            },
            &mut |s| progress(s),
        )?;
        match reply {
            Reply::Done(Response::Evaluated { report }) => self.absorb(&mut e, *report, &job, spec),
            other => e.outcome = Self::lost(other)?,
        }
        e.times.total_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(e)
    }

    /// Checks the validation kernels on this device against their host mirror
    /// (generated inputs, comparisons, differences, scrambles): `(cases, failures)`.
    pub fn self_check(&mut self) -> Result<(usize, Vec<String>), EvalError> {
        let progress = &mut self.progress;
        match self.sup.call(&Request::SelfCheck, &mut |s| progress(s))? {
            Reply::Done(Response::SelfChecked { cases, failures }) => Ok((cases, failures)),
            Reply::Done(Response::Error { message }) => Err(EvalError::Infra(message)),
            other => Err(EvalError::Infra(format!(
                "the worker did not check its validation kernels: {other:?}"
            ))),
        }
    }

    /// Runs the reference at every validation size and writes inputs, outputs and a
    /// manifest per size under `dir` (see `Request::DumpReference`).
    pub fn dump_reference(
        &mut self,
        spec: &KernelSpec,
        kernel: &str,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, EvalError> {
        let (job, e) = self
            .prepare(spec, &spec.baseline(), false)
            .map_err(|e| EvalError::Infra(e.outcome.describe()))?;
        drop(e);
        let progress = &mut self.progress;
        let req = Request::DumpReference {
            job: Box::new(job),
            kernel: kernel.to_string(),
            dir: dir.to_path_buf(),
        };
        match self.sup.call(&req, &mut |s| progress(s))? {
            Reply::Done(Response::Dumped { dirs }) => Ok(dirs),
            Reply::Done(Response::Error { message }) => Err(EvalError::Infra(message)),
            other => Err(EvalError::Infra(format!(
                "the worker did not dump: {other:?}"
            ))),
        }
    }

    /// Validates both configurations and measures them interleaved (A B A B ...).
    /// The speedup is B's over A (time of A / time of B).
    pub fn compare(
        &mut self,
        spec: &KernelSpec,
        a: &Config,
        b: &Config,
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        self.compare_with(spec, a, b, false)
    }

    /// The side of a comparison that was not run because the other failed first.
    fn not_run(spec: &KernelSpec, config: &Config) -> Evaluation {
        Evaluation::new(
            spec,
            config,
            Outcome::Unlaunchable {
                reason: "not run: the other side of the comparison failed before the GPU".into(),
            },
        )
    }

    /// [`Session::compare`]; with `lone`, the side that passed is measured alone when
    /// the other failed validation (a sweep's cell wants its time; a run does not).
    pub fn compare_with(
        &mut self,
        spec: &KernelSpec,
        a: &Config,
        b: &Config,
        lone: bool,
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        let start = Instant::now();
        let pa = self.prepare(spec, a, true);
        let pb = self.prepare(spec, b, true);
        let ((ja, mut ea), (jb, mut eb)) = match (pa, pb) {
            (Ok(x), Ok(y)) => (x, y),
            // One did not get as far as the GPU: evaluate the other alone when asked.
            (Err(ea), Ok(_)) if lone => return Ok((*ea, self.evaluate(spec, b, true)?, None)),
            (Ok(_), Err(eb)) if lone => return Ok((self.evaluate(spec, a, true)?, *eb, None)),
            (Err(ea), Ok(_)) => return Ok((*ea, Self::not_run(spec, b), None)),
            (Ok(_), Err(eb)) => return Ok((Self::not_run(spec, a), *eb, None)),
            (Err(ea), Err(eb)) => return Ok((*ea, *eb, None)),
        };
        let progress = &mut self.progress;
        let req = Request::Compare {
            a: Box::new(ja.clone()),
            b: Box::new(jb.clone()),
            min_gain: self.opts.min_gain,
            lone,
        };
        let reply = self.sup.call(&req, &mut |s| progress(s))?;
        let mut ab = None;
        match reply {
            Reply::Done(Response::Compared {
                a: ra,
                b: rb,
                ab: r,
            }) => {
                self.absorb(&mut ea, *ra, &ja, spec);
                self.absorb(&mut eb, *rb, &jb, spec);
                // A verdict stands only when both sides passed every check.
                if ea.outcome == Outcome::Passed && eb.outcome == Outcome::Passed {
                    ab = r;
                }
            }
            other => {
                let o = Self::lost(other)?;
                ea.outcome = o.clone();
                eb.outcome = o;
            }
        }
        let total = start.elapsed().as_secs_f64() * 1e3;
        ea.times.total_ms = total;
        eb.times.total_ms = total;
        Ok((ea, eb, ab))
    }

    pub fn shutdown(mut self) {
        self.sup.shutdown();
    }
}

/// The cost of one evaluation by stage, from its own timers: the same figures whether
/// it ran now or is replayed from the journal. `compile`, `validate` (the candidate),
/// `revalidate` (the incumbent it was compared with, `against`, when the worker had to
/// validate it again), `measure` (warm-up, sampling, the check after timing, energy:
/// nothing for a candidate that failed validation), and `idle`: whatever else the
/// evaluation's wall time held the GPU for (the worker's round trip, the other side's
/// cached compile). They add up to the evaluation's wall time.
pub fn cost_of(e: &Evaluation, against: Option<&Evaluation>) -> Vec<(Stage, f64)> {
    let t = &e.times;
    let s = |ms: f64| ms.max(0.0) / 1e3;
    let parts = [
        (Stage::Compile, s(t.compile_ms)),
        (Stage::Validate, s(t.validate_ms)),
        (
            Stage::Revalidate,
            against.map_or(0.0, |a| s(a.times.validate_ms)),
        ),
        (Stage::Measure, s(t.measure_ms)),
    ];
    let counted: f64 = parts.iter().map(|p| p.1).sum();
    let total = s(t.total_ms).max(counted);
    let mut out: Vec<(Stage, f64)> = parts
        .into_iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.1 > 0.0)
        .map(|(_, p)| p)
        .collect();
    if total - counted > 0.0 {
        out.push((Stage::Idle, total - counted));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::fake::{made_up, made_up_measurement};

    fn ceilings() -> Ceilings {
        Ceilings {
            uuid: "GPU-x".into(),
            device: "test".into(),
            driver_version: 13000,
            dram_gbs: 1000.0,
            dram_method: "read".into(),
            dram_by_method: vec![],
            fp32_gflops: 50_000.0,
            tensor_f16_gflops: 800_000.0,
            tensor_method: "mma".into(),
            tensor_by_method: vec![],
            sm_clock_mhz: None,
            measured_at: 0,
        }
    }

    fn measured(median_us: f64) -> Evaluation {
        let spec =
            KernelSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/rowsum"))
                .unwrap();
        let mut e = made_up(&spec, &spec.baseline(), true);
        e.measurement = Some(made_up_measurement(median_us));
        e.roofline = None;
        e
    }

    #[test]
    fn a_figure_above_a_ceiling_indicts_the_cost_model_not_the_proven_candidate() {
        // 1.07 GB in 1 ms is 1070 GB/s, 7% above the 1000 GB/s ceiling.
        let mut e = measured(1000.0);
        judge(&mut e, 1.07e9, 1.0, ComputeKind::Fp32, &ceilings(), 0.03);
        assert_eq!(e.outcome, Outcome::Passed);
        let a = e.anomalies.join("\n");
        assert!(a.starts_with(COST_MODEL_OVERCOUNTS), "{a}");
        assert!(a.contains("at least 7% more bytes"), "{a}");
        // Within the noise margin: an anomaly about the ceiling, not the cost model.
        let mut e = measured(1000.0);
        judge(&mut e, 1.02e9, 1.0, ComputeKind::Fp32, &ceilings(), 0.03);
        assert_eq!(e.outcome, Outcome::Passed);
        assert!(e.anomalies[0].contains("noise margin"), "{:?}", e.anomalies);
    }

    #[test]
    fn a_launch_shorter_than_any_launch_can_be_is_implausible() {
        let mut e = measured(0.1);
        judge(&mut e, 1.0, 1.0, ComputeKind::Fp32, &ceilings(), 0.03);
        assert!(
            matches!(e.outcome, Outcome::Implausible { .. }),
            "{:?}",
            e.outcome
        );
    }
}
