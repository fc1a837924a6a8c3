//! A job on the worker: loaded and validated (once per job and worker), then measured
//! alone, or compared with another job, the two measured interleaved.

use super::measurement::Measured;
use super::*;

impl Worker {
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
    pub(super) fn evaluate(&mut self, job: &EvalJob) -> WorkerReport {
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

    pub(super) fn compare(
        &mut self,
        a: &EvalJob,
        b: &EvalJob,
        min_gain: f64,
        lone: bool,
    ) -> Response {
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
        let result = self.measure(&arms, opts, min_gain);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let mut ab = None;
        match result {
            Ok(measured) => {
                let sides = (ka.is_some(), kb.is_some());
                ab = share(&mut ra, &mut rb, measured, sides, ms, min_gain);
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

/// A comparison's measurement shared between its sides (`sides`: which were
/// measured): each measured side gets its record, the measurement's time `ms` and the
/// outcome of its check after timing. Returns the A/B verdict when both sides were
/// measured, both checks after timing passed and both have a summary.
fn share(
    ra: &mut WorkerReport,
    rb: &mut WorkerReport,
    measured: Measured,
    sides: (bool, bool),
    ms: f64,
    min_gain: f64,
) -> Option<AbResult> {
    let (mut m, stop, mut after, look, looks) = measured;
    let (measured_a, measured_b) = sides;
    let both = measured_a && measured_b;
    let mut ab = None;
    let mb = if measured_b { m.pop() } else { None };
    let ma = if measured_a { m.pop() } else { None };
    // A wrong output after timing is the arm's own outcome; its figures
    // stand for nothing, and neither does a verdict with it.
    let fb = if measured_b {
        after.pop().flatten()
    } else {
        None
    };
    let fa = if measured_a {
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
    ab
}
