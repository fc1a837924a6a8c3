//! The bundled suite on a GPU: each kernel's baseline passes validation at every size
//! and is measured; a spread of other configurations passes validation. Prints
//! `skipped: no CUDA device` where there is none.

mod common;

use std::time::Duration;

use nightshift::evaluate::{Options, Session};
use nightshift::spec::KernelSpec;
use nightshift::vocab::Outcome;

#[test]
fn every_bundled_kernel_passes_validation_on_the_gpu() {
    if common::skip_without_gpu("every_bundled_kernel_passes_validation_on_the_gpu") {
        return;
    }
    let mut o = Options::new(std::env::temp_dir().join("nightshift-gpu-tests"));
    o.worker_exe = Some(common::nightshift_bin());
    o.watchdog = Duration::from_secs(60);
    o.measure.rule.max_time = Duration::from_secs(1);
    o.measure.energy_ms = 0.0;
    let mut s = Session::start(o, Box::new(|_| {})).expect("a GPU session starts");
    let mut failures = Vec::new();
    for dir in common::bundled_kernels() {
        let spec = KernelSpec::load(&dir).unwrap();
        let valid: Vec<_> = spec.space().valid().collect();
        // The baseline, measured; then up to four others spread over the space.
        let mut configs = vec![(spec.baseline(), true)];
        let step = (valid.len() / 4).max(1);
        configs.extend(
            valid
                .iter()
                .step_by(step)
                .take(4)
                .filter(|c| **c != spec.baseline())
                .map(|c| (c.clone(), false)),
        );
        if spec.name == "gemm" {
            // 64 KiB of dynamic shared memory: needs the opt-in for launch and occupancy.
            let big = [("BM", 128), ("BN", 128), ("BK", 16), ("WM", 4), ("WN", 4)];
            let sets: Vec<(String, i64)> = big.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            configs.push((spec.with_overrides(&spec.baseline(), &sets).unwrap(), false));
        }
        for (c, measure) in configs {
            let e = s
                .evaluate(&spec, &c, measure)
                .expect("the infrastructure holds");
            let line = match (&e.outcome, e.median_us(), &e.roofline) {
                (Outcome::Passed, Some(t), Some(r)) => format!(
                    "{:<10} {c}: passed, {t:.2} us, {:.0} GB/s ({:.1}% DRAM), {:.0} GFLOP/s ({:.1}% {:?}), {} regs",
                    spec.name,
                    r.gbs,
                    100.0 * r.dram_fraction,
                    r.gflops,
                    100.0 * r.compute_fraction,
                    r.compute,
                    e.function.map(|f| f.registers).unwrap_or(0)
                ),
                (o, _, _) => format!("{:<10} {c}: {}", spec.name, o.describe()),
            };
            println!("{line}");
            if e.outcome != Outcome::Passed {
                failures.push(line);
            } else if e
                .occupancy
                .as_ref()
                .is_none_or(|o| o.active_blocks_per_sm == 0)
            {
                failures.push(format!("{line}: no occupancy figure ({:?})", e.occupancy));
            }
        }
        // cuBLAS, where the spec names it, passes the same protocol on the same inputs
        // (which also checks the spec's layout against cuBLAS's).
        if let Some(r) = s.evaluate_cublas(&spec) {
            let e = r.expect("the infrastructure holds");
            let line = format!(
                "{:<10} {}: {} {:?} us",
                spec.name,
                e.external.as_deref().unwrap_or("?"),
                e.outcome.describe(),
                e.median_us()
            );
            println!("{line}");
            if e.outcome != Outcome::Passed || e.median_us().is_none() {
                failures.push(line);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
