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

    /// The validation kernels, loaded on first use.
    fn builtins(&mut self) -> Step<()> {
        if self.builtins.is_none() {
            let b = Builtins::load(&self.gpu, &self.cache_dir)
                .map_err(|e| Stop::Infra(format!("loading the validation kernels: {e}")))?;
            self.builtins = Some(b);
            // Reference outputs may use a quarter of the memory free now (or what
            // NIGHTSHIFT_REFERENCE_DEVICE_BYTES says), then host memory.
            let free = self.gpu.free_memory().unwrap_or(0);
            let device = std::env::var("NIGHTSHIFT_REFERENCE_DEVICE_BYTES")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(free / 4);
            self.refs = RefCache::new(device, HOST_REFERENCE_BYTES);
        }
        Ok(())
    }

    fn bi(&self) -> Result<&Builtins, GpuError> {
        self.builtins
            .as_ref()
            .ok_or_else(|| GpuError::other("validation", "the validation kernels are not loaded"))
    }

    /// Plain device buffers for the arguments `want` selects (None for the others).
    fn alloc_some(
        &mut self,
        plan: &SizePlan,
        want: fn(Io) -> bool,
    ) -> Step<Vec<Option<DeviceBuffer>>> {
        let mut out = Vec::new();
        for a in &plan.args {
            out.push(match a {
                ArgPlan::Buffer { dtype, len, io, .. } if want(*io) => {
                    Some(self.alloc_one(plan, *len as usize * dtype.size())?)
                }
                _ => None,
            });
        }
        Ok(out)
    }

    fn alloc_one(&mut self, plan: &SizePlan, bytes: usize) -> Step<DeviceBuffer> {
        match self.gpu.alloc(bytes) {
            Ok(b) => Ok(b),
            Err(e) if e.is_out_of_memory() => Err(self.no_room(plan)),
            Err(e) => Err(self.infra_err("allocate arguments", e)),
        }
    }

    fn no_room(&mut self, plan: &SizePlan) -> Stop {
        let free = self.gpu.free_memory().unwrap_or(0);
        Stop::Reject(Outcome::Unlaunchable {
            reason: format!(
                "at {} the arguments (with the validation's copies) need more than the {free} bytes the device has free",
                plan.label
            ),
        })
    }

    /// Generates the inputs of a trial into `pristine` (the `in` and `inout` buffers).
    fn gen_inputs(
        &self,
        plan: &SizePlan,
        pristine: &[Option<DeviceBuffer>],
        kind: TrialKind,
        seed: u64,
    ) -> Result<(), GpuError> {
        let bi = self.bi()?;
        for (ai, (a, p)) in plan.args.iter().zip(pristine).enumerate() {
            if let (
                ArgPlan::Buffer {
                    dtype,
                    len,
                    init,
                    large_scale,
                    ..
                },
                Some(p),
            ) = (a, p)
            {
                let gp = GenParams::new(
                    *dtype,
                    *init,
                    kind,
                    *large_scale,
                    validate::arg_seed(seed, ai),
                );
                bi.generate(&self.gpu, p, *dtype, *len, &gp)?;
            }
        }
        self.gpu.sync()
    }

    /// Sets up one launch: inputs copied from `pristine`, outputs and scratch poisoned.
    fn load_args(
        &self,
        plan: &SizePlan,
        dst: &[Option<&dyn DeviceMem>],
        pristine: &[Option<DeviceBuffer>],
    ) -> Result<(), GpuError> {
        for ((a, d), p) in plan.args.iter().zip(dst).zip(pristine) {
            if let (ArgPlan::Buffer { dtype, io, .. }, Some(d)) = (a, d) {
                match (io, p) {
                    (Io::In | Io::Inout, Some(p)) => self.gpu.copy(*d, p)?,
                    _ => self.gpu.fill(*d, dtype.poison_byte())?,
                }
            }
        }
        Ok(())
    }

    /// Runs the reference on `pristine`'s inputs in `bufs` and keeps what it writes
    /// under `key` (on the device within its budget, else in host memory).
    fn keep_reference(
        &mut self,
        reference: &Cand,
        plan: &SizePlan,
        bufs: &ArgBuffers,
        pristine: &[Option<DeviceBuffer>],
        key: &str,
        stage: &str,
    ) -> Step<()> {
        let dst: Vec<Option<&dyn DeviceMem>> = bufs
            .0
            .iter()
            .map(|b| b.as_ref().map(|b| b as &dyn DeviceMem))
            .collect();
        self.load_args(plan, &dst, pristine)
            .map_err(|e| self.infra_err("prepare the reference's arguments", e))?;
        let dims = plan.ref_launch.unwrap_or(plan.launch);
        self.run_once(reference, &dims, plan, bufs, stage, false)?;
        let written = |io: &Io| matches!(io, Io::Out | Io::Inout);
        let bytes: u64 = plan
            .args
            .iter()
            .map(|a| match a {
                ArgPlan::Buffer { dtype, len, io, .. } if written(io) => len * dtype.size() as u64,
                _ => 0,
            })
            .sum();
        let mut place = self.refs.place(bytes);
        self.refs.make_room(place, bytes);
        let mut kept: RefOutputs = Vec::new();
        for (a, b) in plan.args.iter().zip(&bufs.0) {
            let (ArgPlan::Buffer { io, .. }, Some(b)) = (a, b) else {
                kept.push(None);
                continue;
            };
            if !written(io) {
                kept.push(None);
                continue;
            }
            let on_device = match place {
                Place::Device => match self.gpu.alloc(b.bytes()) {
                    Ok(d) => Some(d),
                    Err(e) if e.is_out_of_memory() => {
                        place = Place::Host;
                        None
                    }
                    Err(e) => return Err(self.infra_err("keep the reference's outputs", e)),
                },
                _ => None,
            };
            kept.push(Some(match on_device {
                Some(d) => {
                    self.gpu
                        .copy(&d, b)
                        .map_err(|e| self.infra_err("keep the reference's outputs", e))?;
                    Kept::Device(d)
                }
                None => {
                    let kept = match self.gpu.alloc_pinned(b.bytes()) {
                        Ok(mut p) => self
                            .gpu
                            .download_into(b, p.as_mut_slice())
                            .map(|()| Kept::Pinned(p)),
                        Err(_) => self.gpu.download(b).map(Kept::Host),
                    };
                    kept.map_err(|e| self.infra_err("keep the reference's outputs", e))?
                }
            }));
        }
        if place == Place::Nowhere {
            self.transient = Some((key.to_string(), kept));
        } else {
            self.refs.insert(key.to_string(), place, bytes, kept);
        }
        Ok(())
    }

    /// The reference outputs kept under `key`.
    fn reference_outputs(&self, key: &str) -> Option<&RefOutputs> {
        self.refs.get(key).or(match &self.transient {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        })
    }

    /// Compares every output of a run (`outs`, per argument) with the reference's
    /// kept under `key`: on the device, or on the host for top-k index sets.
    fn compare_outputs(
        &self,
        plan: &SizePlan,
        outs: &[Option<&dyn DeviceMem>],
        key: &str,
        tol: &dyn Fn(DType) -> Tolerance,
    ) -> Result<Vec<(usize, ErrorStats)>, GpuError> {
        let bi = self.bi()?;
        let kept = self
            .reference_outputs(key)
            .ok_or_else(|| GpuError::other("compare", "the reference's outputs are gone"))?;
        let host = |i: usize| -> Result<Vec<u8>, GpuError> {
            match &kept[i] {
                Some(Kept::Device(d)) => self.gpu.download(d),
                Some(k) => Ok(k.host_bytes().unwrap_or_default().to_vec()),
                None => Err(GpuError::other("compare", "no reference output")),
            }
        };
        let mut out = Vec::new();
        for (ai, a) in plan.args.iter().enumerate() {
            let ArgPlan::Buffer {
                dtype,
                len,
                io,
                topk,
                ..
            } = a
            else {
                continue;
            };
            if !matches!(io, Io::Out | Io::Inout) {
                continue;
            }
            let Some(got) = outs[ai] else { continue };
            let stats = match topk {
                Some(t) => {
                    let sd = plan.args[t.scores].dtype();
                    let scores = outs[t.scores].ok_or_else(|| {
                        GpuError::other("compare", "top-k scores are not a buffer")
                    })?;
                    let (gi, gs) = (self.gpu.download(got)?, self.gpu.download(scores)?);
                    let (ei, es) = (host(ai)?, host(t.scores)?);
                    let view = |index, scores| validate::TopKView {
                        index_dtype: *dtype,
                        index,
                        score_dtype: sd,
                        scores,
                    };
                    validate::compare_topk(
                        view(&gi, &gs),
                        view(&ei, &es),
                        t.k as usize,
                        t.range,
                        tol(sd),
                    )
                }
                None => match &kept[ai] {
                    Some(Kept::Device(d)) => {
                        bi.compare(&self.gpu, got, d, *dtype, *len, tol(*dtype))?
                    }
                    Some(k) => {
                        let v = k.host_bytes().unwrap_or_default();
                        let d = self.gpu.alloc(v.len())?;
                        self.gpu.upload(&d, v)?;
                        bi.compare(&self.gpu, got, &d, *dtype, *len, tol(*dtype))?
                    }
                    None => return Err(GpuError::other("compare", "no reference output")),
                },
            };
            out.push((ai, stats));
        }
        Ok(out)
    }

    /// The validation protocol for one job, on the device: inputs generated there,
    /// the reference's outputs kept for reuse, every buffer between guards, outputs
    /// compared there, the candidate run twice. Fills the report's checks, cost and
    /// nondeterminism note.
    fn validate(
        &mut self,
        job: &EvalJob,
        cand: &Cand,
        reference: &Cand,
        r: &mut WorkerReport,
        cost: &mut ValidationCost,
    ) -> Step<()> {
        self.builtins()?;
        let v = &job.validation;
        let tol_of = |kind| move |d: DType| v.tolerance(d, kind);
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
            let g = match Guarded::alloc(&self.gpu, plan, GUARD_BYTES) {
                Ok(g) => g,
                Err(e) if e.is_out_of_memory() => return Err(self.no_room(plan)),
                Err(e) => return Err(self.infra_err("allocate arguments", e)),
            };
            let pristine = self.alloc_some(plan, |io| matches!(io, Io::In | Io::Inout))?;
            let first = if v.deterministic {
                self.alloc_some(plan, |io| matches!(io, Io::Out | Io::Inout))?
            } else {
                Vec::new()
            };
            let mut ref_bufs: Option<ArgBuffers> = None;
            let insides: Vec<Option<DeviceView>> =
                (0..plan.args.len()).map(|i| g.inside(i)).collect();
            let dst: Vec<Option<&dyn DeviceMem>> = insides
                .iter()
                .map(|v| v.as_ref().map(|v| v as &dyn DeviceMem))
                .collect();
            for trial in 0..=(v.trials as usize) {
                let kind = if trial == v.trials as usize {
                    TrialKind::Large
                } else {
                    TrialKind::Normal
                };
                let seed = validate::trial_seed(v.seed, si, trial);
                let at = format!("{} trial {trial}", plan.label);
                let t = Instant::now();
                self.link.progress(&format!("inputs at {at}"));
                self.gen_inputs(plan, &pristine, kind, seed)
                    .map_err(|e| self.infra_err("generate inputs", e))?;
                cost.generate_ms += ms(t);

                let key = ref_key(&job.reference, plan, seed, trial, kind);
                let t = Instant::now();
                match self.refs.get(&key) {
                    Some(kept) => {
                        cost.references_reused += 1;
                        let on = kept.iter().flatten().next().map_or("device", Kept::place);
                        if !cost.kept_on.iter().any(|k| k == on) {
                            cost.kept_on.push(on.to_string());
                        }
                    }
                    None => {
                        if ref_bufs.is_none() {
                            ref_bufs = Some(self.alloc(plan, 1)?.remove(0));
                        }
                        let bufs = ref_bufs
                            .as_ref()
                            .ok_or_else(|| Stop::Infra("no buffers".into()))?;
                        self.keep_reference(
                            reference,
                            plan,
                            bufs,
                            &pristine,
                            &key,
                            &format!("reference at {at}"),
                        )?;
                        cost.references_computed += 1;
                    }
                }
                cost.reference_ms += ms(t);

                let runs = if v.deterministic { 2 } else { 1 };
                for run in 0..runs {
                    let stage = if run == 0 {
                        format!("candidate at {at}")
                    } else {
                        format!("candidate again at {at}")
                    };
                    let t = Instant::now();
                    let prepared = self
                        .load_args(plan, &dst, &pristine)
                        .and_then(|()| g.arm(&self.gpu));
                    prepared.map_err(|e| self.infra_err("prepare arguments", e))?;
                    self.link.progress(&stage);
                    let launched = g
                        .params(plan)
                        .and_then(|mut p| exec(&self.gpu, cand, plan, &plan.launch, &mut p))
                        .and_then(|()| self.gpu.sync());
                    launched.map_err(|e| self.candidate_err(&stage, e))?;
                    cost.candidate_ms += ms(t);

                    let t = Instant::now();
                    if let Some(x) = g
                        .trespass(&self.gpu)
                        .map_err(|e| self.candidate_err(&stage, e))?
                    {
                        return Err(Stop::Reject(Outcome::OutOfBounds {
                            size: plan.label.clone(),
                            trial,
                            arg: plan.args[x.arg].name().to_string(),
                            side: if x.after { "after" } else { "before" }.into(),
                            bytes: x.bytes,
                        }));
                    }
                    for (ai, a) in plan.args.iter().enumerate() {
                        if let (
                            ArgPlan::Buffer {
                                name,
                                dtype,
                                len,
                                io: Io::In,
                                ..
                            },
                            Some(d),
                            Some(p),
                        ) = (a, dst[ai], &pristine[ai])
                        {
                            let diff = self
                                .bi()
                                .and_then(|bi| bi.first_diff(&self.gpu, d, p, dtype.size(), *len));
                            if let Some(index) = diff.map_err(|e| self.candidate_err(&stage, e))? {
                                return Err(Stop::Reject(Outcome::MutatedInput {
                                    size: plan.label.clone(),
                                    trial,
                                    arg: name.clone(),
                                    index,
                                }));
                            }
                        }
                    }
                    let tol = tol_of(kind);
                    let compared = self
                        .compare_outputs(plan, &dst, &key, &tol)
                        .map_err(|e| self.candidate_err(&stage, e))?;
                    for (ai, stats) in compared {
                        let arg = plan.args[ai].name().to_string();
                        if run == 0 {
                            r.checks.push(Check {
                                size: plan.label.clone(),
                                trial,
                                kind,
                                arg: arg.clone(),
                                stats,
                            });
                        }
                        if !stats.passed() {
                            // The second run wrong where the first was right: a race.
                            return Err(Stop::Reject(if run == 0 {
                                Outcome::Incorrect {
                                    size: plan.label.clone(),
                                    trial,
                                    kind,
                                    arg,
                                    stats: Box::new(stats),
                                    stage: None,
                                }
                            } else {
                                Outcome::Race {
                                    size: plan.label.clone(),
                                    trial,
                                    arg,
                                    index: stats.first_bad.map_or(0, |b| b.index),
                                }
                            }));
                        }
                    }
                    for (ai, a) in plan.args.iter().enumerate() {
                        let (
                            ArgPlan::Buffer {
                                name,
                                dtype,
                                len,
                                io: Io::Out | Io::Inout,
                                ..
                            },
                            Some(d),
                            Some(f),
                        ) = (a, dst[ai], first.get(ai).and_then(|f| f.as_ref()))
                        else {
                            continue;
                        };
                        if run == 0 {
                            self.gpu
                                .copy(f, d)
                                .map_err(|e| self.infra_err("keep the first run", e))?;
                            continue;
                        }
                        let diff = self
                            .bi()
                            .and_then(|bi| bi.first_diff(&self.gpu, d, f, dtype.size(), *len));
                        let Some(index) = diff.map_err(|e| self.candidate_err(&stage, e))? else {
                            continue;
                        };
                        if v.bitwise {
                            return Err(Stop::Reject(Outcome::Race {
                                size: plan.label.clone(),
                                trial,
                                arg: name.clone(),
                                index,
                            }));
                        }
                        r.nondeterministic.get_or_insert(Nondeterminism {
                            size: plan.label.clone(),
                            trial,
                            arg: name.clone(),
                            index,
                        });
                    }
                    cost.compare_ms += ms(t);
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
    /// Measurement per arm, why sampling stopped, and per arm the outcome of the check
    /// after timing (None: its output was right).
    ///
    /// Every timed launch starts from outputs no kernel can predict (scrambled, not
    /// poisoned: a kernel must not do its work only when its output holds NaN, nor
    /// skip it when the output already holds last launch's result), scrambled outside
    /// the timed events. After the samples, one more launch of each arm, made exactly
    /// as the timed ones, is compared with the reference on its inputs.
    fn measure(&mut self, arms: &[Arm], opts: &MeasureOpts, min_gain: f64) -> Step<Measured> {
        let start = Instant::now();
        self.builtins()?;
        // Arms with the same arguments (the same kernel at the same problem) share one
        // set of buffers: separate allocations can differ in speed by a few percent,
        // which an A/A comparison would otherwise report as a speedup.
        let mut owner: Vec<usize> = Vec::new();
        for (ai, arm) in arms.iter().enumerate() {
            let same = arms[..ai]
                .iter()
                .position(|x| x.plan().args == arm.plan().args);
            owner.push(same.map(|j| owner[j]).unwrap_or(ai));
        }
        let mut sets_per_arm: Vec<Vec<ArgBuffers>> = Vec::new();
        let mut pristine: Vec<Vec<Option<DeviceBuffer>>> = Vec::new();
        for (ai, arm) in arms.iter().enumerate() {
            if owner[ai] != ai {
                sets_per_arm.push(Vec::new());
                pristine.push(Vec::new());
                continue;
            }
            let plan = arm.plan();
            let bufs = self.alloc(plan, 1)?;
            let p = self.alloc_some(plan, |io| matches!(io, Io::In | Io::Inout))?;
            let ready = {
                let dst: Vec<Option<&dyn DeviceMem>> = bufs[0]
                    .0
                    .iter()
                    .map(|b| b.as_ref().map(|b| b as &dyn DeviceMem))
                    .collect();
                self.gen_inputs(plan, &p, TrialKind::Normal, opts.seed)
                    .and_then(|()| self.load_args(plan, &dst, &p))
            };
            ready.map_err(|e| self.infra_err("prepare arguments", e))?;
            sets_per_arm.push(bufs);
            pristine.push(p);
        }
        self.link.progress("warm-up");
        let mut warm = Vec::new();
        for (ai, arm) in arms.iter().enumerate() {
            let bufs = &sets_per_arm[owner[ai]][0];
            let w = self.warmup(arm.cand, arm.plan(), bufs, opts.warmup_ms);
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
                .map(|(_, a)| a.plan())
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
            for (ai, arm) in arms.iter().enumerate() {
                if owner[ai] != ai {
                    continue;
                }
                let plan = arm.plan();
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
        for (ai, arm) in arms.iter().enumerate() {
            let mut ps = Vec::new();
            for s in &sets_per_arm[owner[ai]] {
                ps.push(
                    s.params(arm.plan())
                        .map_err(|e| self.infra_err("parameters", e))?,
                );
            }
            params.push(ps);
        }
        self.link.progress("sampling");
        let mut seq = measure::sequential::Sequential::new(min_gain);
        let kernels: Vec<(&Cand, &SizePlan)> = arms.iter().map(|a| (a.cand, a.plan())).collect();
        let sampled = {
            // What is scrambled before each timed launch: per arm, per set, its outputs.
            let scrambled: Vec<Vec<Vec<&DeviceBuffer>>> = arms
                .iter()
                .enumerate()
                .map(|(ai, arm)| {
                    sets_per_arm[owner[ai]]
                        .iter()
                        .map(|set| outputs(arm.plan(), set))
                        .collect()
                })
                .collect();
            let mut src = GpuSource {
                w: self,
                kernels: &kernels,
                params: &mut params,
                scrambled: &scrambled,
                method,
                events: Vec::new(),
                chunks: 0,
            };
            let rule = opts.rule;
            let out = if arms.len() == 2 {
                measure::sample(&mut src, &rule, measure::verdict_rule(&mut seq))
            } else {
                measure::sample(&mut src, &rule, measure::noise_rule(rule))
            };
            match out {
                Ok(s) => s,
                Err(e) => return Err(self.candidate_err("sampling", e)),
            }
        };
        // The check after timing, per arm.
        let mut after = Vec::new();
        for (ai, arm) in arms.iter().enumerate() {
            let o = owner[ai];
            after.push(self.after_timing(arm, &sets_per_arm[o][0], &pristine[o], opts.seed)?);
        }
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
        Ok((out, sampled.stop, after, seq.last(), seq.looks.len()))
    }

    /// One more launch of `arm`, made as a timed one (its inputs as measured, its
    /// outputs scrambled), compared with the reference's outputs for those inputs.
    fn after_timing(
        &mut self,
        arm: &Arm,
        set: &ArgBuffers,
        pristine: &[Option<DeviceBuffer>],
        seed: u64,
    ) -> Step<Option<Outcome>> {
        let plan = arm.plan();
        let key = ref_key(
            &arm.job.reference,
            plan,
            seed,
            usize::MAX,
            TrialKind::Normal,
        );
        if self.reference_outputs(&key).is_none() {
            let bufs = self.alloc(plan, 1)?.remove(0);
            self.keep_reference(
                arm.reference,
                plan,
                &bufs,
                pristine,
                &key,
                "reference for the timed inputs",
            )?;
        }
        let stage = "the check after timing";
        let dst: Vec<Option<&dyn DeviceMem>> = set
            .0
            .iter()
            .map(|b| b.as_ref().map(|b| b as &dyn DeviceMem))
            .collect();
        let ready = self.load_args(plan, &dst, pristine).and_then(|()| {
            let bi = self.bi()?;
            for b in outputs(plan, set) {
                bi.scramble(&self.gpu, b, (0xA4F1_5E0D, 0x0C0F_FEE5))?;
            }
            Ok(())
        });
        ready.map_err(|e| self.infra_err(stage, e))?;
        self.run_once(arm.cand, &plan.launch, plan, set, stage, true)?;
        let v = &arm.job.validation;
        let tol = |d: DType| v.tolerance(d, TrialKind::Normal);
        let compared = self
            .compare_outputs(plan, &dst, &key, &tol)
            .map_err(|e| self.candidate_err(stage, e))?;
        Ok(compared
            .into_iter()
            .find(|(_, s)| !s.passed())
            .map(|(ai, stats)| Outcome::Incorrect {
                size: plan.label.clone(),
                trial: 0,
                kind: TrialKind::Normal,
                arg: plan.args[ai].name().to_string(),
                stats: Box::new(stats),
                stage: Some("after timing".into()),
            }))
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

/// What a measurement found: per arm its record, why sampling stopped, per arm the
/// check after timing (None: right), and for two arms the A/B look that stopped it
/// and how many looks were taken.
type Measured = (
    Vec<Measurement>,
    measure::StopReason,
    Vec<Option<Outcome>>,
    Option<measure::sequential::Look>,
    usize,
);

/// One arm of a measurement: the candidate, its job, and its reference (for the
/// check after timing).
struct Arm<'a> {
    cand: &'a Cand,
    job: &'a EvalJob,
    reference: &'a Cand,
}

impl Arm<'_> {
    /// The problem that is measured.
    fn plan(&self) -> &SizePlan {
        &self.job.sizes[0]
    }
}

/// The buffers of `set` a launch writes and does not read: `out` and `scratch`.
fn outputs<'a>(plan: &SizePlan, set: &'a ArgBuffers) -> Vec<&'a DeviceBuffer> {
    plan.args
        .iter()
        .zip(&set.0)
        .filter_map(|(a, b)| match (a, b) {
            (
                ArgPlan::Buffer {
                    io: Io::Out | Io::Scratch,
                    ..
                },
                Some(b),
            ) => Some(b),
            _ => None,
        })
        .collect()
}

/// Takes interleaved samples of every arm on the GPU.
struct GpuSource<'a> {
    w: &'a mut Worker,
    kernels: &'a [(&'a Cand, &'a SizePlan)],
    params: &'a mut Vec<Vec<Params>>,
    /// Per arm, per argument set: the outputs scrambled before each timed launch.
    scrambled: &'a [Vec<Vec<&'a DeviceBuffer>>],
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
                // Outputs no kernel can predict, outside the timed events.
                let key = ((self.chunks * n + i) as u32, 0x7E57_0000 | a as u32);
                let sets = match self.method {
                    TimingMethod::Cold => &self.scrambled[a][..1],
                    TimingMethod::Batch { .. } => &self.scrambled[a][..],
                };
                let bi = self.w.bi()?;
                for set in sets {
                    for b in set {
                        bi.scramble(&self.w.gpu, *b, key)?;
                    }
                }
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

/// Host-built cases for the device comparison: `(dtype, out, reference, tolerance)`.
/// NaN and infinities on either side, poison left in the output, one element off,
/// errors just inside and just outside the tolerance, and zeros in the reference.
fn compare_cases() -> Vec<(DType, Vec<u8>, Vec<u8>, Tolerance)> {
    let tol = Tolerance {
        rtol: 1e-3,
        atol: 1e-4,
    };
    let enc = |d: DType, v: &[f64]| {
        let mut b = Vec::new();
        for x in v {
            validate::device::store(d, *x, &mut b);
        }
        b
    };
    let mut out = Vec::new();
    for d in DType::ALL {
        let want: Vec<f64> = (0..257).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
        let r = enc(d, &want);
        out.push((d, r.clone(), r.clone(), tol));
        let mut off = want.clone();
        off[100] += 3.0;
        out.push((d, enc(d, &off), r.clone(), tol));
        let mut poisoned = r.clone();
        let sz = d.size();
        poisoned[7 * sz..8 * sz].fill(d.poison_byte());
        out.push((d, poisoned, r.clone(), tol));
        if d.is_float() {
            let edge: Vec<f64> = want
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let lim = tol.atol + tol.rtol * w.abs();
                    match i % 3 {
                        0 => w + lim * 0.5,
                        1 => w + lim * 2.0,
                        _ => *w,
                    }
                })
                .collect();
            out.push((d, enc(d, &edge), r.clone(), tol));
            let mut special = want.clone();
            special[3] = f64::NAN;
            special[4] = f64::INFINITY;
            special[5] = f64::NEG_INFINITY;
            let mut wspecial = want.clone();
            wspecial[4] = f64::INFINITY;
            wspecial[6] = f64::NAN;
            wspecial[8] = 0.0;
            out.push((d, enc(d, &special), enc(d, &wspecial), tol));
        }
    }
    out
}

