//! The measurement protocol on the worker's device: warm-up, interleaved sampling of
//! one or two arms from unpredictable outputs, the check after timing, and the energy
//! window.

use super::*;

impl Worker {
    /// Warm-up: launches until `warmup_ms` has passed; returns µs per launch (warm).
    pub(super) fn warmup(
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
    pub(super) fn measure(
        &mut self,
        arms: &[Arm],
        opts: &MeasureOpts,
        min_gain: f64,
    ) -> Step<Measured> {
        let start = Instant::now();
        self.builtins()?;
        let owner = owners(arms);
        let (mut sets_per_arm, pristine) = self.first_sets(arms, &owner, opts.seed)?;
        self.link.progress("warm-up");
        let mut warm = Vec::new();
        for (ai, arm) in arms.iter().enumerate() {
            let bufs = &sets_per_arm[owner[ai]][0];
            let w = self.warmup(arm.cand, arm.plan(), bufs, opts.warmup_ms);
            warm.push(w?);
        }
        let method = self.timing_method(arms, &owner, &warm, opts);
        if let TimingMethod::Batch { buffer_sets, .. } = method {
            self.more_sets(arms, &owner, buffer_sets as usize, &mut sets_per_arm)?;
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

    /// One argument set per arm that owns its buffers (see [`owners`]), inputs
    /// generated and loaded, and those inputs kept pristine (for the check after
    /// timing); empty for an arm that shares another's.
    fn first_sets(&mut self, arms: &[Arm], owner: &[usize], seed: u64) -> Step<ArmSets> {
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
                self.gen_inputs(plan, &p, TrialKind::Normal, seed)
                    .and_then(|()| self.load_args(plan, &dst, &p))
            };
            ready.map_err(|e| self.infra_err("prepare arguments", e))?;
            sets_per_arm.push(bufs);
            pristine.push(p);
        }
        Ok((sets_per_arm, pristine))
    }

    /// Cold launches, or batches when the fastest arm's warm launch is short (as
    /// `opts.method` says); a batch cycles through enough argument copies that the L2
    /// cannot hold the working set, within memory.
    fn timing_method(
        &self,
        arms: &[Arm],
        owner: &[usize],
        warm: &[f64],
        opts: &MeasureOpts,
    ) -> TimingMethod {
        let fastest = warm.iter().cloned().fold(f64::INFINITY, f64::min);
        let batch = match opts.method {
            MethodChoice::Auto => fastest < opts.batch_below_us,
            MethodChoice::Cold => false,
            MethodChoice::Batch => true,
        };
        if !batch {
            return TimingMethod::Cold;
        }
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
    }

    /// The argument sets of a batch beyond the first, per arm that owns its buffers:
    /// inputs copied from the first set, outputs and scratch poisoned.
    fn more_sets(
        &mut self,
        arms: &[Arm],
        owner: &[usize],
        buffer_sets: usize,
        sets_per_arm: &mut [Vec<ArgBuffers>],
    ) -> Step<()> {
        for (ai, arm) in arms.iter().enumerate() {
            if owner[ai] != ai {
                continue;
            }
            let plan = arm.plan();
            let extra = self.alloc(plan, buffer_sets - 1)?;
            for set in &extra {
                for ((a, dst), src) in plan.args.iter().zip(&set.0).zip(&sets_per_arm[ai][0].0) {
                    if let (ArgPlan::Buffer { dtype, io, .. }, Some(d), Some(s)) = (a, dst, src) {
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
        Ok(())
    }

    /// One more launch of `arm`, made as a timed one (its inputs as measured, its
    /// outputs scrambled), compared with the reference's outputs for those inputs.
    pub(super) fn after_timing(
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
    pub(super) fn energy(
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
pub(super) type Measured = (
    Vec<Measurement>,
    measure::StopReason,
    Vec<Option<Outcome>>,
    Option<measure::sequential::Look>,
    usize,
);

/// Per arm, its argument sets and its pristine inputs (empty for an arm that shares
/// another's buffers).
type ArmSets = (Vec<Vec<ArgBuffers>>, Vec<Vec<Option<DeviceBuffer>>>);

/// Per arm, the arm whose buffers it uses: arms with the same arguments (the same
/// kernel at the same problem) share one set, since separate allocations can differ
/// in speed by a few percent, which an A/A comparison would otherwise report as a
/// speedup.
fn owners(arms: &[Arm]) -> Vec<usize> {
    let mut owner: Vec<usize> = Vec::new();
    for (ai, arm) in arms.iter().enumerate() {
        let same = arms[..ai]
            .iter()
            .position(|x| x.plan().args == arm.plan().args);
        owner.push(same.map(|j| owner[j]).unwrap_or(ai));
    }
    owner
}

/// One arm of a measurement: the candidate, its job, and its reference (for the
/// check after timing).
pub(super) struct Arm<'a> {
    pub(super) cand: &'a Cand,
    pub(super) job: &'a EvalJob,
    pub(super) reference: &'a Cand,
}

impl Arm<'_> {
    /// The problem that is measured.
    fn plan(&self) -> &SizePlan {
        &self.job.sizes[0]
    }
}

/// The buffers of `set` a launch writes and does not read: `out` and `scratch`.
pub(super) fn outputs<'a>(plan: &SizePlan, set: &'a ArgBuffers) -> Vec<&'a DeviceBuffer> {
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
pub(super) struct GpuSource<'a> {
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
