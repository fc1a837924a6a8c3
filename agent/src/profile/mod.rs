//! Profile signals: what a measured configuration says about where its time goes,
//! as plain numbers that pattern conditions (`when` in `patterns/*.toml`) read.
//! Every signal comes from a measurement on the GPU (time, roofline fractions against
//! the measured ceilings, the occupancy API, the compiled function's attributes,
//! NVML); a signal that was not measured is absent, never guessed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::Evaluation;
use crate::spec::plan::LaunchDims;
use crate::spec::{KernelSpec, Role};

/// The signals a pattern condition may name, with what each means. A condition
/// naming anything else is rejected when the pattern library loads.
pub const SIGNALS: &[(&str, &str)] = &[
    ("time_us", "median time of one launch, µs"),
    (
        "dram_fraction",
        "achieved bytes/s over the measured DRAM ceiling (cost model bytes)",
    ),
    (
        "compute_fraction",
        "achieved FLOP/s over the measured ceiling of the spec's compute kind",
    ),
    (
        "memory_bound",
        "1 when the DRAM fraction is the larger of the two, else 0",
    ),
    (
        "compute_bound",
        "1 when the compute fraction is the larger, else 0",
    ),
    ("ctas", "CTAs launched"),
    ("sms", "streaming multiprocessors on the device"),
    (
        "active_blocks_per_sm",
        "resident CTAs per SM (occupancy API)",
    ),
    ("waves", "CTAs / (SMs x resident CTAs per SM)"),
    (
        "occupancy",
        "theoretical occupancy: resident threads per SM / the SM's maximum",
    ),
    ("threads_per_block", "threads per CTA"),
    ("registers", "registers per thread"),
    (
        "spill_bytes",
        "local memory per thread (spills and local arrays), bytes",
    ),
    (
        "shared_bytes",
        "shared memory per CTA, static + dynamic, bytes",
    ),
    (
        "utilization_pct",
        "NVML GPU utilization after the energy window, %",
    ),
    (
        "throttled_fraction",
        "samples discarded because the GPU throttled, over all samples",
    ),
    ("has_block", "1 when the spec has a tunable of role `block`"),
    ("has_tile", "1 when the spec has a tunable of role `tile`"),
    (
        "has_vector",
        "1 when the spec has a tunable of role `vector`",
    ),
    (
        "has_unroll",
        "1 when the spec has a tunable of role `unroll`",
    ),
    (
        "has_parallelism",
        "1 when the spec has a tunable of role `parallelism`",
    ),
    (
        "has_variant",
        "1 when the spec has a tunable of role `variant`",
    ),
    (
        "has_stages",
        "1 when the spec has a tunable of role `stages`",
    ),
    ("has_other", "1 when the spec has a tunable of role `other`"),
    (
        "has_workload_axes",
        "1 when the spec declares workload axes (batch, heads)",
    ),
];

/// The signals of one measured configuration, by name (see [`SIGNALS`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub signals: BTreeMap<String, f64>,
}

impl Profile {
    /// Reads the signals of a passed, measured evaluation. `dims` is its launch at the
    /// measured problem (for dynamic shared memory and threads per CTA). Signals whose
    /// measurement is missing (no NVML, no occupancy figure) are left out.
    pub fn of(spec: &KernelSpec, e: &Evaluation, dims: Option<&LaunchDims>) -> Profile {
        let mut s = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            if v.is_finite() {
                s.insert(k.to_string(), v);
            }
        };
        if let Some(t) = e.median_us() {
            put("time_us", t);
        }
        if let Some(r) = &e.roofline {
            put("dram_fraction", r.dram_fraction);
            put("compute_fraction", r.compute_fraction);
            let memory = r.dram_fraction >= r.compute_fraction;
            put("memory_bound", memory as u8 as f64);
            put("compute_bound", !memory as u8 as f64);
        }
        if let Some(o) = &e.occupancy {
            put("ctas", o.ctas as f64);
            put("sms", o.sms as f64);
            put("active_blocks_per_sm", o.active_blocks_per_sm as f64);
            put("waves", o.waves);
            put("occupancy", o.theoretical);
        }
        if let Some(f) = &e.function {
            put("registers", f.registers as f64);
            put("spill_bytes", f.local_bytes as f64);
            let dynamic = dims.map(|d| d.shared_bytes).unwrap_or(0);
            put("shared_bytes", (f.static_shared_bytes + dynamic) as f64);
        }
        if let Some(d) = dims {
            put("threads_per_block", d.threads_per_block() as f64);
        }
        if let Some(m) = &e.measurement {
            if let Some(u) = m.utilization_gpu_pct {
                put("utilization_pct", u as f64);
            }
            if !m.samples.is_empty() {
                put(
                    "throttled_fraction",
                    m.discarded_throttled as f64 / m.samples.len() as f64,
                );
            }
        }
        for (name, role) in [
            ("has_block", Role::Block),
            ("has_tile", Role::Tile),
            ("has_vector", Role::Vector),
            ("has_unroll", Role::Unroll),
            ("has_parallelism", Role::Parallelism),
            ("has_variant", Role::Variant),
            ("has_stages", Role::Stages),
            ("has_other", Role::Other),
        ] {
            put(
                name,
                spec.tunables.iter().any(|t| t.role == role) as u8 as f64,
            );
        }
        put(
            "has_workload_axes",
            !spec.workload_axes.is_empty() as u8 as f64,
        );
        Profile { signals: s }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::evaluate::{Roofline, StageTimes};
    use crate::gpu::FunctionInfo;
    use crate::spec::ComputeKind;
    use crate::vocab::{Occupancy, Outcome};

