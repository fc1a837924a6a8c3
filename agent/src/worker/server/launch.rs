//! Running things on the worker's device: argument buffers, what runs as a candidate
//! (a kernel or cuBLAS), one launch and its wait, and which side a failed GPU call
//! is charged to.

use super::*;

/// Device buffers for one argument list; `None` for scalars.
pub(super) struct ArgBuffers(pub(super) Vec<Option<DeviceBuffer>>);

impl ArgBuffers {
    pub(super) fn params(&self, plan: &SizePlan) -> Result<Params, GpuError> {
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
pub(super) enum Cand {
    Kernel(Kernel),
    Blas(Rc<Blas>),
}

impl Cand {
    pub(super) fn kernel(&self) -> Option<&Kernel> {
        match self {
            Cand::Kernel(k) => Some(k),
            Cand::Blas(_) => None,
        }
    }
}

/// Enqueues one run of `c` for `plan` (with `dims` when it is a kernel).
pub(super) fn exec(
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

impl Worker {
    /// Classifies a failed GPU call made for the candidate.
    pub(super) fn candidate_err(&mut self, stage: &str, e: GpuError) -> Stop {
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
    pub(super) fn infra_err(&mut self, stage: &str, e: GpuError) -> Stop {
        if e.is_sticky() {
            self.dead = true;
        }
        Stop::Infra(format!("{stage}: {e}"))
    }

    pub(super) fn load(&mut self, image: &KernelImage) -> Result<Kernel, String> {
        let bytes = std::fs::read(&image.cubin)
            .map_err(|e| format!("cannot read {}: {e}", image.cubin.display()))?;
        self.gpu
            .load(&bytes, &image.entry)
            .map_err(|e| e.to_string())
    }

    pub(super) fn alloc(&mut self, plan: &SizePlan, sets: usize) -> Step<Vec<ArgBuffers>> {
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
    pub(super) fn prepare(
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
    pub(super) fn run_once(
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
    pub(super) fn download(
        &mut self,
        bufs: &ArgBuffers,
        stage: &str,
    ) -> Step<Vec<Option<Vec<u8>>>> {
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

    pub(super) fn occupancy(&mut self, k: &Kernel, dims: &LaunchDims) -> Option<Occupancy> {
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
}
