//! A stand-in for the GPU, for tests of the loop's plumbing (journal, ledger, git,
//! resume): evaluations made up from the configuration, whose figures never reach a
//! report. Compiled into test builds and debug builds only: a release binary cannot
//! run without a GPU. `nightshift run` uses [`FakeGpu`] when a debug build is run with
//! `NIGHTSHIFT_FAKE_GPU=1`, so that a real child process can be killed and resumed by
//! the tests; the journal names the device [`FAKE_DEVICE`] and `nightshift report`
//! refuses to write a report from it.

use std::time::{Duration, Instant};

use crate::evaluate::{EvalError, Evaluation, Roofline, StageTimes};
use crate::gpu::FunctionInfo;
use crate::measure::stats::Summary;
use crate::measure::{StopReason as SampleStop, TimingMethod, Verdict};
use crate::spec::{plan, ComputeKind, Config, KernelSpec, REWRITE_SEPARATOR};
use crate::vocab::{AbResult, Measurement, Occupancy, Outcome};

use super::{Evaluator, FAKE_DEVICE};

/// Units of work of the spec's problem: the product of its workload axes.
pub fn work(spec: &KernelSpec) -> f64 {
    spec.workload_axes
        .iter()
        .map(|a| spec.problem.get(a).copied().unwrap_or(1) as f64)
        .product()
}

pub fn made_up(spec: &KernelSpec, config: &Config, passed: bool) -> Evaluation {
    Evaluation {
        kernel: spec.name.clone(),
        config: config.clone(),
        external: None,
        problem: plan::problem_label(&spec.problem),
        outcome: if passed {
            Outcome::Passed
        } else {
            Outcome::Crashed {
                stage: "validate".into(),
                error: "scripted failure".into(),
            }
        },
        compile: None,
        function: Some(FunctionInfo {
            registers: 32,
            local_bytes: 0,
            static_shared_bytes: 0,
            const_bytes: 0,
            max_threads_per_block: 1024,
        }),
        checks: vec![],
        skipped_sizes: vec![],
        // Time grows as the square root of the work: a launch with more work per CTA
        // fills the GPU better (made up).
        measurement: Some(made_up_measurement(10.0 * work(spec).sqrt())),
        // Kernels with workload axes launch one CTA per unit of work.
        occupancy: Some(if spec.workload_axes.is_empty() {
            Occupancy {
                ctas: 4096,
                sms: 132,
                active_blocks_per_sm: 8,
                waves: 3.9,
                theoretical: 1.0,
            }
        } else {
            Occupancy {
                ctas: work(spec) as u64,
                sms: 132,
                active_blocks_per_sm: 8,
                waves: work(spec) / (132.0 * 8.0),
                theoretical: 1.0,
            }
        }),
        roofline: passed.then(|| Roofline {
            bytes: 1.0,
            flops: 1.0,
            gbs: 1000.0,
            dram_fraction: 0.3,
            gflops: 10.0,
            compute: ComputeKind::Fp32,
            compute_fraction: 0.01,
            bound: "memory".into(),
        }),
        anomalies: vec![],
        times: StageTimes {
            compile_ms: 100.0,
            validate_ms: 200.0,
            measure_ms: 600.0,
            total_ms: 1000.0,
        },
        validation: None,
        nondeterministic: None,
        rewrites: vec![],
    }
}

pub fn made_up_measurement(median: f64) -> Measurement {
    Measurement {
        method: TimingMethod::Batch {
            launches: 50,
            buffer_sets: 4,
        },
        samples: vec![],
        summary: Some(Summary {
            n: 30,
            median,
            q1: median * 0.99,
            q3: median * 1.01,
            min: median * 0.98,
            max: median * 1.02,
            mean: median,
            ci_lo: median * 0.995,
            ci_hi: median * 1.005,
        }),
        discarded_throttled: 0,
        stop: SampleStop::Converged,
        throttle_reasons: vec![],
        sm_clock_mhz: None,
        warmup_us_per_launch: median,
        energy: None,
        utilization_gpu_pct: None,
        wall_ms: 100.0,
    }
}

/// A made-up A/B result: FAST at 1.25x, else SAME at 1.0x, each on 30 pairs.
pub fn made_up_ab(fast: bool) -> AbResult {
    let (speedup, verdict) = if fast {
        (1.25, Verdict::Fast)
    } else {
        (1.0, Verdict::Same)
    };
    AbResult {
        speedup,
        ci_lo: speedup - 0.01,
        ci_hi: speedup + 0.01,
        verdict,
        min_gain: 0.02,
        pairs: 30,
        stop: SampleStop::Decided,
        looks: Some(1),
    }
}

/// The fake GPU of a debug build: each evaluation sleeps a few milliseconds (so a
/// test can kill the process in the middle of one) and is made up from a digest of
/// the configuration: one in seven fails validation, one in three is FAST.
pub struct FakeGpu {
    delay: Duration,
    ordinal: Option<usize>,
}

impl FakeGpu {
    /// `delay`: the time one evaluation takes (a comparison takes twice that).
    pub fn new(delay: Duration) -> FakeGpu {
        FakeGpu {
            delay,
            ordinal: None,
        }
    }

    /// The same, saying it is GPU `ordinal` (a run with several).
    pub fn on(self, ordinal: usize) -> FakeGpu {
        FakeGpu {
            ordinal: Some(ordinal),
            ..self
        }
    }

    /// A made-up property of a configuration of a version of the kernel.
    fn byte(spec: &KernelSpec, config: &Config) -> u8 {
        let mut id = config.to_string();
        for r in spec.rewritten.iter().flat_map(|r| &r.rewrites) {
            id.push_str(REWRITE_SEPARATOR);
            id.push_str(r);
        }
        let d = crate::digest::of_parts([("config", id.as_bytes())]);
        u8::from_str_radix(&d[..2], 16).unwrap_or(0)
    }

    /// A made-up evaluation whose stage times are the time it really took.
    fn timed(&self, spec: &KernelSpec, config: &Config, sides: u32) -> Evaluation {
        let t0 = Instant::now();
        std::thread::sleep(self.delay * sides);
        let mut e = made_up(spec, config, !Self::byte(spec, config).is_multiple_of(7));
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        e.times = StageTimes {
            compile_ms: total_ms * 0.1,
            validate_ms: total_ms * 0.3,
            measure_ms: total_ms * 0.6,
            total_ms,
        };
        e
    }
}

impl Evaluator for FakeGpu {
    fn device_name(&self) -> String {
        FAKE_DEVICE.into()
    }
    fn evaluate(&mut self, spec: &KernelSpec, config: &Config) -> Result<Evaluation, EvalError> {
        Ok(self.timed(spec, config, 1))
    }
    fn compare(
        &mut self,
        (sa, a): (&KernelSpec, &Config),
        (spec, b): (&KernelSpec, &Config),
    ) -> Result<(Evaluation, Evaluation, Option<AbResult>), EvalError> {
        let ea = made_up(sa, a, true);
        let eb = self.timed(spec, b, 2);
        if eb.outcome != Outcome::Passed {
            return Ok((ea, eb, None));
        }
        let ab = made_up_ab(Self::byte(spec, b).is_multiple_of(3));
        Ok((ea, eb, Some(ab)))
    }
    fn min_gain(&self) -> f64 {
        0.02
    }
    fn ordinal(&self) -> Option<usize> {
        self.ordinal
    }
}
