//! The validation protocol on the worker's device: inputs generated there, the
//! reference's outputs kept for reuse, every buffer between guards, outputs compared
//! there, and the candidate run twice.

use super::*;

impl Worker {
    /// The validation kernels, loaded on first use.
    pub(super) fn builtins(&mut self) -> Step<()> {
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

    pub(super) fn bi(&self) -> Result<&Builtins, GpuError> {
        self.builtins
            .as_ref()
            .ok_or_else(|| GpuError::other("validation", "the validation kernels are not loaded"))
    }

    /// Plain device buffers for the arguments `want` selects (None for the others).
    pub(super) fn alloc_some(
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

    pub(super) fn alloc_one(&mut self, plan: &SizePlan, bytes: usize) -> Step<DeviceBuffer> {
        match self.gpu.alloc(bytes) {
            Ok(b) => Ok(b),
            Err(e) if e.is_out_of_memory() => Err(self.no_room(plan)),
            Err(e) => Err(self.infra_err("allocate arguments", e)),
        }
    }

    pub(super) fn no_room(&mut self, plan: &SizePlan) -> Stop {
        let free = self.gpu.free_memory().unwrap_or(0);
        Stop::Reject(Outcome::Unlaunchable {
            reason: format!(
                "at {} the arguments (with the validation's copies) need more than the {free} bytes the device has free",
                plan.label
            ),
        })
    }

    /// Generates the inputs of a trial into `pristine` (the `in` and `inout` buffers).
    pub(super) fn gen_inputs(
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
    pub(super) fn load_args(
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
    pub(super) fn keep_reference(
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
    pub(super) fn reference_outputs(&self, key: &str) -> Option<&RefOutputs> {
        self.refs.get(key).or(match &self.transient {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        })
    }

    /// Compares every output of a run (`outs`, per argument) with the reference's
    /// kept under `key`: on the device, or on the host for top-k index sets.
    pub(super) fn compare_outputs(
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
    pub(super) fn validate(
        &mut self,
        job: &EvalJob,
        cand: &Cand,
        reference: &Cand,
        r: &mut WorkerReport,
        cost: &mut ValidationCost,
    ) -> Step<()> {
        self.builtins()?;
        for si in 0..job.sizes.len() {
            self.validate_size(job, si, cand, reference, r, cost)?;
        }
        Ok(())
    }

    /// Whether the candidate and the reference can launch at `plan` at all.
    fn check_launchable(&self, cand: &Cand, reference: &Cand, plan: &SizePlan) -> Step<()> {
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
        Ok(())
    }

    /// The protocol at the job's size `si`: its buffers allocated once, then every
    /// trial: inputs, the reference's outputs, and one or two runs of the candidate.
    fn validate_size(
        &mut self,
        job: &EvalJob,
        si: usize,
        cand: &Cand,
        reference: &Cand,
        r: &mut WorkerReport,
        cost: &mut ValidationCost,
    ) -> Step<()> {
        let plan = &job.sizes[si];
        let v = &job.validation;
        self.check_launchable(cand, reference, plan)?;
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
        let insides: Vec<Option<DeviceView>> = (0..plan.args.len()).map(|i| g.inside(i)).collect();
        let dst: Vec<Option<&dyn DeviceMem>> = insides
            .iter()
            .map(|v| v.as_ref().map(|v| v as &dyn DeviceMem))
            .collect();
        let size = Size {
            plan,
            guarded: &g,
            dst: &dst,
            pristine: &pristine,
            first: &first,
        };
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
            self.trial_reference(reference, &size, &key, &at, &mut ref_bufs, cost)?;
            cost.reference_ms += ms(t);

            let runs = if v.deterministic { 2 } else { 1 };
            for run in 0..runs {
                let stage = if run == 0 {
                    format!("candidate at {at}")
                } else {
                    format!("candidate again at {at}")
                };
                let run = Run {
                    trial,
                    kind,
                    run,
                    key: &key,
                    stage,
                };
                let t = Instant::now();
                self.run_candidate(cand, &size, &run)?;
                cost.candidate_ms += ms(t);

                let t = Instant::now();
                self.check_guards_and_inputs(&size, &run)?;
                self.check_outputs(&size, &run, v, r)?;
                self.check_against_first_run(&size, &run, v.bitwise, r)?;
                cost.compare_ms += ms(t);
            }
        }
        Ok(())
    }

    /// The reference's outputs for a trial's inputs under `key`: reused when kept,
    /// else computed (in `ref_bufs`, allocated on first need) and kept.
    fn trial_reference(
        &mut self,
        reference: &Cand,
        size: &Size,
        key: &str,
        at: &str,
        ref_bufs: &mut Option<ArgBuffers>,
        cost: &mut ValidationCost,
    ) -> Step<()> {
        match self.refs.get(key) {
            Some(kept) => {
                cost.references_reused += 1;
                let on = kept.iter().flatten().next().map_or("device", Kept::place);
                if !cost.kept_on.iter().any(|k| k == on) {
                    cost.kept_on.push(on.to_string());
                }
            }
            None => {
                if ref_bufs.is_none() {
                    *ref_bufs = Some(self.alloc(size.plan, 1)?.remove(0));
                }
                let bufs = ref_bufs
                    .as_ref()
                    .ok_or_else(|| Stop::Infra("no buffers".into()))?;
                self.keep_reference(
                    reference,
                    size.plan,
                    bufs,
                    size.pristine,
                    key,
                    &format!("reference at {at}"),
                )?;
                cost.references_computed += 1;
            }
        }
        Ok(())
    }

    /// One run of the candidate on the trial's inputs, its buffers between armed guards.
    fn run_candidate(&mut self, cand: &Cand, size: &Size, run: &Run) -> Step<()> {
        let (plan, g) = (size.plan, size.guarded);
        let prepared = self
            .load_args(plan, size.dst, size.pristine)
            .and_then(|()| g.arm(&self.gpu));
        prepared.map_err(|e| self.infra_err("prepare arguments", e))?;
        self.link.progress(&run.stage);
        let launched = g
            .params(plan)
            .and_then(|mut p| exec(&self.gpu, cand, plan, &plan.launch, &mut p))
            .and_then(|()| self.gpu.sync());
        launched.map_err(|e| self.candidate_err(&run.stage, e))?;
        Ok(())
    }

    /// After a run: every guard intact, every `in` argument as generated.
    fn check_guards_and_inputs(&mut self, size: &Size, run: &Run) -> Step<()> {
        let (plan, trial) = (size.plan, run.trial);
        if let Some(x) = size
            .guarded
            .trespass(&self.gpu)
            .map_err(|e| self.candidate_err(&run.stage, e))?
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
            ) = (a, size.dst[ai], &size.pristine[ai])
            {
                let diff = self
                    .bi()
                    .and_then(|bi| bi.first_diff(&self.gpu, d, p, dtype.size(), *len));
                if let Some(index) = diff.map_err(|e| self.candidate_err(&run.stage, e))? {
                    return Err(Stop::Reject(Outcome::MutatedInput {
                        size: plan.label.clone(),
                        trial,
                        arg: name.clone(),
                        index,
                    }));
                }
            }
        }
        Ok(())
    }

    /// After a run: every output compared with the reference's (the first run's
    /// comparisons are the report's checks); a wrong one is `incorrect`, or a race
    /// when it is the second run that is wrong.
    fn check_outputs(
        &mut self,
        size: &Size,
        run: &Run,
        v: &ValidationOpts,
        r: &mut WorkerReport,
    ) -> Step<()> {
        let (plan, trial, kind) = (size.plan, run.trial, run.kind);
        let tol = move |d: DType| v.tolerance(d, kind);
        let compared = self
            .compare_outputs(plan, size.dst, run.key, &tol)
            .map_err(|e| self.candidate_err(&run.stage, e))?;
        for (ai, stats) in compared {
            let arg = plan.args[ai].name().to_string();
            if run.run == 0 {
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
                return Err(Stop::Reject(if run.run == 0 {
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
        Ok(())
    }

    /// For a deterministic job: the first run's outputs kept, the second's compared
    /// with them bit for bit; a difference is a race when `bitwise`, else the
    /// report's nondeterminism note.
    fn check_against_first_run(
        &mut self,
        size: &Size,
        run: &Run,
        bitwise: bool,
        r: &mut WorkerReport,
    ) -> Step<()> {
        let (plan, trial) = (size.plan, run.trial);
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
            ) = (a, size.dst[ai], size.first.get(ai).and_then(|f| f.as_ref()))
            else {
                continue;
            };
            if run.run == 0 {
                self.gpu
                    .copy(f, d)
                    .map_err(|e| self.infra_err("keep the first run", e))?;
                continue;
            }
            let diff = self
                .bi()
                .and_then(|bi| bi.first_diff(&self.gpu, d, f, dtype.size(), *len));
            let Some(index) = diff.map_err(|e| self.candidate_err(&run.stage, e))? else {
                continue;
            };
            if bitwise {
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
        Ok(())
    }
}

/// One size of a job's validation: its plan and the buffers its trials run in.
struct Size<'a> {
    plan: &'a SizePlan,
    /// The candidate's arguments, each between guards.
    guarded: &'a Guarded,
    /// Inside the guards, per argument (None for scalars).
    dst: &'a [Option<&'a dyn DeviceMem>],
    /// The trial's inputs as generated (`in` and `inout`).
    pristine: &'a [Option<DeviceBuffer>],
    /// The first run's outputs, which the second must match (deterministic jobs).
    first: &'a [Option<DeviceBuffer>],
}

/// One run of the candidate in a trial.
struct Run<'a> {
    trial: usize,
    kind: TrialKind,
    /// 0, or 1 for the second run of a deterministic job.
    run: usize,
    /// The key the reference's outputs for the trial's inputs are kept under.
    key: &'a str,
    /// What the run is called in progress and errors.
    stage: String,
}
