//! The worker process (`nightshift worker --gpu N`): owns the CUDA context, runs the
//! validation protocol and the measurement protocol, and answers the supervisor over
//! JSON lines. A sticky CUDA error is reported as the candidate's `crashed` outcome and
//! then ends this process; the supervisor starts a fresh one.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::protocol::*;
use crate::gpu::blas::Blas;
use crate::gpu::ceilings;
use crate::gpu::nvml::Monitor;
use crate::gpu::{DeviceBuffer, Event, Gpu, GpuError, Kernel, Param, Params};
use crate::measure::{self, stats, SampleSource, Summary, Telemetry, TimingMethod};
use crate::spec::plan::{ArgPlan, LaunchDims, SizePlan};
use crate::spec::Io;
use crate::validate::{self, TrialKind};

/// Writes responses to stdout, one JSON object per line.
struct Link {
    out: std::io::Stdout,
    last_progress: Instant,
}

impl Link {
    fn send(&mut self, r: &Response) {
        let line = serde_json::to_string(r).expect("responses serialize");
        let mut out = self.out.lock();
        // If the parent has gone there is nobody to tell; the next read of stdin ends us.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn progress(&mut self, stage: &str) {
        self.last_progress = Instant::now();
        self.send(&Response::Progress {
            stage: stage.to_string(),
        });
    }

    /// Progress at most once a second (for tight loops).
    fn heartbeat(&mut self, stage: &str) {
        if self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.progress(stage);
        }
    }
}

/// Why an evaluation stopped early.
enum Stop {
    /// The candidate failed: an outcome for the report.
    Reject(Outcome),
    /// The infrastructure (or the reference) failed.
    Infra(String),
}

type Step<T> = Result<T, Stop>;

/// Device buffers for one argument list; `None` for scalars.
struct ArgBuffers(Vec<Option<DeviceBuffer>>);

impl ArgBuffers {
    fn params(&self, plan: &SizePlan) -> Result<Params, GpuError> {
        let list: Vec<Param> = plan
            .args
            .iter()
            .zip(&self.0)
            .map(|(a, b)| match (a, b) {
                (ArgPlan::Scalar { bytes, .. }, _) => Param::Bytes(bytes),
                (ArgPlan::Buffer { .. }, Some(buf)) => Param::Buffer(buf),
                (ArgPlan::Buffer { .. }, None) => {
                    unreachable!("buffers are allocated for every buffer argument")
                }
            })
            .collect();
        Params::new(&list)
    }
}

/// What runs as a job's candidate (or reference): a compiled kernel, or cuBLAS.
enum Cand {
    Kernel(Kernel),
    Blas(Rc<Blas>),
}

impl Cand {
    fn kernel(&self) -> Option<&Kernel> {
        match self {
            Cand::Kernel(k) => Some(k),
            Cand::Blas(_) => None,
        }
    }
}

/// Enqueues one run of `c` for `plan` (with `dims` when it is a kernel).
fn exec(
    gpu: &Gpu,
    c: &Cand,
    plan: &SizePlan,
    dims: &LaunchDims,
    params: &mut Params,
) -> Result<(), GpuError> {
    match c {
        Cand::Kernel(k) => gpu.launch(k, dims, params),
        Cand::Blas(b) => match &plan.blas {
            Some(call) => b.run(call, params),
            None => Err(GpuError::other(
                "cuBLAS",
                "the spec names no cuBLAS equivalent ([external] cublas)",
            )),
        },
    }
}

struct Worker {
    gpu: Gpu,
    /// Created on first use.
    blas: Option<Rc<Blas>>,
    monitor: Monitor,
    link: Link,
    cache_dir: PathBuf,
    /// A sticky error was seen: answer, then exit.
    dead: bool,
}

