//! The worker process (`nightshift worker --gpu N`): owns the CUDA context, runs the
//! validation protocol and the measurement protocol, and answers the supervisor over
//! JSON lines. A sticky CUDA error is reported as the candidate's `crashed` outcome and
//! then ends this process; the supervisor starts a fresh one.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::checks::{ref_key, Builtins, Guarded, Kept, Place, RefCache, RefOutputs, GUARD_BYTES};
use super::protocol::*;
use crate::gpu::blas::Blas;
use crate::gpu::ceilings;
use crate::gpu::nvml::Monitor;
use crate::gpu::{
    DeviceBuffer, DeviceMem, DeviceView, Event, Gpu, GpuError, Kernel, Param, Params,
};
use crate::measure::{self, SampleSource, Summary, Telemetry, TimingMethod};
use crate::spec::plan::{ArgPlan, LaunchDims, SizePlan};
use crate::spec::{DType, Io, Tolerance};
use crate::validate::device::GenParams;
use crate::validate::{self, ErrorStats, TrialKind};
use crate::vocab::*;

mod measurement;
mod selfcheck;
mod validation;

use measurement::Arm;

/// Host memory that reference outputs may take once the device's share is full.
const HOST_REFERENCE_BYTES: u64 = 4 << 30;

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

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
    /// The validation kernels, once loaded.
    builtins: Option<Builtins>,
    /// Reference outputs by (reference, size, inputs): computed once per worker.
    refs: RefCache<RefOutputs>,
    /// The last reference outputs too large to keep.
    transient: Option<(String, RefOutputs)>,
    /// Jobs that passed validation in this worker, with their checks and note: the
    /// current best is not validated again before every comparison.
    validated: std::collections::HashMap<String, (Vec<Check>, Option<Nondeterminism>)>,
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
                        builtins: None,
                        refs: RefCache::new(0, 0),
                        transient: None,
                        validated: Default::default(),
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
            Ok(Request::Compare {
                a,
                b,
                min_gain,
                lone,
            }) => w.compare(&a, &b, min_gain, lone),
            Ok(Request::DumpReference { job, kernel, dir }) => {
                w.dump_reference(&job, &kernel, &dir)
            }
            Ok(Request::SelfCheck) => w.self_check(),
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
        validation: None,
        nondeterministic: None,
    }
}

/// What identifies a job's validation: the compiled candidate, how it runs, its
/// sizes and the validation options.
fn job_key(job: &EvalJob) -> String {
    let text = serde_json::to_string(&(
        &job.kernel,
        &job.via,
        &job.reference,
        &job.sizes,
        &job.validation,
    ))
    .unwrap_or_default();
    crate::digest::of_parts([("job", text.as_bytes())])
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
    /// Loads both kernels and validates (unless this worker validated the same job
    /// before); the report carries everything but timing. Returns the candidate and
    /// the reference when it passed.
    fn validated(&mut self, job: &EvalJob) -> (WorkerReport, Option<(Cand, Cand)>) {
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
        let key = job_key(job);
        let mut cost = ValidationCost::default();
        if let Some((checks, note)) = self.validated.get(&key) {
            r.checks = checks.clone();
            r.nondeterministic = note.clone();
            cost.validated_earlier = true;
        } else {
            match self.validate(job, &cand, &reference, &mut r, &mut cost) {
                Ok(()) => {
                    self.validated
                        .insert(key, (r.checks.clone(), r.nondeterministic.clone()));
                }
                Err(Stop::Reject(o)) => r.outcome = o,
                Err(Stop::Infra(m)) => {
                    r.outcome = Outcome::Crashed {
                        stage: "validation harness".into(),
                        error: m,
                    }
                }
            }
        }
        r.validation = Some(cost);
        r.validate_ms = start.elapsed().as_secs_f64() * 1e3;
        let keep = r.outcome == Outcome::Passed;
        (r, keep.then_some((cand, reference)))
    }

    fn evaluate(&mut self, job: &EvalJob) -> WorkerReport {
        let (mut r, loaded) = self.validated(job);
        if let (Some((cand, reference)), Some(opts)) = (loaded, &job.measure) {
            let start = Instant::now();
            let arm = Arm {
                cand: &cand,
                job,
                reference: &reference,
            };
            match self.measure(&[arm], opts, measure::verdict::DEFAULT_MIN_GAIN) {
                Ok((mut ms, _, mut after, _, _)) => {
                    r.measurement = Some(ms.remove(0));
                    if let Some(o) = after.remove(0) {
                        r.outcome = o;
                    }
                }
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

    fn compare(&mut self, a: &EvalJob, b: &EvalJob, min_gain: f64, lone: bool) -> Response {
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
        let mut arms: Vec<Arm> = Vec::new();
        for (loaded, job) in [(&ka, a), (&kb, b)] {
            if let Some((cand, reference)) = loaded {
                arms.push(Arm {
                    cand,
                    job,
                    reference,
                });
            }
        }
        // A comparison needs both sides: one that failed validation is not measured,
        // and the other only when asked (a sweep's cell still wants its time).
        if arms.is_empty() || (arms.len() < 2 && !lone) {
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
            Ok((mut m, stop, mut after, look, looks)) => {
                let mb = if kb.is_some() { m.pop() } else { None };
                let ma = if ka.is_some() { m.pop() } else { None };
                // A wrong output after timing is the arm's own outcome; its figures
                // stand for nothing, and neither does a verdict with it.
                let fb = if kb.is_some() {
                    after.pop().flatten()
                } else {
                    None
                };
                let fa = if ka.is_some() {
                    after.pop().flatten()
                } else {
                    None
                };
                let failed = fa.is_some() || fb.is_some();
                if let Some(o) = fa {
                    ra.outcome = o;
                }
                if let Some(o) = fb {
                    rb.outcome = o;
                }
                if let (true, false, Some(x), Some(y)) = (both, failed, &ma, &mb) {
                    if x.summary.is_some() && y.summary.is_some() {
                        // The look that stopped the sampling (or one at the end).
                        let l = look.unwrap_or_else(|| {
                            let kept = |m: &Measurement| -> Vec<f64> {
                                m.samples
                                    .iter()
                                    .filter(|s| !s.throttled)
                                    .map(|s| s.us)
                                    .collect()
                            };
                            measure::sequential::look(&kept(x), &kept(y), min_gain)
                        });
                        ab = Some(AbResult {
                            speedup: l.speedup,
                            ci_lo: l.ci_lo,
                            ci_hi: l.ci_hi,
                            verdict: l.verdict,
                            min_gain,
                            pairs: l.pairs,
                            stop,
                            looks: Some(looks),
                        });
                    }
                }
                // The measurement's time belongs to the sides it measured.
                if ma.is_some() {
                    ra.measure_ms = ms;
                }
                if mb.is_some() {
                    rb.measure_ms = ms;
                }
                ra.measurement = ma;
                rb.measurement = mb;
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
}