impl Worker {
    /// Runs the validation kernels on host-built cases and compares every result with
    /// the host's: generated inputs bit for bit (every dtype and distribution),
    /// comparison figures, first differences and scrambled bytes.
    fn self_check(&mut self) -> Response {
        if let Err(e) = self.builtins() {
            return Response::Error {
                message: match e {
                    Stop::Infra(m) => m,
                    Stop::Reject(o) => o.describe(),
                },
            };
        }
        let mut cases = 0;
        let mut failures = Vec::new();
        let r = self.self_check_cases(&mut cases, &mut failures);
        if let Err(e) = r {
            failures.push(format!("the GPU failed: {e}"));
        }
        Response::SelfChecked { cases, failures }
    }

    fn self_check_cases(
        &mut self,
        cases: &mut usize,
        failures: &mut Vec<String>,
    ) -> Result<(), GpuError> {
        use crate::spec::Init;
        let bi = self.bi()?;
        let gpu = &self.gpu;
        let inits = [
            Init::Normal,
            Init::Uniform {
                low: -3.0,
                high: 5.0,
            },
            Init::Uniform {
                low: 0.0,
                high: 1.0,
            },
            Init::Randint { low: -7, high: 300 },
            Init::Constant { value: 1.0 },
            Init::Constant { value: 0.0 },
        ];
        let n = 10_007u64;
        for d in DType::ALL {
            for (ii, init) in inits.iter().enumerate() {
                for kind in [TrialKind::Normal, TrialKind::Large] {
                    *cases += 1;
                    let p = GenParams::new(d, *init, kind, 1000.0, 0xC0FFEE + ii as u64);
                    let buf = gpu.alloc(n as usize * d.size())?;
                    bi.generate(gpu, &buf, d, n, &p)?;
                    gpu.sync()?;
                    let got = gpu.download(&buf)?;
                    let want = validate::device::generate(d, n, &p);
                    if let Some(i) = validate::first_difference(d, &got, &want) {
                        failures.push(format!(
                            "generate {d} {init:?} {kind:?}: element {i} is {} on the device, {} on the host",
                            d.read(&got, i as usize),
                            d.read(&want, i as usize)
                        ));
                    }
                }
            }
        }
        for (d, out, reference, tol) in compare_cases() {
            *cases += 1;
            let n = (out.len() / d.size()) as u64;
            let (a, b) = (gpu.alloc(out.len())?, gpu.alloc(reference.len())?);
            gpu.upload(&a, &out)?;
            gpu.upload(&b, &reference)?;
            let dev = bi.compare(gpu, &a, &b, d, n, tol)?;
            let host = validate::compare(d, &out, &reference, tol);
            let same_l2 = (dev.rel_l2 == host.rel_l2)
                || (dev.rel_l2 - host.rel_l2).abs() <= 1e-12 * host.rel_l2.abs();
            let same_first = match (dev.first_bad, host.first_bad) {
                (Some(x), Some(y)) => {
                    x.index == y.index
                        && (x.got == y.got || (x.got.is_nan() && y.got.is_nan()))
                        && (x.expected == y.expected
                            || (x.expected.is_nan() && y.expected.is_nan()))
                }
                (x, y) => x.is_none() && y.is_none(),
            };
            if (
                dev.bad,
                dev.unwritten,
                dev.non_finite,
                dev.max_abs,
                dev.max_rel,
            ) != (
                host.bad,
                host.unwritten,
                host.non_finite,
                host.max_abs,
                host.max_rel,
            ) || !same_l2
                || !same_first
            {
                failures.push(format!(
                    "compare {d}: the device found {dev:?}, the host {host:?}"
                ));
            }
            *cases += 1;
            let first = bi.first_diff(gpu, &a, &b, d.size(), n)?;
            if first != validate::first_difference(d, &out, &reference) {
                failures.push(format!(
                    "first difference {d}: {first:?} on the device, {:?} on the host",
                    validate::first_difference(d, &out, &reference)
                ));
            }
        }
        for len in [1usize, 15, 16, 4099] {
            *cases += 1;
            let buf = gpu.alloc(len)?;
            bi.scramble(gpu, &buf, (3, 4))?;
            gpu.sync()?;
            if gpu.download(&buf)? != validate::device::scramble(len, (3, 4)) {
                failures.push(format!("scramble of {len} bytes differs from the host's"));
            }
        }
        Ok(())
    }
}
