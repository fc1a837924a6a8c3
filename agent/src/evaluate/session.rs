//! The [`Session`]: a worker, the device it runs on and its measured ceilings; it
//! evaluates and compares configurations there and turns a hang or a dead worker into
//! an outcome.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    compile_all, compile_requests, judge, plan_sizes, CompileInfo, EvalError, Evaluation, Options,
};
use crate::gpu::ceilings::{self, Ceilings};
use crate::gpu::nvrtc::Compiled;
use crate::gpu::DeviceInfo;
use crate::spec::{Config, KernelSpec};
use crate::vocab::*;
use crate::worker::protocol::*;
use crate::worker::supervisor::{Reply, Supervisor, WorkerCommand};

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
                launched: false,
            },
            None => WorkerCommand::this_exe(args)
                .map_err(|e| EvalError::Infra(format!("cannot find this executable: {e}")))?,
        };
        let cmd = cmd.through(&opts.launcher);
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

    /// Says what the session is doing, on the progress line it was started with.
    pub fn progress(&mut self, what: &str) {
        (self.progress)(what)
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
        let (reply, retried) = self.sup.call_retrying(
            &Request::Evaluate {
                job: Box::new(job.clone()),
            },
            &mut |s| progress(s),
        )?;
        match reply {
            Reply::Done(Response::Evaluated { report }) => self.absorb(&mut e, *report, &job, spec),
            other => e.outcome = Self::lost(other)?,
        }
        e.anomalies.extend(retried);
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
        self.compare_kernels((spec, a), (spec, b), lone)
    }

    /// The same comparison between two versions of one kernel (the spec as written
    /// and as rewritten, say: both are validated against the spec's reference), each
    /// at its configuration.
    pub fn compare_kernels(
        &mut self,
        (sa, a): (&KernelSpec, &Config),
        (sb, b): (&KernelSpec, &Config),
        lone: bool,
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        let start = Instant::now();
        let pa = self.prepare(sa, a, true);
        let pb = self.prepare(sb, b, true);
        let ((ja, mut ea), (jb, mut eb)) = match (pa, pb) {
            (Ok(x), Ok(y)) => (x, y),
            // One did not get as far as the GPU: evaluate the other alone when asked.
            (Err(ea), Ok(_)) if lone => return Ok((*ea, self.evaluate(sb, b, true)?, None)),
            (Ok(_), Err(eb)) if lone => return Ok((self.evaluate(sa, a, true)?, *eb, None)),
            (Err(ea), Ok(_)) => return Ok((*ea, Self::not_run(sb, b), None)),
            (Ok(_), Err(eb)) => return Ok((Self::not_run(sa, a), *eb, None)),
            (Err(ea), Err(eb)) => return Ok((*ea, *eb, None)),
        };
        let progress = &mut self.progress;
        let req = Request::Compare {
            a: Box::new(ja.clone()),
            b: Box::new(jb.clone()),
            min_gain: self.opts.min_gain,
            lone,
        };
        let (reply, retried) = self.sup.call_retrying(&req, &mut |s| progress(s))?;
        let mut ab = None;
        match reply {
            Reply::Done(Response::Compared {
                a: ra,
                b: rb,
                ab: r,
            }) => {
                self.absorb(&mut ea, *ra, &ja, sa);
                self.absorb(&mut eb, *rb, &jb, sb);
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
        if let Some(why) = retried {
            ea.anomalies.push(why.clone());
            eb.anomalies.push(why);
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