    fn softmax() -> KernelSpec {
        KernelSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/softmax")).unwrap()
    }

    fn evaluation(spec: &KernelSpec, occupancy: Option<Occupancy>) -> Evaluation {
        Evaluation {
            kernel: spec.name.clone(),
            config: spec.baseline(),
            external: None,
            problem: "rows=4096 seq_k=1024".into(),
            outcome: Outcome::Passed,
            compile: None,
            function: Some(FunctionInfo {
                registers: 31,
                local_bytes: 0,
                static_shared_bytes: 128,
                const_bytes: 0,
                max_threads_per_block: 1024,
            }),
            checks: vec![],
            skipped_sizes: vec![],
            measurement: None,
            occupancy,
            roofline: Some(Roofline {
                bytes: 1.0,
                flops: 1.0,
                gbs: 2000.0,
                dram_fraction: 0.65,
                gflops: 1000.0,
                compute: ComputeKind::Fp32,
                compute_fraction: 0.02,
                bound: "memory".into(),
            }),
            anomalies: vec![],
            times: StageTimes::default(),
            validation: None,
            nondeterministic: None,
            rewrites: vec![],
        }
    }

    #[test]
    fn signals_come_from_the_measurement_and_the_spec() {
        let spec = softmax();
        let occ = Occupancy {
            ctas: 4096,
            sms: 132,
            active_blocks_per_sm: 16,
            waves: 1.94,
            theoretical: 1.0,
        };
        let dims = LaunchDims {
            grid: [4096, 1, 1],
            block: [128, 1, 1],
            shared_bytes: 256,
        };
        let p = Profile::of(&spec, &evaluation(&spec, Some(occ)), Some(&dims));
        let s = &p.signals;
        assert_eq!(s["ctas"], 4096.0);
        assert_eq!(s["waves"], 1.94);
        assert_eq!(s["memory_bound"], 1.0);
        assert_eq!(s["compute_bound"], 0.0);
        assert_eq!(s["shared_bytes"], 384.0);
        assert_eq!(s["threads_per_block"], 128.0);
        assert_eq!(s["has_variant"], 1.0, "softmax has VARIANT");
        assert_eq!(s["has_tile"], 0.0);
        assert_eq!(s["has_workload_axes"], 0.0);
        // Not measured: no time, no NVML figure. Absent, not zero.
        assert!(!s.contains_key("time_us"));
        assert!(!s.contains_key("utilization_pct"));
        // Every signal produced is one a pattern may name.
        let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        assert!(s.keys().all(|k| known.contains(&k.as_str())), "{s:?}");
    }

    #[test]
    fn no_occupancy_figure_means_no_waves_signal() {
        let spec = softmax();
        let infinite = Occupancy {
            ctas: 10,
            sms: 132,
            active_blocks_per_sm: 0,
            waves: f64::INFINITY,
            theoretical: 0.0,
        };
        let p = Profile::of(&spec, &evaluation(&spec, None), None);
        assert!(!p.signals.contains_key("waves"));
        let p = Profile::of(&spec, &evaluation(&spec, Some(infinite)), None);
        assert!(
            !p.signals.contains_key("waves"),
            "an infinite figure is not a signal"
        );
        assert_eq!(p.signals["ctas"], 10.0);
    }
}
