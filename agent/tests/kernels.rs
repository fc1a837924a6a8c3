//! The bundled kernel suite without a GPU: every spec parses, its search space is not
//! empty, its baseline satisfies the restrictions, and its launch and cost model
//! evaluate at the default problem and at every validation size.

mod common;

use nightshift::spec::plan;
use nightshift::spec::KernelSpec;

#[test]
fn the_suite_has_the_bundled_kernels() {
    let names: Vec<String> = common::bundled_kernels()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for k in [
        "attention",
        "conv2d",
        "gemm",
        "gemv",
        "layernorm",
        "rowsum",
        "simsearch",
        "softmax",
    ] {
        assert!(
            names.contains(&k.to_string()),
            "kernels/{k} is missing: {names:?}"
        );
    }
}

#[test]
fn every_bundled_spec_parses_and_evaluates() {
    for dir in common::bundled_kernels() {
        let spec = KernelSpec::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let base = spec.baseline();
        assert!(
            spec.violated(&spec.problem, &base).is_empty(),
            "{}: baseline {base} violates a restriction",
            spec.name
        );
        let valid = spec.space().valid().take(2).count();
        assert!(valid > 0, "{}: empty search space", spec.name);
        let p = plan::plan(&spec, &base, &spec.problem)
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(
            p.bytes > 0.0 && p.flops > 0.0,
            "{}: cost model gives {} bytes, {} flops",
            spec.name,
            p.bytes,
            p.flops
        );
        assert!(p.launch.ctas() > 0);
        // Every valid configuration plans at the default problem.
        for c in spec.space().valid() {
            plan::plan(&spec, &c, &spec.problem)
                .unwrap_or_else(|e| panic!("{} {c}: {e}", spec.name));
        }
        // The baseline plans at every validation size it is allowed at, and at least one.
        let mut allowed = 0;
        for size in &spec.validation.sizes {
            if spec.violated(size, &base).is_empty() {
                plan::plan(&spec, &base, size)
                    .unwrap_or_else(|e| panic!("{} at {size:?}: {e}", spec.name));
                allowed += 1;
            }
        }
        assert!(
            allowed > 0,
            "{}: the baseline is validated at no odd size",
            spec.name
        );
        assert!(
            spec.space().size() >= 9,
            "{}: too few tunables for tuning to matter",
            spec.name
        );
    }
}

#[test]
fn every_external_baseline_is_known_and_plans() {
    let script = common::repo_root().join("kernels/external/torch_baselines.py");
    let text = std::fs::read_to_string(&script).unwrap();
    for dir in common::bundled_kernels() {
        let spec = KernelSpec::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let torch = spec
            .external
            .torch
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no PyTorch equivalent named", spec.name));
        assert!(
            text.contains(&format!("\"{torch}\"")),
            "{}: {} does not know the kernel {torch:?}",
            spec.name,
            script.display()
        );
        // The cuBLAS call plans at every size, with the buffers the spec names.
        if spec.external.cublas.is_some() {
            let base = spec.baseline();
            for size in std::iter::once(&spec.problem).chain(&spec.validation.sizes) {
                let p = plan::plan(&spec, &base, size).unwrap();
                let call = p.blas.expect("a cuBLAS call at every size");
                assert!(call.m > 0 && call.n > 0 && call.k > 0);
            }
        }
    }
}