/// Entry point of `nightshift worker`. Returns the process exit code.
pub fn run(ordinal: usize, cache_dir: PathBuf) -> i32 {
    let mut link = Link {
        out: std::io::stdout(),
        last_progress: Instant::now(),
    };
    let stdin = std::io::stdin();
    let mut worker: Option<Worker> = None;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                link.send(&Response::Error {
                    message: format!("malformed request: {e}"),
                });
                continue;
            }
        };
        if let Request::Shutdown = req {
            return 0;
        }
        if let Request::Hello = req {
            match Gpu::open(ordinal) {
                Ok(mut gpu) => {
                    let monitor = Monitor::open(&gpu.info.uuid);
                    gpu.info.system_driver = monitor.driver_version();
                    link.send(&Response::Ready {
                        protocol: PROTOCOL_VERSION,
                        device: Box::new(gpu.info.clone()),
                    });
                    worker = Some(Worker {
                        gpu,
                        blas: None,
                        monitor,
                        link,
                        cache_dir: cache_dir.clone(),
                        dead: false,
                    });
                    break;
                }
                Err(e) => {
                    link.send(&Response::Error {
                        message: format!("cannot open CUDA device {ordinal}: {e}"),
                    });
                    return 2;
                }
            }
        }
        link.send(&Response::Error {
            message: "the first request must be hello".into(),
        });
    }
    let Some(mut w) = worker else { return 0 };
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("malformed request: {e}"),
            },
            Ok(Request::Shutdown) => return 0,
            Ok(Request::Hello) => Response::Ready {
                protocol: PROTOCOL_VERSION,
                device: Box::new(w.gpu.info.clone()),
            },
            Ok(Request::Ceilings) => w.ceilings(),
            Ok(Request::Evaluate { job }) => Response::Evaluated {
                report: Box::new(w.evaluate(&job)),
            },
            Ok(Request::Compare { a, b, min_gain }) => w.compare(&a, &b, min_gain),
            Ok(Request::DumpReference { job, kernel, dir }) => {
                w.dump_reference(&job, &kernel, &dir)
            }
        };
        w.link.send(&resp);
        if w.dead {
            return 3;
        }
    }
    0
}

fn report(outcome: Outcome) -> WorkerReport {
    WorkerReport {
        outcome,
        function: None,
        checks: vec![],
        measurement: None,
        occupancy: None,
        validate_ms: 0.0,
        measure_ms: 0.0,
    }
}

impl Worker {
    fn ceilings(&mut self) -> Response {
        let Worker {
            gpu,
            link,
            cache_dir,
            monitor,
            ..
        } = self;
        match ceilings::measure(gpu, cache_dir, &mut |s| link.progress(s)) {
            Ok(mut c) => {
                c.sm_clock_mhz = monitor.telemetry().sm_clock_mhz;
                Response::Ceilings {
                    ceilings: Box::new(c),
                }
            }
            Err(e) => Response::Error {
                message: format!("measuring ceilings failed: {e}"),
            },
        }
    }

    /// Classifies a failed GPU call made for the candidate.
    fn candidate_err(&mut self, stage: &str, e: GpuError) -> Stop {
        if e.is_sticky() {
            self.dead = true;
            Stop::Reject(Outcome::Crashed {
                stage: stage.to_string(),
                error: e.to_string(),
            })
        } else {
            Stop::Reject(Outcome::Unlaunchable {
                reason: format!("{stage}: {e}"),
            })
        }
    }

    /// Classifies a failed GPU call made for the reference or the harness.
    fn infra_err(&mut self, stage: &str, e: GpuError) -> Stop {
        if e.is_sticky() {
            self.dead = true;
        }
        Stop::Infra(format!("{stage}: {e}"))
    }

    fn load(&mut self, image: &KernelImage) -> Result<Kernel, String> {
        let bytes = std::fs::read(&image.cubin)
            .map_err(|e| format!("cannot read {}: {e}", image.cubin.display()))?;
        self.gpu
            .load(&bytes, &image.entry)
            .map_err(|e| e.to_string())
    }

    fn alloc(&mut self, plan: &SizePlan, sets: usize) -> Step<Vec<ArgBuffers>> {
        let need = plan.footprint() as usize * sets;
        let mut out = Vec::new();
        for _ in 0..sets {
            let mut bufs = Vec::new();
            for a in &plan.args {
                bufs.push(match a {
                    ArgPlan::Buffer { dtype, len, .. } => match self.gpu.alloc(*len as usize * dtype.size()) {
                        Ok(b) => Some(b),
                        Err(e) if e.is_out_of_memory() => {
                            let free = self.gpu.free_memory().unwrap_or(0);
                            return Err(Stop::Reject(Outcome::Unlaunchable {
                                reason: format!("at {} the arguments need {need} bytes; the device has {free} free", plan.label),
                            }));
                        }
                        Err(e) => return Err(self.infra_err("allocate arguments", e)),
                    },
                    ArgPlan::Scalar { .. } => None,
                });
            }
            out.push(ArgBuffers(bufs));
        }
        Ok(out)
    }

    /// Uploads inputs and poisons outputs.
    fn prepare(
        &mut self,
        plan: &SizePlan,
        bufs: &ArgBuffers,
        inputs: &[Option<Vec<u8>>],
    ) -> Step<()> {
        for ((a, b), host) in plan.args.iter().zip(&bufs.0).zip(inputs) {
            if let (ArgPlan::Buffer { dtype, io, .. }, Some(buf)) = (a, b) {
                let r = match (io, host) {
                    (Io::Out | Io::Scratch, _) => self.gpu.fill(buf, dtype.poison_byte()),
                    (_, Some(h)) => self.gpu.upload(buf, h),
                    (_, None) => Ok(()),
                };
                r.map_err(|e| self.infra_err("prepare arguments", e))?;
            }
        }
        Ok(())
    }

