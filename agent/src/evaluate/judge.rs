//! A measurement judged against the device's measured ceilings: roofline fractions,
//! a figure above a ceiling flagged as an anomaly of the cost model, and `implausible`
//! only below the shortest possible launch.

use serde::{Deserialize, Serialize};

use super::Evaluation;
use crate::gpu::ceilings::Ceilings;
use crate::spec::ComputeKind;
use crate::vocab::*;

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

/// The start of the anomaly a figure above a measured ceiling gets: the run warns
/// once per kernel when it sees it.
pub const COST_MODEL_OVERCOUNTS: &str = "the cost model overcounts";

/// No launch completes in less (µs): a shorter median is implausible whatever the
/// cost model says.
pub const MIN_LAUNCH_US: f64 = 0.25;

/// Achieved throughput and plausibility of a measured configuration.
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::dispatch::fake::{made_up, made_up_measurement};
    use crate::spec::KernelSpec;

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