    /// Launches `k` once and waits for it.
    fn run_once(
        &mut self,
        k: &Cand,
        dims: &LaunchDims,
        plan: &SizePlan,
        bufs: &ArgBuffers,
        stage: &str,
        candidate: bool,
    ) -> Step<()> {
        self.link.progress(stage);
        let r = bufs
            .params(plan)
            .and_then(|mut p| exec(&self.gpu, k, plan, dims, &mut p))
            .and_then(|_| self.gpu.sync());
        r.map_err(|e| {
            if candidate {
                self.candidate_err(stage, e)
            } else {
                self.infra_err(stage, e)
            }
        })
    }

    /// Downloads every buffer (index-aligned with the args; None for scalars).
    fn download(&mut self, bufs: &ArgBuffers, stage: &str) -> Step<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::new();
        for b in &bufs.0 {
            out.push(match b {
                Some(buf) => Some(
                    self.gpu
                        .download(buf)
                        .map_err(|e| self.candidate_err(stage, e))?,
                ),
                None => None,
            });
        }
        Ok(out)
    }

    /// The validation protocol for one job. Returns the checks made.
    fn validate(
        &mut self,
        job: &EvalJob,
        cand: &Cand,
        reference: &Cand,
        checks: &mut Vec<Check>,
    ) -> Step<()> {
        let v = &job.validation;
        for (si, plan) in job.sizes.iter().enumerate() {
            if let Some(p) = cand
                .kernel()
                .and_then(|k| self.gpu.launch_problem(k, &plan.launch))
            {
                return Err(Stop::Reject(Outcome::Unlaunchable {
                    reason: format!("at {}: {p}", plan.label),
                }));
            }
            let ref_dims = plan.ref_launch.unwrap_or(plan.launch);
            if let Some(p) = reference
                .kernel()
                .and_then(|k| self.gpu.launch_problem(k, &ref_dims))
            {
                return Err(Stop::Infra(format!(
                    "the reference cannot launch at {}: {p}",
                    plan.label
                )));
            }
            let bufs = self.alloc(plan, 1)?.remove(0);
            for trial in 0..=(v.trials as usize) {
                let kind = if trial == v.trials as usize {
                    TrialKind::Large
                } else {
                    TrialKind::Normal
                };
                let seed = validate::trial_seed(v.seed, si, trial);
                let inputs = validate::inputs_for(plan, kind, seed);
                let at = format!("{} trial {trial}", plan.label);
                self.prepare(plan, &bufs, &inputs)?;
                self.run_once(
                    reference,
                    &ref_dims,
                    plan,
                    &bufs,
                    &format!("reference at {at}"),
                    false,
                )?;
                let expected = self.download(&bufs, "download reference output")?;

                self.prepare(plan, &bufs, &inputs)?;
                let stage = format!("candidate at {at}");
                self.run_once(cand, &plan.launch, plan, &bufs, &stage, true)?;
                let got = self.download(&bufs, &stage)?;
                for (ai, a) in plan.args.iter().enumerate() {
                    let ArgPlan::Buffer {
                        name,
                        dtype,
                        io,
                        topk,
                        ..
                    } = a
                    else {
                        continue;
                    };
                    let (Some(g), Some(e)) = (&got[ai], &expected[ai]) else {
                        continue;
                    };
                    match io {
                        Io::In => {
                            let original = inputs[ai].as_ref().expect("inputs generated for `in`");
                            if let Some(index) = validate::first_difference(*dtype, g, original) {
                                return Err(Stop::Reject(Outcome::MutatedInput {
                                    size: plan.label.clone(),
                                    trial,
                                    arg: name.clone(),
                                    index,
                                }));
                            }
                        }
                        Io::Scratch => {}
                        Io::Out | Io::Inout => {
                            let stats = match topk {
                                None => validate::compare(*dtype, g, e, v.tolerance(*dtype, kind)),
                                Some(t) => {
                                    let sd = plan.args[t.scores].dtype();
                                    let (Some(gs), Some(es)) =
                                        (&got[t.scores], &expected[t.scores])
                                    else {
                                        return Err(Stop::Infra(format!(
                                            "the scores of top-k output {name} are not a buffer"
                                        )));
                                    };
                                    let view = |index, scores| validate::TopKView {
                                        index_dtype: *dtype,
                                        index,
                                        score_dtype: sd,
                                        scores,
                                    };
                                    validate::compare_topk(
                                        view(g, gs),
                                        view(e, es),
                                        t.k as usize,
                                        t.range,
                                        v.tolerance(sd, kind),
                                    )
                                }
                            };
                            checks.push(Check {
                                size: plan.label.clone(),
                                trial,
                                kind,
                                arg: name.clone(),
                                stats,
                            });
                            if !stats.passed() {
                                return Err(Stop::Reject(Outcome::Incorrect {
                                    size: plan.label.clone(),
                                    trial,
                                    kind,
                                    arg: name.clone(),
                                    stats: Box::new(stats),
                                }));
                            }
                        }
                    }
                }
                if v.deterministic {
                    self.prepare(plan, &bufs, &inputs)?;
                    let stage = format!("candidate again at {at}");
                    self.run_once(cand, &plan.launch, plan, &bufs, &stage, true)?;
                    let again = self.download(&bufs, &stage)?;
                    for (ai, a) in plan.args.iter().enumerate() {
                        let ArgPlan::Buffer {
                            name,
                            dtype,
                            io: Io::Out | Io::Inout,
                            ..
                        } = a
                        else {
                            continue;
                        };
                        let (Some(x), Some(y)) = (&got[ai], &again[ai]) else {
                            continue;
                        };
                        if let Some(index) = validate::first_difference(*dtype, x, y) {
                            return Err(Stop::Reject(Outcome::Race {
                                size: plan.label.clone(),
                                trial,
                                arg: name.clone(),
                                index,
                            }));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn dump_reference(&mut self, job: &EvalJob, kernel: &str, dir: &std::path::Path) -> Response {
        let reference = match self.load(&job.reference) {
            Ok(k) => Cand::Kernel(k),
            Err(e) => {
                return Response::Error {
                    message: format!("cannot load the reference: {e}"),
                }
            }
        };
        let mut dirs = Vec::new();
        for (si, plan) in job.sizes.iter().enumerate().skip(1) {
            match self.dump_one(job, &reference, kernel, si, plan, dir) {
                Ok(d) => dirs.push(d),
                Err(Stop::Reject(o)) => {
                    return Response::Error {
                        message: format!(
                            "the reference failed at {}: {}",
                            plan.label,
                            o.describe()
                        ),
                    }
                }
                Err(Stop::Infra(message)) => return Response::Error { message },
            }
        }
        Response::Dumped { dirs }
    }

    fn dump_one(
        &mut self,
        job: &EvalJob,
        reference: &Cand,
        kernel: &str,
        si: usize,
        plan: &SizePlan,
        dir: &std::path::Path,
    ) -> Step<PathBuf> {
        let dims = plan.ref_launch.unwrap_or(plan.launch);
        let bufs = self.alloc(plan, 1)?.remove(0);
        let inputs = validate::inputs_for(
            plan,
            TrialKind::Normal,
            validate::trial_seed(job.validation.seed, si, 0),
        );
        self.prepare(plan, &bufs, &inputs)?;
        self.run_once(reference, &dims, plan, &bufs, "reference (dump)", false)?;
        let out = self.download(&bufs, "download reference output")?;
        let name: String = plan
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let d = dir.join(name);
        let io_err = |e: std::io::Error| Stop::Infra(format!("writing {}: {e}", d.display()));
        std::fs::create_dir_all(&d).map_err(io_err)?;
        let mut args = Vec::new();
        for (ai, a) in plan.args.iter().enumerate() {
            match a {
                ArgPlan::Buffer {
                    name,
                    dtype,
                    len,
                    io,
                    ..
                } => {
                    let (bytes, file) = match io {
                        Io::In | Io::Inout => (inputs[ai].as_ref(), format!("{name}.bin")),
                        Io::Out => (out[ai].as_ref(), format!("{name}.ref.bin")),
                        Io::Scratch => continue,
                    };
                    let Some(bytes) = bytes else { continue };
                    std::fs::write(d.join(&file), bytes).map_err(io_err)?;
                    args.push(serde_json::json!({
                        "name": name, "dtype": dtype.name(), "io": io, "len": len, "file": file,
                    }));
                }
                ArgPlan::Scalar {
                    name, dtype, bytes, ..
                } => {
                    let v = dtype.read(bytes, 0);
                    let value = if dtype.is_float() {
                        serde_json::json!(v)
                    } else {
                        serde_json::json!(v as i64)
                    };
                    args.push(serde_json::json!({
                        "name": name, "dtype": dtype.name(), "value": value,
                    }));
                }
            }
        }
        let manifest = serde_json::json!({
            "schema": 1,
            "kernel": kernel,
            "problem": plan.problem,
            "args": args,
        });
        let text = serde_json::to_string_pretty(&manifest).expect("serializable");
        std::fs::write(d.join("manifest.json"), text).map_err(io_err)?;
        Ok(d)
    }

    fn occupancy(&mut self, k: &Kernel, dims: &LaunchDims) -> Option<Occupancy> {
        let active = self.gpu.active_blocks_per_sm(k, dims).ok()?;
        let sms = self.gpu.info.sms;
        let ctas = dims.ctas();
        Some(Occupancy {
            ctas,
            sms,
            active_blocks_per_sm: active,
            waves: if active == 0 {
                f64::INFINITY
            } else {
                ctas as f64 / (sms as f64 * active as f64)
            },
            theoretical: (active as u64 * dims.threads_per_block()) as f64
                / self.gpu.info.max_threads_per_sm as f64,
        })
    }

    /// Loads both kernels and validates; the report carries everything but timing.
    fn validated(&mut self, job: &EvalJob) -> (WorkerReport, Option<Cand>) {
        let start = Instant::now();
        let cand = match job.via {
            Via::Kernel => self.load(&job.kernel).map(Cand::Kernel),
            Via::Cublas => match &self.blas {
                Some(b) => Ok(Cand::Blas(b.clone())),
                None => Blas::new()
                    .map(|b| {
                        let b = Rc::new(b);
                        self.blas = Some(b.clone());
                        Cand::Blas(b)
                    })
                    .map_err(|e| e.to_string()),
            },
        };
        let cand = match cand {
            Ok(k) => k,
            Err(e) => {
                return (
                    report(Outcome::Unlaunchable {
                        reason: format!("cannot load the compiled kernel: {e}"),
                    }),
                    None,
                )
            }
        };
        let reference = match self.load(&job.reference) {
            Ok(k) => Cand::Kernel(k),
            Err(e) => {
                return (
                    report(Outcome::Crashed {
                        stage: "load reference".into(),
                        error: e,
                    }),
                    None,
                )
            }
        };
        let mut r = report(Outcome::Passed);
        if let Some(k) = cand.kernel() {
            r.function = Some(k.info);
            r.occupancy = job.sizes.first().and_then(|p| self.occupancy(k, &p.launch));
        }
        match self.validate(job, &cand, &reference, &mut r.checks) {
            Ok(()) => {}
            Err(Stop::Reject(o)) => r.outcome = o,
            Err(Stop::Infra(m)) => {
                r.outcome = Outcome::Crashed {
                    stage: "validation harness".into(),
                    error: m,
                }
            }
        }
        r.validate_ms = start.elapsed().as_secs_f64() * 1e3;
        let keep = r.outcome == Outcome::Passed;
        (r, keep.then_some(cand))
    }

    fn evaluate(&mut self, job: &EvalJob) -> WorkerReport {
        let (mut r, cand) = self.validated(job);
        if let (Some(cand), Some(opts)) = (cand, &job.measure) {
            let start = Instant::now();
            match self.measure(
                &[(&cand, &job.sizes[0])],
                opts,
                measure::verdict::DEFAULT_MIN_GAIN,
            ) {
                Ok((mut ms, _)) => r.measurement = Some(ms.remove(0)),
                Err(Stop::Reject(o)) => r.outcome = o,
                Err(Stop::Infra(m)) => {
                    r.outcome = Outcome::Crashed {
                        stage: "measurement harness".into(),
                        error: m,
                    }
                }
            }
            r.measure_ms = start.elapsed().as_secs_f64() * 1e3;
            if let Some(m) = &r.measurement {
                if m.summary.is_none() {
                    r.outcome = Outcome::Unmeasurable {
                        reason: format!(
                            "all {} samples were taken while the GPU throttled ({})",
                            m.samples.len(),
                            m.throttle_reasons.join(", ")
                        ),
                    };
                }
            }
        }
        r
    }

    fn compare(&mut self, a: &EvalJob, b: &EvalJob, min_gain: f64) -> Response {
        let (mut ra, ka) = self.validated(a);
        if self.dead {
            return Response::Compared {
                a: Box::new(ra),
                b: Box::new(report(Outcome::Unlaunchable {
                    reason: "not run: the worker crashed on A".into(),
                })),
                ab: None,
            };
        }
        let (mut rb, kb) = self.validated(b);
        let Some(opts) = a.measure.as_ref().or(b.measure.as_ref()) else {
            return Response::Compared {
                a: Box::new(ra),
                b: Box::new(rb),
                ab: None,
            };
        };
        let mut arms: Vec<(&Cand, &SizePlan)> = Vec::new();
        if let Some(k) = &ka {
            arms.push((k, &a.sizes[0]));
        }
        if let Some(k) = &kb {
            arms.push((k, &b.sizes[0]));
        }
        if arms.is_empty() {
            return Response::Compared {
                a: Box::new(ra),
                b: Box::new(rb),
                ab: None,
            };
        }
        let start = Instant::now();
        let both = arms.len() == 2;
        let result = self.measure(&arms, opts, min_gain);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let mut ab = None;
        match result {
            Ok((mut m, stop)) => {
                let mb = if kb.is_some() { m.pop() } else { None };
                let ma = if ka.is_some() { m.pop() } else { None };
                if let (true, Some(x), Some(y)) = (both, &ma, &mb) {
                    if let (Some(sx), Some(sy)) = (x.summary, y.summary) {
                        let kx: Vec<f64> = x
                            .samples
                            .iter()
                            .filter(|s| !s.throttled)
                            .map(|s| s.us)
                            .collect();
                        let ky: Vec<f64> = y
                            .samples
                            .iter()
                            .filter(|s| !s.throttled)
                            .map(|s| s.us)
                            .collect();
                        let (lo, hi) = stats::bootstrap_ratio_ci(&kx, &ky, opts.seed);
                        ab = Some(AbResult {
                            speedup: sx.median / sy.median,
                            ci_lo: lo,
                            ci_hi: hi,
                            verdict: measure::Verdict::from_interval(lo, hi, min_gain),
                            min_gain,
                            pairs: kx.len().min(ky.len()),
                            stop,
                        });
                    }
                }
                ra.measurement = ma;
                rb.measurement = mb;
                ra.measure_ms = ms;
                rb.measure_ms = ms;
            }
            Err(Stop::Reject(o)) => {
                // A fault while timing: both arms were running; attribute it to both.
                ra.outcome = o.clone();
                rb.outcome = o;
            }
            Err(Stop::Infra(m)) => {
                ra.outcome = Outcome::Crashed {
                    stage: "measurement harness".into(),
                    error: m.clone(),
                };
                rb.outcome = Outcome::Crashed {
                    stage: "measurement harness".into(),
                    error: m,
                };
            }
        }
        Response::Compared {
            a: Box::new(ra),
            b: Box::new(rb),
            ab,
        }
    }

    /// Warm-up: launches until `warmup_ms` has passed; returns µs per launch (warm).
    fn warmup(
        &mut self,
        k: &Cand,
        plan: &SizePlan,
        bufs: &ArgBuffers,
        warmup_ms: f64,
    ) -> Step<f64> {
        let mut params = bufs
            .params(plan)
            .map_err(|e| self.infra_err("parameters", e))?;
        let (s, e) = (
            self.gpu.event().map_err(|x| self.infra_err("event", x))?,
            self.gpu.event().map_err(|x| self.infra_err("event", x))?,
        );
        let mut n = 1u64;
        let mut total_ms = 0.0;
        let mut launches = 0u64;
        while total_ms < warmup_ms || launches < 3 {
            self.gpu
                .record(&s)
                .map_err(|x| self.candidate_err("warm-up", x))?;
            for _ in 0..n {
                exec(&self.gpu, k, plan, &plan.launch, &mut params)
                    .map_err(|x| self.candidate_err("warm-up", x))?;
            }
            self.gpu
                .record(&e)
                .map_err(|x| self.candidate_err("warm-up", x))?;
            let ms = self
                .gpu
                .elapsed_ms(&s, &e)
                .map_err(|x| self.candidate_err("warm-up", x))?;
            total_ms += ms;
            launches += n;
            if ms < 10.0 {
                n = (n * 2).min(1 << 16);
            }
            self.link.heartbeat("warm-up");
        }
        Ok(total_ms * 1e3 / launches as f64)
    }

    /// The measurement protocol over one or more arms (interleaved). Returns one
    /// Measurement per arm and why sampling stopped.
    fn measure(
        &mut self,
        arms: &[(&Cand, &SizePlan)],
        opts: &MeasureOpts,
        min_gain: f64,
    ) -> Step<(Vec<Measurement>, measure::StopReason)> {
        let start = Instant::now();
        // Arms with the same arguments (the same kernel at the same problem) share one
        // set of buffers: separate allocations can differ in speed by a few percent,
        // which an A/A comparison would otherwise report as a speedup.
        let mut owner: Vec<usize> = Vec::new();
        for (ai, (_, plan)) in arms.iter().enumerate() {
            let same = arms[..ai].iter().position(|(_, p)| p.args == plan.args);
            owner.push(same.map(|j| owner[j]).unwrap_or(ai));
        }
        let mut sets_per_arm: Vec<Vec<ArgBuffers>> = Vec::new();
        for (ai, (_, plan)) in arms.iter().enumerate() {
            if owner[ai] != ai {
                sets_per_arm.push(Vec::new());
                continue;
            }
            let bufs = self.alloc(plan, 1)?;
            let inputs = validate::inputs_for(plan, TrialKind::Normal, opts.seed);
            self.prepare(plan, &bufs[0], &inputs)?;
            sets_per_arm.push(bufs);
        }
        self.link.progress("warm-up");
        let mut warm = Vec::new();
        for (ai, (k, plan)) in arms.iter().enumerate() {
            let bufs = &sets_per_arm[owner[ai]][0];
            let w = self.warmup(k, plan, bufs, opts.warmup_ms);
            warm.push(w?);
        }
        let fastest = warm.iter().cloned().fold(f64::INFINITY, f64::min);
        let batch = match opts.method {
            MethodChoice::Auto => fastest < opts.batch_below_us,
            MethodChoice::Cold => false,
            MethodChoice::Batch => true,
        };
        let method = if batch {
            // Enough argument copies that the L2 cannot hold the working set, within memory.
            let owned: Vec<&SizePlan> = arms
                .iter()
                .enumerate()
                .filter(|(i, _)| owner[*i] == *i)
                .map(|(_, (_, p))| *p)
                .collect();
            let footprint = owned
                .iter()
                .map(|p| p.footprint())
                .max()
                .unwrap_or(1)
                .max(1);
            let want = (2 * self.gpu.info.l2_bytes).div_ceil(footprint) as usize + 1;
            let total_fp: u64 = owned.iter().map(|p| p.footprint()).sum::<u64>().max(1);
            let free = self.gpu.free_memory().unwrap_or(0);
            let fit = (free / 2 / total_fp) as usize;
            let sets = want.clamp(1, 64).min(fit.max(1));
            let mut launches = ((opts.batch_sample_us / fastest).ceil() as usize).max(sets);
            launches = launches.div_ceil(sets) * sets;
            TimingMethod::Batch {
                launches: launches as u32,
                buffer_sets: sets as u32,
            }
        } else {
            TimingMethod::Cold
        };
        if let TimingMethod::Batch { buffer_sets, .. } = method {
            for (ai, (_, plan)) in arms.iter().enumerate() {
                if owner[ai] != ai {
                    continue;
                }
                let extra = self.alloc(plan, buffer_sets as usize - 1)?;
                for set in &extra {
                    for ((a, dst), src) in plan.args.iter().zip(&set.0).zip(&sets_per_arm[ai][0].0)
                    {
                        if let (ArgPlan::Buffer { dtype, io, .. }, Some(d), Some(s)) = (a, dst, src)
                        {
                            let r = if matches!(io, Io::Out | Io::Scratch) {
                                self.gpu.fill(d, dtype.poison_byte())
                            } else {
                                self.gpu.copy(d, s)
                            };
                            r.map_err(|e| self.infra_err("copy argument sets", e))?;
                        }
                    }
                }
                sets_per_arm[ai].extend(extra);
            }
        }
        let mut params: Vec<Vec<Params>> = Vec::new();
        for (ai, (_, plan)) in arms.iter().enumerate() {
            let mut ps = Vec::new();
            for s in &sets_per_arm[owner[ai]] {
                ps.push(
                    s.params(plan)
                        .map_err(|e| self.infra_err("parameters", e))?,
                );
            }
            params.push(ps);
        }
        self.link.progress("sampling");
        let kernels: Vec<(&Cand, &SizePlan)> = arms.to_vec();
        let sampled = {
            let mut src = GpuSource {
                w: self,
                kernels: &kernels,
                params: &mut params,
                method,
                events: Vec::new(),
                chunks: 0,
            };
            let rule = opts.rule;
            let out = if arms.len() == 2 {
                measure::sample(&mut src, &rule, measure::verdict_rule(min_gain, opts.seed))
            } else {
                measure::sample(&mut src, &rule, measure::noise_rule(rule))
            };
            match out {
                Ok(s) => s,
                Err(e) => return Err(self.candidate_err("sampling", e)),
            }
        };
        let mut out = Vec::new();
        for (ai, arm) in sampled.arms.iter().enumerate() {
            let kept = arm.kept();
            let energy = self.energy(
                kernels[ai].0,
                kernels[ai].1,
                &mut params[ai],
                method,
                warm[ai],
                opts.energy_ms,
            )?;
            let utilization_gpu_pct = self.monitor.utilization_gpu_pct();
            out.push(Measurement {
                method,
                samples: arm.samples.clone(),
                summary: Summary::of(&kept, opts.seed),
                discarded_throttled: arm.discarded(),
                stop: sampled.stop,
                throttle_reasons: sampled.throttle_reasons.clone(),
                sm_clock_mhz: arm.clock_range(),
                warmup_us_per_launch: warm[ai],
                energy,
                utilization_gpu_pct,
                wall_ms: start.elapsed().as_secs_f64() * 1e3,
            });
        }
        Ok((out, sampled.stop))
    }

    /// Energy per launch from NVML's energy counter over a window of back-to-back launches.
    fn energy(
        &mut self,
        k: &Cand,
        plan: &SizePlan,
        params: &mut [Params],
        method: TimingMethod,
        us_per_launch: f64,
        window_ms: f64,
    ) -> Step<Option<Energy>> {
        if window_ms <= 0.0 {
            return Ok(None);
        }
        let Some(mut e0) = self.monitor.energy_mj() else {
            return Ok(None);
        };
        // Start on a fresh counter update so the window is not cut short by its period.
        let tick = Instant::now();
        while tick.elapsed() < Duration::from_millis(200) {
            match self.monitor.energy_mj() {
                Some(e) if e != e0 => {
                    e0 = e;
                    break;
                }
                _ => std::thread::sleep(Duration::from_micros(500)),
            }
        }
        self.link.progress("energy window");
        let launches = ((window_ms * 1e3 / us_per_launch.max(0.5)).ceil() as u64).max(1);
        let sets = match method {
            TimingMethod::Batch { buffer_sets, .. } => buffer_sets as usize,
            TimingMethod::Cold => 1,
        };
        let start = Instant::now();
        for i in 0..launches {
            exec(
                &self.gpu,
                k,
                plan,
                &plan.launch,
                &mut params[i as usize % sets],
            )
            .map_err(|e| self.candidate_err("energy window", e))?;
            if i % 4096 == 4095 {
                self.link.heartbeat("energy window");
            }
        }
        self.gpu
            .sync()
            .map_err(|e| self.candidate_err("energy window", e))?;
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        let Some(e1) = self.monitor.energy_mj() else {
            return Ok(None);
        };
        let mj = e1.saturating_sub(e0) as f64;
        if mj <= 0.0 {
            return Ok(None);
        }
        Ok(Some(Energy {
            uj_per_launch: mj * 1e3 / launches as f64,
            avg_power_w: mj / wall_ms,
            launches,
            window_ms: wall_ms,
        }))
    }
}

/// Takes interleaved samples of every arm on the GPU.
struct GpuSource<'a> {
    w: &'a mut Worker,
    kernels: &'a [(&'a Cand, &'a SizePlan)],
    params: &'a mut Vec<Vec<Params>>,
    method: TimingMethod,
    events: Vec<(Event, Event)>,
    /// Chunks taken so far; rounds alternate the arms' order (A B, B A, ...) and each
    /// chunk starts with the other arm than the last one did.
    chunks: usize,
}

impl SampleSource for GpuSource<'_> {
    type Error = GpuError;

    fn arms(&self) -> usize {
        self.kernels.len()
    }

    fn take(&mut self, n: usize) -> Result<Vec<Vec<f64>>, GpuError> {
        let arms = self.kernels.len();
        while self.events.len() < n * arms {
            self.events.push((self.w.gpu.event()?, self.w.gpu.event()?));
        }
        // The GPU idles while the host reads clocks between chunks; one untimed launch
        // of every arm first, so no arm always gets the first-after-idle sample.
        for (a, (k, plan)) in self.kernels.iter().enumerate() {
            if self.method == TimingMethod::Cold {
                self.w.gpu.flush_l2()?;
            }
            exec(&self.w.gpu, k, plan, &plan.launch, &mut self.params[a][0])?;
        }
        for i in 0..n {
            let reverse = (self.chunks + i) % 2 == 1;
            for step in 0..arms {
                let a = if reverse { arms - 1 - step } else { step };
                let (k, plan) = &self.kernels[a];
                let (s, e) = &self.events[i * arms + a];
                match self.method {
                    TimingMethod::Cold => {
                        self.w.gpu.flush_l2()?;
                        self.w.gpu.record(s)?;
                        exec(&self.w.gpu, k, plan, &plan.launch, &mut self.params[a][0])?;
                        self.w.gpu.record(e)?;
                    }
                    TimingMethod::Batch {
                        launches,
                        buffer_sets,
                    } => {
                        self.w.gpu.record(s)?;
                        for j in 0..launches as usize {
                            exec(
                                &self.w.gpu,
                                k,
                                plan,
                                &plan.launch,
                                &mut self.params[a][j % buffer_sets as usize],
                            )?;
                        }
                        self.w.gpu.record(e)?;
                    }
                }
            }
        }
        self.chunks += 1;
        let per = match self.method {
            TimingMethod::Cold => 1.0,
            TimingMethod::Batch { launches, .. } => launches as f64,
        };
        let mut out = vec![Vec::with_capacity(n); arms];
        for i in 0..n {
            for (a, col) in out.iter_mut().enumerate() {
                let (s, e) = &self.events[i * arms + a];
                col.push(self.w.gpu.elapsed_ms(s, e)? * 1e3 / per);
            }
        }
        Ok(out)
    }

    fn telemetry(&mut self) -> Telemetry {
        self.w.monitor.telemetry()
    }

    fn progress(&mut self, taken: usize) {
        self.w
            .link
            .heartbeat(&format!("sampling ({taken} samples)"));
    }
}
